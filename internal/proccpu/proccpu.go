// Package proccpu reads the CPU time the current process has used, for
// benchmarks that report CPU per operation rather than wall-clock time
// (on a shared machine the latter measures the neighbours too).
package proccpu
