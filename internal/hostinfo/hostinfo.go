// Package hostinfo describes the host a benchmark or a test suite ran on,
// for the reports they write (BENCHMARKS.md, RELIABILITY.md).
package hostinfo

import (
	"os"
	"strings"
)

// CPUModel returns the first "model name" of /proc/cpuinfo, or
// "unknown CPU" where there is none (not Linux, or an architecture whose
// cpuinfo has no such line).
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	return cpuModel(string(b))
}

// cpuModel is CPUModel on the text of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
