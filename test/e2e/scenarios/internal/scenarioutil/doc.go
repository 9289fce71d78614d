// Package scenarioutil holds what the end-to-end scenarios under
// test/e2e/scenarios share: an embedded devdb with a connected driver
// client, a signature-verifying webhook receiver, a thread-safe log that
// callers can wait on, and helpers that load a scenario's triggers.yaml and
// run the changehook runner in process.
//
// Each scenario is a main package that runs with one `go run` command and
// whose test checks everything it did; the plumbing lives here once.
// Nothing in this package keeps package-level state.
package scenarioutil
