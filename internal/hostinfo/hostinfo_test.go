package hostinfo

import (
	"io/fs"
	"testing"
)

func TestCPUModel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nmodel name\t: second\n", "Intel(R) Xeon(R) CPU @ 2.20GHz"},
		{"processor\t: 0\nBogoMIPS\t: 50.00\n", "unknown CPU"},
		{"", "unknown CPU"},
	} {
		if got := cpuModel(tc.in); got != tc.want {
			t.Errorf("cpuModel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if CPUModel() == "" {
		t.Error("CPUModel() is empty")
	}
}

func TestIdlePolicy(t *testing.T) {
	const (
		driver = "/sys/devices/system/cpu/cpuidle/current_driver"
		poll   = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"
	)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
		halts bool
	}{
		{"no cpuidle", nil, "", false},
		{"no driver", map[string]string{driver: "none\n"}, "no cpuidle driver (the kernel's default idle)", false},
		{"bare metal", map[string]string{driver: "intel_idle\n"}, "cpuidle intel_idle", false},
		{"halts at once", map[string]string{driver: "haltpoll\n", poll: "0\n"}, "cpuidle haltpoll, guest_halt_poll_ns 0: an idle vCPU halts at once", true},
		{"polls first", map[string]string{driver: "haltpoll\n", poll: "200000\n"}, "cpuidle haltpoll, guest_halt_poll_ns 200000: an idle vCPU polls up to 200µs before it halts", false},
		{"window unknown", map[string]string{driver: "haltpoll\n"}, "cpuidle haltpoll", false},
		{"window unreadable", map[string]string{driver: "haltpoll\n", poll: "x"}, "cpuidle haltpoll", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, halts := idlePolicy(readFrom(tc.files))
			if got != tc.want || halts != tc.halts {
				t.Errorf("idlePolicy = %q, %v; want %q, %v", got, halts, tc.want, tc.halts)
			}
		})
	}
}

func TestCPUFlag(t *testing.T) {
	const cpuinfo = "processor\t: 0\nflags\t\t: fpu vme hypervisor pti sha_ni\n\nprocessor\t: 1\nflags\t\t: fpu pcid\n"
	for _, tc := range []struct {
		cpuinfo, flag string
		want          bool
	}{
		{cpuinfo, "hypervisor", true},
		{cpuinfo, "sha_ni", true},
		{cpuinfo, "pcid", false}, // only the first CPU's line counts
		{cpuinfo, "sha", false},  // whole flags only
		{"processor\t: 0\n", "fpu", false},
	} {
		if got := cpuFlag(tc.cpuinfo, tc.flag); got != tc.want {
			t.Errorf("cpuFlag(%q, %q) = %v, want %v", tc.cpuinfo, tc.flag, got, tc.want)
		}
	}
}

func TestIsolation(t *testing.T) {
	const (
		meltdown = "/sys/devices/system/cpu/vulnerabilities/meltdown"
		cpuinfo  = "/proc/cpuinfo"
	)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"not reported", nil, ""},
		{"not affected", map[string]string{meltdown: "Not affected\n"}, ""},
		{"without PCID", map[string]string{meltdown: "Mitigation: PTI\n", cpuinfo: "flags\t: fpu pti\n"},
			"kernel page-table isolation (PTI) without PCID: every entry into the kernel flushes the TLB"},
		{"with PCID", map[string]string{meltdown: "Mitigation: PTI\n", cpuinfo: "flags\t: fpu pcid pti\n"}, "kernel page-table isolation (PTI) with PCID"},
		{"flags unknown", map[string]string{meltdown: "Mitigation: PTI\n"}, "kernel page-table isolation (PTI)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isolation(readFrom(tc.files)); got != tc.want {
				t.Errorf("isolation = %q, want %q", got, tc.want)
			}
		})
	}
}

// readFrom is a file reader over files (name → contents): a name it does
// not hold does not exist.
func readFrom(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		s, ok := files[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(s), nil
	}
}
