package server

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
)

// rawEntry encodes ent as appendOplog stores it.
func rawEntry(t testing.TB, ent *storage.OplogEntry) *storage.RawOplogEntry {
	t.Helper()
	raw, err := bson.Marshal(ent)
	if err != nil {
		t.Fatal(err)
	}
	return &storage.RawOplogEntry{TS: ent.TS, Op: ent.Op, DB: ent.DB, Coll: ent.Coll, ToDB: ent.ToDB, ToColl: ent.ToColl, Raw: raw}
}

// rawEventCases are entries covering the value types and optional fields.
func rawEventCases() []*storage.OplogEntry {
	uuid := bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}
	oid := bson.NewObjectIDFromTimestamp(time.Unix(1700000000, 0))
	rich := bson.D{
		{Key: "_id", Value: oid},
		{Key: "f", Value: math.Copysign(0, -1)},
		{Key: "nan", Value: math.NaN()},
		{Key: "s", Value: "héllo\x00x"},
		{Key: "d", Value: bson.D{{Key: "a", Value: bson.A{int32(1), int64(2), nil, bson.D{}}}}},
		{Key: "bin", Value: bson.Binary{Subtype: 2, Data: []byte{1, 2, 3}}},
		{Key: "bin0", Value: bson.Binary{Data: []byte{}}},
		{Key: "u", Value: bson.Undefined{}},
		{Key: "b", Value: true},
		{Key: "dt", Value: bson.DateTime(-62135596800001)},
		{Key: "re", Value: bson.Regex{Pattern: "a.*", Options: "i"}},
		{Key: "dbp", Value: bson.DBPointer{DB: "x.y", Pointer: oid}},
		{Key: "js", Value: bson.JavaScript("f()")},
		{Key: "sym", Value: bson.Symbol("sym")},
		{Key: "cws", Value: bson.CodeWithScope{Code: "g()", Scope: bson.D{{Key: "v", Value: int32(1)}}}},
		{Key: "ts", Value: bson.Timestamp{T: 5, I: 6}},
		{Key: "dec", Value: bson.NewDecimal128(1, 2)},
		{Key: "min", Value: bson.MinKey{}},
		{Key: "max", Value: bson.MaxKey{}},
		{Key: "dup", Value: int32(1)},
		{Key: "dup", Value: "2"},
	}
	wall := time.Date(2026, 11, 22, 0, 0, 0, 123e6, time.UTC)
	var out []*storage.OplogEntry
	for _, op := range []string{opInsert, opReplace, opDelete} {
		for _, u := range []bson.Binary{uuid, {}, {Subtype: 3, Data: []byte{9, 9}}} {
			for _, doc := range []bson.D{rich, {{Key: "_id", Value: int32(7)}}, nil} {
				for _, coll := range []string{"c", ""} {
					ent := &storage.OplogEntry{TS: bson.Timestamp{T: 1763769600, I: 3}, Wall: wall, Op: op, DB: "db", Coll: coll, UUID: u}
					if doc != nil {
						ent.DocumentKey = bson.D{{Key: "_id", Value: doc[0].Value}}
					}
					if op != opDelete {
						ent.Doc = doc
					}
					if op != opInsert {
						ent.Pre, ent.Images = rich, true
					}
					out = append(out, ent)
				}
			}
		}
	}
	return out
}

// TestBuildEventRawMatches checks that buildEventRaw produces exactly the
// bytes of the decoding path: bson.Marshal of buildEvent, and its token.
func TestBuildEventRawMatches(t *testing.T) {
	for i, ent := range rawEventCases() {
		for _, im := range []csImages{
			{fullDocument: fdDefault, fullDocumentBeforeChange: fdOff},
			{fullDocument: fdDefault, fullDocumentBeforeChange: fdOff, expanded: true},
			{fullDocument: fdUpdateLookup, fullDocumentBeforeChange: ""},
		} {
			name := fmt.Sprintf("%d/%s/%+v", i, ent.Op, im.expanded)
			r := rawEntry(t, ent)
			if !rawEventOK(r, im) {
				t.Fatalf("%s: not rawEventOK", name)
			}
			got, gotTok, ok := buildEventRaw(r, im)
			if !ok {
				t.Fatalf("%s: buildEventRaw refused", name)
			}
			dec, err := r.Decode()
			if err != nil {
				t.Fatal(err)
			}
			wantTok := eventTokenFor(dec)
			ev, err := buildEvent(dec, wantTok, im)
			if err != nil {
				t.Fatal(err)
			}
			want, err := bson.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if gotTok != wantTok {
				t.Errorf("%s: token %+v, want %+v", name, gotTok, wantTok)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: event\n got %v\nwant %v", name, bson.Raw(got), bson.Raw(want))
			}
			// A $match-only pipeline sees the decoded encoded event: it must
			// be the document buildEvent returns.
			if d, ok := decodeEventD(got); ok && fmt.Sprintf("%#v", d) != fmt.Sprintf("%#v", ev) {
				t.Errorf("%s: decoded event\n got %#v\nwant %#v", name, d, ev)
			}
		}
	}
	// Pre-images requested: the decoding path.
	r := rawEntry(t, rawEventCases()[len(rawEventCases())-1])
	if rawEventOK(r, csImages{fullDocumentBeforeChange: fdWhenAvailable}) {
		t.Error("delete with fullDocumentBeforeChange whenAvailable took the raw path")
	}
}

// TestResumeTokenString checks the hex encoder against fmt's %X.
func TestResumeTokenString(t *testing.T) {
	for _, tok := range []resumeToken{
		highWaterMark(bson.Timestamp{T: 1, I: 2}),
		{ClusterTime: bson.Timestamp{T: math.MaxUint32, I: 0xABCDEF01}, HasUUID: true, UUID: [16]byte{0xFF, 0x0A, 1}, EventHash: 0xDEADBEEF, FromInvalidate: true},
	} {
		if got, want := tok.String(), fmt.Sprintf("%X", tok.bytes()); got != want {
			t.Errorf("String() = %s, want %s", got, want)
		}
		b := appendTokenString(nil, tok)
		if got := string(b[4 : len(b)-1]); got != tok.String() {
			t.Errorf("appendTokenString = %s, want %s", got, tok.String())
		}
	}
}

// BenchmarkChangeStreamBuildEvent compares building one insert event from
// its encoded oplog entry: decode + buildEvent + Marshal (the decoding path)
// against buildEventRaw.
func BenchmarkChangeStreamBuildEvent(b *testing.B) {
	ent := &storage.OplogEntry{TS: bson.Timestamp{T: 1763769600, I: 3}, Wall: time.Now().UTC().Truncate(time.Millisecond),
		Op: opInsert, DB: "bench", Coll: "backlog", UUID: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")},
		DocumentKey: bson.D{{Key: "_id", Value: int32(42)}},
		Doc:         bson.D{{Key: "_id", Value: int32(42)}, {Key: "name", Value: "item"}, {Key: "qty", Value: int32(42)}}}
	r := rawEntry(b, ent)
	im := csImages{fullDocument: fdDefault, fullDocumentBeforeChange: fdOff}
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dec, err := r.Decode()
			if err != nil {
				b.Fatal(err)
			}
			tok := eventTokenFor(dec)
			ev, err := buildEvent(dec, tok, im)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := bson.Marshal(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := buildEventRaw(r, im); !ok {
				b.Fatal("refused")
			}
		}
	})
}

// TestDecodeEventDMatches checks decodeEventD against bson.Unmarshal: the
// same values for the types it handles, and a refusal for the others.
func TestDecodeEventDMatches(t *testing.T) {
	oid := bson.NewObjectIDFromTimestamp(time.Unix(1700000000, 0))
	common := bson.D{
		{Key: "_id", Value: oid},
		{Key: "f", Value: math.Copysign(0, -1)},
		{Key: "nan", Value: math.NaN()},
		{Key: "inf", Value: math.Inf(-1)},
		{Key: "s", Value: "héllo\x00x"},
		{Key: "e", Value: ""},
		{Key: "d", Value: bson.D{{Key: "a", Value: bson.A{int32(1), int64(2), nil, bson.D{}, bson.A{}}}}},
		{Key: "empty", Value: bson.D{}},
		{Key: "emptyA", Value: bson.A{}},
		{Key: "bin", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}},
		{Key: "bin0", Value: bson.Binary{Data: []byte{}}},
		{Key: "binU", Value: bson.Binary{Subtype: 0x80, Data: []byte{1}}},
		{Key: "b", Value: true},
		{Key: "bf", Value: false},
		{Key: "dt", Value: bson.DateTime(-62135596800001)},
		{Key: "ts", Value: bson.Timestamp{T: 5, I: 6}},
		{Key: "dec", Value: bson.NewDecimal128(1, 2)},
		{Key: "i64", Value: int64(-1 << 62)},
		{Key: "dup", Value: int32(1)},
		{Key: "dup", Value: "2"},
		{Key: "", Value: "empty key"},
	}
	docs := []bson.D{common, {}, {{Key: "x", Value: bson.A{common}}}}
	for _, ent := range rawEventCases() {
		raw, _, ok := buildEventRaw(rawEntry(t, ent), csImages{expanded: true})
		if !ok {
			t.Fatal("buildEventRaw refused")
		}
		var d bson.D
		if err := bson.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	for i, doc := range docs {
		raw, err := bson.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		var want bson.D
		if err := bson.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		got, ok := decodeEventD(raw)
		if !ok {
			if i < 3 {
				t.Errorf("doc %d: refused", i)
			}
			continue
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Errorf("doc %d:\n got %#v\nwant %#v", i, got, want)
		}
		again, err := bson.Marshal(got)
		if err != nil || !bytes.Equal(again, raw) {
			t.Errorf("doc %d: re-encoded differs", i)
		}
	}
	for _, v := range []any{
		bson.Binary{Subtype: 2, Data: []byte{1, 2}}, bson.Undefined{}, bson.Regex{Pattern: "a"},
		bson.DBPointer{DB: "a", Pointer: oid}, bson.JavaScript("f"), bson.Symbol("s"),
		bson.CodeWithScope{Code: "g", Scope: bson.D{}}, bson.MinKey{}, bson.MaxKey{},
	} {
		raw, err := bson.Marshal(bson.D{{Key: "a", Value: bson.A{v}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := decodeEventD(raw); ok {
			t.Errorf("%T: decoded, want refused", v)
		}
	}
}
