package runner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

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

// TestIdleCheckpointsAreRare drives a watch loop whose stream position moves
// every second (other writes on the deployment, such as other triggers'
// checkpoints) while it delivers nothing: it saves at most once per idle
// interval, not once per checkpoint interval. Once an event is submitted
// the normal interval applies again.
func TestIdleCheckpointsAreRare(t *testing.T) {
	disp, err := dispatcher.New(&triggers.Trigger{Name: "idle", Webhook: triggers.Webhook{URL: "http://127.0.0.1:1/"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = disp.Close(context.Background()) })
	cps := &countingStore{}
	clock := &stepClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	w := NewWatcher(&triggers.Trigger{Name: "idle"}, nil, cps, disp, WatcherOptions{
		Logger: slog.New(slog.DiscardHandler), Clock: clock,
		CheckpointInterval: time.Second, IdleCheckpointInterval: 30 * time.Second,
	})
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
