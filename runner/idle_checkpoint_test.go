package runner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// countingStore counts checkpoint saves.
type countingStore struct {
	mu    sync.Mutex
	saves int
}

func (c *countingStore) LoadCheckpoint(context.Context, string) (store.Checkpoint, bool, error) {
	return store.Checkpoint{}, false, nil
}

func (c *countingStore) SaveCheckpoint(context.Context, store.Checkpoint) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saves++
	return nil
}

func (c *countingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saves
}

// stepClock is a clock moved by hand.
type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time                                   { return c.now }
func (c *stepClock) Sleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// stepWatcher returns a watch loop for a trigger named name that saves to
// a countingStore on a stepClock, with opts' checkpoint settings, and no
// stream: tests drive its checkpoint bookkeeping by hand.
func stepWatcher(t *testing.T, name string, opts WatcherOptions) (*Watcher, *countingStore, *stepClock) {
	t.Helper()
	disp, err := dispatcher.New(&triggers.Trigger{Name: name, Webhook: triggers.Webhook{URL: "http://127.0.0.1:1/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = disp.Close(context.Background()) })
	cps := &countingStore{}
	clock := &stepClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts.Logger, opts.Clock = slog.New(slog.DiscardHandler), clock
	return NewWatcher(&triggers.Trigger{Name: name}, nil, cps, disp, opts), cps, clock
}

// TestIdleCheckpointsAreRare drives a watch loop whose stream position moves
// every second (other writes on the deployment, such as other triggers'
// checkpoints) while it delivers nothing: it saves at most once per idle
// interval, not once per checkpoint interval. Once an event is submitted
// the normal interval applies again.
func TestIdleCheckpointsAreRare(t *testing.T) {
	w, cps, clock := stepWatcher(t, "idle", WatcherOptions{CheckpointInterval: time.Second, IdleCheckpointInterval: 30 * time.Second})
	tok := func(i int) bson.Raw {
		b, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("%08d", i)}})
		return b
	}
	ctx := context.Background()
	w.streamToken = tok(0)
	w.checkpointNow(ctx) // the first save, as when the stream opens
	const seconds = 120
	for i := 1; i <= seconds; i++ {
		clock.now = clock.now.Add(time.Second)
		w.streamToken = tok(i) // the position moved; nothing delivered
		w.flushIfDue(ctx)
	}
	if got, want := cps.count(), 1+seconds/30; got != want {
		t.Fatalf("%d checkpoint saves in %ds of idle-only movement, want %d (one per 30s idle interval)", got, seconds, want)
	}

	// An event not yet checkpointed makes the next save due after the
	// normal interval.
	before := cps.count()
	w.pending.push(pendingEvent{token: tok(1000), at: clock.now})
	w.sinceSave++
	clock.now = clock.now.Add(time.Second)
	w.streamToken = tok(1001)
	w.flushIfDue(ctx)
	if got := cps.count(); got != before+1 {
		t.Fatalf("after an event: %d saves, want %d (due after the 1s checkpoint interval)", got, before+1)
	}
}

// TestHandleOwnedKeepsOwnPendingToken: an event handed over (a read-ahead
// copy) goes to the dispatcher as it is, but the checkpoint bookkeeping
// keeps its own copy of the token: a pending entry can outlive the
// delivery, when the reply's buffer is reused.
func TestHandleOwnedKeepsOwnPendingToken(t *testing.T) {
	disp, err := dispatcher.New(&triggers.Trigger{Name: "owned", Ordering: triggers.None, Concurrency: 1,
		Webhook: triggers.Webhook{URL: "http://127.0.0.1:1/"}, Batch: &triggers.BatchPolicy{MaxEvents: 10}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = disp.Close(ctx)
	})
	w := NewWatcher(&triggers.Trigger{Name: "owned", Ordering: triggers.None}, nil, &countingStore{}, disp,
		WatcherOptions{Logger: slog.New(slog.DiscardHandler)})
	var reply []byte // two events in one buffer, as a read-ahead reply holds them
	for i := range 2 {
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: fmt.Sprintf("tok%d", i)}}},
			{Key: "operationType", Value: "insert"}, {Key: "clusterTime", Value: bson.Timestamp{T: 1, I: uint32(i)}}})
		reply = append(reply, ev...)
	}
	rb := getReplyBuf(&sync.Pool{}, len(reply))
	rb.b = append(rb.b, reply...)
	reply = rb.b
	inReply := func(b []byte) bool {
		p, r := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(reply)))
		return p >= r && p < r+uintptr(len(reply))
	}
	for at := 0; at < len(reply); {
		raw := bson.Raw(reply[at:])
		n, _, _ := bsoncore.ReadLength(raw)
		raw = raw[:n:n]
		at += int(n)
		id := raw.Lookup("_id").Document()
		if _, _, err := w.handle(context.Background(), raw, id, time.Now(), rb, false, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.pending.items) != 2 {
		t.Fatalf("%d pending events, want 2", len(w.pending.items))
	}
	for i, p := range w.pending.items {
		if want := fmt.Sprintf(`{"_data": "tok%d"}`, i); p.token.String() != want {
			t.Fatalf("pending token %d: %s, want %s", i, p.token, want)
		}
		if inReply(p.token) {
			t.Fatalf("pending token %d points into the reply's buffer", i)
		}
	}
}
