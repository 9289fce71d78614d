package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/textcut"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// driverBucket is a bucket with its records as a BSON array, encoded and
// decoded by the driver's reflection codecs from the struct tags: the
// reference for what a record decodes to.
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

// driverDecoded returns b as the driver's codecs encode and decode it:
// every record as its BSON form reads back (times in milliseconds, UTC),
// without a Trigger (a bucket's records hold none).
func driverDecoded(t testing.TB, b *attemptBucket) driverBucket {
	t.Helper()
	db := driverBucket{ID: b.ID, Trigger: b.Trigger, First: b.First, Last: b.Last, N: b.N, Failed: b.Failed,
		WebhookIDs: b.WebhookIDs, DocumentKeys: b.DocumentKeys}
	for i := range b.len() {
		r := *b.rec(i)
		r.Trigger = ""
		db.Records = append(db.Records, r)
	}
	raw, err := bson.Marshal(db)
	if err != nil {
		t.Fatal(err)
	}
	var out driverBucket
	if err := bson.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameBucket reports how got (decoded) differs from want, "" if not at
// all; latencies compare by their bits.
func sameBucket(got *attemptBucket, want driverBucket) string {
	head := func(id bson.ObjectID, trig string, f, l time.Time, n int, failed bool, w []string, d []bson.Raw) string {
		return fmt.Sprint(id, trig, f, l, n, failed, w, d)
	}
	if g, w := head(got.ID, got.Trigger, got.First, got.Last, got.N, got.Failed, got.WebhookIDs, got.DocumentKeys),
		head(want.ID, want.Trigger, want.First, want.Last, want.N, want.Failed, want.WebhookIDs, want.DocumentKeys); g != w {
		return fmt.Sprintf("top level %s, want %s", g, w)
	}
	if len(got.Records) != len(want.Records) {
		return fmt.Sprintf("%d records, want %d", len(got.Records), len(want.Records))
	}
	for i := range got.Records {
		g, w := got.Records[i], want.Records[i]
		if math.Float64bits(g.LatencyMS) != math.Float64bits(w.LatencyMS) && !(math.IsNaN(g.LatencyMS) && math.IsNaN(w.LatencyMS)) {
			return fmt.Sprintf("record %d: latency %v, want %v", i, g.LatencyMS, w.LatencyMS)
		}
		g.LatencyMS, w.LatencyMS = 0, 0
		if !reflect.DeepEqual(g, w) {
			return fmt.Sprintf("record %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	return ""
}

// roundTrip encodes b with MarshalBSON and decodes it with UnmarshalBSON.
func roundTrip(t testing.TB, b *attemptBucket) (attemptBucket, []byte) {
	t.Helper()
	raw, err := b.MarshalBSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := bson.Raw(raw).Validate(); err != nil {
		t.Fatalf("invalid BSON: %v", err)
	}
	var got attemptBucket
	if err := bson.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	return got, raw
}

// recordCases are records of every shape: all fields, none, the Truncate
// limits, unicode, numbers at their limits, skipped ranges, batches, ids
// that share a prefix or not, times before 1970 and with nanoseconds.
func recordCases(t testing.TB) map[string][]AttemptRecord {
	at := time.Date(2026, 5, 6, 7, 8, 9, 123_456_789, time.UTC)
	key, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "region", Value: "eu"}})
	if err != nil {
		t.Fatal(err)
	}
	bigKey, err := bson.Marshal(bson.D{{Key: "_id", Value: strings.Repeat("k", MaxRecordDocumentKey-20)}})
	if err != nil {
		t.Fatal(err)
	}
	id := bson.NewObjectID()
	next := func(id bson.ObjectID, d int) bson.ObjectID {
		c := (int(idCounter(id)) + d) & 0xFFFFFF
		id[9], id[10], id[11] = byte(c>>16), byte(c>>8), byte(c)
		return id
	}
	wrap := id
	wrap[9], wrap[10], wrap[11] = 0xFF, 0xFF, 0xFF
	full := AttemptRecord{ID: id, Kind: KindDelivery, Partition: "p1of4", WebhookID: "msg_abc", DocumentKey: key,
		Operation: "update", Attempt: 3, Failed: true, Status: 503, Reason: "server_error", Error: "unexpected HTTP status 503 ✓",
		LatencyMS: 12.5, Response: "busy", StartedAt: at.Add(-12 * time.Millisecond), At: at, By: "api"}
	unicode := strings.Repeat("é✓🙂", 200)
	limits := AttemptRecord{ID: next(id, 1), Kind: "custom-kind", Partition: "p3of4", WebhookID: strings.Repeat("w", 300), DocumentKey: bigKey,
		Operation: "modify", Attempt: math.MaxInt64, Events: math.MinInt64, Status: math.MinInt32, Reason: "a reason nobody coded",
		Error: textcut.UTF8(unicode, MaxRecordError), Response: textcut.UTF8("\x00"+unicode, MaxResponseSnippet),
		LatencyMS: math.MaxFloat64, StartedAt: at.Add(time.Hour), At: at, SkippedFrom: time.Unix(0, 1), SkippedTo: time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC), By: "ü"}
	return map[string][]AttemptRecord{
		"full":    {full},
		"minimal": {{Kind: KindDelivery, At: at}},
		"zero":    {{}},
		"limits":  {limits},
		"mixed": {
			full,
			{ID: next(id, 2), Kind: KindSkipped, Reason: "resumed from now", SkippedFrom: at.Add(-time.Hour), SkippedTo: at, At: at, By: "cli"},
			{ID: bson.NewObjectID(), Kind: KindDelivery, WebhookID: "msg_big", DocumentKeyOmitted: true, Attempt: math.MaxInt32 + 1, Status: -1, LatencyMS: math.Inf(1), At: at.Add(time.Millisecond)},
			{ID: next(id, -5), Kind: KindDelivery, WebhookID: "batch_0123", DocumentKey: key, Operation: "insert", Events: 100, Attempt: 1, Status: 200, At: at},
			{ID: next(id, 7), Kind: KindReplay, Trigger: "kept-when-set", WebhookID: "msg_abc", DocumentKey: key, At: time.Unix(-1, -500_000).UTC(), LatencyMS: math.Copysign(0, -1)},
			{Kind: KindReplay, WebhookID: "msg_abc", Partition: "p1of4", Error: full.Error, Response: full.Response, By: "api", At: at, LatencyMS: 0.1 + 0.2},
			{ID: wrap, Kind: KindDelivery, Partition: "p1of4", Error: full.Error, Response: "other", By: "api", At: at, LatencyMS: 1e-9},
			{ID: next(wrap, 1), Kind: KindDelivery, Operation: "delete", Reason: "dropped", Status: 410, At: at.Add(time.Minute), LatencyMS: 1234.567891},
			{ID: next(wrap, 2), Kind: "", Operation: "invalidate", Reason: "tls", At: time.Time{}, StartedAt: time.Unix(-62135596800, 0)},
		},
	}
}

// TestRecordsFormat: for every shape of record, a bucket encoded by
// MarshalBSON (format 1) and one encoded as earlier versions did (format 0)
// both decode to exactly what the driver decodes from its own encoding of
// the bucket's records, and format 1 encodes its decoding to the same
// bytes.
func TestRecordsFormat(t *testing.T) {
	for name, recs := range recordCases(t) {
		t.Run(name, func(t *testing.T) {
			b := newBucket(bson.NewObjectID(), "orders", recs, nil)
			want := driverDecoded(t, &b)
			got, raw := roundTrip(t, &b)
			if diff := sameBucket(&got, want); diff != "" {
				t.Fatal(diff)
			}
			if sub, _, ok := bson.Raw(raw).Lookup("records").BinaryOK(); !ok || sub != recordsSubtypeV1 {
				t.Fatalf("records is not a binary value of subtype 0x80: %s", bson.Raw(raw))
			}
			again, err := got.MarshalBSON()
			if err != nil || !bytes.Equal(again, raw) {
				t.Fatalf("decoded and encoded again: %v\n got %x\nwant %x", err, again, raw)
			}
			old, err := appendBucketV0(nil, &b)
			if err != nil {
				t.Fatal(err)
			}
			var fromOld attemptBucket
			if err := bson.Unmarshal(old, &fromOld); err != nil {
				t.Fatal(err)
			}
			for i := range fromOld.Records {
				fromOld.Records[i].Trigger = "" // format 0 kept a record's Trigger when set
			}
			if diff := sameBucket(&fromOld, want); diff != "" {
				t.Fatalf("format 0: %s", diff)
			}
		})
	}
}

// randomRecords returns n records drawn from r: any field may be empty,
// repeat the previous record's, or take a new value.
func randomRecords(r *rand.Rand, n int) []AttemptRecord {
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(r.Int64N(int64(time.Hour))))
	id := bson.NewObjectID()
	recs := make([]AttemptRecord, n)
	for i := range recs {
		rec := &recs[i]
		switch r.IntN(4) {
		case 0:
		case 1:
			id = bson.NewObjectID()
			rec.ID = id
		default:
			c := int(idCounter(id)) + r.IntN(5) - 1
			id[9], id[10], id[11] = byte(c>>16), byte(c>>8), byte(c)
			rec.ID = id
		}
		rec.Kind = pick("", "delivery", "replay", "skipped", "other")
		rec.Partition = pick("", "p0of2", "p1of2", "ünï")
		if r.IntN(5) > 0 {
			rec.WebhookID = fmt.Sprint("msg_", r.IntN(n))
		}
		if r.IntN(5) > 0 {
			rec.DocumentKey, _ = bson.Marshal(bson.D{{Key: "_id", Value: r.IntN(n)}})
		}
		rec.DocumentKeyOmitted = r.IntN(10) == 0
		rec.Operation = pick("", "insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate", "create")
		rec.Events = []int{0, 0, 1, 100, -3, math.MaxInt}[r.IntN(6)]
		rec.Attempt = r.IntN(4)
		rec.Failed = r.IntN(2) == 0
		rec.Status = []int{0, 200, 204, 503, 429, 1 << 40}[r.IntN(6)]
		rec.Reason = pick("", "client_error", "server_error", "rate_limited", "timeout", "connection", "redirect",
			"canceled", "payload_error", "dropped", "blocked", "auth", "tls", "skipped", "resumed from now", "weird")
		rec.Error = pick("", "", "boom", "unexpected HTTP status 503", strings.Repeat("x", 1024))
		rec.Response = pick("", "", "ok", "{\"error\":\"busy\"}")
		rec.LatencyMS = []float64{0, float64(r.Int64N(int64(10*time.Second))) / float64(time.Millisecond), r.Float64() * 1000, -1}[r.IntN(4)]
		rec.At = base.Add(time.Duration(r.Int64N(int64(2 * time.Minute))))
		if r.IntN(3) > 0 {
			rec.StartedAt = rec.At.Add(-time.Duration(r.Int64N(int64(time.Second))))
		}
		if r.IntN(8) == 0 {
			rec.SkippedFrom = rec.At.Add(-time.Duration(r.Int64N(int64(24 * time.Hour))))
			rec.SkippedTo = rec.At.Add(-time.Duration(r.Int64N(int64(time.Second))))
		}
		rec.By = pick("", "", "cli", "api")
	}
	return recs
}

// TestRecordsFormatRandom: random records, cut into buckets as a writer
// batch is, decode to what the driver decodes, bucket by bucket.
func TestRecordsFormatRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		recs := randomRecords(r, 1+r.IntN(700))
		for i := range recs {
			recs[i].Trigger = []string{"a", "b", "c"}[r.IntN(3)]
			if recs[i].ID.IsZero() {
				recs[i].ID = bson.NewObjectID()
			}
		}
		total := 0
		for _, b := range bucketsOf(recs, func(*AttemptRecord) bson.ObjectID { return bson.NewObjectID() }) {
			total += b.N
			want := driverDecoded(t, &b)
			got, _ := roundTrip(t, &b)
			if diff := sameBucket(&got, want); diff != "" {
				t.Fatalf("round %d: %s", round, diff)
			}
		}
		if total != len(recs) {
			t.Fatalf("round %d: buckets hold %d records of %d", round, total, len(recs))
		}
	}
}

// TestBucketsOf: records are grouped by trigger in the order triggers first
// appear, sorted by time as stored (milliseconds) then id, and cut at the
// bucket bounds; the buckets refer to the caller's records and hold their
// distinct webhook-ids and document keys.
func TestBucketsOf(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 30 {
		recs := randomRecords(r, 1+r.IntN(1500))
		ntrig := 1 + r.IntN(12) // more than 8 triggers switch to a map
		for i := range recs {
			recs[i].Trigger = fmt.Sprint("t", r.IntN(ntrig))
			recs[i].ID = bson.NewObjectID()
		}
		// The reference: stable grouping by first appearance, then (ms, id).
		var order []string
		groups := map[string][]AttemptRecord{}
		for _, rec := range recs {
			if _, ok := groups[rec.Trigger]; !ok {
				order = append(order, rec.Trigger)
			}
			groups[rec.Trigger] = append(groups[rec.Trigger], rec)
		}
		var want []string
		for _, trig := range order {
			g := groups[trig]
			sortStable(g)
			for _, rec := range g {
				want = append(want, trig+"/"+rec.ID.Hex())
			}
		}
		var got []string
		for _, b := range bucketsOf(recs, func(*AttemptRecord) bson.ObjectID { return bson.NewObjectID() }) {
			if b.N > maxBucketRecords || b.N == 0 || msOf(b.Last)-msOf(b.First) > bucketSpan.Milliseconds() {
				t.Fatalf("round %d: bucket of %d records spanning %v", round, b.N, b.Last.Sub(b.First))
			}
			seenW, seenD := map[string]bool{}, map[string]bool{}
			for i := range b.N {
				rec := b.rec(i)
				if rec.Trigger != b.Trigger {
					t.Fatalf("round %d: record of %s in a bucket of %s", round, rec.Trigger, b.Trigger)
				}
				got = append(got, b.Trigger+"/"+rec.ID.Hex())
				if w := b.refs[2*i]; (w < 0) != (rec.WebhookID == "") || w >= 0 && b.WebhookIDs[w] != rec.WebhookID {
					t.Fatalf("round %d: record %d refers to webhook-id %d for %q", round, i, w, rec.WebhookID)
				}
				if d := b.refs[2*i+1]; (d < 0) != (len(rec.DocumentKey) == 0) || d >= 0 && !bytes.Equal(b.DocumentKeys[d], rec.DocumentKey) {
					t.Fatalf("round %d: record %d refers to document key %d", round, i, d)
				}
				if rec.WebhookID != "" {
					seenW[rec.WebhookID] = true
				}
				if len(rec.DocumentKey) > 0 {
					seenD[string(rec.DocumentKey)] = true
				}
			}
			if len(seenW) != len(b.WebhookIDs) || len(seenD) != len(b.DocumentKeys) {
				t.Fatalf("round %d: %d webhook-ids and %d document keys listed, %d and %d distinct", round,
					len(b.WebhookIDs), len(b.DocumentKeys), len(seenW), len(seenD))
			}
		}
		// Buckets of one trigger follow each other; the reference cuts
		// nothing, so compare the concatenation.
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("round %d: order differs", round)
		}
	}
}

// sortStable sorts records by (At in milliseconds, ID), stably.
func sortStable(recs []AttemptRecord) {
	for i := 1; i < len(recs); i++ {
		for j := i; j > 0; j-- {
			a, b := recs[j-1], recs[j]
			if msOf(a.At) < msOf(b.At) || msOf(a.At) == msOf(b.At) && bytes.Compare(a.ID[:], b.ID[:]) <= 0 {
				break
			}
			recs[j-1], recs[j] = b, a
		}
	}
}

// TestRecordsCorrupt: records data cut short, with a byte changed, of an
// unknown version or binary subtype, or naming a webhook-id the bucket does
// not list, is an error naming the bucket, never a panic.
func TestRecordsCorrupt(t *testing.T) {
	b := newBucket(bson.NewObjectID(), "orders", recordCases(t)["mixed"], nil)
	raw, err := b.MarshalBSON()
	if err != nil {
		t.Fatal(err)
	}
	_, data2, _ := bson.Raw(raw).Lookup("records").BinaryOK()
	data1 := b.appendRecords(nil, recordsVersion1)
	withRecords := func(sub byte, data []byte) []byte {
		d, err := bson.Marshal(bson.D{{Key: "_id", Value: b.ID}, {Key: "webhookIds", Value: b.WebhookIDs}, {Key: "documentKeys", Value: b.DocumentKeys},
			{Key: "records", Value: bson.Binary{Subtype: sub, Data: data}}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	expectErr := func(what string, doc []byte) {
		t.Helper()
		var got attemptBucket
		err := bson.Unmarshal(doc, &got)
		if err == nil || !strings.Contains(err.Error(), b.ID.Hex()) {
			t.Fatalf("%s: %v, want an error naming bucket %s", what, err, b.ID.Hex())
		}
	}
	for v, data := range map[string][]byte{"format 1": data1, "format 2": data2} {
		for n := 1; n < len(data); n++ {
			expectErr(fmt.Sprint(v, " cut to ", n, " bytes"), withRecords(recordsSubtypeV1, data[:n]))
		}
		expectErr(v+" trailing byte", withRecords(recordsSubtypeV1, append(bytes.Clone(data), 0)))
		expectErr(v+" as version 3", withRecords(recordsSubtypeV1, append([]byte{3}, data[1:]...)))
		expectErr(v+" subtype 0x81", withRecords(0x81, data))
		// Every single-byte change either decodes or is an error.
		for i := range data {
			for _, x := range []byte{0x01, 0x80, 0xFF} {
				d := bytes.Clone(data)
				d[i] ^= x
				var got attemptBucket
				if err := bson.Unmarshal(withRecords(recordsSubtypeV1, d), &got); err != nil && !strings.Contains(err.Error(), b.ID.Hex()) {
					t.Fatalf("%s byte %d ^ %#x: %v does not name the bucket", v, i, x, err)
				}
			}
		}
	}
	expectErr("format 0 of numbers", withRecords(recordsSubtypeV0, bsonArrayOf(t, int32(5))))
	expectErr("format 0 cut short", withRecords(recordsSubtypeV0, bsonArrayOf(t, int32(5))[:7]))
	huge := binary.AppendUvarint([]byte{recordsVersion1}, 1<<40)
	expectErr("a huge count", withRecords(recordsSubtypeV1, huge))
	huge = binary.AppendUvarint(binary.AppendVarint(binary.AppendUvarint([]byte{recordsVersion2}, 1), 0), 1<<40)
	expectErr("a huge list", withRecords(recordsSubtypeV1, huge))
	// Format 2 list entries of an unknown form, empty, or a document key
	// that is not a document.
	list := func(entries ...byte) []byte {
		return append(binary.AppendVarint(binary.AppendUvarint([]byte{recordsVersion2}, 0), 0), entries...)
	}
	expectErr("a webhook-id of form 2", withRecords(recordsSubtypeV1, list(1, 2, 'a', 0)))
	expectErr("an empty webhook-id", withRecords(recordsSubtypeV1, list(1, 0, 0, 0)))
	expectErr("a document key of form 2", withRecords(recordsSubtypeV1, list(0, 1, 2, 1)))
	expectErr("a document key that is not a document", withRecords(recordsSubtypeV1, list(0, 1, 0, 5, 5, 0, 0, 0, 1)))
	expectErr("a document key as a delta of none", withRecords(recordsSubtypeV1, list(0, 1, 2, 2)))
	expectErr("a document key's counter out of range", withRecords(recordsSubtypeV1,
		append(list(0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2), binary.AppendVarint(nil, -2)...)))
	if _, _, _, err := decodeRecords(list(0, 0), nil, nil); err != nil {
		t.Fatalf("empty format 2 data: %v", err)
	}
	data := data1
	// A bucket without webhook-ids whose records name one.
	d, err := bson.Marshal(bson.D{{Key: "_id", Value: b.ID}, {Key: "records", Value: bson.Binary{Subtype: recordsSubtypeV1, Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	expectErr("no webhook-ids", d)
	// A projection without the records decodes to a bucket without them.
	var head attemptBucket
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	proj, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "n", Value: 3}, {Key: "last", Value: at}})
	if err := bson.Unmarshal(proj, &head); err != nil || head.N != 3 || !head.Last.Equal(at) || head.Records != nil {
		t.Fatalf("projected bucket %+v, %v", head, err)
	}
}

// FuzzDecodeRecords: format 1 data never panics the decoder; what decodes
// encodes to data that decodes to the same records and encodes to the same
// bytes again.
func FuzzDecodeRecords(f *testing.F) {
	for _, recs := range recordCases(f) {
		b := newBucket(bson.NewObjectID(), "t", recs, nil)
		f.Add(b.appendRecords(nil, recordsVersion1), uint8(len(b.WebhookIDs)), uint8(len(b.DocumentKeys)))
		f.Add(b.appendRecords(nil, recordsVersion2), uint8(0), uint8(0))
	}
	b := newBucket(bson.NewObjectID(), "t", randomRecords(rand.New(rand.NewPCG(5, 6)), 40), nil)
	f.Add(b.appendRecords(nil, recordsVersion1), uint8(len(b.WebhookIDs)), uint8(len(b.DocumentKeys)))
	f.Add(b.appendRecords(nil, recordsVersion2), uint8(0), uint8(0))
	var ws []string
	var ds []bson.Raw
	for i := range 256 {
		ws = append(ws, fmt.Sprint("w", i))
		k, _ := bson.Marshal(bson.D{{Key: "_id", Value: i}})
		ds = append(ds, k)
	}
	f.Fuzz(func(t *testing.T, data []byte, nw, nd uint8) {
		recs, _, _, err := decodeRecords(data, ws[:nw], ds[:nd])
		if err != nil {
			return
		}
		version := data[0]
		b := newBucket(bson.NewObjectID(), "t", recs, nil)
		enc := b.appendRecords(nil, version)
		again, _, _, err := decodeRecords(enc, b.WebhookIDs, b.DocumentKeys)
		if err != nil {
			t.Fatalf("re-encoded records do not decode: %v", err)
		}
		b2 := newBucket(b.ID, "t", again, nil)
		if enc2 := b2.appendRecords(nil, version); !bytes.Equal(enc, enc2) {
			t.Fatalf("records encode differently after a round trip:\n%x\n%x", enc, enc2)
		}
	})
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

// BenchmarkBucketEncoding compares the bucket encoder (format 1) with the
// earlier one (format 0) and the driver's, and the decoders, for a writer
// batch of 256 delivery records.
func BenchmarkBucketEncoding(b *testing.B) {
	at := time.Now()
	recs := make([]AttemptRecord, 256)
	for i := range recs {
		key, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}})
		recs[i] = AttemptRecord{ID: bson.NewObjectID(), Kind: KindDelivery, WebhookID: fmt.Sprintf("msg_%024x", i), DocumentKey: key,
			Operation: "insert", Attempt: 1, Status: 204, LatencyMS: 1.25, StartedAt: at, At: at.Add(time.Duration(i) * time.Microsecond)}
	}
	bk := newBucket(bson.NewObjectID(), "orders", recs, nil)
	v1, _ := bk.MarshalBSON()
	v0, _ := appendBucketV0(nil, &bk)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bk.MarshalBSON(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(v1)), "bytes/bucket")
	})
	b.Run("hand-v0", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendBucketV0(nil, &bk); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(v0)), "bytes/bucket")
	})
	b.Run("driver", func(b *testing.B) {
		db := driverDecoded(b, &bk)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bson.Marshal(db); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bucketsOf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bucketsOf(recs, func(*AttemptRecord) bson.ObjectID { return bson.ObjectID{} })
		}
	})
	for name, raw := range map[string][]byte{"decode": v1, "decode-v0": v0} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var got attemptBucket
				if err := bson.Unmarshal(raw, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodeStoredMatchesDriver: the direct reading of a bucket's
// top-level fields gives what the driver's reflection decoder gives, for
// buckets as written (format 2) and as earlier versions wrote them (formats
// 1 and 0), projections, and documents with
// other types (which it leaves to the driver).
func TestDecodeStoredMatchesDriver(t *testing.T) {
	var docs [][]byte
	for _, recs := range recordCases(t) {
		b := newBucket(bson.NewObjectID(), "orders", recs, nil)
		raw, err := b.MarshalBSON()
		if err != nil {
			t.Fatal(err)
		}
		old, err := appendBucketV0(nil, &b)
		if err != nil {
			t.Fatal(err)
		}
		v1, err := appendBucketV1(nil, &b)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, raw, old, v1)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 10 {
		for _, b := range bucketsOf(randomRecords(r, 600), func(*AttemptRecord) bson.ObjectID { return bson.NewObjectID() }) {
			raw, err := b.MarshalBSON()
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, raw)
		}
	}
	written := len(docs) // read directly, all of them
	at := time.Date(2026, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	for _, d := range []bson.D{
		{{Key: "_id", Value: bson.NewObjectID()}, {Key: "n", Value: int64(3)}, {Key: "last", Value: at}},
		{{Key: "_id", Value: bson.NewObjectID()}, {Key: "n", Value: 3.0}, {Key: "first", Value: nil}, {Key: "extra", Value: "x"}},
		{{Key: "_id", Value: bson.NewObjectID()}, {Key: "webhookIds", Value: bson.A{}}, {Key: "documentKeys", Value: bson.A{}}},
		{{Key: "_id", Value: bson.NewObjectID()}, {Key: "keys", Value: bson.Binary{Subtype: 0x80, Data: appendSummary(nil, []uint64{1, 2})}}},
		{{Key: "trigger", Value: "t"}, {Key: "failed", Value: true}, {Key: "first", Value: time.Unix(-1, 0)}},
	} {
		raw, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, raw)
	}
	for i, raw := range docs {
		var fast attemptBucket
		if err := fast.UnmarshalBSON(raw); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var sb storedBucket
		if err := bson.Unmarshal(raw, &sb); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		fsb, ok := decodeStored(raw)
		if ok && !reflect.DeepEqual(fsb, sb) {
			t.Fatalf("document %d: read directly\n%+v\nby the driver\n%+v", i, fsb, sb)
		}
		if !ok && i < written {
			t.Fatalf("document %d, written by MarshalBSON or format 0, is not read directly", i)
		}
		want := driverBucket{ID: sb.ID, Trigger: sb.Trigger, First: sb.First, Last: sb.Last, N: sb.N, Failed: sb.Failed,
			WebhookIDs: sb.WebhookIDs, DocumentKeys: sb.DocumentKeys}
		if len(sb.Records.Data) > 0 {
			var err error
			if sb.Records.Subtype == recordsSubtypeV1 {
				want.Records, want.WebhookIDs, want.DocumentKeys, err = decodeRecords(sb.Records.Data, sb.WebhookIDs, sb.DocumentKeys)
			} else {
				want.Records, err = decodeRecordsV0(sb.Records.Data)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if diff := sameBucket(&fast, want); diff != "" {
			t.Fatalf("document %d: %s", i, diff)
		}
	}
}
