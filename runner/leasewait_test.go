package runner_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestLeaseWaitShown: a clustered unit this member does not run shows
// Options.LeaseWait's member, time and reason in its status, standby or
// starting as Options.Standby says; a partitioned trigger shows each
// partition's and its overall state's; without a reason, none.
func TestLeaseWaitShown(t *testing.T) {
	until := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	client := startDB(t, devdb.Options{})
	for _, tc := range []struct {
		name      string
		standby   bool
		reason    string
		wantState runner.State
	}{
		{"standby", true, "member b runs it", runner.StateStandby},
		{"starting", false, "its lease is held by member b", runner.StateStarting},
		{"nothing to say", false, "", runner.StateStarting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "${HOOK_URL}" }
  - name: items
    database: shop
    collection: items
    partitions: 2
    ordering: per_document
    webhook: { url: "${HOOK_URL}" }
`, "http://127.0.0.1:9/hook")
			var asked atomic.Int32 // Status may run on the runner's goroutines too
			r := startRunnerOn(t, cfg, client, store.New(client, stateDB+"_"+tc.name[:4]), runner.Options{
				StartStopped: true, Clustered: true,
				Standby: func(string) bool { return tc.standby },
				LeaseWait: func(key string) (string, time.Time, string) {
					asked.Add(1)
					if tc.reason == "" {
						return "", time.Time{}, ""
					}
					return "b", until, tc.reason + " (" + key + ")"
				},
			})
			for _, name := range []string{"orders", "items"} {
				st, err := r.TriggerStatus(name)
				if err != nil {
					t.Fatal(err)
				}
				if st.State != tc.wantState {
					t.Errorf("%s: state %s, want %s", name, st.State, tc.wantState)
				}
				want := func(key string) *runner.LeaseWait {
					if tc.reason == "" {
						return nil
					}
					return &runner.LeaseWait{Member: "b", Until: until, Reason: tc.reason + " (" + key + ")"}
				}
				first := name
				if name == "items" {
					first = "items/p0of2"
					for i, p := range st.Partitions {
						if w := want(p.Key); !equalWait(p.LeaseWait, w) {
							t.Errorf("partition %d: lease wait %+v, want %+v", i, p.LeaseWait, w)
						}
					}
				}
				if w := want(first); !equalWait(st.LeaseWait, w) {
					t.Errorf("%s: lease wait %+v, want %+v", name, st.LeaseWait, w)
				}
			}
			if asked.Load() == 0 {
				t.Error("LeaseWait was never asked")
			}
		})
	}
}

// equalWait reports whether a and b say the same (both nil, or equal).
func equalWait(a, b *runner.LeaseWait) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
