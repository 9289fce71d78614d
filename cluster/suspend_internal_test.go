package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/syncbuf"
)

// clockStep moves the process's clock (Options.Clock) and the wall clock
// (Options.Wall) apart, as a host suspend (the monotonic clock stops) or a
// step of the wall clock does; renew then runs a round, whose renewal
// succeeds.
type clockStep struct {
	mono, wall time.Duration
	renew      bool
}

// TestWallClockBoundsTheLocalDeadline: a lease's local deadline (8s after
// the renewal request with lease_ttl 10s) holds only while both the
// process's clock and the wall clock say it has not passed. A suspend of
// the host, which stops the monotonic clock while the lease goes on
// expiring at the state database, makes the ownership invalid at once on
// resume; a renewal after that does not make it valid again; the watchdog
// fences it, saying why. A wall clock stepped back neither extends the
// lease nor, after the next renewal, leaves the wall deadline ahead.
func TestWallClockBoundsTheLocalDeadline(t *testing.T) {
	const (
		byWall = "the wall clock passed the lease's local deadline while the process's clock did not: the host was suspended or its clock was stepped forward"
		byMono = "lease not renewed before its local deadline"
	)
	tests := []struct {
		name  string
		steps []clockStep
		valid bool
		// deadlineIn is, for a valid ownership, Deadline() − Clock.Now()
		// after the steps; reason is, for an invalid one, the watchdog's.
		deadlineIn time.Duration
		reason     string
	}{
		{"host suspended longer than the time left", []clockStep{{wall: 9 * time.Second}}, false, 0, byWall},
		{"host suspended exactly the time left", []clockStep{{wall: 8 * time.Second}}, false, 0, byWall},
		{"host suspended shorter than the time left", []clockStep{{wall: 7 * time.Second}}, true, time.Second, ""},
		{"wall clock stepped forward", []clockStep{{wall: time.Hour}}, false, 0, byWall},
		{"wall clock stepped back", []clockStep{{wall: -time.Hour}}, true, 8 * time.Second, ""},
		{"wall clock stepped back, deadline reached", []clockStep{{mono: 9 * time.Second, wall: -time.Hour}}, false, 0, byMono},
		{"wall clock stepped back, renewed, then host suspended",
			[]clockStep{{mono: 3 * time.Second, wall: -time.Hour, renew: true}, {wall: 9 * time.Second}}, false, 0, byWall},
		{"renewed, then host suspended", []clockStep{{mono: 3 * time.Second, wall: 3 * time.Second, renew: true}, {wall: 9 * time.Second}}, false, 0, byWall},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock, wall := newFakeClock(), newFakeClock()
			var logs syncbuf.Buffer
			m, err := New(newTestStore(t), testConfig(t, "orders"), Options{InstanceID: "a", Clock: clock, Wall: wall.Now,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			got := await(ctx, m, "orders")
			waitRegistered(t, m, 1)
			m.round(ctx)
			o := <-got
			if o == nil || !o.Valid() {
				t.Fatalf("ownership = %+v, want valid", o)
			}
			defer o.Release(ctx)
			for _, s := range tt.steps {
				wall.Advance(s.wall)
				clock.Advance(s.mono)
				if s.renew {
					m.round(ctx)
				}
			}
			if o.Valid() != tt.valid {
				t.Fatalf("valid = %v after the steps, want %v (deadline in %s by the process's clock)",
					o.Valid(), tt.valid, o.Deadline().Sub(clock.Now()))
			}
			if tt.valid {
				if d := o.Deadline().Sub(clock.Now()); d != tt.deadlineIn {
					t.Errorf("deadline in %s, want %s (the less time left on either clock)", d, tt.deadlineIn)
				}
				return
			}
			if d := o.Deadline().Sub(clock.Now()); d > 0 {
				t.Errorf("deadline in %s after it passed, want none left", d)
			}
			// The state database still has the lease (no real time passed):
			// the renewal succeeds, and the passed deadline stays passed.
			m.round(ctx)
			if o.Valid() {
				t.Fatal("valid again after a renewal that followed the passed deadline")
			}
			// The watchdog, asleep on the process's clock, wakes within
			// RenewEvery of it.
			clock.Advance(m.opts.RenewEvery)
			select {
			case <-o.Context().Done():
			case <-time.After(30 * time.Second): // a hang detector, not a speed check
				t.Fatal("ownership not fenced after its local deadline passed")
			}
			if !errors.Is(context.Cause(o.Context()), ErrFenced) {
				t.Fatalf("cause = %v, want ErrFenced", context.Cause(o.Context()))
			}
			if !strings.Contains(logs.String(), tt.reason) {
				t.Errorf("log does not give the reason %q:\n%s", tt.reason, logs.String())
			}
		})
	}
}

// countingClock counts the readings of a Clock.
type countingClock struct {
	dispatcher.Clock
	reads atomic.Int64
}

func (c *countingClock) Now() time.Time {
	c.reads.Add(1)
	return c.Clock.Now()
}

// TestDefaultWallIsTheClockReading: without Options.Wall, one reading of
// the process's clock serves both clocks (Valid, on every delivery, reads
// the clock once), and its wall half has no monotonic reading, so that a
// deadline compares wall times there.
func TestDefaultWallIsTheClockReading(t *testing.T) {
	clock := &countingClock{Clock: dispatcher.SystemClock{}}
	m, err := New(newTestStore(t), testConfig(t, "orders"), Options{InstanceID: "a", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	now := m.now()
	if !strings.Contains(now.mono.String(), "m=") || strings.Contains(now.wall.String(), "m=") {
		t.Errorf("mono %s, wall %s: want the monotonic reading on mono only", now.mono, now.wall)
	}
	if !now.wall.Equal(now.mono) {
		t.Errorf("wall %s is not the wall reading of %s", now.wall, now.mono)
	}
	o := &Ownership{m: m, expires: now.add(time.Minute)}
	clock.reads.Store(0)
	if !o.Valid() {
		t.Fatal("invalid a minute before its deadline")
	}
	if n := clock.reads.Load(); n != 1 {
		t.Errorf("Valid read the clock %d times, want 1", n)
	}
}
