package runner_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestIdleGetMoreWaitsLongAndDeliveriesCheckpointOnTime: an idle trigger's
// getMore waits MaxAwait (maxTimeMS; here an hour), not one second, so
// hundreds of idle triggers do not send hundreds of getMores per second;
// and an event delivered while that getMore waits is still checkpointed
// after CheckpointInterval — by the flusher, with no getMore having
// returned since the event. Every getMore of the stream asks for a bounded
// batch (batchSize 4000), so a backlog is not read in 16 MiB replies.
func TestIdleGetMoreWaitsLongAndDeliveriesCheckpointOnTime(t *testing.T) {
	t.Parallel()
	srv, _ := startServer(t, devdb.Options{})
	var (
		mu          sync.Mutex
		maxTimes    []int64
		batchSizes  []int64
		getMoreDone atomic.Int64
	)
	mon := &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName != "getMore" {
				return
			}
			if e.DatabaseName != "lessons" {
				return // the state database's streams, if any
			}
			v, _ := e.Command.Lookup("maxTimeMS").AsInt64OK()
			n, _ := e.Command.Lookup("batchSize").AsInt64OK()
			mu.Lock()
			maxTimes = append(maxTimes, v)
			batchSizes = append(batchSizes, n)
			mu.Unlock()
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
			if e.CommandName == "getMore" && e.DatabaseName == "lessons" {
				getMoreDone.Add(1)
			}
		},
	}
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetMonitor(mon))
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	tr := cfg.Triggers[0]
	cps := &recordingStore{Store: store.New(client, stateDB), saved: make(chan store.Checkpoint, 64)}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	disp, err := dispatcher.New(tr, store.New(client, stateDB), dispatcher.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	w := runner.NewWatcher(tr, client, cps, disp, runner.WatcherOptions{
		Logger:                 logger,
		CheckpointInterval:     20 * time.Millisecond,
		IdleCheckpointInterval: time.Hour,
		MaxAwait:               time.Hour,
		ShutdownGrace:          5 * time.Second,
		CheckpointTimeout:      time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Error("watcher did not stop")
		}
	})
	waitFor(t, "stream open", func() bool { return w.Status().StreamOpen })
	// Writes and checks through a client without the monitor.
	coll := devdbtest.Connect(t, srv.URI()).Database("lessons").Collection("inventory")
	insert(t, coll, item(1, 5))
	recv.next(t)
	returned := getMoreDone.Load()
	waitFor(t, "checkpoint past the delivered event", func() bool {
		cp, ok, err := cps.LoadCheckpoint(context.Background(), "low_stock")
		return err == nil && ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	if got := getMoreDone.Load(); got != returned {
		t.Errorf("%d getMores returned between the delivery and its checkpoint, want 0 (the flusher saves it)", got-returned)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(maxTimes) == 0 {
		t.Fatal("no getMore seen")
	}
	for _, v := range maxTimes {
		if v != time.Hour.Milliseconds() {
			t.Fatalf("getMore maxTimeMS %v, want %d (MaxAwait)", maxTimes, time.Hour.Milliseconds())
		}
	}
	for _, n := range batchSizes {
		if n != 4000 {
			t.Fatalf("getMore batchSize %v, want 4000", batchSizes)
		}
	}
}
