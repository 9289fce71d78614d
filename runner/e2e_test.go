package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// waitTimeout bounds every wait of these tests, a hang detector; nothing
// normally takes more than a fraction of it (raceSlowdown scales it under
// the race detector).
const waitTimeout = raceSlowdown * 20 * time.Second

const stateDB = "changehook_state"

// startDB starts an in-process devdb and connects a driver client to it.
func startDB(t *testing.T, opts devdb.Options) *mongo.Client {
	t.Helper()
	_, client := startServer(t, opts)
	return client
}

// startServer is startDB that also returns the server.
func startServer(t *testing.T, opts devdb.Options) (*devdb.Server, *mongo.Client) {
	t.Helper()
	return devdbtest.StartWith(t, opts)
}

// receiver is an httptest webhook endpoint that records every delivery.
type receiver struct {
	srv     *httptest.Server
	got     chan bson.Raw // every delivered body, decoded
	arrived chan struct{} // one value per request received

	mu   sync.Mutex
	hold chan struct{} // when non-nil, requests wait until it is closed
	fail bool          // requests are answered 503
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{got: make(chan bson.Raw, 1024), arrived: make(chan struct{}, 1024)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.arrived <- struct{}{}
		r.mu.Lock()
		hold, fail := r.hold, r.fail
		r.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if hold != nil {
			select {
			case <-hold:
			case <-req.Context().Done():
				return
			}
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var doc bson.D
		if err := bson.UnmarshalExtJSON(body, false, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw, err := bson.Marshal(doc)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.got <- raw
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// holdRequests makes requests wait until the returned release is called.
func (r *receiver) holdRequests() (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.hold = ch
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.hold = nil
			r.mu.Unlock()
			close(ch)
		})
	}
}

// failRequests makes requests fail (503) until the returned stop is
// called.
func (r *receiver) failRequests() (stop func()) {
	r.mu.Lock()
	r.fail = true
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		r.fail = false
		r.mu.Unlock()
	}
}

// next returns the next delivery or fails the test.
func (r *receiver) next(t *testing.T) bson.Raw {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-time.After(waitTimeout):
		t.Fatal("no delivery")
		return nil
	}
}

// none asserts that no delivery arrives within d.
func (r *receiver) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case doc := <-r.got:
		t.Fatalf("unexpected delivery %v", doc)
	case <-time.After(d):
	}
}

// recordingStore wraps the real store and publishes every saved checkpoint.
type recordingStore struct {
	*store.Store
	saved chan store.Checkpoint
}

func (s *recordingStore) SaveCheckpoint(ctx context.Context, cp store.Checkpoint) error {
	if err := s.Store.SaveCheckpoint(ctx, cp); err != nil {
		return err
	}
	select {
	case s.saved <- cp:
	default: // tests read the newest through LoadCheckpoint when they fall behind
	}
	return nil
}

// fixture is the start many runner tests share: an in-process devdb
// (client), a receiver, the state store, a context bounded by waitTimeout
// (canceled when the test ends), the configuration parsed from a YAML
// whose webhook URL is the receiver's, and the shop.orders collection.
type fixture struct {
	client *mongo.Client
	recv   *receiver
	st     *store.Store
	ctx    context.Context
	cfg    *triggers.Config
	coll   *mongo.Collection
}

// newFixture starts a fixture for yaml (see parseTrigger).
func newFixture(t *testing.T, yaml string) fixture {
	t.Helper()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return fixture{client: client, recv: recv, st: store.New(client, stateDB), ctx: ctx,
		cfg: parseTrigger(t, yaml, recv.srv.URL), coll: client.Database("shop").Collection("orders")}
}

func parseTrigger(t *testing.T, yaml string, url string) *triggers.Config {
	t.Helper()
	env := func(name string) (string, bool) {
		if name == "HOOK_URL" {
			return url, true
		}
		return "", false
	}
	cfg, err := triggers.Parse("test.yaml", []byte(yaml), env)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

// runWatcher starts a watcher for tr and returns a stop function that
// cancels it and returns Run's error.
func runWatcher(t *testing.T, tr *triggers.Trigger, client *mongo.Client, cps runner.CheckpointStore) (*runner.Watcher, func() error) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	disp, err := dispatcher.New(tr, store.New(client, stateDB), dispatcher.WithLogger(logger))
	if err != nil {
		t.Fatalf("new dispatcher: %v", err)
	}
	w := runner.NewWatcher(tr, client, cps, disp, runner.WatcherOptions{
		Logger:             logger,
		CheckpointEvery:    5,
		CheckpointInterval: 20 * time.Millisecond,
		// Idle-only saves as often as the others, so tests see the
		// position follow the stream quickly.
		IdleCheckpointInterval: 20 * time.Millisecond,
		ShutdownGrace:          5 * time.Second,
		CheckpointTimeout:      time.Second,
		InitialRetryBackoff:    10 * time.Millisecond,
		MaxRetryBackoff:        100 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(waitTimeout):
				runErr = errors.New("watcher did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	waitFor(t, "stream open", func() bool { return w.Status().StreamOpen || w.Status().State == runner.StateFailed })
	return w, stop
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// eventsAfter opens a raw stream on coll after token and returns the _id of
// the documents of the events already in the oplog.
func eventsAfter(t *testing.T, coll *mongo.Collection, token bson.Raw) []int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token).SetMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		t.Fatalf("resume from checkpoint: %v", err)
	}
	defer cs.Close(ctx)
	var ids []int32
	for cs.TryNext(ctx) {
		ids = append(ids, cs.Current.Lookup("documentKey", "_id").Int32())
	}
	if err := cs.Err(); err != nil {
		t.Fatalf("read after checkpoint: %v", err)
	}
	return ids
}

func insert(t *testing.T, coll *mongo.Collection, docs ...bson.D) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, d := range docs {
		if _, err := coll.InsertOne(ctx, d); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
}

func item(id int32, qty int32) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "apples"}, {Key: "quantity", Value: qty}}
}

const lowStockYAML = `
triggers:
  - name: low_stock
    database: lessons
    collection: inventory
    operations: [insert, update, replace]
    match: { fullDocument.quantity: { $lt: 20 } }
    full_document: updateLookup
    ordering: per_document
    concurrency: 4
    webhook:
      url: ${HOOK_URL}
      payload:
        id: "$documentKey._id"
        text: { $concat: ["Only ", { $toString: "$fullDocument.quantity" }, " ", "$fullDocument.type", " left!"] }
`

func TestWatcherDeliversMatchingEvents(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	cps := &recordingStore{Store: store.New(client, stateDB), saved: make(chan store.Checkpoint, 64)}
	w, stop := runWatcher(t, cfg.Triggers[0], client, cps)
	coll := client.Database("lessons").Collection("inventory")

	insert(t, coll, item(1, 50), item(2, 5))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "quantity", Value: int32(19)}}}}); err != nil {
		t.Fatal(err)
	}
	// Different documents: per_document ordering may deliver them in any order.
	want := map[int32]string{2: "Only 5 apples left!", 1: "Only 19 apples left!"}
	for range len(want) {
		got := recv.next(t)
		id, text := got.Lookup("id").Int32(), got.Lookup("text").StringValue()
		if want[id] != text {
			t.Errorf("delivery = %v, want one of %v", got, want)
		}
		delete(want, id)
	}
	recv.none(t, 100*time.Millisecond)
	if got := w.Status().EventsReceived; got != 2 {
		t.Errorf("EventsReceived = %d, want 2", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := w.Status(); st.State != runner.StateStopped || st.StreamOpen {
		t.Errorf("status after stop = %+v, want stopped", st)
	}
	cp, ok, err := cps.LoadCheckpoint(context.Background(), "low_stock")
	if err != nil || !ok {
		t.Fatalf("final checkpoint: %v %v", ok, err)
	}
	if ids := eventsAfter(t, coll, cp.Token); len(ids) != 0 {
		t.Errorf("events after the final checkpoint: %v, want none", ids)
	}
}

func TestCheckpointOnlyAfterDelivery(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	cps := &recordingStore{Store: store.New(client, stateDB), saved: make(chan store.Checkpoint, 64)}
	coll := client.Database("lessons").Collection("inventory")
	release := recv.holdRequests()
	defer release()
	w, stop := runWatcher(t, cfg.Triggers[0], client, cps)

	insert(t, coll, item(1, 50), item(2, 3), item(3, 70))
	// The delivery of 2 is held; events 1 and 3 are filtered out. Whatever
	// is checkpointed meanwhile must still lead to event 2.
	select {
	case <-recv.arrived:
	case <-time.After(waitTimeout):
		t.Fatal("delivery of event 2 never started")
	}
	recv.none(t, 100*time.Millisecond) // several checkpoint intervals pass
	cp, ok, err := cps.LoadCheckpoint(context.Background(), "low_stock")
	if err != nil || !ok {
		t.Fatalf("checkpoint while delivering: %v %v (start_at now must be pinned)", ok, err)
	}
	if ids := eventsAfter(t, coll, cp.Token); len(ids) == 0 || !containsID(ids, 2) {
		t.Fatalf("checkpoint passed the undelivered event 2: events after it = %v", ids)
	}
	waitFor(t, "checkpoint lag while event 2 is held", func() bool { return w.Status().CheckpointLag > 0 })
	release()
	if got := recv.next(t).Lookup("id"); got.Int32() != 2 {
		t.Fatalf("delivered %v, want 2", got)
	}
	// After delivery the checkpoint moves past event 2 (and past 3, through
	// the idle post-batch resume token).
	waitFor(t, "checkpoint past event 2", func() bool {
		cp, ok, err := cps.LoadCheckpoint(context.Background(), "low_stock")
		return err == nil && ok && !containsID(eventsAfter(t, coll, cp.Token), 2)
	})
	waitFor(t, "checkpoint lag back to 0", func() bool { return w.Status().CheckpointLag == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func containsID(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestRestartResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	cps := &recordingStore{Store: store.New(client, stateDB), saved: make(chan store.Checkpoint, 64)}
	coll := client.Database("lessons").Collection("inventory")

	_, stop := runWatcher(t, cfg.Triggers[0], client, cps)
	for i := int32(1); i <= 5; i++ {
		insert(t, coll, item(i, i))
	}
	for range 5 {
		recv.next(t)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Written while no watcher runs: must all be delivered after restart.
	for i := int32(6); i <= 10; i++ {
		insert(t, coll, item(i, i))
	}
	_, stop2 := runWatcher(t, cfg.Triggers[0], client, cps)
	seen := map[int32]bool{}
	for range 5 {
		seen[recv.next(t).Lookup("id").Int32()] = true
	}
	for i := int32(6); i <= 10; i++ {
		if !seen[i] {
			t.Errorf("event %d skipped after restart (got %v)", i, seen)
		}
	}
	recv.none(t, 100*time.Millisecond) // a clean shutdown redelivers nothing
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

func TestIdleCheckpointFollowsStream(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	cps := &recordingStore{Store: store.New(client, stateDB), saved: make(chan store.Checkpoint, 64)}
	coll := client.Database("lessons").Collection("inventory")
	_, stop := runWatcher(t, cfg.Triggers[0], client, cps)

	for i := int32(1); i <= 20; i++ {
		insert(t, coll, item(i, 100+i)) // never matches
	}
	// No event is delivered, yet the checkpoint must move past all writes
	// (post-batch resume tokens), so the trigger cannot fall off the oplog.
	waitFor(t, "checkpoint past the unmatched writes", func() bool {
		cp, ok, err := cps.LoadCheckpoint(context.Background(), "low_stock")
		return err == nil && ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	recv.none(t, 50*time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryLostFailsTrigger(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{OplogMaxBytes: 16 << 10})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	cps := &recordingStore{Store: store.New(client, stateDB), saved: make(chan store.Checkpoint, 64)}
	coll := client.Database("lessons").Collection("inventory")

	_, stop := runWatcher(t, cfg.Triggers[0], client, cps)
	insert(t, coll, item(1, 1))
	recv.next(t)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1024)
	for i := int32(2); i < 80; i++ {
		insert(t, coll, append(item(i, 100), bson.E{Key: "pad", Value: pad}))
	}
	w, stop2 := runWatcher(t, cfg.Triggers[0], client, cps)
	waitFor(t, "trigger failed", func() bool { return w.Status().State == runner.StateFailed && !w.Status().Retrying })
	st := w.Status()
	// The last error (also the log's reason) gives the way out that works
	// on the running process first, as WayOut does: `checkpoints reset`
	// is refused while a changehook runs the trigger.
	const reason = "history lost: the checkpoint is no longer in the oplog (ChangeStreamHistoryLost); events may have been missed. " +
		"The way out: `changehook resume low_stock --from now|TIME` on the running changehook (from now or a time still in the oplog; the changes before it are skipped), " +
		"or `changehook checkpoints reset --trigger low_stock` when no changehook runs"
	if st.LastError != reason {
		t.Errorf("LastError = %q, want %q", st.LastError, reason)
	}
	if !strings.Contains(st.WayOut, "changehook resume low_stock --from now") {
		t.Errorf("WayOut = %q, want resume --from now", st.WayOut)
	}
	err := stop2()
	var te *runner.TriggerError
	if !errors.As(err, &te) {
		t.Fatalf("Run = %v, want *TriggerError", err)
	}
	if st := w.Status(); st.State != runner.StateFailed {
		t.Errorf("state after stop = %s, want failed to stay visible", st.State)
	}
}

func TestRunnerDropInvalidatesOnlyThatTrigger(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: dropped
    database: shop
    collection: a
    operations: [insert, drop]
    webhook: { url: "${HOOK_URL}" }
  - name: survivor
    database: shop
    collection: b
    webhook: { url: "${HOOK_URL}" }
  - name: off
    database: shop
    enabled: false
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	reg := prometheus.NewRegistry()
	r, err := runner.New(cfg, client, store.New(client, stateDB), runner.Options{
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
		Registry: reg, CheckpointInterval: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second, Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ready() {
		t.Error("Ready before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "runner ready", r.Ready)

	db := client.Database("shop")
	insert(t, db.Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	if op := recv.next(t).Lookup("operationType").StringValue(); op != "insert" {
		t.Fatalf("first delivery %s, want insert", op)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer dcancel()
	if err := db.Collection("a").Drop(dctx); err != nil {
		t.Fatal(err)
	}
	if op := recv.next(t).Lookup("operationType").StringValue(); op != "drop" {
		t.Fatalf("delivery after drop %s, want drop", op)
	}
	status := func(name string) runner.TriggerStatus {
		for _, s := range r.Status() {
			if s.Name == name {
				return s
			}
		}
		t.Fatalf("no status for %s", name)
		return runner.TriggerStatus{}
	}
	waitFor(t, "dropped trigger failed", func() bool { return status("dropped").State == runner.StateFailed })
	if st := status("dropped"); !strings.Contains(st.LastError, "collection dropped") || st.Retrying {
		t.Errorf("dropped status = %+v, want failed with collection dropped", st)
	}
	if r.Ready() {
		t.Error("Ready with a failed trigger")
	}
	insert(t, db.Collection("b"), bson.D{{Key: "_id", Value: int32(7)}})
	got := recv.next(t)
	if got.Lookup("ns", "coll").StringValue() != "b" || got.Lookup("documentKey", "_id").Int32() != 7 {
		t.Errorf("survivor delivery = %v", got)
	}
	if st := status("off"); st.State != runner.StateDisabled {
		t.Errorf("disabled trigger state = %s", st.State)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"changehook_events_received_total", "changehook_checkpoint_lag_seconds", "changehook_trigger_up"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	js, err := json.Marshal(r.Status())
	if err != nil || !bytes.Contains(js, []byte(`"state":"running"`)) {
		t.Errorf("status JSON = %s, %v", js, err)
	}

	// The delivery counters in Status are the values of the Prometheus
	// series, without reading them back from the registry.
	waitFor(t, "delivery counters", func() bool {
		return status("survivor").Deliveries["delivered"] == 1 && status("dropped").Deliveries["delivered"] == 2
	})
	series := func(name, trigger, label, value string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				var tr, lv string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "trigger":
						tr = l.GetValue()
					case label:
						lv = l.GetValue()
					}
				}
				if tr == trigger && lv == value {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	for _, name := range []string{"dropped", "survivor"} {
		st := status(name)
		if got, want := float64(st.Deliveries["delivered"]), series("changehook_deliveries_total", name, "outcome", "delivered"); got != want {
			t.Errorf("%s: Status delivered = %v, Prometheus %v", name, got, want)
		}
		if got, want := float64(st.Attempts["ok"]), series("changehook_delivery_attempts_total", name, "reason", "ok"); got != want || got == 0 {
			t.Errorf("%s: Status attempts ok = %v, Prometheus %v", name, got, want)
		}
		if st.InFlight != 0 || st.DeadLetters != 0 {
			t.Errorf("%s: in flight %d, dead letters %d; want 0, 0", name, st.InFlight, st.DeadLetters)
		}
	}
	if st := status("off"); st.Deliveries == nil || len(st.Deliveries) != 0 {
		t.Errorf("disabled trigger deliveries = %v, want empty", st.Deliveries)
	}
}

func TestWatcherSurvivesNetworkTrouble(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, client := startServer(t, devdb.Options{Data: dir})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	cps := &recordingStore{Store: store.New(client, stateDB), saved: make(chan store.Checkpoint, 64)}
	coll := client.Database("lessons").Collection("inventory")
	// The watcher's client gives up on server selection quickly, so that the
	// driver's single resume attempt fails while the server is down and the
	// watch loop's own reopen-with-backoff takes over.
	fast := devdbtest.Connect(t, srv.URI(), options.Client().SetServerSelectionTimeout(200*time.Millisecond))
	w, stop := runWatcher(t, cfg.Triggers[0], fast, cps)

	insert(t, coll, item(1, 1))
	recv.next(t)
	// Dropped connections: the driver resumes the stream by itself.
	srv.CloseClientConnections()
	insert(t, coll, item(2, 2))
	if id := recv.next(t).Lookup("id").Int32(); id != 2 {
		t.Fatalf("after reconnect delivered %d, want 2", id)
	}
	// A server restart on the same data: the driver (or, when its single
	// resume attempt fails, the watch loop) reopens the stream from the last
	// token.
	addr := srv.Addr()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retrying", func() bool {
		st := w.Status()
		return st.State == runner.StateRetrying && st.Retrying && !st.StreamOpen
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	srv2, err := devdb.Start(ctx, devdb.Options{Data: dir, Addr: addr})
	if err != nil {
		t.Fatalf("restart devdb: %v", err)
	}
	t.Cleanup(func() { _ = srv2.Close() })
	waitFor(t, "stream reopened", func() bool { return w.Status().StreamOpen })
	insert(t, coll, item(3, 3))
	if id := recv.next(t).Lookup("id").Int32(); id != 3 {
		t.Fatalf("after restart delivered %d, want 3", id)
	}
	recv.none(t, 100*time.Millisecond) // nothing missed, nothing repeated
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// flakyStore is the real store whose SaveCheckpoint fails while failing is
// set, counting the attempts.
type flakyStore struct {
	*store.Store
	failing  atomic.Bool
	attempts atomic.Int64
}

func (s *flakyStore) SaveCheckpoint(ctx context.Context, cp store.Checkpoint) error {
	s.attempts.Add(1)
	if s.failing.Load() {
		return errors.New("state database unavailable")
	}
	return s.Store.SaveCheckpoint(ctx, cp)
}

// TestStartPinnedBeforeEventsAreRead: a new trigger (start_at now, no
// checkpoint) reads no event until its starting position is saved. Were it
// to deliver while that save fails and then die, a restart would start
// from a later "now" and skip the events in between it had not delivered.
func TestStartPinnedBeforeEventsAreRead(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	cps := &flakyStore{Store: store.New(client, stateDB)}
	cps.failing.Store(true)
	coll := client.Database("lessons").Collection("inventory")
	w, stop := runWatcher(t, cfg.Triggers[0], client, cps)
	waitFor(t, "a first attempt to pin the start", func() bool { return cps.attempts.Load() >= 1 })
	insert(t, coll, item(1, 3))
	seen := cps.attempts.Load()
	waitFor(t, "the pin retried twice more", func() bool { return cps.attempts.Load() >= seen+2 })
	select {
	case d := <-recv.got:
		t.Fatalf("delivered %v before the start was saved", d)
	default:
	}
	if st := w.Status(); !strings.Contains(st.LastError, "state database unavailable") {
		t.Errorf("status last error %q, want the failed save's", st.LastError)
	}
	cps.failing.Store(false)
	if got := recv.next(t).Lookup("id"); got.Int32() != 1 {
		t.Fatalf("delivered %v, want 1", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
