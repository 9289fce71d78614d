package store

import (
	"bytes"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// driverBucket is a bucket with its records as a BSON array, encoded and
// decoded by the driver's reflection codecs from the struct tags.
type driverBucket struct {
	ID           bson.ObjectID   `bson:"_id"`
	Trigger      string          `bson:"trigger"`
	First        time.Time       `bson:"first"`
	Last         time.Time       `bson:"last"`
	N            int             `bson:"n"`
	Failed       bool            `bson:"failed"`
	WebhookIDs   []string        `bson:"webhookIds,omitempty"`
	DocumentKeys []bson.Raw      `bson:"documentKeys,omitempty"`
	Records      []AttemptRecord `bson:"records"`
}

// TestBucketEncoding: for every shape of record (all fields, none, large
// numbers, skipped ranges, an omitted document key, a batch's event count)
// the hand-written encoder's bucket decodes to what the driver decodes from
// its own encoding of the same bucket, and encodes back to the same bytes;
// the records are one binary value holding their BSON array.
func TestBucketEncoding(t *testing.T) {
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
			if err := bson.Raw(got).Validate(); err != nil {
				t.Fatalf("invalid BSON: %v", err)
			}
			_, blob, ok := bson.Raw(got).Lookup("records").BinaryOK()
			if !ok {
				t.Fatalf("records is not a binary value: %s", bson.Raw(got))
			}
			vals, err := bson.Raw(blob).Values()
			if err != nil || len(vals) != len(recs) {
				t.Fatalf("records blob holds %d values (%v), want the %d records", len(vals), err, len(recs))
			}
			driver, err := bson.Marshal(driverBucket(b))
			if err != nil {
				t.Fatal(err)
			}
			var fromHand attemptBucket
			var fromDriver driverBucket
			if err := bson.Unmarshal(got, &fromHand); err != nil {
				t.Fatal(err)
			}
			if err := bson.Unmarshal(driver, &fromDriver); err != nil {
				t.Fatal(err)
			}
			if want := attemptBucket(fromDriver); !reflect.DeepEqual(fromHand, want) {
				t.Fatalf("decoded buckets differ:\n hand   %+v\n driver %+v", fromHand, want)
			}
			again, err := fromHand.MarshalBSON()
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("decoded and encoded again: %v\n got %s\nwant %s", err, bson.Raw(again), bson.Raw(got))
			}
			for i, v := range vals {
				if b.Records[i].SkippedFrom.IsZero() && v.Document().Lookup("skippedFrom").Type != 0 {
					t.Errorf("record %d holds a zero skippedFrom: %s", i, v)
				}
			}
		})
	}
	// A projection without the records decodes to a bucket without them.
	var head attemptBucket
	raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "n", Value: 3}, {Key: "last", Value: at}})
	if err := bson.Unmarshal(raw, &head); err != nil || head.N != 3 || !head.Last.Equal(at) || head.Records != nil {
		t.Fatalf("projected bucket %+v, %v", head, err)
	}
	// Records that are not documents are an error, not a panic.
	bad, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "records", Value: bson.Binary{Data: bsonArrayOf(t, int32(5))}}})
	if err := bson.Unmarshal(bad, &head); err == nil || !strings.Contains(err.Error(), "not a document") {
		t.Fatalf("records of numbers decoded: %v", err)
	}
}

// bsonArrayOf encodes vals as a BSON array document.
func bsonArrayOf(t *testing.T, vals ...any) []byte {
	t.Helper()
	d := bson.D{}
	for i, v := range vals {
		d = append(d, bson.E{Key: strconv.Itoa(i), Value: v})
	}
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
			if _, err := bson.Marshal(driverBucket(bk)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
