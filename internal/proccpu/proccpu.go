// Package proccpu reads the CPU time the current process has used: for the
// web console, which shows how many of its CPUs the process keeps busy, and
// for benchmarks that report CPU per operation rather than wall-clock time
// (on a shared machine the latter measures the neighbours too).
package proccpu
