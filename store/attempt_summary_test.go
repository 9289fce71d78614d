package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// keyVariants returns documents equal, as MongoDB compares them, to
// {_id: i} (and to each other): the number i as every numeric type.
func keyVariants(t testing.TB, i int) []bson.Raw {
	t.Helper()
	dec, err := bson.ParseDecimal128(fmt.Sprint(i))
	if err != nil {
		t.Fatal(err)
	}
	dec2, err := bson.ParseDecimal128(fmt.Sprintf("%d.000", i))
	if err != nil {
		t.Fatal(err)
	}
	var out []bson.Raw
	for _, v := range []any{int32(i), int64(i), float64(i), dec, dec2} {
		out = append(out, mustMarshal(t, bson.D{{Key: "_id", Value: v}}))
	}
	return out
}

func mustMarshal(t testing.TB, v any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyPool returns document keys of many kinds, several of them equal to
// each other by value.
func keyPool(t testing.TB) []bson.Raw {
	t.Helper()
	var pool []bson.Raw
	for i := range 6 {
		pool = append(pool, keyVariants(t, i)...)
	}
	nan, _ := bson.ParseDecimal128("NaN")
	big, _ := bson.ParseDecimal128("9007199254740993")
	for _, d := range []bson.D{
		{{Key: "_id", Value: bson.NewObjectID()}},
		{{Key: "_id", Value: bson.NewObjectID()}},
		{{Key: "_id", Value: "s1"}},
		{{Key: "_id", Value: bson.Symbol("s1")}},
		{{Key: "_id", Value: "s2"}},
		{{Key: "_id", Value: 0.5}},
		{{Key: "_id", Value: math.Copysign(0, -1)}},
		{{Key: "_id", Value: math.NaN()}},
		{{Key: "_id", Value: nan}},
		{{Key: "_id", Value: int64(1) << 53}},
		{{Key: "_id", Value: int64(1)<<53 + 1}},
		{{Key: "_id", Value: big}},
		{{Key: "_id", Value: nil}},
		{{Key: "_id", Value: bson.D{{Key: "x", Value: int32(1)}, {Key: "y", Value: bson.A{int64(2), "a"}}}}},
		{{Key: "_id", Value: bson.D{{Key: "x", Value: 1.0}, {Key: "y", Value: bson.A{2.0, "a"}}}}},
		{{Key: "_id", Value: bson.D{{Key: "y", Value: bson.A{2.0, "a"}}, {Key: "x", Value: 1.0}}}},
		{{Key: "region", Value: "eu"}, {Key: "_id", Value: int32(3)}},
		{{Key: "region", Value: "eu"}, {Key: "_id", Value: 3.0}},
		{{Key: "_id", Value: bson.DateTime(1234)}},
		{{Key: "_id", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}}},
	} {
		pool = append(pool, mustMarshal(t, d))
	}
	return pool
}

// TestSummaryKeyHash: document keys MongoDB finds equal hash alike, and
// mostly only those.
func TestSummaryKeyHash(t *testing.T) {
	pool := keyPool(t)
	collisions := 0
	for _, a := range pool {
		var da bson.D
		if err := bson.Unmarshal(a, &da); err != nil {
			t.Fatal(err)
		}
		for _, b := range pool {
			var db bson.D
			if err := bson.Unmarshal(b, &db); err != nil {
				t.Fatal(err)
			}
			equal, same := mql.Equal(da, db), summaryKeyHash(a) == summaryKeyHash(b)
			if equal && !same {
				t.Errorf("%v and %v are equal but hash differently", bson.Raw(a), bson.Raw(b))
			}
			if !equal && same {
				collisions++
				t.Logf("%v and %v differ but hash alike", bson.Raw(a), bson.Raw(b))
			}
		}
	}
	// 2^53 and 2^53+1 (int64 and decimal) round to one float64.
	if collisions > 4 {
		t.Errorf("%d collisions", collisions)
	}
	// The {_id: ObjectId} fast path hashes as the general walk does.
	for range 100 {
		key := mustMarshal(t, bson.D{{Key: "_id", Value: bson.NewObjectID()}})
		h := fnvOffset64
		h.byte('d')
		if !canonicalDoc(&h, bsoncore.Document(key), 0) || h.sum() != summaryKeyHash(key) {
			t.Fatalf("%v: the fast path's hash differs from the walk's", bson.Raw(key))
		}
	}
	if summaryKeyHash(bson.Raw{1, 2, 3}) == summaryKeyHash(bson.Raw{1, 2, 4}) {
		t.Error("invalid keys hash alike")
	}
}

// TestKeySummary: a summary holds every value it was made of, and answers
// yes for few others.
func TestKeySummary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 100, 1024} {
		hs := make([]uint64, n)
		for i := range hs {
			hs[i] = summaryWebhookHash(fmt.Sprint("msg_", r.Uint64()))
		}
		s := appendSummary(nil, hs)
		if len(s) != 2+summaryBits(n)/8 {
			t.Fatalf("summary of %d values has %d bytes", n, len(s))
		}
		for _, h := range hs {
			if !summaryMayHold(s, h) {
				t.Fatalf("summary of %d values misses one", n)
			}
		}
		fp := 0
		for range 10000 {
			if summaryMayHold(s, summaryWebhookHash(fmt.Sprint("other_", r.Uint64()))) {
				fp++
			}
		}
		if fp > 300 {
			t.Errorf("summary of %d values: %d false positives in 10000", n, fp)
		}
	}
	// A summary this version does not know holds everything.
	for _, s := range [][]byte{nil, {2, 7, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 7, 0, 0, 0}} {
		if !summaryMayHold(s, 42) {
			t.Errorf("summary %v rules a value out", s)
		}
	}
}

// TestCompactListEntries: changehook's webhook-ids and {_id: ObjectId}
// keys take their compact forms, and everything else round-trips as
// literals.
func TestCompactListEntries(t *testing.T) {
	oid := bson.NewObjectID()
	id := dispatcher.WebhookID("orders", mustMarshal(t, bson.D{{Key: "_data", Value: "8263"}}))
	recs := []AttemptRecord{
		{WebhookID: id, DocumentKey: mustMarshal(t, bson.D{{Key: "_id", Value: oid}})},
		{WebhookID: id[:29] + "8", DocumentKey: mustMarshal(t, bson.D{{Key: "id", Value: oid}})}, // not base32
		{WebhookID: "msg_" + id[4:29], DocumentKey: mustMarshal(t, bson.D{{Key: "_id", Value: int32(1)}})},
		{WebhookID: id[:29] + "b", DocumentKey: mustMarshal(t, bson.D{{Key: "_id", Value: oid}, {Key: "x", Value: 1}})}, // non-zero trailing bits
	}
	b := newBucket(bson.NewObjectID(), "t", recs, nil)
	data := b.appendRecords(nil, recordsVersion2)
	got, ws, ds, err := decodeRecords(data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if got[i].WebhookID != recs[i].WebhookID || string(got[i].DocumentKey) != string(recs[i].DocumentKey) {
			t.Errorf("record %d: %q %v, want %q %v", i, got[i].WebhookID, got[i].DocumentKey, recs[i].WebhookID, recs[i].DocumentKey)
		}
	}
	if len(ws) != 4 || len(ds) != 4 {
		t.Fatalf("lists of %d and %d", len(ws), len(ds))
	}
	// 1 + 16 for the compact id, 1 + 1 + 30 for a literal one; 1 + 12 for
	// the compact key.
	if compact := len(appendWebhookEntry(nil, id)); compact != 17 {
		t.Errorf("changehook's webhook-id takes %d bytes", compact)
	}
	var prev bson.ObjectID
	if compact := len(appendKeyEntry(nil, recs[0].DocumentKey, &prev)); compact != 13 || prev != oid {
		t.Errorf("{_id: ObjectId} takes %d bytes", compact)
	}
	// ObjectIds of one process, made one after the other: 2 bytes each
	// after the first; others in full.
	var keys []AttemptRecord
	for i := range 300 {
		id := bson.NewObjectID()
		if i%7 == 3 {
			id[2] ^= 0xff
		}
		keys = append(keys, AttemptRecord{DocumentKey: mustMarshal(t, bson.D{{Key: "_id", Value: id}})})
	}
	b = newBucket(bson.NewObjectID(), "t", keys, nil)
	data = b.appendRecords(nil, recordsVersion2)
	if got, _, _, err = decodeRecords(data, nil, nil); err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if string(got[i].DocumentKey) != string(keys[i].DocumentKey) {
			t.Fatalf("key %d: %v, want %v", i, got[i].DocumentKey, keys[i].DocumentKey)
		}
	}
	if len(data) > 300*8+90*13 {
		t.Errorf("300 records with ObjectId keys take %d bytes", len(data))
	}
	for _, w := range recs[1:] {
		if n := len(appendWebhookEntry(nil, w.WebhookID)); n != 2+len(w.WebhookID) {
			t.Errorf("webhook-id %q takes %d bytes, want a literal", w.WebhookID, n)
		}
	}
}

// TestKeyLookupsDifferential: lookups by webhook-id and document key read
// the buckets' key summaries; their answers are compared, for random
// records and filters, with the answers of the layout they replace (format
// 1 buckets with top-level arrays, selected by the database through the
// multikey indexes) and with a scan of every record. The same records are
// written in both layouts; the listings (paged), their order and the
// counts must be identical.
func TestKeyLookupsDifferential(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(20*time.Second))
	ctx := context.Background()
	summaries := New(client, "by_summary")
	arrays := New(client, "by_index")
	for _, s := range []*Store{summaries, arrays} {
		if err := s.EnsureIndexes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []mongo.IndexModel{
		{Keys: bson.D{{Key: "webhookIds", Value: 1}}, Options: options.Index().SetName("webhookIds_1")},
		{Keys: bson.D{{Key: "documentKeys", Value: 1}}, Options: options.Index().SetName("documentKeys_1")},
	} {
		if _, err := arrays.attempts().Indexes().CreateOne(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	keys := keyPool(t)
	var webhooks []string
	for i := range 40 {
		if i%2 == 0 {
			webhooks = append(webhooks, dispatcher.WebhookID("t", mustMarshal(t, bson.D{{Key: "i", Value: i}})))
		} else {
			webhooks = append(webhooks, fmt.Sprint("custom-", i))
		}
	}
	// Recent records: the TTL index's monitor (every 60 s) would delete
	// records older than the retention while a slow run (-race) is still
	// comparing.
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	var all []AttemptRecord
	for batch := range 12 {
		recs := make([]AttemptRecord, 50+r.IntN(600))
		for i := range recs {
			rec := AttemptRecord{ID: bson.NewObjectID(), Kind: KindDelivery, Trigger: []string{"a", "b", "c"}[r.IntN(3)],
				Attempt: 1 + r.IntN(3), Failed: r.IntN(4) == 0, Status: 200,
				At: base.Add(time.Duration(batch)*40*time.Second + time.Duration(r.IntN(90_000))*time.Millisecond)}
			if r.IntN(10) > 0 {
				rec.WebhookID = webhooks[r.IntN(len(webhooks))]
			}
			if r.IntN(10) > 0 {
				rec.DocumentKey = keys[r.IntN(len(keys))]
			}
			if rec.Trigger == "c" {
				rec.Partition = fmt.Sprintf("p%dof2", r.IntN(2))
			}
			recs[i] = rec
		}
		if _, err := summaries.InsertAttempts(ctx, slices.Clone(recs)); err != nil {
			t.Fatal(err)
		}
		for _, b := range bucketsOf(recs, func(*AttemptRecord) bson.ObjectID { return bson.NewObjectID() }) {
			raw, err := appendBucketV1(nil, &b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := arrays.attempts().InsertOne(ctx, bson.Raw(raw)); err != nil {
				t.Fatal(err)
			}
		}
		for _, rec := range recs {
			rec.At = timeOfMS(msOf(rec.At))
			all = append(all, rec)
		}
	}
	// byIndex answers f as the previous version did: the database selects
	// the buckets by the multikey indexes, the reader filters their
	// records.
	byIndex := func(f AttemptFilter) []AttemptRecord {
		rf := newRecordFilter(f)
		filter := bucketFilter(rf)
		if f.WebhookID != "" {
			filter = append(filter, bson.E{Key: "webhookIds", Value: f.WebhookID})
		}
		if rf.keyFilter {
			filter = append(filter, bson.E{Key: "documentKeys", Value: f.DocumentKey})
		}
		cur, err := arrays.attempts().Find(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		var out []AttemptRecord
		for cur.Next(ctx) {
			var b attemptBucket
			if err := cur.Decode(&b); err != nil {
				t.Fatal(err)
			}
			for _, rec := range b.Records {
				rec.Trigger = b.Trigger
				if rf.match(&rec) {
					out = append(out, rec)
				}
			}
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(out, func(a, b AttemptRecord) int { return compareRecords(b, a) })
		return out
	}
	// byScan answers f from every record.
	byScan := func(f AttemptFilter) []AttemptRecord {
		rf := newRecordFilter(f)
		var out []AttemptRecord
		for _, rec := range all {
			if rf.match(&rec) {
				out = append(out, rec)
			}
		}
		slices.SortFunc(out, func(a, b AttemptRecord) int { return compareRecords(b, a) })
		return out
	}
	// listed pages through f's listing.
	listed := func(s *Store, f AttemptFilter) []AttemptRecord {
		var out []AttemptRecord
		f.Limit = 1 + r.IntN(60)
		for {
			recs, next, err := s.ListAttempts(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, recs...)
			if next == "" {
				return out
			}
			f.After = next
		}
	}
	ids := func(recs []AttemptRecord) string {
		var s []string
		for _, r := range recs {
			s = append(s, r.ID.Hex())
		}
		return fmt.Sprint(s)
	}
	queries := 300
	if testing.Short() {
		queries = 80
	}
	nonEmpty := 0
	for q := range queries {
		var f AttemptFilter
		switch r.IntN(3) {
		case 0:
			f.WebhookID = webhooks[r.IntN(len(webhooks))]
		case 1:
			f.DocumentKey = keys[r.IntN(len(keys))]
		default:
			f.WebhookID = webhooks[r.IntN(len(webhooks))]
			f.DocumentKey = keys[r.IntN(len(keys))]
		}
		if r.IntN(20) == 0 {
			f.WebhookID = "absent"
		}
		if r.IntN(3) == 0 {
			f.Trigger = []string{"a", "b", "c", "c/p0of2", "c/p1of2", "d"}[r.IntN(6)]
		}
		if r.IntN(3) == 0 {
			f.Since = base.Add(time.Duration(r.IntN(500)) * time.Second)
		}
		f.Failed = r.IntN(4) == 0
		want := byScan(f)
		if len(want) > 0 {
			nonEmpty++
		}
		if got := byIndex(f); ids(got) != ids(want) {
			t.Fatalf("query %d %+v: the index-based answer (%d records) differs from the scan's (%d)", q, f, len(got), len(want))
		}
		for name, s := range map[string]*Store{"key summaries": summaries, "old buckets' arrays": arrays} {
			if got := listed(s, f); ids(got) != ids(want) {
				t.Fatalf("query %d %+v: listing by %s has %d records, want %d\n got %s\nwant %s", q, f, name, len(got), len(want), ids(got), ids(want))
			}
			if n, err := s.CountAttempts(ctx, f); err != nil || n != int64(len(want)) {
				t.Fatalf("query %d %+v: count by %s = %d, %v; want %d", q, f, name, n, err, len(want))
			}
		}
	}
	if nonEmpty < queries/2 {
		t.Fatalf("only %d of %d queries found records", nonEmpty, queries)
	}
}
