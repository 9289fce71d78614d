package runner_test

import (
	"strings"
	"testing"

	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestForcedRepartitionOldLayoutFails: a process runs a 2-partition
// trigger, delivers and checkpoints, then stops running it; `checkpoints
// repartition --partitions 4 --force` rewrites its checkpoints for 4
// partitions, removing the old partitions' (only their fences left). The
// process, still configured with 2 partitions, starts partition 0 again —
// as a cluster member under a new lease, or alone. Its slot remembers the
// position it last saved, but a removed checkpoint did not vanish: it must
// not be written again from memory (the old partitioning would then run
// beside the new one, which delivers the same changes again); the
// partition fails, naming the other partitioning, as the README says.
func TestForcedRepartitionOldLayoutFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		clustered bool
	}{
		{"cluster member under a new lease", true},
		{"single process", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1))
			client, recv, st, ctx, cfg, coll := f.client, f.recv, f.st, f.ctx, f.cfg, f.coll
			p0, p1 := "orders/p0of2", "orders/p1of2"

			var r *runner.Runner
			var leases []*testLease
			if tc.clustered {
				r = startLeaseMember(t, cfg, client, st)
				for _, key := range []string{p0, p1} {
					l := &testLease{key: key, fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
					leases = append(leases, l)
					if err := r.StartLeased(key, l); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				r = startRunnerOn(t, cfg, client, st, runner.Options{})
			}
			waitFor(t, "both partitions running", func() bool {
				ps := statusOf(t, r, "orders").Partitions
				return len(ps) == 2 && ps[0].StreamOpen && ps[1].StreamOpen
			})
			for id := int32(1); id <= 6; id++ {
				insert(t, coll, bson.D{{Key: "_id", Value: id}})
			}
			for range 6 {
				recv.next(t)
			}
			waitFor(t, "both partitions checkpointed", func() bool {
				for _, k := range []string{p0, p1} {
					if _, ok, _ := st.LoadCheckpoint(ctx, k); !ok {
						return false
					}
				}
				return true
			})
			if err := r.Stop(ctx, "orders"); err != nil {
				t.Fatal(err)
			}
			for _, l := range leases {
				l.set(false)
			}

			if _, err := runner.Repartition(ctx, st, "orders", 4, runner.RepartitionOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			if tc.clustered {
				again := &testLease{key: p0, fence: store.Fence{Owner: "a", Epoch: 10}, valid: true}
				if err := r.StartLeased(p0, again); err != nil {
					t.Fatal(err)
				}
			} else if err := r.Start("orders"); err != nil {
				t.Fatal(err)
			}

			var got runner.PartitionStatus
			waitFor(t, "partition 0 failed or running again", func() bool {
				got = statusOf(t, r, "orders").Partitions[0]
				return got.State == runner.StateFailed || got.StreamOpen
			})
			if got.State != runner.StateFailed || !strings.Contains(got.LastError, "checkpoints of another partitioning exist") {
				t.Errorf("partition %s: state %s (stream open %v), last error %q; want failed for want of its checkpoint, naming the other partitioning",
					p0, got.State, got.StreamOpen, got.LastError)
			}
			if _, ok, err := st.LoadCheckpoint(ctx, p0); err != nil || ok {
				t.Errorf("checkpoint %s after the restart: found %v, %v; want it left removed", p0, ok, err)
			}
			if removed, err := st.CheckpointRemoved(ctx, p0); err != nil || !removed {
				t.Errorf("CheckpointRemoved(%s) = %v, %v; want true", p0, removed, err)
			}
		})
	}
}
