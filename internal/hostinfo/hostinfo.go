// Package hostinfo describes the host a benchmark or a test suite ran on,
// for the reports they write (BENCHMARKS.md, RELIABILITY.md).
package hostinfo

import (
	"fmt"
	"os"
	"slices"
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
	if v, ok := cpuinfoField(cpuinfo, "model name"); ok {
		return v
	}
	return "unknown CPU"
}

// cpuinfoField returns the value of the first line of cpuinfo (the text
// of /proc/cpuinfo) whose key is key, trimmed.
func cpuinfoField(cpuinfo, key string) (string, bool) {
	for _, line := range strings.Split(cpuinfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
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
	switch driver {
	case "":
		return "", false
	case "none":
		return "no cpuidle driver (the kernel's default idle)", false
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

// CPUFlag reports whether the first "flags" line of /proc/cpuinfo lists
// flag (false where the file or the line is missing).
func CPUFlag(flag string) bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	return err == nil && cpuFlag(string(b), flag)
}

// cpuFlag is CPUFlag on the text of /proc/cpuinfo.
func cpuFlag(cpuinfo, flag string) bool {
	v, _ := cpuinfoField(cpuinfo, "flags")
	return slices.Contains(strings.Fields(v), flag)
}

// Isolation describes the kernel's page-table isolation (PTI, the Meltdown
// mitigation) where Linux reports it on, or returns "". It matters to any
// benchmark that enters the kernel per operation (system calls, page
// faults, sleeps and wake-ups): without PCID, every entry into the kernel
// and every return from it switches page tables and flushes the TLB, so
// the user code that runs next starts with a cold TLB.
func Isolation() string {
	return isolation(os.ReadFile)
}

// isolation is Isolation reading the files through read.
func isolation(read func(string) ([]byte, error)) string {
	b, err := read("/sys/devices/system/cpu/vulnerabilities/meltdown")
	if err != nil || !strings.Contains(string(b), "PTI") {
		return ""
	}
	cpuinfo, err := read("/proc/cpuinfo")
	switch {
	case err != nil:
		return "kernel page-table isolation (PTI)"
	case cpuFlag(string(cpuinfo), "pcid"):
		return "kernel page-table isolation (PTI) with PCID"
	}
	return "kernel page-table isolation (PTI) without PCID: every entry into the kernel flushes the TLB"
}
