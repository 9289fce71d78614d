package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestFirstCheckpointAfterOpenIsQuick: until a save follows an event the
// newly opened stream submitted, saves come every firstCheckpointInterval,
// not every CheckpointInterval, so that a process restarted after a crash
// saves the backlog it redelivered before it can be killed again; then the
// normal interval applies. A save without such an event (the pin of
// "start_at: now", an idle-only save) does not end the short interval.
func TestFirstCheckpointAfterOpenIsQuick(t *testing.T) {
	w, cps, clock := stepWatcher(t, "first", WatcherOptions{CheckpointInterval: time.Second, CheckpointEvery: 1000, IdleCheckpointInterval: time.Hour})
	tok := func(i int) bson.Raw {
		b, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("%08d", i)}})
		return b
	}
	ctx := context.Background()
	event := func(i int) { // an event submitted and delivered: the stream's token moves past it
		w.pushed++
		w.pending.push(pendingEvent{token: tok(i), at: clock.now, seq: w.pushed})
		w.sinceSave++
		w.streamToken = tok(i)
	}
	step := func(d time.Duration, wantSaves int, what string) {
		t.Helper()
		clock.now = clock.now.Add(d)
		w.flushIfDue(ctx)
		if got := cps.count(); got != wantSaves {
			t.Fatalf("%s: %d saves, want %d", what, got, wantSaves)
		}
	}

	// The stream opens on a restart: the checkpoint of the previous
	// process is loaded, the pin at open writes it again (no event yet).
	w.savedToken = tok(0)
	w.openPushed, w.openSaved = w.pushed, false
	w.streamToken = tok(1)
	w.checkpointNow(ctx)
	if cps.count() != 1 {
		t.Fatalf("pin at open: %d saves, want 1", cps.count())
	}
	event(2)
	step(50*time.Millisecond, 1, "50ms after the pin")
	step(50*time.Millisecond, 2, "100ms after the pin, an event delivered")
	event(3)
	step(100*time.Millisecond, 2, "100ms after the first save with an event")
	step(800*time.Millisecond, 2, "900ms after it")
	step(100*time.Millisecond, 3, "1s after it")

	// A stream opened again (a reopen after an error) is quick again.
	w.openPushed, w.openSaved = w.pushed, false
	event(4)
	step(100*time.Millisecond, 4, "100ms after the last save, on a reopened stream")
}
