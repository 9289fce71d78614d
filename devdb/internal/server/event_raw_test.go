package server

import (
	"bytes"
	"fmt"
	"math"
	"strings"
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

// rawEventModes are the image options of the differential tests: every
// fullDocument and fullDocumentBeforeChange mode, with and without
// showExpandedEvents.
func rawEventModes(lookup func(*storage.OplogEntry) (bson.D, error)) []csImages {
	var out []csImages
	for _, fd := range []string{fdDefault, fdUpdateLookup, fdWhenAvailable, fdRequired} {
		for _, fdb := range []string{fdOff, "", fdWhenAvailable, fdRequired} {
			for _, expanded := range []bool{false, true} {
				out = append(out, csImages{fullDocument: fd, fullDocumentBeforeChange: fdb, expanded: expanded, lookup: lookup})
			}
		}
	}
	return out
}

// checkRawEvent compares buildEventRaw with the decoding path for one entry
// and stream: the same bytes and token, or (when buildEventRaw refuses) an
// error on the decoding path (a required image missing).
func checkRawEvent(t *testing.T, name string, ent *storage.OplogEntry, im csImages) {
	t.Helper()
	r := rawEntry(t, ent)
	if !rawEventOK(r, im) {
		t.Fatalf("%s: not rawEventOK", name)
	}
	got, gotTok, ok := buildEventRaw(r, im)
	want, wantTok, err := decodedEvent(r, im)
	if !ok {
		if err == nil {
			t.Errorf("%s: buildEventRaw refused, decoding path gave %v", name, bson.Raw(want))
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: decoding path failed (%v), buildEventRaw gave %v", name, err, bson.Raw(got))
	}
	if gotTok != wantTok {
		t.Errorf("%s: token %+v, want %+v", name, gotTok, wantTok)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: event\n got %v\nwant %v", name, bson.Raw(got), bson.Raw(want))
		return
	}
	// A $match-only pipeline sees the decoded encoded event: it must be the
	// document buildEvent returns.
	dec, _ := r.Decode()
	ev, _ := buildEvent(dec, wantTok, im)
	if d, ok := decodeEventD(got); ok && fmt.Sprintf("%#v", d) != fmt.Sprintf("%#v", ev) {
		t.Errorf("%s: decoded event\n got %#v\nwant %#v", name, d, ev)
	}
}

// TestBuildEventRawMatches checks that buildEventRaw produces exactly the
// bytes of the decoding path (bson.Marshal of buildEvent) and its token, for
// inserts, replaces and deletes in every image mode.
func TestBuildEventRawMatches(t *testing.T) {
	current := bson.D{{Key: "_id", Value: int32(7)}, {Key: "now", Value: "current"}}
	lookups := map[string]func(*storage.OplogEntry) (bson.D, error){
		"found":   func(*storage.OplogEntry) (bson.D, error) { return current, nil },
		"missing": func(*storage.OplogEntry) (bson.D, error) { return nil, nil },
	}
	rawLookups := map[string]func(*storage.OplogEntry) (bson.Raw, error){
		"found":   func(*storage.OplogEntry) (bson.Raw, error) { return bson.Marshal(current) },
		"missing": func(*storage.OplogEntry) (bson.Raw, error) { return nil, nil },
	}
	for i, ent := range rawEventCases() {
		for ln, lookup := range lookups {
			for _, im := range rawEventModes(lookup) {
				checkRawEvent(t, fmt.Sprintf("%d/%s/%s/%+v", i, ent.Op, ln, im), ent, im)
				// The same document found by the raw lookup.
				im.lookupRaw = rawLookups[ln]
				checkRawEvent(t, fmt.Sprintf("%d/%s/%s/raw/%+v", i, ent.Op, ln, im), ent, im)
			}
		}
	}
	// A transaction's write: the decoding path.
	ent := rawEventCases()[0]
	ent.LSID = bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	ent.TxnNumber = 3
	if rawEventOK(rawEntry(t, ent), csImages{}) {
		t.Error("a transaction's write took the raw path")
	}
}

// TestBuildEventRawOneAllocation checks that buildEventRaw sizes an
// insert's, replace's or delete's event right the first time: one
// allocation, never a second to grow it (eventFixedSize), whatever the
// image options, for namespaces of the longest names too.
func TestBuildEventRawOneAllocation(t *testing.T) {
	for i, ent := range rawEventCases() {
		if ent.Op == opUpdate {
			continue
		}
		for _, ns := range [][2]string{{ent.DB, ent.Coll}, {strings.Repeat("d", 63), strings.Repeat("c", 200)}} {
			ent := *ent
			ent.DB, ent.Coll = ns[0], ns[1]
			r := rawEntry(t, &ent)
			for _, im := range rawEventModes(nil) {
				if _, _, ok := buildEventRaw(r, im); !ok {
					continue // a required image is missing
				}
				if n := testing.AllocsPerRun(5, func() { buildEventRaw(r, im) }); n != 1 {
					t.Errorf("%d/%s/%s.%s/%+v: %v allocations, want 1", i, ent.Op, ent.DB[:1], ent.Coll[:1], im, n)
				}
			}
		}
	}
}

// updateDiffCases are pre- and post-images of updates: nested fields,
// arrays grown, shrunk and changed in place, removed and re-ordered fields,
// type changes, numeric and dotted field names, duplicate names.
func updateDiffCases() [][2]bson.D {
	d := func(kv ...any) bson.D {
		out := bson.D{}
		for i := 0; i < len(kv); i += 2 {
			out = append(out, bson.E{Key: kv[i].(string), Value: kv[i+1]})
		}
		return out
	}
	a := func(v ...any) bson.A { return append(bson.A{}, v...) }
	id := bson.E{Key: "_id", Value: int32(7)}
	with := func(rest bson.D) bson.D { return append(bson.D{id}, rest...) }
	cases := [][2]bson.D{
		{with(d("a", int32(1))), with(d("a", int32(2)))},
		{with(d("a", int32(1))), with(d("a", int64(1)))},
		{with(d("a", 1.0)), with(d("a", math.Copysign(0, -1)))},
		{with(d("a", 0.0)), with(d("a", math.Copysign(0, -1)))},
		{with(d("a", math.NaN())), with(d("a", math.NaN()))},
		{with(d("a", int32(1), "b", "x")), with(d("a", int32(1)))},
		{with(d("a", int32(1), "b", "x", "c", true)), with(d("c", true, "a", int32(1)))},
		{with(d("a", int32(1))), with(d("a", int32(1), "n", d("x", a(int32(1), int32(2)))))},
		{with(d("n", d("x", int32(1), "y", d("z", "deep")))), with(d("n", d("x", int32(2), "y", d("z", "deeper", "w", nil))))},
		{with(d("n", d("x", int32(1), "y", int32(2)))), with(d("n", d("y", int32(2))))},
		{with(d("arr", a(int32(1), int32(2), int32(3)))), with(d("arr", a(int32(1), int32(9))))},
		{with(d("arr", a(int32(1), int32(2)))), with(d("arr", a(int32(1), int32(2), int32(3), "four")))},
		{with(d("arr", a(d("k", int32(1)), d("k", int32(2))))), with(d("arr", a(d("k", int32(1)), d("k", int32(3), "l", a()))))},
		{with(d("arr", a(a(int32(1), int32(2)), a()))), with(d("arr", a(a(int32(1)), a(int32(5)))))},
		{with(d("arr", a(int32(1)))), with(d("arr", d("0", int32(1))))},
		{with(d("arr", a(int32(1), int32(2)))), with(d("arr", a()))},
		{with(d("0", int32(1), "a.b", d("1", "x", "c.d", int32(2)))), with(d("0", int32(2), "a.b", d("1", "y", "c.d", int32(3))))},
		{with(d("12", a(int32(1), int32(2)), "x", int32(1))), with(d("12", a(int32(5))))},
		{with(d("d", int32(1), "d", int32(2), "e", int32(3))), with(d("e", int32(3), "d", int32(4)))},
		{with(d("b", int32(1), "a", int32(2), "c", int32(3), "b", int32(4))), with(d("c", int32(3), "z", int32(0)))},
		{with(d("x", "é", "bin", bson.Binary{Subtype: 2, Data: []byte{1}}, "re", bson.Regex{Pattern: "a", Options: "i"})),
			with(d("x", "è", "bin", bson.Binary{Subtype: 2, Data: []byte{2}}, "re", bson.Regex{Pattern: "a", Options: "m"}))},
		{with(d("dec", bson.NewDecimal128(1, 2), "ts", bson.Timestamp{T: 1, I: 2}, "u", bson.Undefined{})),
			with(d("dec", bson.NewDecimal128(1, 3), "ts", bson.Timestamp{T: 1, I: 3}, "u", nil))},
		{with(d("cws", bson.CodeWithScope{Code: "f", Scope: d("v", int32(1))})), with(d("cws", bson.CodeWithScope{Code: "f", Scope: d("v", int32(2))}))},
		{with(d("same", d("x", a(int32(1))))), with(d("same", d("x", a(int32(1)))))},
		{with(nil), with(d("a", int32(1)))},
		{with(d("a", int32(1))), with(nil)},
		{nil, with(d("a", int32(1)))},
		{with(d("a", int32(1))), nil},
	}
	// A wide document and a long array (indexes of two digits and more).
	wide, wide2 := bson.D{id}, bson.D{id}
	long, long2 := bson.A{}, bson.A{}
	for i := 0; i < 120; i++ {
		wide = append(wide, bson.E{Key: fmt.Sprintf("f%03d", i), Value: int32(i)})
		wide2 = append(wide2, bson.E{Key: fmt.Sprintf("f%03d", i), Value: int32(i + i%7)})
		long = append(long, int32(i))
		if i%13 != 0 {
			long2 = append(long2, int32(i*2))
		}
	}
	cases = append(cases, [2]bson.D{wide, wide2}, [2]bson.D{with(d("l", long)), with(d("l", long2))}, [2]bson.D{with(d("l", long2)), with(d("l", long))})
	return cases
}

// TestBuildEventRawUpdateMatches checks update events built from the
// encoded entry against the decoding path (updateDescription from
// diffDocuments), for every image mode, with and without stored images.
func TestBuildEventRawUpdateMatches(t *testing.T) {
	uuid := bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}
	wall := time.Date(2026, 11, 22, 0, 0, 0, 123e6, time.UTC)
	lookup := func(ent *storage.OplogEntry) (bson.D, error) {
		return bson.D{{Key: "_id", Value: ent.DocumentKey[0].Value}, {Key: "looked", Value: "up"}}, nil
	}
	for i, c := range updateDiffCases() {
		for _, images := range []bool{false, true} {
			ent := &storage.OplogEntry{TS: bson.Timestamp{T: 1763769600, I: 3}, Wall: wall, Op: opUpdate, DB: "db", Coll: "c", UUID: uuid,
				DocumentKey: bson.D{{Key: "_id", Value: int32(7)}}, Pre: c[0], Doc: c[1], Images: images}
			for _, im := range rawEventModes(lookup) {
				checkRawEvent(t, fmt.Sprintf("%d/images=%v/%+v", i, images, im), ent, im)
				im.lookupRaw = func(ent *storage.OplogEntry) (bson.Raw, error) {
					d, _ := lookup(ent)
					return bson.Marshal(d)
				}
				checkRawEvent(t, fmt.Sprintf("%d/images=%v/raw/%+v", i, images, im), ent, im)
			}
		}
	}
}

// TestDiffRawMatches checks appendUpdateDescription against
// diffDocuments(...).doc on the update cases.
func TestDiffRawMatches(t *testing.T) {
	for i, c := range updateDiffCases() {
		var pre, post []byte
		var err error
		if c[0] != nil {
			if pre, err = bson.Marshal(c[0]); err != nil {
				t.Fatal(err)
			}
		}
		if c[1] != nil {
			if post, err = bson.Marshal(c[1]); err != nil {
				t.Fatal(err)
			}
		}
		got, ok := appendUpdateDescription(nil, pre, post)
		if !ok {
			t.Fatalf("case %d: refused", i)
		}
		// The decoding path diffs the images decoded from the entry.
		var dpre, dpost bson.D
		if pre != nil {
			if err := bson.Unmarshal(pre, &dpre); err != nil {
				t.Fatal(err)
			}
		}
		if post != nil {
			if err := bson.Unmarshal(post, &dpost); err != nil {
				t.Fatal(err)
			}
		}
		want, err := bson.Marshal(diffDocuments(dpre, dpost).doc())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %v\nwant %v", i, bson.Raw(got), bson.Raw(want))
		}
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

// BenchmarkChangeStreamBuildEvent compares building one insert and one
// update event from its encoded oplog entry: decode + buildEvent + Marshal
// (the decoding path) against buildEventRaw.
func BenchmarkChangeStreamBuildEvent(b *testing.B) {
	base := storage.OplogEntry{TS: bson.Timestamp{T: 1763769600, I: 3}, Wall: time.Now().UTC().Truncate(time.Millisecond),
		DB: "bench", Coll: "backlog", UUID: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")},
		DocumentKey: bson.D{{Key: "_id", Value: int32(42)}}}
	ins := base
	ins.Op = opInsert
	ins.Doc = bson.D{{Key: "_id", Value: int32(42)}, {Key: "name", Value: "item"}, {Key: "qty", Value: int32(42)}}
	upd := base
	upd.Op = opUpdate
	upd.Pre = bson.D{{Key: "_id", Value: int32(42)}, {Key: "name", Value: "item"}, {Key: "qty", Value: int32(42)},
		{Key: "tags", Value: bson.A{"a", "b"}}, {Key: "dims", Value: bson.D{{Key: "h", Value: 1.5}, {Key: "w", Value: 2.5}}}, {Key: "note", Value: "x"}}
	upd.Doc = bson.D{{Key: "_id", Value: int32(42)}, {Key: "name", Value: "item"}, {Key: "qty", Value: int32(43)},
		{Key: "tags", Value: bson.A{"a", "b", "c"}}, {Key: "dims", Value: bson.D{{Key: "h", Value: 3.0}, {Key: "w", Value: 2.5}}}}
	im := csImages{fullDocument: fdDefault, fullDocumentBeforeChange: fdOff}
	for _, ent := range []*storage.OplogEntry{&ins, &upd} {
		r := rawEntry(b, ent)
		b.Run(ent.Op+"/decode", func(b *testing.B) {
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
		b.Run(ent.Op+"/raw", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := buildEventRaw(r, im); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
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
