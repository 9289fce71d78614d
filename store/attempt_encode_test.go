package store

import (
	"bytes"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// plainBucket is attemptBucket without its MarshalBSON: the driver encodes
// it by reflection from the struct tags.
type plainBucket attemptBucket

// TestBucketEncodingMatchesTheDriver: for every shape of record (all
// fields, none, large numbers, skipped ranges, an omitted document key) the
// hand-written encoder's bytes and the driver's decode to the same bucket,
// and a decoded bucket encodes back to the same bytes.
func TestBucketEncodingMatchesTheDriver(t *testing.T) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	key, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "region", Value: "eu"}})
	if err != nil {
		t.Fatal(err)
	}
	full := AttemptRecord{ID: bson.NewObjectID(), Kind: KindDelivery, Partition: "p1of4", WebhookID: "msg_abc", DocumentKey: key,
		Operation: "update", Attempt: 3, Failed: true, Status: 503, Reason: "server_error", Error: "unexpected HTTP status 503 ✓",
		LatencyMS: 12.5, Response: "busy", StartedAt: at.Add(-12 * time.Millisecond), At: at, By: "api"}
	cases := map[string][]AttemptRecord{
		"full":    {full},
		"minimal": {{Kind: KindDelivery, At: at}},
		"mixed": {
			full,
			{ID: bson.NewObjectID(), Kind: KindSkipped, Reason: "resumed from now", SkippedFrom: at.Add(-time.Hour), SkippedTo: at, At: at, By: "cli"},
			{ID: bson.NewObjectID(), Kind: KindDelivery, WebhookID: "msg_big", DocumentKeyOmitted: true, Attempt: math.MaxInt32 + 1, Status: -1, LatencyMS: math.Inf(1), At: at.Add(time.Millisecond)},
			{ID: bson.NewObjectID(), Kind: KindDelivery, WebhookID: "batch_0123", DocumentKey: key, Operation: "insert", Events: 100, Attempt: 1, Status: 200, At: at},
			{ID: bson.NewObjectID(), Kind: KindReplay, Trigger: "kept-when-set", WebhookID: "msg_abc", DocumentKey: key, At: time.Unix(-1, -500_000).UTC()},
		},
	}
	for name, recs := range cases {
		t.Run(name, func(t *testing.T) {
			b := newBucket(bson.NewObjectID(), "orders", recs)
			got, err := b.MarshalBSON()
			if err != nil {
				t.Fatal(err)
			}
			driver, err := bson.Marshal(plainBucket(b))
			if err != nil {
				t.Fatal(err)
			}
			// The driver writes a zero time of an omitzero field as year 1;
			// the hand encoder leaves it out. Both decode to the same
			// bucket, which encodes to the same bytes again.
			var fromHand, fromDriver attemptBucket
			if err := bson.Unmarshal(got, &fromHand); err != nil {
				t.Fatal(err)
			}
			if err := bson.Unmarshal(driver, &fromDriver); err != nil {
				t.Fatal(err)
			}
			again, err := fromHand.MarshalBSON()
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("decoded and encoded again: %v\n got %s\nwant %s", err, bson.Raw(again), bson.Raw(got))
			}
			viaDriver, err := fromDriver.MarshalBSON()
			if err != nil || !bytes.Equal(viaDriver, got) {
				t.Fatalf("the driver's bucket decodes to another one: %v\n got %s\nwant %s", err, bson.Raw(viaDriver), bson.Raw(got))
			}
			if !reflect.DeepEqual(fromHand, fromDriver) {
				t.Fatalf("decoded buckets differ:\n%+v\n%+v", fromHand, fromDriver)
			}
			for i := range b.Records {
				if r := bson.Raw(got).Lookup("records", strconv.Itoa(i)).Document(); b.Records[i].SkippedFrom.IsZero() && r.Lookup("skippedFrom").Type != 0 {
					t.Errorf("record %d holds a zero skippedFrom: %s", i, r)
				}
			}
		})
	}
}

// BenchmarkBucketEncoding compares the hand-written encoder with the
// driver's for a writer batch of 256 delivery records.
func BenchmarkBucketEncoding(b *testing.B) {
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}})
	at := time.Now()
	recs := make([]AttemptRecord, 256)
	for i := range recs {
		recs[i] = AttemptRecord{ID: bson.NewObjectID(), Kind: KindDelivery, WebhookID: "msg_0123456789abcdef", DocumentKey: key,
			Operation: "insert", Attempt: 1, Status: 204, LatencyMS: 1.25, StartedAt: at, At: at}
	}
	bk := newBucket(bson.NewObjectID(), "orders", recs)
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			if _, err := bk.MarshalBSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("driver", func(b *testing.B) {
		for b.Loop() {
			if _, err := bson.Marshal(plainBucket(bk)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
