package store_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestRecordAttemptMatchesRecord checks that RecordAttempt, which builds
// the record in its queue slot, queues what Record(AttemptFromDispatcher)
// queues, for attempts of every kind, and that the slots it reuses keep
// nothing of earlier records.
func TestRecordAttemptMatchesRecord(t *testing.T) {
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}})
	bigKey, _ := bson.Marshal(bson.D{{Key: "_id", Value: strings.Repeat("k", store.MaxRecordDocumentKey)}})
	long := strings.Repeat("é", store.MaxResponseSnippet) // cut inside a rune
	start := now.Add(-time.Second)
	attempts := []struct {
		a                            dispatcher.Attempt
		trigger, partition, kind, by string
	}{
		{dispatcher.Attempt{WebhookID: "msg_a", Number: 1, Status: 204, Latency: 1250 * time.Microsecond, Trigger: "orders", Start: start,
			DocumentKey: key, Operation: "insert"}, "orders", "", store.KindDelivery, ""},
		{dispatcher.Attempt{WebhookID: "msg_b", Number: 3, Status: 503, Reason: dispatcher.ReasonServerError, Err: errors.New(long),
			Latency: 7 * time.Millisecond, Body: long, Trigger: "orders", Start: start, DocumentKey: bigKey, Operation: "update", Events: 12},
			"", "p1of4", store.KindDelivery, ""},
		{dispatcher.Attempt{WebhookID: "msg_c", Number: 1, Status: 410, Reason: dispatcher.ReasonDropped, Err: errors.New("dropped"),
			Trigger: "t2", Start: start}, "t2", "", store.KindReplay, "api"},
		{dispatcher.Attempt{WebhookID: "msg_d", Number: 2, Reason: dispatcher.ReasonPayload, Err: errors.New("payload"), Trigger: "t3"},
			"", "", store.KindReplay, "cli"},
		{dispatcher.Attempt{}, "", "", store.KindDelivery, ""},
	}
	capture := func(record func(w *store.HistoryWriter, i int)) []store.AttemptRecord {
		var mu sync.Mutex
		var got []store.AttemptRecord
		w := store.NewHistoryWriter(nil, store.HistoryWriterOptions{Queue: 4, Batch: 2, Now: func() time.Time { return now },
			Insert: func(_ context.Context, recs []store.AttemptRecord) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				for _, r := range recs {
					r.DocumentKey = append(bson.Raw(nil), r.DocumentKey...) // the writer's buffer
					got = append(got, r)
				}
				return len(recs), nil
			}})
		// Three rounds over the 6-slot ring: slots are reused.
		for range 3 {
			for i := range attempts {
				record(w, i)
				if err := w.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := capture(func(w *store.HistoryWriter, i int) {
		c := attempts[i]
		w.Record(store.AttemptFromDispatcher(c.a, c.trigger, c.partition, c.kind, c.by))
	})
	got := capture(func(w *store.HistoryWriter, i int) {
		c := attempts[i]
		w.RecordAttempt(&c.a, c.trigger, c.partition, c.kind, c.by)
	})
	if len(want) != 3*len(attempts) {
		t.Fatalf("Record queued %d records, want %d", len(want), 3*len(attempts))
	}
	if !reflect.DeepEqual(got, want) {
		for i := range min(len(got), len(want)) {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("record %d: RecordAttempt queued\n%+v\nRecord queued\n%+v", i, got[i], want[i])
			}
		}
		t.Fatalf("RecordAttempt queued %d records, Record %d", len(got), len(want))
	}
}
