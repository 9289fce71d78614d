package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

const partitionedYAML = `
triggers:
  - name: orders
    database: shop
    collection: orders
    operations: [insert, update, drop]
    ordering: per_document
    concurrency: 4
    partitions: 4
    webhook: { url: "${HOOK_URL}" }
`

// TestPartitionedTriggerDeliversEveryEventOnce runs a trigger with four
// partitions in one process against devdb: every event is delivered exactly
// once, each document's changes in order, the events spread over the
// partitions (each with its own checkpoint under NAME/p<i>of4), the drop
// (no documentKey) is delivered once, and the status lists the partitions.
func TestPartitionedTriggerDeliversEveryEventOnce(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, partitionedYAML, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "runner ready", r.Ready)

	coll := client.Database("shop").Collection("orders")
	const docs, updates = 60, 2
	for id := range int32(docs) {
		insert(t, coll, bson.D{{Key: "_id", Value: id}, {Key: "v", Value: int32(0)}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for v := int32(1); v <= updates; v++ {
		for id := range int32(docs) {
			if _, err := coll.UpdateByID(ctx, id, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: v}}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := docs * (1 + updates)
	last := map[int32]int32{}
	seen := map[string]bool{}
	for range total {
		d := recv.next(t)
		id := d.Lookup("documentKey", "_id").Int32()
		var v int32
		if d.Lookup("operationType").StringValue() == "insert" {
			v = d.Lookup("fullDocument", "v").Int32()
		} else {
			v = d.Lookup("updateDescription", "updatedFields", "v").Int32()
		}
		k := fmt.Sprintf("%d/%d", id, v)
		if seen[k] {
			t.Fatalf("document %d version %d delivered twice", id, v)
		}
		seen[k] = true
		if prev, ok := last[id]; ok && v != prev+1 || !ok && v != 0 {
			t.Fatalf("document %d: version %d delivered after %d (per-document order broken)", id, v, prev)
		}
		last[id] = v
	}
	recv.none(t, 200*time.Millisecond)

	st := statusOf(t, r, "orders")
	if st.State != runner.StateRunning || !st.StreamOpen || len(st.Partitions) != 4 || st.EventsReceived != uint64(total) {
		t.Fatalf("status = %+v, want running, open, 4 partitions, %d events", st, total)
	}
	for i, p := range st.Partitions {
		if p.Partition != i || p.Key != fmt.Sprintf("orders/p%dof4", i) || p.State != runner.StateRunning || p.EventsReceived == 0 {
			t.Errorf("partition %d status = %+v", i, p)
		}
	}
	if js, _ := json.Marshal(st); !strings.Contains(string(js), `"partitions":[{"partition":0,"key":"orders/p0of4","state":"running"`) {
		t.Errorf("status JSON = %s", js)
	}
	st2, err := r.TriggerStatus("orders/p2of4")
	if err != nil || st2.Partitions != nil || st2.EventsReceived != st.Partitions[2].EventsReceived {
		t.Errorf("partition status = %+v, %v", st2, err)
	}
	stStore := store.New(client, stateDB)
	waitFor(t, "every partition checkpointed", func() bool {
		for i := range 4 {
			if _, ok, err := stStore.LoadCheckpoint(ctx, fmt.Sprintf("orders/p%dof4", i)); err != nil || !ok {
				return false
			}
		}
		_, ok, err := stStore.LoadCheckpoint(ctx, "orders")
		return err == nil && !ok // no whole-trigger checkpoint
	})

	// A skip needs the partition; a pause and a resume apply to all.
	if _, err := r.Skip(ctx, "orders", "test"); err == nil || !strings.Contains(err.Error(), "orders/p0of4") {
		t.Errorf("Skip(orders) = %v, want an error naming the partitions", err)
	}
	if err := r.Pause("orders", "test", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all partitions paused", func() bool {
		st := statusOf(t, r, "orders")
		for _, p := range st.Partitions {
			if p.State != runner.StatePaused {
				return false
			}
		}
		return st.State == runner.StatePaused
	})
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1000)}, {Key: "v", Value: int32(0)}})
	recv.none(t, 200*time.Millisecond)
	if _, err := r.Resume(ctx, "orders", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
	if d := recv.next(t); d.Lookup("documentKey", "_id").Int32() != 1000 {
		t.Fatalf("after resume: %v", d)
	}

	// The drop has no documentKey: partition 0 delivers it, once; then
	// every partition's stream is invalidated.
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := recv.next(t); d.Lookup("operationType").StringValue() != "drop" {
		t.Fatalf("delivery after drop: %v", d)
	}
	recv.none(t, 300*time.Millisecond)
	waitFor(t, "every partition failed", func() bool {
		for _, p := range statusOf(t, r, "orders").Partitions {
			if p.State != runner.StateFailed {
				return false
			}
		}
		return true
	})
	if _, err := r.TriggerStatus("orders/p4of4"); !errors.Is(err, runner.ErrUnknownTrigger) {
		t.Errorf("TriggerStatus(orders/p4of4) = %v, want ErrUnknownTrigger", err)
	}
}

// TestChangedPartitionsRefuseToStart: a trigger whose partitions changed in
// the configuration, without `checkpoints repartition`, has checkpoints
// only under the old keys; it must fail with the way out instead of
// starting at start_at (which would skip every change since). Under dev,
// which `checkpoints repartition` refuses to act beside, the way out is
// resuming from now or setting partitions back.
func TestChangedPartitionsRefuseToStart(t *testing.T) {
	tests := []struct {
		name    string
		dev     bool
		want    []string
		notWant string
	}{
		// Literally followable: repartition is refused while this process
		// holds the failed partitions' leases, so it is stopped too.
		{name: "run", want: []string{"stop every changehook that has the trigger in its configuration " +
			"(this one included: it holds the leases of the partitions that failed), " +
			"run `changehook checkpoints repartition --trigger orders --partitions 4` (every new partition then starts from the oldest old checkpoint), " +
			"then start them again"}},
		{name: "dev", dev: true, want: []string{"changehook resume orders --from now", "set partitions back to 3"},
			notWant: "checkpoints repartition --trigger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			ctx := t.Context()
			cfg := parseTrigger(t, partitionedYAML, recv.srv.URL)
			saveCheckpointAs(t, client, st, cfg.Triggers[0].Partition(1), "orders/p1of3") // as if it ran with partitions: 3
			r := startRunner(t, cfg, client, runner.Options{Dev: tc.dev})
			waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "orders").State == runner.StateFailed })
			st0 := statusOf(t, r, "orders")
			if !strings.Contains(st0.LastError, "orders/p1of3") {
				t.Fatalf("last error = %q", st0.LastError)
			}
			for _, w := range tc.want {
				if !strings.Contains(st0.WayOut, w) {
					t.Errorf("way out %q lacks %q", st0.WayOut, w)
				}
			}
			if tc.notWant != "" && strings.Contains(st0.WayOut, tc.notWant) {
				t.Errorf("way out %q says %q", st0.WayOut, tc.notWant)
			}
			for i := range 4 {
				if _, ok, _ := st.LoadCheckpoint(ctx, fmt.Sprintf("orders/p%dof4", i)); ok {
					t.Errorf("partition %d wrote a checkpoint; it must not start", i)
				}
			}
		})
	}
}

// saveCheckpointAs saves a checkpoint at unit's present position in its
// stream under key, another partitioning's key of its trigger: as if the
// trigger had run partitioned so.
func saveCheckpointAs(t *testing.T, client *mongo.Client, st *store.Store, unit *triggers.Trigger, key string) {
	t.Helper()
	cp, err := runner.PositionAt(t.Context(), client, unit, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cp.Trigger = key
	if err := st.SaveCheckpoint(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
}

// deliverWith4ThenStop runs partitionedYAML's trigger (4 partitions, its
// webhook recv's) in a Runner on client and st, logging to logger (nil:
// the Runner's default), until the inserts of _id 0..39 into shop.orders
// are delivered; it then stops the Runner (a clean Run, checkpoints
// saved) and inserts 40..79 while nothing runs. t.Cleanup stops the Runner
// if the test fails before.
func deliverWith4ThenStop(t *testing.T, client *mongo.Client, st *store.Store, recv *receiver, logger *slog.Logger) {
	t.Helper()
	coll := client.Database("shop").Collection("orders")
	r4, err := runner.New(parseTrigger(t, partitionedYAML, recv.srv.URL), client, st,
		runner.Options{CheckpointInterval: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- r4.Run(rctx) }()
	waitFor(t, "4 partitions ready", r4.Ready)
	for id := range int32(40) {
		insert(t, coll, bson.D{{Key: "_id", Value: id}})
	}
	for range 40 {
		recv.next(t)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id := int32(40); id < 80; id++ { // written while nothing runs
		insert(t, coll, bson.D{{Key: "_id", Value: id}})
	}
}

// TestRepartitionLosesNothing: a trigger with 4 partitions delivers, stops,
// changes are written while it is stopped, its checkpoints are
// repartitioned to 2 and it runs again with 2 partitions: every change
// written while it was stopped is delivered, the only repeats are changes
// between the oldest and the newest old checkpoint, and the old keys are
// gone.
func TestRepartitionLosesNothing(t *testing.T) {
	srv, client := startServer(t, devdb.Options{})
	_ = srv
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	ctx := t.Context()
	coll := client.Database("shop").Collection("orders")

	deliverWith4ThenStop(t, client, st, recv, nil)

	// A live member listing the trigger blocks it; --force does not care.
	if err := st.Heartbeat(ctx, store.Member{ID: "other", Triggers: map[string]string{"orders": "h"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := runner.Repartition(ctx, st, "orders", 2, runner.RepartitionOptions{}); !errors.Is(err, runner.ErrTriggerRunning) || !strings.Contains(err.Error(), "other") {
		t.Fatalf("Repartition with a live member = %v, want ErrTriggerRunning naming it", err)
	}
	if err := st.RemoveMember(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	res, err := runner.Repartition(ctx, st, "orders", 2, runner.RepartitionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Old) != 4 || len(res.Keys) != 2 || res.Keys[1] != "orders/p1of2" {
		t.Fatalf("repartition = %+v", res)
	}
	cps, err := st.TriggerCheckpoints(ctx, "orders")
	if err != nil || len(cps) != 2 || cps[0].Trigger != "orders/p0of2" || cps[1].Trigger != "orders/p1of2" {
		t.Fatalf("checkpoints after repartition = %+v, %v", cps, err)
	}
	again, err := runner.Repartition(ctx, st, "orders", 2, runner.RepartitionOptions{})
	if err != nil || string(again.Start.Token) != string(res.Start.Token) {
		t.Fatalf("repartition again = %+v, %v; want the same start", again, err)
	}

	cfg2 := parseTrigger(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1), recv.srv.URL)
	r2 := startRunner(t, cfg2, client, runner.Options{})
	waitFor(t, "2 partitions ready", r2.Ready)
	// The repeats are the inserts of 0..39 after the oldest old checkpoint
	// (res.Start): counted from a stream resumed there. The partitions
	// deliver independently, so a repeat may come after all of 40..79.
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(res.Start.Token))
	if err != nil {
		t.Fatal(err)
	}
	wantRepeats := 0
	for cs.Next(ctx) {
		id := cs.Current.Lookup("documentKey", "_id").Int32()
		if id < 40 {
			wantRepeats++
		}
		if id == 79 {
			break
		}
	}
	if err := cs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[int32]int{}
	for got40to80(got) < 40 || len(got)-got40to80(got) < wantRepeats {
		got[recv.next(t).Lookup("documentKey", "_id").Int32()]++
	}
	recv.none(t, 300*time.Millisecond)
	for id, n := range got {
		if n > 1 {
			t.Errorf("document %d delivered %d times after the repartition", id, n)
		}
	}
	// The repeats are exactly the changes after the oldest old checkpoint:
	// the inserts were written in _id order, so they are a suffix of 0..39.
	repeats := len(got) - 40
	if repeats != wantRepeats {
		t.Errorf("%d changes delivered again, want %d (those after the oldest old checkpoint)", repeats, wantRepeats)
	}
	for id := int32(40 - repeats); id < 40; id++ {
		if got[id] != 1 {
			t.Errorf("repeats %d, but document %d (after the oldest checkpoint) was not delivered again", repeats, id)
		}
	}
	t.Logf("repartition 4→2: 40 changes written while stopped all delivered; %d changes delivered before were delivered again", repeats)
}

func got40to80(got map[int32]int) int {
	n := 0
	for id := range got {
		if id >= 40 && id < 80 {
			n++
		}
	}
	return n
}

// TestPauseHoldsPartitionsARepartitioningReloadCreates: a trigger paused
// through the controls stays paused when a reload changes its partitions:
// the new partitions start paused and deliver nothing.
func TestPauseHoldsPartitionsARepartitioningReloadCreates(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	r := startRunner(t, parseTrigger(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1), recv.srv.URL), client, runner.Options{Controls: true})
	waitFor(t, "2 partitions ready", r.Ready)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	msg, err := runner.RequestControl(ctx, st, "orders", "test", store.ControlRequest{Kind: store.RequestPause, By: "test"})
	if err != nil || msg != "paused (all 2 partitions)" {
		t.Fatalf("pause = %q, %v", msg, err)
	}
	if _, err := r.Reload(ctx, parseTrigger(t, partitionedYAML, recv.srv.URL)); err != nil {
		t.Fatal(err)
	}
	// Paused from their creation: none ever opened a stream.
	st4, err := r.TriggerStatus("orders")
	if err != nil || len(st4.Partitions) != 4 {
		t.Fatalf("status after reload: %+v, %v", st4, err)
	}
	for _, p := range st4.Partitions {
		if p.State != runner.StatePaused || p.EventsReceived != 0 {
			t.Errorf("partition %s after the reload: %s, %d events read; want paused from the start", p.Key, p.State, p.EventsReceived)
		}
	}
	waitFor(t, "the 4 new partitions paused", func() bool {
		st, err := r.TriggerStatus("orders")
		if err != nil || len(st.Partitions) != 4 {
			return false
		}
		for _, p := range st.Partitions {
			if p.State != runner.StatePaused {
				return false
			}
		}
		return true
	})
}

// TestRewriteAppliedBeforeIsNotRepeated: a partition whose checkpoint was
// already rewritten by a redeliver (by a previous lease holder that could
// not record its result) is not rewound again; the others are, and the
// result says which was which.
func TestRewriteAppliedBeforeIsNotRepeated(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	coll := client.Database("shop").Collection("orders")
	cfg := parseTrigger(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1), recv.srv.URL)
	// The first lease holder delivers the changes and stops; its last
	// checkpoints are saved as it stops, so that the edit below is not
	// overwritten by a save of its own (as the previous holder of the
	// story would not: it is gone).
	first, err := runner.New(cfg, client, st, runner.Options{Controls: true, CheckpointInterval: 20 * time.Millisecond,
		ShutdownGrace: 5 * time.Second, Version: "test", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopFirst := context.WithCancel(t.Context())
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(runCtx) }()
	t.Cleanup(stopFirst)
	waitFor(t, "2 partitions ready", first.Ready)
	partOf := func(id int32) int {
		h := mql.HashedIndexKey(id) % 2
		return int(max(h, -h))
	}
	// A change before the range, then the range from the next whole
	// second on (positions have one-second resolution).
	insert(t, coll, bson.D{{Key: "_id", Value: 0}})
	recv.next(t)
	since := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(since))
	var ids [2][]int32
	for id := int32(1); id <= 12; id++ {
		insert(t, coll, bson.D{{Key: "_id", Value: id}})
		ids[partOf(id)] = append(ids[partOf(id)], id)
	}
	if len(ids[0]) == 0 || len(ids[1]) == 0 {
		t.Fatalf("ids 1..12 fall into one partition: %v", ids)
	}
	for range 12 {
		recv.next(t)
	}
	stopFirst()
	if err := <-firstDone; err != nil {
		t.Fatalf("first runner: %v", err)
	}
	// Partition 0's checkpoint says request "r-before" rewrote it.
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	cp, ok, err := st.LoadCheckpoint(ctx, "orders/p0of2")
	if err != nil || !ok {
		t.Fatalf("partition 0's checkpoint: %v %v", ok, err)
	}
	cp.Control = "r-before"
	if err := st.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	// The next lease holder takes both partitions over.
	r := startRunner(t, cfg, client, runner.Options{Controls: true})
	waitFor(t, "2 partitions ready", r.Ready)
	msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{ID: "r-before", Kind: store.RequestRedeliver, Since: since})
	if err != nil || !strings.Contains(msg, "orders/p0of2: already applied to this partition by its previous lease holder") ||
		!strings.Contains(msg, "orders/p1of2: redelivering every change since") {
		t.Fatalf("redeliver = %q, %v", msg, err)
	}
	// Partition 1 delivers its changes again; partition 0 only what comes
	// next (a rewind would deliver its old changes before that).
	marker := int32(100)
	for partOf(marker) != 0 {
		marker++
	}
	insert(t, coll, bson.D{{Key: "_id", Value: marker}})
	again := map[int32]int{}
	for again[marker] == 0 {
		again[recv.next(t).Lookup("documentKey", "_id").Int32()]++
	}
	for _, id := range ids[0] {
		if again[id] != 0 {
			t.Errorf("partition 0's document %d delivered again although its rewrite was already applied", id)
		}
	}
	for _, id := range ids[1] {
		for again[id] == 0 {
			again[recv.next(t).Lookup("documentKey", "_id").Int32()]++
		}
	}
}

// TestRepartitioningReloadForgetsOldPartitionSeries: a reload from 4
// partitions to 2 deletes the series of partitions 2 and 3 and starts the
// remaining partitions' series again at zero (they are new units). Their
// circuits' states (changehook_circuit_state, by partition: the default
// circuit is on) go too: an open one would otherwise stay exported for a
// partition that no longer exists.
func TestRepartitioningReloadForgetsOldPartitionSeries(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	reg := prometheus.NewRegistry()
	r := startRunner(t, parseTrigger(t, partitionedYAML, recv.srv.URL), client, runner.Options{Registry: reg})
	waitFor(t, "4 partitions ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	for id := range int32(8) {
		insert(t, coll, bson.D{{Key: "_id", Value: id}})
	}
	for range 8 {
		recv.next(t)
	}
	// partitions lists each watch-loop series' partition labels, and sums
	// events received.
	var received float64
	partitions := func() map[string][]string {
		received = 0
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "changehook_events_received_total", "changehook_checkpoint_lag_seconds", "changehook_trigger_up", "changehook_circuit_state":
			default:
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "partition" {
						got[mf.GetName()] = append(got[mf.GetName()], l.GetValue())
					}
				}
				received += m.GetCounter().GetValue()
			}
		}
		return got
	}
	four := []string{"0", "1", "2", "3"}
	for name, ps := range partitions() {
		if !slices.Equal(ps, four) {
			t.Fatalf("%s partitions before the reload = %v, want %v", name, ps, four)
		}
	}
	if received != 8 {
		t.Fatalf("events received before the reload = %v, want 8", received)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	res, err := r.Reload(ctx, parseTrigger(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1), recv.srv.URL))
	if err != nil || !slices.Equal(res.Changed, []string{"orders"}) {
		t.Fatalf("reload = %+v, %v", res, err)
	}
	got := partitions()
	for _, name := range []string{"changehook_events_received_total", "changehook_checkpoint_lag_seconds", "changehook_trigger_up"} {
		if !slices.Equal(got[name], []string{"0", "1"}) {
			t.Errorf("%s partitions after the reload 4 → 2 = %v, want [0 1]", name, got[name])
		}
	}
	// None of the old partitions 2 and 3 keeps a circuit state.
	if ps := got["changehook_circuit_state"]; slices.Contains(ps, "2") || slices.Contains(ps, "3") {
		t.Errorf("changehook_circuit_state partitions after the reload 4 → 2 = %v, want none of the old partitions 2 and 3", ps)
	}
	// The new partitions wait for `changehook repartition`: none reads.
	if received != 0 {
		t.Errorf("events received by the new partitions = %v, want 0", received)
	}
	// The status's count continues with the old partitions' events.
	if st := statusOf(t, r, "orders"); st.EventsReceived != 8 {
		t.Errorf("events_received after the repartitioning reload = %d, want 8", st.EventsReceived)
	}
}

// TestRepartitionDropsTheOldPartitionsControls: repartitioning removes the
// control documents of the old partitions' keys — a pause of one, a skip
// still pending on another — with their checkpoints, and reports them, so
// that none applies again to the partition of that key should the trigger
// be repartitioned back. The trigger's own document (a pause of every
// partition) stays, and so do the new partitions' and another trigger's.
func TestRepartitionDropsTheOldPartitionsControls(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	st := store.New(client, stateDB)
	ctx := t.Context()
	for i, key := range []string{"orders/p0of4", "orders/p1of4", "orders/p2of4", "orders/p3of4"} {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82000000A%d", i)}})
		if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: key, Token: tok}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		key    string
		reason string
		req    store.ControlRequest
	}{
		{"orders/p2of4", "maintenance", store.ControlRequest{Kind: store.RequestPause, By: "cli"}},
		{"orders/p3of4", "", store.ControlRequest{Kind: store.RequestSkip, By: "cli"}},
		// Before the trigger's pause, which refuses a partition's resume.
		{"orders/p1of2", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"}},
		{"orders", "all of it", store.ControlRequest{Kind: store.RequestPause, By: "cli"}},
		{"orders2/p0of4", "other trigger", store.ControlRequest{Kind: store.RequestPause, By: "cli"}},
	} {
		if _, err := st.RequestControl(ctx, c.key, c.reason, c.req); err != nil {
			t.Fatal(err)
		}
	}
	res, err := runner.Repartition(ctx, st, "orders", 2, runner.RepartitionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var dropped []string
	for _, c := range res.DroppedControls {
		dropped = append(dropped, c.Trigger)
		if paused := c.Trigger == "orders/p2of4"; c.Paused != paused || paused && c.Reason != "maintenance" {
			t.Errorf("dropped control %+v, want it as it was", c)
		}
	}
	if want := []string{"orders/p2of4", "orders/p3of4"}; !slices.Equal(dropped, want) {
		t.Errorf("dropped controls %v, want %v", dropped, want)
	}
	all, err := st.ListControls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, c := range all {
		kept = append(kept, c.Trigger)
	}
	if want := []string{"orders", "orders/p1of2", "orders2/p0of4"}; !slices.Equal(kept, want) {
		t.Errorf("control documents after the repartition %v, want %v", kept, want)
	}
	// Run again (as after a crash): nothing more to drop.
	if again, err := runner.Repartition(ctx, st, "orders", 2, runner.RepartitionOptions{}); err != nil || len(again.DroppedControls) != 0 {
		t.Errorf("repartition again = %+v, %v; want nothing dropped", again.DroppedControls, err)
	}
}

// TestRepartitioningReloadSaysWhatHappened: a reload changing a trigger's
// partitions logs that it restarted only when its new partitions can
// start (a paused trigger's stay paused, and the log says so); when only the old partitioning's checkpoints exist (no
// `checkpoints repartition`), the new partitions refuse to start, and the
// reload's log says so, with the way out, instead of "restarted".
func TestRepartitioningReloadSaysWhatHappened(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// repartitioned: the new partitions' checkpoints exist before the
		// reload (as `checkpoints repartition` writes them).
		repartitioned bool
		paused        bool // paused before the reload
		dev           bool // runner.Options.Dev
		want          runner.State
		wantLog       []string
		notLog        []string
	}{
		{name: "checkpoints only under the old partitioning", want: runner.StateFailed,
			wantLog: []string{`level=WARN msg="trigger changed by reload: partitions changed, but its checkpoints are under another partitioning; ` +
				`the new partitions without a checkpoint of their own refuse to start"`, "trigger=orders", "partitions=4",
				`refusing="[orders/p0of4 orders/p1of4 orders/p2of4 orders/p3of4]"`,
				`checkpoints="[orders/p0of3 orders/p1of3 orders/p2of3]"`,
				"changehook checkpoints repartition --trigger orders --partitions 4"},
			notLog: []string{"restarted"}},
		// Under dev, checkpoints repartition is refused while it runs.
		{name: "checkpoints only under the old partitioning, under dev", dev: true, want: runner.StateFailed,
			wantLog: []string{"trigger changed by reload: partitions changed", "changehook resume orders --from now", "set partitions back to 3"},
			notLog:  []string{"restarted", "checkpoints repartition --trigger"}},
		{name: "checkpoints repartitioned", repartitioned: true, want: runner.StateRunning,
			wantLog: []string{`level=INFO msg="trigger changed by reload: partitions changed; restarted" trigger=orders partitions=4`},
			notLog:  []string{"refuse"}},
		{name: "paused", repartitioned: true, paused: true, want: runner.StatePaused,
			wantLog: []string{`level=INFO msg="trigger changed by reload: partitions changed; paused: the new partitions start from their checkpoints when the trigger is resumed" trigger=orders partitions=4`},
			notLog:  []string{"restarted", "refuse"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			var logs syncbuf.Buffer
			three := strings.Replace(partitionedYAML, "partitions: 4", "partitions: 3", 1)
			r := startRunner(t, parseTrigger(t, three, recv.srv.URL), client, runner.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Dev: tc.dev})
			waitFor(t, "3 partitions ready with their checkpoints", func() bool {
				for i := range 3 {
					if _, ok, _ := st.LoadCheckpoint(t.Context(), fmt.Sprintf("orders/p%dof3", i)); !ok {
						return false
					}
				}
				return r.Ready()
			})
			if tc.repartitioned {
				cp, _, err := st.LoadCheckpoint(t.Context(), "orders/p0of3")
				if err != nil {
					t.Fatal(err)
				}
				for i := range 4 {
					cp.Trigger = fmt.Sprintf("orders/p%dof4", i)
					if err := st.SaveCheckpoint(t.Context(), cp); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.paused {
				if err := r.Pause("orders", "maintenance", "test"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "orders paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
			}
			if res, err := r.Reload(t.Context(), parseTrigger(t, partitionedYAML, recv.srv.URL)); err != nil || len(res.Changed) != 1 {
				t.Fatalf("reload = %+v, %v; want orders changed", res, err)
			}
			waitFor(t, "orders "+string(tc.want), func() bool {
				s := statusOf(t, r, "orders")
				return len(s.Partitions) == 4 && s.State == tc.want
			})
			out := logs.String()
			for _, want := range tc.wantLog {
				if !strings.Contains(out, want) {
					t.Errorf("the log lacks %q:\n%s", want, out)
				}
			}
			for _, not := range tc.notLog {
				if strings.Contains(lineOf(out, "trigger changed by reload"), not) {
					t.Errorf("the reload's log line says %q: %s", not, lineOf(out, "trigger changed by reload"))
				}
			}
		})
	}
}

// lineOf returns the first line of out containing s ("" if none).
func lineOf(out, s string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// TestDevPartitionsWayOutLeavesNoUnfollowableAdvice: under dev, once the
// way out of a partitions change is taken (resume --from now), the new
// partitions run and the warning about the old partitioning's checkpoints
// does not advise `checkpoints repartition`, which dev refuses while it
// runs.
func TestDevPartitionsWayOutLeavesNoUnfollowableAdvice(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, partitionedYAML, recv.srv.URL)
	saveCheckpointAs(t, client, st, cfg.Triggers[0].Partition(1), "orders/p1of3")
	var logs syncbuf.Buffer
	r := startRunner(t, cfg, client, runner.Options{Dev: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "orders").State == runner.StateFailed })
	if _, err := r.Resume(t.Context(), "orders", runner.ResumeFrom{Now: true}); err != nil {
		t.Fatalf("resume --from now: %v", err)
	}
	waitFor(t, "trigger running", func() bool { return statusOf(t, r, "orders").State == runner.StateRunning })
	insert(t, client.Database("shop").Collection("orders"), item(1, 1))
	recv.next(t)
	warned := false
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "checkpoints of another partitioning remain") {
			warned = true
			if _, wayOut, _ := strings.Cut(l, "way_out="); strings.Contains(wayOut, "checkpoints repartition") {
				t.Errorf("under dev, the warning's way out is a command dev refuses:\n%s", l)
			}
		}
	}
	if !warned {
		t.Errorf("no warning about the old partitioning's checkpoints:\n%s", logs.String())
	}
}
