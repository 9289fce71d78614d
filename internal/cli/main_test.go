package cli

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestStopSignals: the first SIGINT/SIGTERM stops gracefully; one that
// follows within DuplicateSignalWindow is the same request delivered twice
// (GNU timeout signals the process and then its group) and changes
// nothing; one DuplicateSignalWindow or more after the first exits at once.
func TestStopSignals(t *testing.T) {
	w := DuplicateSignalWindow
	for _, tc := range []struct {
		name      string
		at        []time.Duration // when each signal arrives, from the first
		wantStop  bool
		wantForce int // index of the signal that forces an exit, -1 for none
	}{
		{"none", nil, false, -1},
		{"one", []time.Duration{0}, true, -1},
		{"the same signal twice at once", []time.Duration{0, 0}, true, -1},
		{"twice just inside the window", []time.Duration{0, w - time.Nanosecond}, true, -1},
		{"a second one after the window", []time.Duration{0, w}, true, 1},
		{"a duplicate, then a second one", []time.Duration{0, time.Microsecond, 2 * time.Second}, true, 2},
		{"a person pressing Ctrl-C twice", []time.Duration{0, 400 * time.Millisecond}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
			sigs := make(chan os.Signal) // unbuffered: a send returns once the watcher took it
			done := make(chan struct{})
			exited := make(chan struct{})
			got := 0     // signals the watcher has read the clock for
			forced := -1 // the signal that forced an exit
			stopped := false
			now := func() time.Time { // called once per signal received, in order
				at := base.Add(tc.at[got])
				got++
				return at
			}
			go func() {
				defer close(exited)
				watchStopSignals(sigs, done, now, func() { stopped = true }, func() { forced = got - 1 })
			}()
			for i, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM, os.Interrupt}[:len(tc.at)] {
				select {
				case sigs <- sig:
				case <-exited:
					t.Fatalf("the watcher returned before signal %d", i)
				}
			}
			close(done)
			<-exited
			if stopped != tc.wantStop {
				t.Errorf("stopped = %v, want %v", stopped, tc.wantStop)
			}
			if forced != tc.wantForce {
				t.Errorf("forced exit at signal %d, want %d (-1: none)", forced, tc.wantForce)
			}
		})
	}
}
