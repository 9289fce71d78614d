//go:build linux

package cluster

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// incarnation returns "boot/pidns/pid/start" for the process pid: the
// kernel's boot id, the inode of this process's pid namespace, pid and the
// process's start time in clock ticks since boot. Within one boot and one
// pid namespace no two processes share pid and start time. "" when any
// part cannot be read.
func incarnation(pid int) string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	start, ok := startTime(pid)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s/%s/%d/%d", strings.TrimSpace(string(boot)), ns, pid, start)
}

// startTime reads field 22 (starttime) of /proc/PID/stat.
func startTime(pid int) (uint64, bool) {
	start, _, ok := procStat(pid)
	return start, ok
}

// procStat reads fields 22 (starttime) and 3 (state: 'R', 'S', 'Z' for a
// zombie, ...) of /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may contain spaces and parentheses
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, f[0][0], err == nil
}

// incarnationDead reports whether the process inc (from incarnation) is
// certainly not running: it ran on this kernel (same boot id) in this pid
// namespace, and its pid is now free, belongs to a process that started
// at another time, or is that process exited and not yet reaped by its
// parent (a zombie: its threads and sockets are gone). Anything else —
// another host, another boot, another pid namespace (a container
// restart), a process /proc hides — is "not certainly dead".
func incarnationDead(inc string) bool {
	parts := strings.Split(inc, "/")
	if len(parts) != 4 {
		return false
	}
	self := strings.Split(incarnation(os.Getpid()), "/")
	if len(self) != 4 || parts[0] != self[0] || parts[1] != self[1] {
		return false
	}
	pid, err1 := strconv.Atoi(parts[2])
	start, err2 := strconv.ParseUint(parts[3], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return false
	}
	cur, state, ok := procStat(pid)
	if !ok {
		// Gone, or hidden: /proc mounted with hidepid=2 shows no other
		// user's processes, so a missing /proc/PID proves nothing. Signal
		// 0 tells them apart: ESRCH only when no process has the pid in
		// this namespace (EPERM: it exists, run by another user).
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	return cur != start || state == 'Z' || state == 'X'
}
