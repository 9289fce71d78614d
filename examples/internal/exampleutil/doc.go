// Package exampleutil holds what the runnable examples under examples/ share:
// an embedded devdb with a connected driver client, a signature-verifying
// webhook receiver, a thread-safe log that callers can wait on, and helpers
// that load an example's triggers.yaml and run the changehook runner in
// process.
//
// It is internal to the examples: each example stays a small main package
// that reads top to bottom, and the plumbing lives here once. Nothing in this
// package keeps package-level state.
package exampleutil
