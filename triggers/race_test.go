//go:build race

package triggers

// raceSlowdown is how many times slower code runs under the race detector
// (its documentation says 2 to 20 times; parsing is about 10 times):
// bounds on how long a step takes are multiplied by it, so that a bound
// meant to catch a quadratic step in a normal build does not fail a
// linear one under -race.
const raceSlowdown = 10
