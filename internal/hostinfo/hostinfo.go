// Package hostinfo describes the host a benchmark or a test suite ran on,
// for the reports they write (BENCHMARKS.md, RELIABILITY.md).
package hostinfo

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
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

// IdlePolicy describes what the host's CPUs do when idle, as far as Linux
// tells (the cpuidle driver in use and, for the paravirtual haltpoll
// driver, how long an idle vCPU polls before it halts), or returns "" when
// the host does not say. It matters to any benchmark whose processes wake
// each other per operation: on a vCPU that halts at once, every such
// wake-up is a round trip through the hypervisor. haltsAtOnce reports that
// case: haltpoll with a polling window of zero.
func IdlePolicy() (desc string, haltsAtOnce bool) {
	return idlePolicy(os.ReadFile)
}

// idlePolicy is IdlePolicy reading the files through read.
func idlePolicy(read func(string) ([]byte, error)) (string, bool) {
	b, err := read("/sys/devices/system/cpu/cpuidle/current_driver")
	if err != nil {
		return "", false
	}
	driver := strings.TrimSpace(string(b))
	if driver == "" || driver == "none" {
		return "", false
	}
	if driver != "haltpoll" {
		return "cpuidle " + driver, false
	}
	b, err = read("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
	if err != nil {
		return "cpuidle haltpoll", false
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	switch {
	case err != nil:
		return "cpuidle haltpoll", false
	case ns <= 0:
		return "cpuidle haltpoll, guest_halt_poll_ns 0: an idle vCPU halts at once", true
	}
	return fmt.Sprintf("cpuidle haltpoll, guest_halt_poll_ns %d: an idle vCPU polls up to %v before it halts", ns, time.Duration(ns)), false
}
