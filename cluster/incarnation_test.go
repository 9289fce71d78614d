package cluster

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/store"
)

// TestRestartReleasesDeadPredecessorsLeases: a process restarted with the
// same instance id takes its previous process's unexpired leases at once
// when that process is certainly dead, and waits for them to expire in
// every other case.
func TestRestartReleasesDeadPredecessorsLeases(t *testing.T) {
	_, start, with := ownIncarnation(t)
	tests := []struct {
		name     string
		previous string // the previous process's incarnation
		taken    bool   // the restarted process holds the lease after one round
	}{
		{"same pid, other start time: the pid was reused, the previous process is dead", with(3, strconv.FormatUint(start+1, 10)), true},
		{"previous process still running (the test's parent)", incarnation(os.Getppid()), false},
		{"another boot or host", with(0, "00000000-0000-0000-0000-000000000000"), false},
		{"another pid namespace (a container restart)", with(1, "pid:[1]"), false},
		{"no incarnation recorded", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newTestStore(t)
			ctx := t.Context()
			// The previous process registered and acquired the lease, then
			// vanished without releasing it.
			if err := st.Heartbeat(ctx, store.Member{ID: "a", Incarnation: tc.previous}, time.Hour); err != nil {
				t.Fatal(err)
			}
			prev, err := st.AcquireLease(ctx, "orders", "a", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			m := newManager(t, st, testConfig(t, "orders"), "a", newFakeClock())
			got := await(ctx, m, "orders")
			waitRegistered(t, m, 1)
			m.round(ctx)
			o := acquired(t, m, "orders", got)
			if taken := o != nil; taken != tc.taken {
				t.Fatalf("lease taken after one round = %v, want %v", taken, tc.taken)
			}
			if tc.taken {
				if o.Fence().Epoch != prev.Epoch+1 {
					t.Errorf("epoch %d, want %d (a new acquisition fences the previous process)", o.Fence().Epoch, prev.Epoch+1)
				}
				return
			}
			ls, err := st.ListLeases(ctx)
			if err != nil || len(ls) != 1 || ls[0].Epoch != prev.Epoch || ls[0].Owner != "a" {
				t.Errorf("leases = %+v (%v), want the previous process's untouched", ls, err)
			}
		})
	}
}

// TestDeadMemberOnThisHostIsLogged: a member restarted under a new instance
// id (the default) logs, once, that its predecessor's registration names a
// process on this host that is no longer running, and why its triggers wait
// until that registration and its leases expire; a live predecessor, or
// one on another host, is not logged.
func TestDeadMemberOnThisHostIsLogged(t *testing.T) {
	_, start, with := ownIncarnation(t)
	const warning = "a member registered on this host is no longer running"
	tests := []struct {
		name     string
		previous string // the other member's incarnation
		logged   bool
	}{
		{"its pid reused by another process: dead", with(3, strconv.FormatUint(start+1, 10)), true},
		{"still running (the test's parent)", incarnation(os.Getppid()), false},
		{"another boot or host", with(0, "00000000-0000-0000-0000-000000000000"), false},
		{"no incarnation recorded", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newTestStore(t)
			ctx := t.Context()
			if err := st.Heartbeat(ctx, store.Member{ID: "old", Host: "h", PID: 4242, Incarnation: tc.previous,
				Triggers: map[string]string{"orders": "x"}}, time.Hour); err != nil {
				t.Fatal(err)
			}
			if _, err := st.AcquireLease(ctx, "orders", "old", time.Hour); err != nil {
				t.Fatal(err)
			}
			var logs syncbuf.Buffer
			m, err := New(st, testConfig(t, "orders"), Options{InstanceID: "new", Clock: newFakeClock(), Version: "test",
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			m.round(ctx)
			m.round(ctx)
			out := logs.String()
			if n := strings.Count(out, warning); n != map[bool]int{true: 1, false: 0}[tc.logged] {
				t.Fatalf("%d warnings after two rounds, want logged = %v:\n%s", n, tc.logged, out)
			}
			if tc.logged && (!strings.Contains(out, "member=old") || !strings.Contains(out, "pid=4242") || !strings.Contains(out, "cluster.instance_id")) {
				t.Errorf("the warning does not name the member, its pid and the way out:\n%s", out)
			}
		})
	}
}

// TestIncarnationDead: a process is certainly dead only when, on this
// kernel and in this pid namespace, its pid is free, now another
// process's (another start time), or its own as a zombie.
func TestIncarnationDead(t *testing.T) {
	self, start, with := ownIncarnation(t)
	// A child that has exited and been waited for: its pid is free.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Skipf("cannot run a child process: %v", err)
	}
	exited := with(2, strconv.Itoa(child.Process.Pid))
	zombie := zombieIncarnation(t)
	tests := []struct {
		name string
		inc  string
		dead bool
	}{
		{"this process", self, false},
		{"the parent, running", incarnation(os.Getppid()), false},
		{"a pid now another process's", with(3, strconv.FormatUint(start+1, 10)), true},
		{"a free pid", exited, true},
		{"exited, not reaped yet (a zombie)", zombie, true},
		{"another boot or host", with(0, "00000000-0000-0000-0000-000000000000"), false},
		{"another pid namespace", with(1, "pid:[1]"), false},
		{"malformed", "x/y", false},
		{"no pid", with(2, "0"), false},
	}
	for _, tc := range tests {
		if got := incarnationDead(tc.inc); got != tc.dead {
			t.Errorf("%s (%s): dead = %v, want %v", tc.name, tc.inc, got, tc.dead)
		}
	}
}

// ownIncarnation returns this process's incarnation, its start time, and
// with, which returns the incarnation with its i-th part (0 boot id, 1 pid
// namespace, 2 pid, 3 start time) replaced by v. It skips the test where
// incarnations are not known.
func ownIncarnation(t *testing.T) (self string, start uint64, with func(i int, v string) string) {
	t.Helper()
	self = incarnation(os.Getpid())
	if self == "" {
		t.Skip("process incarnations are not known on this platform")
	}
	parts := strings.Split(self, "/")
	start, _ = strconv.ParseUint(parts[3], 10, 64)
	return self, start, func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "/")
	}
}

// TestKernelOf: the boot id and pid namespace of an incarnation, "" when
// it has none.
func TestKernelOf(t *testing.T) {
	for in, want := range map[string]string{
		"b00t/pid:[4026531836]/42/9000": "b00t/pid:[4026531836]",
		"b00t/pid:[4026531836]/":        "b00t/pid:[4026531836]",
		"b00t/pid:[4026531836]":         "",
		"b00t":                          "",
		"":                              "",
	} {
		if got := kernelOf(in); got != want {
			t.Errorf("kernelOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// zombieIncarnation starts a child that exits at once and returns its
// incarnation once it is a zombie: exited, not yet waited for (it is
// waited for at cleanup).
func zombieIncarnation(t *testing.T) string {
	t.Helper()
	z := exec.Command("true")
	out, err := z.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Start(); err != nil {
		t.Skipf("cannot run a child process: %v", err)
	}
	t.Cleanup(func() { _ = z.Wait() })
	pid := z.Process.Pid
	inc := incarnation(pid) // its start time stays readable until it is reaped
	if inc == "" {
		t.Fatalf("no incarnation for child %d", pid)
	}
	// EOF: the child closed its stdout, which exiting does just before it
	// becomes a zombie; the state follows within microseconds.
	if _, err := io.Copy(io.Discard, out); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, state, ok := procStat(pid); ok && state == 'Z' {
			return inc
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d did not become a zombie", pid)
		}
		time.Sleep(time.Millisecond)
	}
}
