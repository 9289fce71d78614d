package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestHistoryWriterRetriesFailedBatch: a batch whose write fails is kept
// and written again once the state database answers; meanwhile the queue
// takes new records, and only those it cannot hold are dropped.
func TestHistoryWriterRetriesFailedBatch(t *testing.T) {
	s, _ := newStore(t)
	entered, proceed := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var calls int
	var written []string
	w := store.NewHistoryWriter(s, store.HistoryWriterOptions{Queue: 8, Batch: 2, FlushEvery: time.Millisecond, TrimEvery: time.Hour,
		Insert: func(ctx context.Context, rs []store.AttemptRecord) (int, error) {
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				close(entered)
				<-proceed
				return 0, errors.New("connection refused")
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				written = append(written, r.WebhookID)
			}
			return len(rs), nil
		}})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	rec := func(id string) bool {
		return w.Record(store.AttemptRecord{Kind: store.KindDelivery, Trigger: "t", WebhookID: id})
	}
	rec("a0")
	rec("a1")
	<-entered // the writer writes a batch of 2, which is going to fail
	accepted := 0
	for i := range 1000 {
		if rec(fmt.Sprintf("b%d", i)) {
			accepted++
		}
	}
	close(proceed)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"a0", "a1", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"}
	mu.Lock()
	defer mu.Unlock()
	if accepted != 8 || !slices.Equal(written, want) || w.Written() != 10 || w.Dropped() != 992 {
		t.Fatalf("accepted %d; written %d %v, dropped %d; want 8 accepted, %v written (the failed batch again), 992 dropped (the queue's overflow)",
			accepted, w.Written(), written, w.Dropped(), want)
	}
}

// TestHistoryWriterRetryAfterLostReplyStoresOnce: a write that the state
// database applied but whose reply was lost (twice: the driver's retry
// too) is written again, and its records are stored once: the buckets'
// ids come from their records', so the second write is a duplicate.
func TestHistoryWriterRetryAfterLostReplyStoresOnce(t *testing.T) {
	_, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	s := store.New(client, "changehook_state")
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	failPoint := func(name string, mode any, data bson.D) {
		t.Helper()
		cmd := bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: mode}}
		if data != nil {
			cmd = append(cmd, bson.E{Key: "data", Value: data})
		}
		if err := client.Database("admin").RunCommand(ctx, cmd).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// The insert commits and its connection closes before the reply; the
	// driver's retries are cut off the same way, before they run.
	failPoint("onPrimaryTransactionalWrite", bson.D{{Key: "times", Value: 1}}, bson.D{})
	failPoint("failCommand", bson.D{{Key: "skip", Value: 1}}, bson.D{{Key: "failCommands", Value: bson.A{"insert"}}, {Key: "closeConnection", Value: true}})
	buckets := func() int64 {
		n, err := client.Database("changehook_state").Collection("attempts").CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Error(err)
		}
		return n
	}
	var calls int
	var firstErr error
	var storedFirst int64
	w := store.NewHistoryWriter(s, store.HistoryWriterOptions{FlushEvery: time.Millisecond, TrimEvery: time.Hour,
		Insert: func(ctx context.Context, rs []store.AttemptRecord) (int, error) {
			if calls++; calls == 1 {
				// The driver retries a write cut off until its deadline:
				// each retry is cut off too.
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
			}
			n, err := s.InsertAttempts(ctx, rs)
			if calls == 1 {
				firstErr, storedFirst = err, buckets()
				failPoint("onPrimaryTransactionalWrite", "off", nil)
				failPoint("failCommand", "off", nil)
			}
			return n, err
		}})
	for i := range 5 {
		w.Record(store.AttemptRecord{Kind: store.KindDelivery, Trigger: "orders", WebhookID: fmt.Sprintf("msg_%d", i), Attempt: 1, Status: 204})
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.Close(cctx); err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.ListAttempts(ctx, store.AttemptFilter{Trigger: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || w.Written() != 5 || w.Dropped() != 0 {
		t.Fatalf("stored %d records, written %d, dropped %d; want 5, 5, 0", len(recs), w.Written(), w.Dropped())
	}
	if firstErr == nil || storedFirst != 1 || calls != 2 {
		t.Fatalf("first write: error %v, %d buckets stored; %d writes; want a lost reply of a stored bucket, written again once", firstErr, storedFirst, calls)
	}
	if n := buckets(); n != 1 {
		t.Fatalf("%d buckets, want 1", n)
	}
}
