package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// bucketDocs returns the attempts collection's documents, oldest bucket
// first.
func bucketDocs(t *testing.T, s *store.Store) []bson.Raw {
	t.Helper()
	ctx := context.Background()
	cur, err := s.AttemptsCollection().Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "first", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	return docs
}

// recordsSubtype returns the binary subtype of d's records.
func recordsSubtype(t *testing.T, d bson.Raw) byte {
	t.Helper()
	sub, _, ok := d.Lookup("records").BinaryOK()
	if !ok {
		t.Fatalf("records is not a binary value: %v", d)
	}
	return sub
}

// TestAttemptBuckets: one write of many records is stored as a few bucket
// documents, one trigger per bucket, at most 512 records each, with a key
// summary instead of top-level arrays of webhook-ids and document keys.
func TestAttemptBuckets(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var recs []store.AttemptRecord
	for i := range 1100 {
		recs = append(recs, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "orders", WebhookID: fmt.Sprintf("msg_%d", i/2),
			DocumentKey: docKey(t, fmt.Sprintf("d%d", i%3)), Attempt: 1 + i%2, Failed: i == 700, At: base.Add(time.Duration(i) * time.Millisecond)})
		if i%220 == 0 {
			recs = append(recs, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "users", WebhookID: fmt.Sprint("u", i), At: base.Add(time.Duration(i) * time.Millisecond)})
		}
	}
	if n, err := s.InsertAttempts(ctx, recs); err != nil || n != 1105 {
		t.Fatalf("InsertAttempts = %d, %v; want 1105", n, err)
	}
	docs := bucketDocs(t, s)
	var shape []string
	for _, d := range docs {
		_, data, _ := d.Lookup("records").BinaryOK()
		shape = append(shape, fmt.Sprintf("%s:%v:%#x:%d:%v", d.Lookup("trigger").StringValue(), d.Lookup("n").Int32(), recordsSubtype(t, d), data[0], d.Lookup("failed").Boolean()))
		// No top-level arrays (no index entry per record): a key summary.
		for _, field := range []string{"webhookIds", "documentKeys"} {
			if _, err := d.LookupErr(field); err == nil {
				t.Errorf("bucket has a top-level %s", field)
			}
		}
		if sub, keys, ok := d.Lookup("keys").BinaryOK(); !ok || sub != 0x80 || len(keys) < 10 {
			t.Errorf("bucket's key summary is %v", d.Lookup("keys"))
		}
	}
	// orders: 512 + 512 + 76 records; users: 5; the records in the compact
	// format (binary subtype 0x80, version 2).
	want := "orders:512:0x80:2:false users:5:0x80:2:false orders:512:0x80:2:true orders:76:0x80:2:false"
	if strings.Join(shape, " ") != want {
		t.Fatalf("buckets %v\nwant    %s", shape, want)
	}
	if first, last := docs[0].Lookup("first").Time(), docs[0].Lookup("last").Time(); !first.Equal(base) || !last.Equal(base.Add(511*time.Millisecond)) {
		t.Errorf("first bucket spans %v..%v, want %v..%v", first, last, base, base.Add(511*time.Millisecond))
	}
	// Records more than bucketSpan (a minute) apart go to separate buckets.
	s2, _ := newStore(t)
	spread := []store.AttemptRecord{
		{Trigger: "t", WebhookID: "a", At: base}, {Trigger: "t", WebhookID: "b", At: base.Add(time.Minute)},
		{Trigger: "t", WebhookID: "c", At: base.Add(time.Minute + time.Millisecond)},
	}
	if _, err := s2.InsertAttempts(ctx, spread); err != nil {
		t.Fatal(err)
	}
	var ns []any
	for _, d := range bucketDocs(t, s2) {
		ns = append(ns, d.Lookup("n").Int32())
	}
	if fmt.Sprint(ns) != "[2 1]" {
		t.Errorf("records 0, 60 s and 60.001 s apart in buckets of %v, want [2 1]", ns)
	}
}

// TestListAttemptsMergesBuckets: records written by several writers whose
// buckets overlap in time (and share milliseconds) are listed in exactly
// the order of (time, id), newest first, page by page, for every filter.
func TestListAttemptsMergesBuckets(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var all []store.AttemptRecord
	for w := range 4 { // four writers, interleaved in time
		var recs []store.AttemptRecord
		for i := range 40 {
			ms := (i*4 + w) % 150         // wraps: the last records share times with the first ones
			trigger, partition := "a", "" // b is partitioned in two
			if i%2 == 1 {
				trigger, partition = "b", []string{"p0of2", "p1of2"}[(i/2)%2]
			}
			recs = append(recs, store.AttemptRecord{Kind: store.KindDelivery, Trigger: trigger, Partition: partition,
				WebhookID: fmt.Sprintf("m%d", i%7), DocumentKey: docKey(t, fmt.Sprint("d", i%5)), Failed: (i+w)%3 == 0,
				At: base.Add(time.Duration(ms) * time.Millisecond)})
		}
		if _, err := s.InsertAttempts(ctx, recs); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	slices.SortFunc(all, func(a, b store.AttemptRecord) int {
		if c := b.At.Compare(a.At); c != 0 {
			return c
		}
		return strings.Compare(b.ID.Hex(), a.ID.Hex())
	})
	cases := []struct {
		name string
		f    store.AttemptFilter
		keep func(store.AttemptRecord) bool
	}{
		{"all", store.AttemptFilter{}, func(store.AttemptRecord) bool { return true }},
		{"trigger", store.AttemptFilter{Trigger: "b"}, func(r store.AttemptRecord) bool { return r.Trigger == "b" }},
		{"one partition", store.AttemptFilter{Trigger: "b/p1of2"}, func(r store.AttemptRecord) bool { return r.Trigger == "b" && r.Partition == "p1of2" }},
		{"one partition, failed", store.AttemptFilter{Trigger: "b/p0of2", Failed: true}, func(r store.AttemptRecord) bool {
			return r.Trigger == "b" && r.Partition == "p0of2" && r.Failed
		}},
		{"webhook id", store.AttemptFilter{WebhookID: "m3"}, func(r store.AttemptRecord) bool { return r.WebhookID == "m3" }},
		{"document key", store.AttemptFilter{DocumentKey: docKey(t, "d2")}, func(r store.AttemptRecord) bool { return r.DocumentKey.Lookup("_id").StringValue() == "d2" }},
		{"failed since", store.AttemptFilter{Failed: true, Since: base.Add(100 * time.Millisecond)}, func(r store.AttemptRecord) bool {
			return r.Failed && !r.At.Before(base.Add(100*time.Millisecond))
		}},
	}
	key := func(r store.AttemptRecord) string { return r.ID.Hex() }
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for _, r := range all {
				if tc.keep(r) {
					want = append(want, key(r))
				}
			}
			var got []string
			f := tc.f
			f.Limit = 7
			for page := 0; ; page++ {
				recs, next, err := s.ListAttempts(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					got = append(got, key(r))
				}
				if next == "" {
					break
				}
				if page > len(all) {
					t.Fatal("paging does not end")
				}
				f.After = next
			}
			if len(want) == 0 || strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("listed %d records %v\nwant %d %v", len(got), got, len(want), want)
			}
			n, err := s.CountAttempts(ctx, tc.f)
			if err != nil || n != int64(len(want)) {
				t.Fatalf("CountAttempts = %d, %v; want %d", n, err, len(want))
			}
		})
	}
}

// TestAttemptFilterPartitionKey: a trigger with a slash must be one
// partition's key; anything else is refused with the reason.
func TestAttemptFilterPartitionKey(t *testing.T) {
	for _, tc := range []struct {
		trigger string
		ok      bool
	}{
		{"orders", true},
		{"orders/p0of4", true},
		{"orders/p3of4", true},
		{"orders/p4of4", false},
		{"orders/p0of1", false},
		{"orders/x", false},
		{"orders/", false},
	} {
		err := store.ValidateAttemptFilter(store.AttemptFilter{Trigger: tc.trigger})
		if (err == nil) != tc.ok {
			t.Errorf("ValidateAttemptFilter(trigger %q) = %v, want ok %v", tc.trigger, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "neither a trigger's name nor one partition's key (NAME/p<i>of<N>)") {
			t.Errorf("ValidateAttemptFilter(trigger %q) = %v, want the reason", tc.trigger, err)
		}
	}
}

// TestDocumentKeyEquality: a document key matches as MongoDB compares
// documents (a number equal by value across types), not by its bytes.
func TestDocumentKeyEquality(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	long, err := bson.Marshal(bson.D{{Key: "_id", Value: int64(42)}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := bson.Marshal(bson.D{{Key: "_id", Value: int64(43)}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	if _, err := s.InsertAttempts(ctx, []store.AttemptRecord{
		{Kind: store.KindDelivery, Trigger: "t", WebhookID: "a", DocumentKey: long, At: at},
		{Kind: store.KindDelivery, Trigger: "t", WebhookID: "b", DocumentKey: other, At: at},
	}); err != nil {
		t.Fatal(err)
	}
	key, err := store.ParseDocumentKey(`{"_id": 42}`) // an int32
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListAttempts(ctx, store.AttemptFilter{DocumentKey: key})
	if err != nil || len(got) != 1 || got[0].WebhookID != "a" {
		t.Fatalf("records of {_id: 42} = %+v, %v; want the one stored with a long 42", got, err)
	}
}

// TestTrimAttemptsWithinBuckets: the retention and the cap cut through a
// bucket: its older records go, its newer ones stay.
func TestTrimAttemptsWithinBuckets(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	var recs []store.AttemptRecord
	for i := range 20 { // one bucket: 20 records a second apart, the last at now-1h+5s
		recs = append(recs, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "t", WebhookID: fmt.Sprint(i),
			At: now.Add(-time.Hour - 14*time.Second + time.Duration(i)*time.Second)})
	}
	if _, err := s.InsertAttempts(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if docs := bucketDocs(t, s); len(docs) != 1 {
		t.Fatalf("%d buckets, want 1", len(docs))
	}
	// Older than now-1h: i < 14.
	if n, err := s.TrimAttempts(ctx, now, time.Hour, 0); err != nil || n != 14 {
		t.Fatalf("TrimAttempts(retention) = %d, %v; want 14", n, err)
	}
	if n, err := s.TrimAttempts(ctx, now, 0, 4); err != nil || n != 2 {
		t.Fatalf("TrimAttempts(cap 4) = %d, %v; want 2", n, err)
	}
	left, _, err := s.ListAttempts(ctx, store.AttemptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range left {
		got = append(got, r.WebhookID)
	}
	if strings.Join(got, ",") != "19,18,17,16" {
		t.Fatalf("left %v, want 19..16", got)
	}
	docs := bucketDocs(t, s)
	if len(docs) != 1 || docs[0].Lookup("n").Int32() != 4 || !docs[0].Lookup("first").Time().Equal(recs[16].At) {
		t.Fatalf("bucket after the trims: %v", docs)
	}
	// A webhook-id trimmed away no longer finds the bucket.
	if got, _, err := s.ListAttempts(ctx, store.AttemptFilter{WebhookID: "15"}); err != nil || len(got) != 0 {
		t.Fatalf("records of a trimmed webhook-id: %v, %v", got, err)
	}
}

// TestMigrateLegacyAttempts: a history stored one document per record (the
// earlier layout, with its indexes) is converted into buckets by
// EnsureIndexes, keeping every record and its id; its indexes, and those of
// the buckets' top-level arrays of the previous version, are dropped.
func TestMigrateLegacyAttempts(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	coll := s.AttemptsCollection()
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var legacy []any
	var ids []string
	for i := range 700 {
		id := bson.NewObjectID()
		ids = append(ids, id.Hex())
		legacy = append(legacy, bson.D{{Key: "_id", Value: id}, {Key: "kind", Value: "delivery"}, {Key: "trigger", Value: []string{"a", "b"}[i%2]},
			{Key: "webhookId", Value: fmt.Sprint("w", i)}, {Key: "documentKey", Value: bson.D{{Key: "_id", Value: i}}}, {Key: "attempt", Value: 1},
			{Key: "failed", Value: i%10 <= 1}, {Key: "status", Value: 200}, {Key: "latencyMs", Value: 1.5},
			{Key: "at", Value: base.Add(time.Duration(i) * time.Millisecond)}})
	}
	if _, err := coll.InsertMany(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	for _, m := range []mongo.IndexModel{
		{Keys: bson.D{{Key: "at", Value: 1}}, Options: options.Index().SetName("at_1_ttl").SetExpireAfterSeconds(3600)},
		{Keys: bson.D{{Key: "trigger", Value: 1}, {Key: "at", Value: -1}, {Key: "_id", Value: -1}}, Options: options.Index().SetName("trigger_1_at_-1__id_-1")},
		{Keys: bson.D{{Key: "webhookId", Value: 1}, {Key: "at", Value: -1}}, Options: options.Index().SetName("webhookId_1_at_-1")},
		{Keys: bson.D{{Key: "documentKey", Value: 1}, {Key: "at", Value: -1}}, Options: options.Index().SetName("documentKey_1_at_-1")},
		// The previous version's multikey indexes of the buckets' arrays.
		{Keys: bson.D{{Key: "webhookIds", Value: 1}}, Options: options.Index().SetName("webhookIds_1")},
		{Keys: bson.D{{Key: "documentKeys", Value: 1}}, Options: options.Index().SetName("documentKeys_1")},
	} {
		if _, err := coll.Indexes().CreateOne(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // idempotent
		if err := s.EnsureIndexes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sp := range specs {
		names = append(names, sp.Name)
	}
	slices.Sort(names)
	if got := strings.Join(names, " "); got != "_id_ last_1_ttl trigger_1_last_-1" {
		t.Errorf("indexes %s", got)
	}
	// Converted in reads of 512 records by _id: 256 of a and 256 of b,
	// then 94 and 94.
	var ns []string
	for _, d := range bucketDocs(t, s) {
		ns = append(ns, fmt.Sprint(d.Lookup("trigger").StringValue(), d.Lookup("n").Int32()))
	}
	if got := strings.Join(ns, " "); got != "a256 b256 a94 b94" {
		t.Fatalf("buckets %s, want a256 b256 a94 b94", got)
	}
	got, _, err := s.ListAttempts(ctx, store.AttemptFilter{Limit: store.MaxHistoryPage})
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, r := range got {
		gotIDs = append(gotIDs, r.ID.Hex())
	}
	slices.Reverse(gotIDs)
	if strings.Join(gotIDs, ",") != strings.Join(ids, ",") {
		t.Fatalf("converted records (%d) differ from the old ones (%d)", len(gotIDs), len(ids))
	}
	r := got[len(got)-1] // the oldest: record 0
	if r.Trigger != "a" || r.WebhookID != "w0" || !r.Failed || r.Status != 200 || r.LatencyMS != 1.5 || !r.At.Equal(base) || r.DocumentKey.Lookup("_id").Int32() != 0 {
		t.Fatalf("converted record 0 = %+v", r)
	}
	if n, err := s.CountAttempts(ctx, store.AttemptFilter{Trigger: "b", Failed: true}); err != nil || n != 70 {
		t.Fatalf("CountAttempts(b, failed) = %d, %v; want 70", n, err)
	}
}

// TestTrimAttemptsWidestBucket: the retention finds a bucket that spans
// the whole bucket span across the cutoff (its newest record almost a
// minute after it) and removes its older record.
func TestTrimAttemptsWidestBucket(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	cutoff := now.Add(-time.Hour)
	recs := []store.AttemptRecord{
		{Kind: store.KindDelivery, Trigger: "t", WebhookID: "old", At: cutoff.Add(-time.Millisecond)},
		{Kind: store.KindDelivery, Trigger: "t", WebhookID: "new", At: cutoff.Add(time.Minute - time.Millisecond)},
	}
	if _, err := s.InsertAttempts(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if docs := bucketDocs(t, s); len(docs) != 1 {
		t.Fatalf("%d buckets, want 1", len(docs))
	}
	if n, err := s.TrimAttempts(ctx, now, time.Hour, 0); err != nil || n != 1 {
		t.Fatalf("TrimAttempts = %d, %v; want 1", n, err)
	}
	left, _, err := s.ListAttempts(ctx, store.AttemptFilter{})
	if err != nil || len(left) != 1 || left[0].WebhookID != "new" {
		t.Fatalf("left %+v, %v; want the record after the cutoff", left, err)
	}
}
