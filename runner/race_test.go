//go:build race

package runner_test

// raceSlowdown multiplies waitTimeout under the race detector, which runs
// code 2 to 20 times slower: the large-event tests' 18 MiB encodings,
// deliveries and decodings have taken longer than the plain bound there,
// beside other packages' tests, without anything hanging.
const raceSlowdown = 3
