package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/devdbtest"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestReadFormatV0Buckets: buckets written by earlier versions (records in
// format 0, or in format 1 with top-level arrays) are listed, counted,
// looked up by webhook-id and document key and trimmed like buckets written
// now, and a trim that rewrites one stores its remaining records in format
// 2.
func TestReadFormatV0Buckets(t *testing.T) {
	for name, appendOld := range map[string]func([]byte, *attemptBucket) ([]byte, error){"format 0": appendBucketV0, "format 1": appendBucketV1} {
		t.Run(name, func(t *testing.T) { testReadOldBuckets(t, appendOld) })
	}
}

func testReadOldBuckets(t *testing.T, appendOld func([]byte, *attemptBucket) ([]byte, error)) {
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	s := New(client, "changehook_state")
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	mk := func(trigger string) []AttemptRecord {
		var recs []AttemptRecord
		for i := range 30 { // a second apart, the last at now-1h+15s
			key, err := bson.Marshal(bson.D{{Key: "_id", Value: i % 4}})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, AttemptRecord{ID: bson.NewObjectID(), Kind: KindDelivery, Trigger: trigger, Partition: "p0of2",
				WebhookID: fmt.Sprint("w", i%10), DocumentKey: key, Operation: "insert", Attempt: 1 + i%3, Failed: i%3 != 2,
				Status: []int{503, 500, 200}[i%3], Reason: []string{"server_error", "server_error", ""}[i%3],
				LatencyMS: float64(i) * 1.5, Response: "body ✓", StartedAt: now.Add(-time.Hour - 15*time.Second + time.Duration(i)*time.Second - 5*time.Millisecond),
				At: now.Add(-time.Hour - 14*time.Second + time.Duration(i)*time.Second)})
		}
		return recs
	}
	// "old": one bucket in the old format; "new": the same records written
	// now.
	old := newBucket(bson.NewObjectID(), "old", mk("old"), nil)
	raw, err := appendOld(nil, &old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.attempts().InsertOne(ctx, bson.Raw(raw)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InsertAttempts(ctx, mk("new")); err != nil {
		t.Fatal(err)
	}
	// same compares the two triggers' listings record by record.
	same := func(stage string, f AttemptFilter, want int) {
		t.Helper()
		var lists [2][]AttemptRecord
		for i, trig := range []string{"old", "new"} {
			f := f
			f.Trigger, f.Limit = trig, 7
			for {
				recs, next, err := s.ListAttempts(ctx, f)
				if err != nil {
					t.Fatalf("%s: list %s: %v", stage, trig, err)
				}
				lists[i] = append(lists[i], recs...)
				if next == "" {
					break
				}
				f.After = next
			}
			n, err := s.CountAttempts(ctx, f)
			if err != nil || n != int64(want) {
				t.Fatalf("%s: count %s = %d, %v; want %d", stage, trig, n, err, want)
			}
		}
		if len(lists[0]) != want || len(lists[1]) != want {
			t.Fatalf("%s: listed %d old and %d new records, want %d", stage, len(lists[0]), len(lists[1]), want)
		}
		for i := range lists[0] {
			o, n := lists[0][i], lists[1][i]
			o.Trigger, n.Trigger, o.ID, n.ID = "", "", bson.ObjectID{}, bson.ObjectID{}
			if fmt.Sprintf("%+v", o) != fmt.Sprintf("%+v", n) {
				t.Fatalf("%s: record %d\n old %+v\n new %+v", stage, i, o, n)
			}
		}
	}
	key1, _ := bson.Marshal(bson.D{{Key: "_id", Value: 1}})
	same("written", AttemptFilter{}, 30)
	same("failed", AttemptFilter{Failed: true}, 20)
	same("webhook-id", AttemptFilter{WebhookID: "w3"}, 3)
	same("document key", AttemptFilter{DocumentKey: key1}, 8)
	key1long, _ := bson.Marshal(bson.D{{Key: "_id", Value: int64(1)}})
	same("document key of another number type", AttemptFilter{DocumentKey: key1long}, 8)
	same("both", AttemptFilter{DocumentKey: key1, WebhookID: "w5"}, 2)
	same("neither", AttemptFilter{DocumentKey: key1, WebhookID: "w4"}, 0)
	// Retention cuts through both buckets: records 0..13 go.
	if n, err := s.TrimAttempts(ctx, now, time.Hour, 0); err != nil || n != 28 {
		t.Fatalf("TrimAttempts(retention) = %d, %v; want 28", n, err)
	}
	same("trimmed", AttemptFilter{}, 16)
	var rawOld bson.Raw
	if err := s.attempts().FindOne(ctx, bson.D{{Key: "trigger", Value: "old"}}).Decode(&rawOld); err != nil {
		t.Fatal(err)
	}
	if sub, data, _ := rawOld.Lookup("records").BinaryOK(); sub != recordsSubtypeV1 || data[0] != recordsVersion2 {
		t.Fatalf("the rewritten bucket's records are of subtype %#x, version %d; want 0x80, 2", sub, data[0])
	}
	if _, err := rawOld.LookupErr("webhookIds"); err == nil {
		t.Fatal("the rewritten bucket has the top-level webhookIds")
	}
	// The cap cuts through a bucket in the old format, the oldest: of its 30
	// records an hour before the others, the newest 8 stay.
	older := mk("older")
	for i := range older {
		older[i].At = older[i].At.Add(-time.Hour)
		older[i].StartedAt = older[i].StartedAt.Add(-time.Hour)
	}
	ob := newBucket(bson.NewObjectID(), "older", older, nil)
	if raw, err = appendOld(nil, &ob); err != nil {
		t.Fatal(err)
	}
	if _, err := s.attempts().InsertOne(ctx, bson.Raw(raw)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.TrimAttempts(ctx, now, 0, 40); err != nil || n != 22 {
		t.Fatalf("TrimAttempts(cap 40) = %d, %v; want 22", n, err)
	}
	left, _, err := s.ListAttempts(ctx, AttemptFilter{Trigger: "older"})
	if err != nil || len(left) != 8 {
		t.Fatalf("%d records of the capped bucket left, %v; want 8", len(left), err)
	}
	for i, r := range left {
		w := older[29-i]
		if r.ID != w.ID || r.WebhookID != w.WebhookID || !r.At.Equal(w.At.Truncate(time.Millisecond)) || r.Status != w.Status || r.Response != w.Response {
			t.Fatalf("record %d left: %+v, want %+v", i, r, w)
		}
	}
}
