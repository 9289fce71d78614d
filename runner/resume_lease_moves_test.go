package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// startLeaseMember runs a clustered runner of cfg, applying the runtime
// controls, whose units run only under the leases the test starts them
// with; stopped at the test's end.
func startLeaseMember(t *testing.T, cfg *triggers.Config, client *mongo.Client, st *store.Store) *runner.Runner {
	t.Helper()
	return startRunnerOn(t, cfg, client, st, runner.Options{
		Controls: true, StartStopped: true, Clustered: true, Standby: func(string) bool { return true },
	})
}

// TestPartitionedResumeWhileALeaseMoves: a resume of a paused 2-partition
// trigger (from the checkpoint, and from now) whose partition 1 lease is
// lost by member a while a applies the request — a's rewrite for it is
// fenced out — is applied to partition 1 by member b, which takes the
// lease over: the request completes once both partitions recorded a
// result, naming who applied it where; from the checkpoint every change
// written during the pause is delivered (by a for partition 0, by b for
// partition 1), from now none of them and every later one; a second resume
// converges (nothing changed anywhere).
func TestPartitionedResumeWhileALeaseMoves(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, from string
	}{
		{"from the checkpoint", ""},
		{"from now", "now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1))
			client, recv, st, ctx, cfg, coll := f.client, f.recv, f.st, f.ctx, f.cfg, f.coll
			partOf := func(id int32) int {
				h := mql.HashedIndexKey(id) % 2
				return int(max(h, -h))
			}
			// idIn returns the next _id from next on in partition p.
			idIn := func(p int, next *int32) int32 {
				for partOf(*next) != p {
					*next++
				}
				id := *next
				*next++
				return id
			}
			next := int32(1)

			ra := startLeaseMember(t, cfg, client, st)
			rb := startLeaseMember(t, cfg, client, st)
			p0, p1 := "orders/p0of2", "orders/p1of2"
			a0 := &testLease{key: p0, fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
			a1 := &testLease{key: p1, fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
			for _, l := range []*testLease{a0, a1} {
				if err := ra.StartLeased(l.key, l); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "a runs both partitions", func() bool {
				for _, p := range statusOf(t, ra, "orders").Partitions {
					if !p.StreamOpen {
						return false
					}
				}
				return true
			})
			insert(t, coll, bson.D{{Key: "_id", Value: idIn(0, &next)}}, bson.D{{Key: "_id", Value: idIn(1, &next)}})
			recv.next(t)
			recv.next(t)

			if _, err := runner.RequestControl(ctx, st, "orders", "hold", store.ControlRequest{Kind: store.RequestPause, By: "test"}); err != nil {
				t.Fatal(err)
			}
			held := []int32{idIn(0, &next), idIn(1, &next)} // written during the pause
			for _, id := range held {
				insert(t, coll, bson.D{{Key: "_id", Value: id}})
			}

			// a loses partition 1's lease (it froze past its deadline, say)
			// just as the resume arrives: what it does for partition 1 is
			// fenced out; b takes the lease over at the next epoch.
			a1.set(false)
			type result struct {
				msg string
				err error
			}
			resumed := make(chan result, 1)
			go func() {
				msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: tc.from, By: "test"})
				resumed <- result{msg, err}
			}()
			waitFor(t, "a applied the resume to partition 0", func() bool {
				c, ok, err := st.LoadControl(ctx, "orders")
				if err != nil || !ok || c.Request == nil || c.Request.Kind != store.RequestResume {
					return false
				}
				_, done := c.UnitsDone()[p0]
				return done
			})
			if err := ra.Stop(ctx, p1); err != nil { // the handoff of a lost lease
				t.Fatal(err)
			}
			b1 := &testLease{key: p1, fence: store.Fence{Owner: "b", Epoch: 2}, valid: true}
			if err := rb.StartLeased(p1, b1); err != nil {
				t.Fatal(err)
			}
			var res result
			select {
			case res = <-resumed:
			case <-ctx.Done():
				t.Fatal("the resume did not complete after b took partition 1 over")
			}
			if res.err != nil {
				t.Fatalf("resume: %v", res.err)
			}
			c, _, err := st.LoadControl(ctx, "orders")
			if err != nil {
				t.Fatal(err)
			}
			units := c.UnitsDone()
			// A rewrite (from now) needs the lease: only b can apply it to
			// partition 1. Lifting the pause is every member's (each lifts
			// it on every unit it has), so a, which had started on
			// partition 1, may have recorded it there before it stopped.
			by1 := units[p1].By == "b" || tc.from == "" && units[p1].By == "a"
			if units[p0].By != "a" || !by1 || units[p0].Error != "" || units[p1].Error != "" {
				t.Errorf("unit results %+v; want partition 0 by a, partition 1 by b, both without error", units)
			}
			t.Logf("resume: %s", res.msg)

			later := []int32{idIn(0, &next), idIn(1, &next)}
			for _, id := range later {
				insert(t, coll, bson.D{{Key: "_id", Value: id}})
			}
			want := map[int32]bool{later[0]: true, later[1]: true}
			if tc.from == "" {
				want[held[0]], want[held[1]] = true, true
			}
			got := map[int32]int{}
			for len(got) < len(want) {
				id := recv.next(t).Lookup("documentKey", "_id").Int32()
				got[id]++
				if !want[id] {
					t.Errorf("delivered %d after the resume %s; want only %v", id, tc.name, want)
				}
			}
			recv.none(t, 200*time.Millisecond)
			// Both partitions' checkpoints reach past everything delivered,
			// partition 1's written by b under its epoch.
			waitFor(t, "checkpoints past every change", func() bool {
				for _, key := range []string{p0, p1} {
					cp, ok, _ := st.LoadCheckpoint(ctx, key)
					if !ok {
						return false
					}
					for _, id := range eventsAfter(t, coll, cp.Token) {
						if key == triggers.PartitionKey("orders", partOf(id), 2) {
							return false
						}
					}
				}
				return true
			})
			if _, _, err := st.ClaimCheckpoint(ctx, p1, a1.fence); err == nil {
				t.Errorf("a's old epoch can still claim partition 1's checkpoint")
			}

			// A retry converges: nothing is paused any more.
			msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "test"})
			if want := "not paused or failed (state running), so nothing changed (all 2 partitions)"; err != nil || msg != want {
				t.Errorf("second resume = %q, %v; want %q", msg, err, want)
			}
		})
	}
}
