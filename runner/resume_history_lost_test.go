package runner_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestResumeFromTheCheckpointOfLostHistoryIsRefused: a unit whose
// checkpoint fell off the oplog fails with history lost, and resuming it
// from that checkpoint would fail the same way at once. A resume without
// --from is refused (the request's error, which the API answers with 409
// and the CLI with exit 1), naming the way out the failure names, and the
// unit stays failed without being started again: for a trigger, and for
// every partition of a partitioned one run by two cluster members, each
// refusing its own, the request coming from neither. resume --from now
// then gets them delivering again.
func TestResumeFromTheCheckpointOfLostHistoryIsRefused(t *testing.T) {
	t.Parallel()
	const wayOut = "on the running changehook, run `changehook resume orders --from now` to continue from now (the lost range is skipped), " +
		"or `changehook resume orders --from TIME` with a time still in the oplog; when it is stopped, `changehook checkpoints reset --trigger orders`"
	refusal := func(key string) string {
		return "refused: " + key + " failed with history lost (its checkpoint is no longer in the oplog): resuming from the checkpoint " +
			"would fail the same way at once, so it stays failed; the way out: " + wayOut
	}
	type unit struct {
		r      *runner.Runner
		key    string
		member string // "" when not clustered
	}
	for _, tc := range []struct {
		name       string
		partitions int
		want       string
	}{
		{"trigger", 0, "resume orders: " + refusal("orders")},
		{"partitions on two members", 2, fmt.Sprintf("resume orders: failed on 2 of 2 partitions (orders/p0of2: %s; orders/p1of2: %s); per partition:\n  orders/p0of2: failed: %s\n  orders/p1of2: failed: %s",
			refusal("orders/p0of2"), refusal("orders/p1of2"), refusal("orders/p0of2"), refusal("orders/p1of2"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{OplogMaxBytes: 16 << 10})
			recv := newReceiver(t)
			// The state in a deployment of its own: its writes (controls,
			// checkpoints) would roll the small oplog on their own.
			st := store.New(startDB(t, devdb.Options{}), stateDB)
			yaml := fmt.Sprintf(strictOrdersYAML, "")
			if tc.partitions > 0 {
				yaml = strings.Replace(partitionedYAML, "partitions: 4", fmt.Sprintf("partitions: %d", tc.partitions), 1)
			}
			cfg := parseTrigger(t, yaml, recv.srv.URL)
			coll := client.Database("shop").Collection("orders")
			ctx := t.Context()

			var units []unit
			if tc.partitions == 0 {
				units = []unit{{r: startRunnerOn(t, cfg, client, st, runner.Options{Controls: true}), key: "orders"}}
			} else {
				ra, rb := startLeaseMember(t, cfg, client, st), startLeaseMember(t, cfg, client, st)
				units = []unit{{ra, "orders/p0of2", "a"}, {rb, "orders/p1of2", "b"}}
			}
			epoch := int64(0)
			start := func() {
				t.Helper()
				epoch++
				for _, u := range units {
					var err error
					if u.member == "" {
						err = u.r.Start(u.key)
					} else {
						err = u.r.StartLeased(u.key, &testLease{key: u.key, fence: store.Fence{Owner: u.member, Epoch: epoch}, valid: true})
					}
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.partitions > 0 {
				start()
			}
			waitFor(t, "every unit running", func() bool {
				for _, u := range units {
					if s := statusOf(t, u.r, u.key); s.State != runner.StateRunning || !s.StreamOpen {
						return false
					}
				}
				return true
			})
			// One change in each partition (ids 1 and 2 need not be in
			// different ones: every id up to one of each).
			next, seen := int32(1), map[int]bool{}
			for len(seen) < max(tc.partitions, 1) {
				insert(t, coll, bson.D{{Key: "_id", Value: next}})
				recv.next(t)
				h := mql.HashedIndexKey(next) % int64(max(tc.partitions, 1))
				seen[int(max(h, -h))] = true
				next++
			}
			for _, u := range units {
				if err := u.r.Stop(ctx, u.key); err != nil {
					t.Fatal(err)
				}
				if _, ok, err := st.LoadCheckpoint(ctx, u.key); err != nil || !ok {
					t.Fatalf("no checkpoint of %s after Stop (%v)", u.key, err)
				}
			}
			// The oplog rolls past every checkpoint (in another collection:
			// nothing for the trigger to deliver).
			pad := strings.Repeat("x", 1024)
			for i := int32(1); i < 80; i++ {
				insert(t, client.Database("shop").Collection("pad"), bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: pad}})
			}
			start()
			failedAt := map[string]runner.TriggerStatus{}
			waitFor(t, "every unit failed with history lost", func() bool {
				for _, u := range units {
					s := statusOf(t, u.r, u.key)
					if s.State != runner.StateFailed || s.Retrying || !strings.HasPrefix(s.LastError, "history lost: ") {
						return false
					}
					failedAt[u.key] = s
				}
				return true
			})

			_, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("resume from the checkpoint = %v,\nwant %s", err, tc.want)
			}
			for _, u := range units {
				s := statusOf(t, u.r, u.key)
				if s.State != runner.StateFailed || !s.LastErrorAt.Equal(failedAt[u.key].LastErrorAt) || s.Since != failedAt[u.key].Since {
					t.Errorf("%s after the refused resume: state %s since %s, last error at %s; want it failed as before (%s, %s), not started again",
						u.key, s.State, s.Since, s.LastErrorAt, failedAt[u.key].Since, failedAt[u.key].LastErrorAt)
				}
			}

			if _, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "cli"}); err != nil {
				t.Fatalf("resume --from now: %v", err)
			}
			waitFor(t, "every unit running again", func() bool {
				for _, u := range units {
					if s := statusOf(t, u.r, u.key); s.State != runner.StateRunning || !s.StreamOpen {
						return false
					}
				}
				return true
			})
			insert(t, coll, bson.D{{Key: "_id", Value: int32(1000)}})
			if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 1000 {
				t.Errorf("delivered %d after resume --from now, want 1000", id)
			}
		})
	}
}

// TestResumeFromACheckpointMovedSinceHistoryWasLost: a unit that failed
// with history lost and whose checkpoint was moved since (here written
// behind the runner's back; a process that did not lift the failure) is
// resumed from the checkpoint: the process running it finds that the
// stream resumes there, so the resume is not refused.
func TestResumeFromACheckpointMovedSinceHistoryWasLost(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{OplogMaxBytes: 16 << 10})
	recv := newReceiver(t)
	st := store.New(startDB(t, devdb.Options{}), stateDB)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	coll := client.Database("shop").Collection("orders")
	ctx := t.Context()
	r := startRunnerOn(t, cfg, client, st, runner.Options{Controls: true})
	waitFor(t, "trigger running", func() bool { s := statusOf(t, r, "orders"); return s.State == runner.StateRunning && s.StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1024)
	for i := int32(1); i < 80; i++ {
		insert(t, client.Database("shop").Collection("pad"), bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: pad}})
	}
	if err := r.Start("orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger failed with history lost", func() bool {
		s := statusOf(t, r, "orders")
		return s.State == runner.StateFailed && !s.Retrying && strings.HasPrefix(s.LastError, "history lost: ")
	})
	cp, err := runner.PositionAt(ctx, client, cfg.Triggers[0], time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"})
	if want := "resumed from the checkpoint"; err != nil || msg != want {
		t.Fatalf("resume = %q, %v; want %q", msg, err, want)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 2 {
		t.Errorf("delivered %d after the resume, want 2", id)
	}
}

// TestRedeliverOfLostHistoryIsRefused: a redeliver of a trigger that
// failed with history lost would keep its checkpoint (before since) and
// leave it failed, delivering nothing: it is refused, saying so and naming
// the way out, by Redeliver and as a control request, and changes nothing.
func TestRedeliverOfLostHistoryIsRefused(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{OplogMaxBytes: 16 << 10})
	recv := newReceiver(t)
	st := store.New(startDB(t, devdb.Options{}), stateDB)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	coll := client.Database("shop").Collection("orders")
	ctx := t.Context()
	r := startRunnerOn(t, cfg, client, st, runner.Options{Controls: true})
	waitFor(t, "trigger running", func() bool { s := statusOf(t, r, "orders"); return s.State == runner.StateRunning && s.StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	before, _, err := st.LoadCheckpoint(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1024)
	for i := int32(1); i < 80; i++ {
		insert(t, client.Database("shop").Collection("pad"), bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: pad}})
	}
	if err := r.Start("orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger failed with history lost", func() bool {
		s := statusOf(t, r, "orders")
		return s.State == runner.StateFailed && !s.Retrying && strings.HasPrefix(s.LastError, "history lost: ")
	})
	failed := statusOf(t, r, "orders")
	// A since still in the oplog: the start of a second with a change in it.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	since := time.Now().UTC().Truncate(time.Second)
	insert(t, client.Database("shop").Collection("pad"), bson.D{{Key: "_id", Value: int32(1000)}})
	sinceText := since.Format(time.RFC3339)
	refusal := "refused: orders failed with history lost (its checkpoint is no longer in the oplog): a redeliver keeps a checkpoint before " + sinceText +
		", so the trigger would stay failed and deliver nothing; nothing was changed. The way out: " + failed.WayOut +
		" (`changehook resume orders --from " + sinceText + "` delivers every change since then, the range before it skipped)"
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"Redeliver", func() error { return r.Redeliver(ctx, "orders", since) }, "redeliver trigger orders: " + refusal},
		{"control request", func() error {
			_, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestRedeliver, Since: since, By: "cli"})
			return err
		}, "redeliver orders: " + refusal},
	} {
		if err := tc.run(); err == nil || err.Error() != tc.want {
			t.Errorf("%s = %v,\nwant %s", tc.name, err, tc.want)
		}
		if s := statusOf(t, r, "orders"); s.State != runner.StateFailed || !s.LastErrorAt.Equal(failed.LastErrorAt) {
			t.Errorf("after the refused %s: state %s, last error at %s; want failed as before (%s)", tc.name, s.State, s.LastErrorAt, failed.LastErrorAt)
		}
		if cp, _, err := st.LoadCheckpoint(ctx, "orders"); err != nil || !bytes.Equal(cp.Token, before.Token) {
			t.Errorf("after the refused %s: checkpoint %v (%v), want it unchanged", tc.name, cp.Token, err)
		}
	}
}
