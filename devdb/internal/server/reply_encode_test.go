package server

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
)

// replyMismatches collects replies whose appendReply bytes differ from
// bson.Marshal's, seen by any test of the package (TestMain fails the run
// when there are some).
var replyMismatches struct {
	sync.Mutex
	list []string
}

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		// Benchmarks measure the fast paths alone.
		os.Exit(m.Run())
	}
	// Every reply any test of the package sends (through the wire) is
	// checked against bson.Marshal: the differential test of appendReply
	// over all the commands the tests run.
	replyCheck = func(reply bson.D, got []byte) {
		want, err := bson.Marshal(reply)
		if err == nil && bytes.Equal(got, want) {
			return
		}
		replyMismatches.Lock()
		defer replyMismatches.Unlock()
		if len(replyMismatches.list) < 10 {
			replyMismatches.list = append(replyMismatches.list, fmt.Sprintf("reply %v: appendReply %x, bson.Marshal %x (err %v)", reply, got, want, err))
		}
	}
	// Every change event built from an encoded entry is compared with the
	// decoding path's: the differential test of buildEventRaw over all the
	// streams the tests open.
	rawEventCheck = func(r *storage.RawOplogEntry, im csImages, raw []byte, tok resumeToken) {
		want, wantTok, err := decodedEvent(r, im)
		if err == nil && bytes.Equal(raw, want) && tok == wantTok {
			return
		}
		replyMismatches.Lock()
		defer replyMismatches.Unlock()
		if len(replyMismatches.list) < 10 {
			replyMismatches.list = append(replyMismatches.list, fmt.Sprintf("raw event %v (token %+v), decoding path %v (token %+v, err %v)",
				bson.Raw(raw), tok, bson.Raw(want), wantTok, err))
		}
	}
	// Every event a $match-only pipeline decided on from some of its fields
	// is decided again on the whole event.
	matchCheck = func(p csPipeline, raw bson.Raw, keep bool) {
		var full bson.D
		err := bson.Unmarshal(raw, &full)
		want := false
		if err == nil {
			_, want, err = p.ApplyOne(full)
		}
		if err == nil && want == keep {
			return
		}
		replyMismatches.Lock()
		defer replyMismatches.Unlock()
		if len(replyMismatches.list) < 10 {
			replyMismatches.list = append(replyMismatches.list, fmt.Sprintf("$match on event %v: kept %v from its fields, %v from the whole event (err %v)", raw, keep, want, err))
		}
	}
	code := m.Run()
	replyMismatches.Lock()
	for _, s := range replyMismatches.list {
		fmt.Fprintln(os.Stderr, "fast path differs from the reference:", s)
		code = 1
	}
	replyMismatches.Unlock()
	os.Exit(code)
}

// decodedEvent builds the event of r on the decoding path: decode, buildEvent,
// bson.Marshal.
func decodedEvent(r *storage.RawOplogEntry, im csImages) ([]byte, resumeToken, error) {
	ent, err := r.Decode()
	if err != nil {
		return nil, resumeToken{}, err
	}
	tok := eventTokenFor(ent)
	ev, err := buildEvent(ent, tok, im)
	if err != nil {
		return nil, tok, err
	}
	raw, err := bson.Marshal(ev)
	return raw, tok, err
}

// TestAppendReplyMatchesMarshal checks appendReply against bson.Marshal on
// replies with every value type it encodes, and that it refuses (so that
// bson.Marshal is used) the values it does not.
func TestAppendReplyMatchesMarshal(t *testing.T) {
	ev1, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "82AB"}}}, {Key: "x", Value: int32(1)}})
	ev2, _ := bson.Marshal(bson.D{})
	var batch bson.A
	for i := 0; i < 123; i++ {
		batch = append(batch, bson.Raw(ev1))
	}
	ts := bson.Timestamp{T: 1763769600, I: 7}
	envelope := func(fields ...bson.E) bson.D {
		return append(bson.D(fields),
			bson.E{Key: "ok", Value: 1.0},
			bson.E{Key: "$clusterTime", Value: bson.D{{Key: "clusterTime", Value: ts}, {Key: "signature", Value: bson.D{
				{Key: "hash", Value: bson.Binary{Data: make([]byte, 20)}}, {Key: "keyId", Value: int64(0)}}}}},
			bson.E{Key: "operationTime", Value: ts})
	}
	ok := []bson.D{
		{},
		envelope(),
		envelope(bson.E{Key: "cursor", Value: bson.D{{Key: "nextBatch", Value: batch}, {Key: "postBatchResumeToken", Value: bson.D{{Key: "_data", Value: "8200"}}},
			{Key: "id", Value: int64(math.MaxInt64)}, {Key: "ns", Value: "db.coll"}}}),
		envelope(bson.E{Key: "cursor", Value: bson.D{{Key: "firstBatch", Value: bson.A{}}, {Key: "id", Value: int64(0)}, {Key: "ns", Value: "a.$cmd.aggregate"}}}),
		{{Key: "n", Value: int32(-3)}, {Key: "i", Value: 5}, {Key: "big", Value: math.MaxInt32 + 1}, {Key: "neg", Value: math.MinInt32 - 1},
			{Key: "minI", Value: math.MinInt32}, {Key: "f", Value: math.Copysign(0, -1)}, {Key: "nan", Value: math.NaN()}, {Key: "inf", Value: math.Inf(-1)},
			{Key: "t", Value: true}, {Key: "fa", Value: false}, {Key: "nil", Value: nil}, {Key: "s", Value: "héllo\x00x"}, {Key: "empty", Value: ""},
			{Key: "dt", Value: bson.NewDateTimeFromTime(time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC))}, {Key: "oid", Value: bson.NewObjectIDFromTimestamp(time.Unix(1700000000, 0))},
			{Key: "bin", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}}, {Key: "bin0", Value: bson.Binary{}},
			{Key: "raws", Value: bson.A{bson.Raw(ev2), bson.Raw(ev1), bson.A{nil, "x", bson.D{{Key: "", Value: int64(-1)}}}}},
			{Key: "dup", Value: int32(1)}, {Key: "dup", Value: "again"}, {Key: "", Value: bson.D{}}},
	}
	for i, d := range ok {
		got, enc := encodeReply(d)
		if !enc {
			t.Fatalf("case %d: appendReply refused %v", i, d)
		}
		want, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %x\nwant %x", i, got, want)
		}
	}
	refused := []bson.D{
		{{Key: "a\x00b", Value: int32(1)}},
		{{Key: "old", Value: bson.Binary{Subtype: 2, Data: []byte{1}}}},
		{{Key: "raw", Value: bson.Raw{5, 0, 0, 0, 1}}},
		{{Key: "raw", Value: bson.Raw{6, 0, 0, 0, 0}}},
		{{Key: "raw", Value: bson.Raw(nil)}},
		{{Key: "re", Value: bson.Regex{Pattern: "a", Options: "i"}}},
		{{Key: "dec", Value: bson.NewDecimal128(1, 2)}},
		{{Key: "strs", Value: []string{"a"}}},
		{{Key: "m", Value: bson.M{"a": int32(1)}}},
		{{Key: "deep", Value: bson.A{bson.D{{Key: "x", Value: uint8(1)}}}}},
	}
	for i, d := range refused {
		if _, enc := encodeReply(d); enc {
			t.Errorf("refused case %d: appendReply encoded %v", i, d)
		}
	}
}

// BenchmarkMarshalReplyBatch compares encoding a getMore reply with a
// batch of 1,000 events by appendReply and by bson.Marshal.
func BenchmarkMarshalReplyBatch(b *testing.B) {
	ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "8269275A00000000012B042C0100296E5A1004"}}},
		{Key: "operationType", Value: "insert"}, {Key: "fullDocument", Value: bson.D{{Key: "_id", Value: int32(1)}, {Key: "name", Value: "item"}}}})
	batch := make(bson.A, 1000)
	for i := range batch {
		batch[i] = bson.Raw(ev)
	}
	reply := bson.D{{Key: "cursor", Value: bson.D{{Key: "nextBatch", Value: batch}, {Key: "id", Value: int64(7)}, {Key: "ns", Value: "db.c"}}}, {Key: "ok", Value: 1.0}}
	b.Run("appendReply", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok := encodeReply(reply); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("bson.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := bson.Marshal(reply); err != nil {
				b.Fatal(err)
			}
		}
	})
}
