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
		{"no driver", map[string]string{driver: "none\n"}, "", false},
		{"bare metal", map[string]string{driver: "intel_idle\n"}, "cpuidle intel_idle", false},
		{"halts at once", map[string]string{driver: "haltpoll\n", poll: "0\n"}, "cpuidle haltpoll, guest_halt_poll_ns 0: an idle vCPU halts at once", true},
		{"polls first", map[string]string{driver: "haltpoll\n", poll: "200000\n"}, "cpuidle haltpoll, guest_halt_poll_ns 200000: an idle vCPU polls up to 200µs before it halts", false},
		{"window unknown", map[string]string{driver: "haltpoll\n"}, "cpuidle haltpoll", false},
		{"window unreadable", map[string]string{driver: "haltpoll\n", poll: "x"}, "cpuidle haltpoll", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(name string) ([]byte, error) {
				s, ok := tc.files[name]
				if !ok {
					return nil, fs.ErrNotExist
				}
				return []byte(s), nil
			}
			got, halts := idlePolicy(read)
			if got != tc.want || halts != tc.halts {
				t.Errorf("idlePolicy = %q, %v; want %q, %v", got, halts, tc.want, tc.halts)
			}
		})
	}
}
