package runner_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestDisabledMemberAcknowledgesOnlyAnUnrunTrigger: in a cluster, member a
// has trigger orders disabled. A pause of orders is done once each unit's
// lease holder has stopped reading it, so a records the result only when
// no member runs the trigger: no live member lists it enabled and no lease
// of it is held (cluster.Manager.Unrun). While member b runs it — lists it
// and holds its lease, or holds its lease while it leaves (its
// registration then lists no trigger), or lists it and is about to take
// the lease — the request stays pending for b, which here applies
// nothing. a used to record it at once for a trigger disabled here, so the
// pause was reported done while b went on reading.
func TestDisabledMemberAcknowledgesOnlyAnUnrunTrigger(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		lists    bool // b is live and lists orders enabled
		lease    bool // b holds the lease of orders
		wantDone bool
	}{
		{"another member lists it and holds its lease", true, true, false},
		{"another member holds its lease while it leaves", false, true, false},
		{"another member lists it", true, false, false},
		{"no member runs it", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			b := store.Member{ID: "b", Triggers: map[string]string{}}
			if tc.lists {
				b.Triggers["orders"] = "h"
			}
			if err := st.Heartbeat(ctx, b, time.Hour); err != nil {
				t.Fatal(err)
			}
			if tc.lease {
				if _, err := st.AcquireLease(ctx, "orders", "b", time.Hour); err != nil {
					t.Fatal(err)
				}
			}

			cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    enabled: false
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
			mgr, err := cluster.New(st, cfg, cluster.Options{InstanceID: "a"})
			if err != nil {
				t.Fatal(err)
			}
			a := startRunnerOn(t, cfg, client, st, runner.Options{
				Controls: true, StartStopped: true, Clustered: true, Standby: mgr.Standby, Unrun: mgr.Unrun,
			})
			waitFor(t, "a ready", a.Ready)

			// 3 s: far longer than a takes to record a result it records.
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			defer pcancel()
			msg, err := runner.RequestControl(pctx, st, "orders", "maintenance", store.ControlRequest{Kind: store.RequestPause, By: "test"})
			var pe *runner.PendingError
			switch pending := errors.As(err, &pe); {
			case tc.wantDone && err != nil:
				t.Fatalf("pause of a trigger no member runs: %v, want it done", err)
			case !tc.wantDone && !pending:
				c, _, _ := st.LoadControl(ctx, "orders")
				t.Fatalf("pause reported done (msg %q, err %v) while b runs the trigger and has applied nothing: unit results %+v", msg, err, c.Units)
			}
		})
	}
}
