package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/store"
)

// TestLeaseLinesNameTheTrigger: every log line about a unit's lease
// (acquired, not renewed, released, self-fenced) carries the trigger's
// name as trigger=NAME, also for a partition, whose key stays in key=.
func TestLeaseLinesNameTheTrigger(t *testing.T) {
	lines := []string{
		`msg="lease acquired"`,
		`msg="cannot renew lease; will fence itself at the deadline unless a renewal succeeds"`,
		`msg="lease released"`,
		`msg="self-fenced: stopped reading and delivering; no checkpoint will be written"`,
	}
	for _, tc := range []struct {
		name      string
		part, n   int
		wantAttrs string
	}{
		{"unpartitioned", 0, 1, " trigger=orders key=orders "},
		{"partition", 1, 2, " trigger=orders key=orders/p1of2 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &flakyStore{Store: newTestStore(t)}
			clock := newFakeClock()
			var logs syncbuf.Buffer
			m, err := New(st, partitionedConfig(t, map[string]int{"orders": tc.n}), Options{InstanceID: "a", Clock: clock,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			acquire := func() *Ownership {
				t.Helper()
				got := make(chan *Ownership, 1)
				go func() {
					o, _ := m.Await(ctx, "orders", tc.part, tc.n)
					got <- o
				}()
				waitRegistered(t, m, 1)
				m.round(ctx)
				select {
				case o := <-got:
					if o == nil {
						t.Fatal("no ownership")
					}
					return o
				case <-time.After(30 * time.Second): // a hang detector, not a speed check
					t.Fatal("lease not acquired")
					return nil
				}
			}
			o := acquire()
			st.failRenew.Store(true)
			clock.Advance(3 * time.Second)
			m.round(ctx)
			st.failRenew.Store(false)
			o.Release(ctx)
			o = acquire()
			o.Lost(fmt.Errorf("save checkpoint: %w", store.ErrLeaseLost))
			if !errors.Is(context.Cause(o.Context()), ErrFenced) {
				t.Fatalf("cause = %v, want ErrFenced", context.Cause(o.Context()))
			}
			for _, msg := range lines {
				found := false
				for l := range strings.Lines(logs.String()) {
					if !strings.Contains(l, msg) {
						continue
					}
					found = true
					if !strings.Contains(l, tc.wantAttrs) {
						t.Errorf("line without %q:\n%s", tc.wantAttrs, l)
					}
				}
				if !found {
					t.Errorf("no line %s in:\n%s", msg, logs.String())
				}
			}
		})
	}
}

// TestTriggerOf: the trigger attribute of a lease's log line is the
// trigger's name, for a partition's key too; a key Key cannot have made is
// shown as it is.
func TestTriggerOf(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"orders", "orders"},
		{Key("orders", 3, 4), "orders"},
		{"orders/x", "orders/x"},
	} {
		if got := triggerOf(tc.key); got != tc.want {
			t.Errorf("triggerOf(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}
