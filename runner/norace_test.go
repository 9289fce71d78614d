//go:build !race

package runner_test

// raceSlowdown multiplies waitTimeout; 1 without the race detector.
const raceSlowdown = 1
