package dispatcher

import (
	"bytes"
	"encoding/binary"
	"github.com/changehook/changehook/triggers"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// extJSONCases are documents covering every BSON type and its edge values.
func extJSONCases(t testing.TB) map[string]bson.D {
	t.Helper()
	oid, err := bson.ObjectIDFromHex("5f1e2d3c4b5a69788796a5b4")
	if err != nil {
		t.Fatal(err)
	}
	dec := func(s string) bson.Decimal128 {
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			t.Fatalf("ParseDecimal128(%q): %v", s, err)
		}
		return d
	}
	ms := func(y int, mo time.Month, d, h, mi, s, milli int) bson.DateTime {
		return bson.DateTime(time.Date(y, mo, d, h, mi, s, milli*1e6, time.UTC).UnixMilli())
	}
	return map[string]bson.D{
		"empty": {},
		"doubles": {
			{Key: "zero", Value: 0.0}, {Key: "negzero", Value: math.Copysign(0, -1)},
			{Key: "one", Value: 1.0}, {Key: "neg", Value: -1.5}, {Key: "frac", Value: 0.1},
			{Key: "big", Value: 1e21}, {Key: "big2", Value: 1e20}, {Key: "huge", Value: 1.7976931348623157e308},
			{Key: "small", Value: 5e-324}, {Key: "tiny", Value: 1e-7}, {Key: "tiny2", Value: 1e-5},
			{Key: "int-ish", Value: 123456789.0}, {Key: "e15", Value: 1e15}, {Key: "e16", Value: 1e16},
			{Key: "pi", Value: math.Pi}, {Key: "third", Value: 1.0 / 3},
			{Key: "inf", Value: math.Inf(1)}, {Key: "-inf", Value: math.Inf(-1)}, {Key: "nan", Value: math.NaN()},
			{Key: "negnan", Value: math.Float64frombits(0xfff8000000000001)},
		},
		"strings": {
			{Key: "", Value: ""}, {Key: "plain", Value: "hello world"},
			{Key: "quotes", Value: `a"b\c/d`}, {Key: "ctl", Value: "\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f"},
			{Key: "html", Value: "<script>&amp;</script>"}, {Key: "seps", Value: "a\u2028b\u2029c\u2027\u202a"},
			{Key: "unicode", Value: "héllo wörld 日本語 🎉"}, {Key: "invalid", Value: "a\xffb\xc3(c\xed\xa0\x80d\xf4\x90\x80\x80"},
			{Key: "truncated", Value: "x\xe2\x82"}, {Key: "k\"e\\y\n<&>\u2028\xff", Value: "v"},
		},
		"nested": {
			{Key: "doc", Value: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: bson.D{}}}}}},
			{Key: "arr", Value: bson.A{}}, {Key: "arr2", Value: bson.A{int32(1), "two", bson.A{bson.D{}, bson.A{}}, nil}},
			{Key: "docs", Value: bson.A{bson.D{{Key: "x", Value: int32(1)}}, bson.D{{Key: "y", Value: int64(2)}}}},
			{Key: "dup", Value: int32(1)}, {Key: "dup", Value: int32(2)},
		},
		"keys": {
			{Key: "", Value: int32(0)}, {Key: "q\"uote", Value: int32(1)}, {Key: "back\\slash", Value: int32(2)},
			{Key: "nl\n\t\x01", Value: int32(3)}, {Key: "é日🎉", Value: int32(4)}, {Key: "bad\xff\xc3", Value: int32(5)},
			{Key: "ls\u2028ps\u2029", Value: int32(6)}, {Key: "<&>\x7f", Value: int32(7)},
			{Key: "a-key-longer-than-sixteen-bytes", Value: bson.D{{Key: "in\"ner", Value: "v"}}},
		},
		"binary": {
			{Key: "empty", Value: bson.Binary{Data: []byte{}}}, {Key: "generic", Value: bson.Binary{Data: []byte("hello")}},
			{Key: "func", Value: bson.Binary{Subtype: 1, Data: []byte{1, 2, 3}}},
			{Key: "old", Value: bson.Binary{Subtype: 2, Data: []byte{0xde, 0xad, 0xbe, 0xef, 0}}},
			{Key: "old-empty", Value: bson.Binary{Subtype: 2, Data: []byte{}}},
			{Key: "uuid", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{0xab}, 16)}},
			{Key: "md5", Value: bson.Binary{Subtype: 5, Data: bytes.Repeat([]byte{0x01}, 16)}},
			{Key: "vector", Value: bson.Binary{Subtype: 9, Data: []byte{0x03, 0x00, 1, 2}}},
			{Key: "user", Value: bson.Binary{Subtype: 0x80, Data: []byte{0xff, 0xfe}}},
			{Key: "user2", Value: bson.Binary{Subtype: 0xff, Data: []byte{0}}},
		},
		"scalars": {
			{Key: "undef", Value: bson.Undefined{}}, {Key: "oid", Value: oid}, {Key: "zero-oid", Value: bson.ObjectID{}},
			{Key: "t", Value: true}, {Key: "f", Value: false}, {Key: "null", Value: nil},
			{Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}},
		},
		"dates": {
			{Key: "epoch", Value: bson.DateTime(0)}, {Key: "ms", Value: ms(2026, 11, 21, 23, 59, 59, 123)},
			{Key: "ms-trailing-zero", Value: ms(2026, 1, 2, 3, 4, 5, 500)}, {Key: "ms-10", Value: ms(2026, 1, 2, 3, 4, 5, 10)},
			{Key: "before-epoch", Value: bson.DateTime(-1)}, {Key: "1969", Value: ms(1969, 12, 31, 23, 59, 59, 999)},
			{Key: "y9999", Value: ms(9999, 12, 31, 23, 59, 59, 999)}, {Key: "y10000", Value: ms(10000, 1, 1, 0, 0, 0, 0)},
			{Key: "max", Value: bson.DateTime(math.MaxInt64)}, {Key: "min", Value: bson.DateTime(math.MinInt64)},
			{Key: "year1", Value: ms(1, 1, 1, 0, 0, 0, 0)},
		},
		"regex": {
			{Key: "empty", Value: bson.Regex{}}, {Key: "simple", Value: bson.Regex{Pattern: "^a.*b$", Options: "xmi"}},
			{Key: "escapes", Value: bson.Regex{Pattern: `a"b\d<>&` + "\t\u2028\xff", Options: "usxmil"}},
			{Key: "unicode-options", Value: bson.Regex{Pattern: "p", Options: "zé\xffa日"}},
			{Key: "long-options", Value: bson.Regex{Pattern: "p", Options: "zyxwvutsrqponmlkjihgfedcba"}},
			{Key: "quote-options", Value: bson.Regex{Pattern: "p", Options: "\"\\\n"}},
		},
		"dbpointer": {
			{Key: "p", Value: bson.DBPointer{DB: "db.coll", Pointer: oid}},
			{Key: "raw-ns", Value: bson.DBPointer{DB: "we\"ird\\ns\n<&>", Pointer: oid}},
			{Key: "empty", Value: bson.DBPointer{}},
		},
		"code": {
			{Key: "js", Value: bson.JavaScript("function() { return \"x\" < 1; }")}, {Key: "empty-js", Value: bson.JavaScript("")},
			{Key: "sym", Value: bson.Symbol("sym\tbol")}, {Key: "empty-sym", Value: bson.Symbol("")},
			{Key: "cws", Value: bson.CodeWithScope{Code: "x + y", Scope: bson.D{{Key: "x", Value: int32(1)}, {Key: "y", Value: bson.D{{Key: "z", Value: "\n"}}}}}},
			{Key: "cws-empty", Value: bson.CodeWithScope{Code: "", Scope: bson.D{}}},
			{Key: "cws-nested", Value: bson.A{bson.CodeWithScope{Code: "a", Scope: bson.D{{Key: "c", Value: bson.CodeWithScope{Code: "b", Scope: bson.D{}}}}}}},
		},
		"ints": {
			{Key: "i32", Value: int32(7)}, {Key: "i32min", Value: int32(math.MinInt32)}, {Key: "i32max", Value: int32(math.MaxInt32)},
			{Key: "i32zero", Value: int32(0)}, {Key: "i64", Value: int64(7)}, {Key: "i64min", Value: int64(math.MinInt64)},
			{Key: "i64max", Value: int64(math.MaxInt64)}, {Key: "i64neg", Value: int64(-1)},
		},
		"timestamps": {
			{Key: "zero", Value: bson.Timestamp{}}, {Key: "ts", Value: bson.Timestamp{T: 1700000000, I: 42}},
			{Key: "max", Value: bson.Timestamp{T: math.MaxUint32, I: math.MaxUint32}},
		},
		"decimals": {
			{Key: "zero", Value: dec("0")}, {Key: "negzero", Value: dec("-0")}, {Key: "one", Value: dec("1.00")},
			{Key: "exp", Value: dec("1.23E+6144")}, {Key: "small", Value: dec("-1E-6176")}, {Key: "big", Value: dec("9999999999999999999999999999999999")},
			{Key: "inf", Value: dec("Infinity")}, {Key: "-inf", Value: dec("-Infinity")}, {Key: "nan", Value: dec("NaN")},
			{Key: "frac", Value: dec("0.000001")}, {Key: "frac2", Value: dec("0.0000001")},
		},
	}
}

// checkExtJSON asserts that raw encodes exactly as the driver encodes it (or
// fails when the driver fails), in both modes, and that the fast path never
// answers where the driver fails. fast reports whether the fast path took
// both modes.
func checkExtJSON(t testing.TB, raw []byte) (fast bool) {
	t.Helper()
	fast = true
	for _, canonical := range []bool{false, true} {
		want, werr := bson.MarshalExtJSON(bson.Raw(raw), canonical, false)
		direct, ok := appendExtJSON(nil, raw, canonical, false)
		if ok {
			if werr != nil {
				t.Fatalf("canonical=%v: encoder accepts %x, driver fails: %v", canonical, raw, werr)
			}
			if !bytes.Equal(direct, want) {
				t.Fatalf("canonical=%v: %x\n got: %s\nwant: %s", canonical, raw, direct, want)
			}
		} else {
			fast = false
		}
		got, gerr := marshalExtJSON(raw, canonical)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("canonical=%v: %x: error %v, driver %v", canonical, raw, gerr, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("canonical=%v: %x\n got: %s\nwant: %s", canonical, raw, got, want)
		}
	}
	return fast
}

// checkDocExtJSON asserts that marshalDocExtJSON(doc) is the driver's
// MarshalExtJSON(doc), in both modes.
func checkDocExtJSON(t testing.TB, doc bson.D) {
	t.Helper()
	for _, canonical := range []bool{false, true} {
		want, werr := bson.MarshalExtJSON(doc, canonical, false)
		got, gerr := marshalDocExtJSON(doc, canonical)
		if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("canonical=%v: %v\n got: %s (%v)\nwant: %s (%v)", canonical, doc, got, gerr, want, werr)
		}
	}
}

func TestExtJSONMatchesDriver(t *testing.T) {
	all := bson.D{}
	for name, doc := range extJSONCases(t) {
		t.Run(name, func(t *testing.T) {
			raw := mustMarshal(t, doc)
			if !checkExtJSON(t, raw) {
				t.Fatalf("well-formed document took the fallback: %x", raw)
			}
			checkDocExtJSON(t, doc)
			// The same values inside an array and a nested document.
			vals := bson.A{}
			for _, e := range doc {
				vals = append(vals, e.Value)
			}
			wrapped := bson.D{{Key: "arr", Value: vals}, {Key: "doc", Value: doc}}
			if !checkExtJSON(t, mustMarshal(t, wrapped)) {
				t.Fatal("well-formed wrapped document took the fallback")
			}
			checkDocExtJSON(t, wrapped)
		})
		all = append(all, bson.E{Key: name, Value: doc})
	}
	checkExtJSON(t, mustMarshal(t, all))
	checkExtJSON(t, testEvent(t, 7, "k1").Raw)
}

// TestExtJSONDocWriterRefuses covers bson.D values that the BSON writer
// refuses but the driver's JSON writer accepts.
func TestExtJSONDocWriterRefuses(t *testing.T) {
	for _, doc := range []bson.D{
		{{Key: "a\x00b", Value: int32(1)}},
		{{Key: "r", Value: bson.Regex{Pattern: "a\x00", Options: "i"}}},
		{{Key: "r", Value: bson.Regex{Pattern: "a", Options: "i\x00"}}},
		nil,
		{{Key: "missing-ish", Value: struct{}{}}, {Key: "int", Value: 5}, {Key: "big", Value: 1 << 40}, {Key: "f32", Value: float32(0.1)},
			{Key: "time", Value: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)}, {Key: "bytes", Value: []byte{1, 2}}, {Key: "m", Value: map[string]any{"x": 1}}},
	} {
		checkDocExtJSON(t, doc)
	}
}

// TestExtJSONMalformed checks that malformed input fails exactly when the
// driver fails, with the driver's own output otherwise.
func TestExtJSONMalformed(t *testing.T) {
	good := mustMarshal(t, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: "x"}}}, {Key: "c", Value: true}})
	cases := map[string][]byte{
		"nil":                              nil,
		"short":                            {5, 0, 0},
		"trailing bytes":                   append(append([]byte{}, good...), 1, 2, 3),
		"length too big":                   func() []byte { b := bytes.Clone(good); b[0]++; return b }(),
		"bad bool":                         {9, 0, 0, 0, 8, 'b', 0, 2, 0},
		"unknown type":                     {8, 0, 0, 0, 0x20, 'x', 0, 0},
		"zero string":                      {13, 0, 0, 0, 2, 's', 0, 0, 0, 0, 0, 0, 0},
		"unterminated string":              {14, 0, 0, 0, 2, 's', 0, 2, 0, 0, 0, 'a', 'b', 0},
		"old binary inner length mismatch": {20, 0, 0, 0, 5, 'b', 0, 6, 0, 0, 0, 2, 1, 0, 0, 0, 'x', 'y', 0, 0},
		"old binary short":                 {17, 0, 0, 0, 5, 'b', 0, 3, 0, 0, 0, 2, 'x', 'y', 'z', 0, 0},
	}
	// A nested document whose length is off by one each way.
	for _, delta := range []int{-1, 1} {
		b := bytes.Clone(good)
		inner := 4 + 1 + 2 // length, type, "a\x00"
		binary.LittleEndian.PutUint32(b[inner:], uint32(int(binary.LittleEndian.Uint32(b[inner:]))+delta))
		cases["nested length "+string(rune('0'+delta+1))] = b
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) { checkExtJSON(t, raw) })
	}
}

// genDoc builds a well-formed BSON document from fuzz bytes.
type docGen struct{ in []byte }

func (g *docGen) byte() byte {
	if len(g.in) == 0 {
		return 0
	}
	b := g.in[0]
	g.in = g.in[1:]
	return b
}

func (g *docGen) bytes(max int) []byte {
	n := int(g.byte()) % (max + 1)
	n = min(n, len(g.in))
	b := g.in[:n]
	g.in = g.in[n:]
	return b
}

func (g *docGen) u64() uint64 {
	var b [8]byte
	copy(b[:], g.bytes(8))
	return binary.LittleEndian.Uint64(b[:])
}

func (g *docGen) cstring() []byte { return bytes.ReplaceAll(g.bytes(12), []byte{0}, []byte{'0'}) }

func appendLen(dst []byte, start int) []byte {
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

func appendStr(dst, s []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)+1))
	dst = append(dst, s...)
	return append(dst, 0)
}

func (g *docGen) doc(dst []byte, depth int, array bool) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	n := int(g.byte() % 6)
	for i := 0; i < n && len(g.in) > 0; i++ {
		types := []byte{tDouble, tString, tDocument, tArray, tBinary, tUndefined, tObjectID, tBoolean, tDateTime, tNull,
			tRegex, tDBPointer, tJavaScript, tSymbol, tCodeScope, tInt32, tTimestamp, tInt64, tDecimal, tMinKey, tMaxKey}
		t := types[int(g.byte())%len(types)]
		if depth > 4 && (t == tDocument || t == tArray || t == tCodeScope) {
			t = tNull
		}
		dst = append(dst, t)
		if array {
			dst = append(dst, []byte(string(rune('0'+i)))...)
		} else {
			dst = append(dst, g.cstring()...)
		}
		dst = append(dst, 0)
		switch t {
		case tDouble, tDateTime, tTimestamp, tInt64:
			dst = binary.LittleEndian.AppendUint64(dst, g.u64())
		case tString, tJavaScript, tSymbol:
			dst = appendStr(dst, g.bytes(16))
		case tDocument, tArray:
			dst = g.doc(dst, depth+1, t == tArray)
		case tBinary:
			sub := g.byte()
			if sub%4 == 0 {
				sub = 2
			}
			data := g.bytes(12)
			if sub == 2 && len(data) > 0 {
				dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)+4))
				dst = append(dst, sub)
				dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
			} else {
				dst = binary.LittleEndian.AppendUint32(dst, uint32(len(data)))
				dst = append(dst, sub)
			}
			dst = append(dst, data...)
		case tObjectID:
			var oid [12]byte
			copy(oid[:], g.bytes(12))
			dst = append(dst, oid[:]...)
		case tBoolean:
			dst = append(dst, g.byte()&1)
		case tRegex:
			dst = append(append(dst, g.cstring()...), 0)
			dst = append(append(dst, g.cstring()...), 0)
		case tDBPointer:
			dst = appendStr(dst, g.bytes(12))
			var oid [12]byte
			copy(oid[:], g.bytes(12))
			dst = append(dst, oid[:]...)
		case tCodeScope:
			s := len(dst)
			dst = append(dst, 0, 0, 0, 0)
			dst = appendStr(dst, g.bytes(12))
			dst = g.doc(dst, depth+1, false)
			dst = appendLen(dst, s)
		case tInt32:
			dst = binary.LittleEndian.AppendUint32(dst, uint32(g.u64()))
		case tDecimal:
			dst = binary.LittleEndian.AppendUint64(dst, g.u64())
			dst = binary.LittleEndian.AppendUint64(dst, g.u64())
		}
	}
	dst = append(dst, 0)
	return appendLen(dst, start)
}

// FuzzExtJSONMatchesDriver: the direct encoder's output equals the driver's
// bson.MarshalExtJSON output (relaxed and canonical), or both fail. Inputs
// starting with 0 are raw bytes (used when they pass bson.Raw.Validate);
// others drive a generator of well-formed documents of every BSON type,
// which must take the fast path. Decodable documents also check the
// payload-expression path (bson.D).
func FuzzExtJSONMatchesDriver(f *testing.F) {
	for _, doc := range extJSONCases(f) {
		f.Add(append([]byte{0}, mustMarshal(f, doc)...))
	}
	f.Add(append([]byte{0}, testEvent(f, 7, "k1").Raw...))
	f.Add([]byte{1, 5, 0, 'a', 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 'b', 2, 'x', 'y'})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		var raw []byte
		generated := data[0] != 0
		if generated {
			g := &docGen{in: data[1:]}
			raw = g.doc(nil, 0, false)
		} else {
			raw = data[1:]
			if bson.Raw(raw).Validate() != nil {
				return
			}
		}
		if fast := checkExtJSON(t, raw); generated && !fast {
			t.Fatalf("generated well-formed document took the fallback: %x", raw)
		}
		var doc bson.D
		if bson.Unmarshal(raw, &doc) == nil {
			checkDocExtJSON(t, doc)
		}
	})
}

func BenchmarkBuildPayload(b *testing.B) {
	ev := testEvent(b, 7, "k1")
	expr, err := mql.CompileExpr(bson.D{{Key: "op", Value: "$operationType"}, {Key: "doc", Value: "$fullDocument"}, {Key: "ns", Value: "$ns"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		w    triggers.Webhook
	}{
		{"event/json", triggers.Webhook{Format: triggers.FormatJSON}},
		{"event/canonical", triggers.Webhook{Format: triggers.FormatCanonical}},
		{"expression/json", triggers.Webhook{Format: triggers.FormatJSON, Payload: expr}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildPayload(c.w, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDocExtJSON compares the payload-expression encodings of a bson.D:
// the driver's MarshalExtJSON and bson.Marshal + the direct encoder.
func BenchmarkDocExtJSON(b *testing.B) {
	var doc bson.D
	if err := bson.Unmarshal(testEvent(b, 7, "k1").Raw, &doc); err != nil {
		b.Fatal(err)
	}
	b.Run("driver", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bson.MarshalExtJSON(doc, false, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal+direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalDocExtJSON(doc, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAppendRFC3339MilliMatchesTime: the direct date formatter writes what
// time.Time.AppendFormat(rfc3339Milli) writes for every millisecond it is
// used for (the edges of the range, every fraction shape, leap days,
// century and 400-year boundaries, and random instants).
func TestAppendRFC3339MilliMatchesTime(t *testing.T) {
	check := func(ms int64) {
		t.Helper()
		want := time.UnixMilli(ms).UTC().AppendFormat(nil, rfc3339Milli)
		if got := appendRFC3339Milli(nil, ms); !bytes.Equal(got, want) {
			t.Fatalf("ms %d: got %s, want %s", ms, got, want)
		}
	}
	for _, ms := range []int64{0, 1, 10, 100, 999, 1000, 1001, 1010, 1100, 59999, 60000, 86399999, 86400000,
		951782400000, 951868799999, 951868800000, 4107542400000, 946684800000, 1_700_000_000_000, maxRelaxedDate - 1} {
		check(ms)
	}
	for y := 1970; y <= 9999; y++ {
		for _, md := range [][2]int{{1, 1}, {2, 28}, {2, 29}, {3, 1}, {12, 31}} {
			tm := time.Date(y, time.Month(md[0]), md[1], 23, 59, 59, 0, time.UTC)
			if tm.Month() != time.Month(md[0]) {
				continue // no 29 February that year
			}
			check(tm.UnixMilli())
			check(tm.UnixMilli() + 999)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		check(rng.Int64N(maxRelaxedDate))
	}
	if got, want := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), int64(maxRelaxedDate); got != want {
		t.Fatalf("maxRelaxedDate %d, want %d", want, got)
	}
}

// extJSONImpliesValid fails t when the direct encoder accepts raw (as a
// whole document) but bson.Raw.Validate rejects it: the batcher encodes
// events without validating them first (batcher.element), which is right
// only while the encoder is the stricter of the two.
func extJSONImpliesValid(t *testing.T, raw []byte) {
	t.Helper()
	for _, canonical := range []bool{false, true} {
		if _, ok := appendExtJSON(nil, raw, canonical, false); ok {
			if err := bson.Raw(raw).Validate(); err != nil {
				t.Fatalf("appendExtJSON(canonical %v) accepted a document Validate rejects (%v): %x", canonical, err, raw)
			}
		}
	}
}

// TestExtJSONOkImpliesValid: every single-byte change (to 0x00, 0x01, 0x7F,
// 0xFF and the byte ±1), every truncation and every declared-length change
// of documents covering every BSON type and of a change event keeps
// "appendExtJSON ok ⇒ Validate ok".
func TestExtJSONOkImpliesValid(t *testing.T) {
	docs := [][]byte{testEvent(t, 7, "k1").Raw}
	for _, d := range extJSONCases(t) {
		docs = append(docs, mustMarshal(t, d))
	}
	accepted := 0
	for _, doc := range docs {
		extJSONImpliesValid(t, doc)
		for i := range doc {
			for _, b := range []byte{0x00, 0x01, 0x7F, 0xFF, doc[i] + 1, doc[i] - 1} {
				m := bytes.Clone(doc)
				m[i] = b
				extJSONImpliesValid(t, m)
				if _, ok := appendExtJSON(nil, m, false, false); ok {
					accepted++
				}
			}
			extJSONImpliesValid(t, doc[:i])
		}
		for _, n := range []int{0, 4, 5, len(doc) - 1, len(doc) + 1, len(doc) + 4, -1} {
			m := append(bytes.Clone(doc), 0, 0, 0, 0, 0)
			binary.LittleEndian.PutUint32(m, uint32(int32(n)))
			extJSONImpliesValid(t, m)
		}
	}
	if accepted == 0 {
		t.Fatal("no mutated document was accepted: the test checks nothing")
	}
}

// FuzzExtJSONOkImpliesValid: for any bytes, appendExtJSON ok ⇒
// bson.Raw.Validate ok.
func FuzzExtJSONOkImpliesValid(f *testing.F) {
	for _, doc := range extJSONCases(f) {
		f.Add(mustMarshal(f, doc))
	}
	f.Add([]byte(testEvent(f, 7, "k1").Raw))
	f.Fuzz(func(t *testing.T, raw []byte) { extJSONImpliesValid(t, raw) })
}

// TestExtJSONStrFastPath: str (which skips escape-free runs eight bytes at
// a time) writes what the byte-by-byte loop (strFrom from 0) writes, for
// strings of every length up to 40 built from escape-free ASCII, control
// bytes, quotes, backslashes, multi-byte and invalid UTF-8 and U+2028/9 at
// every position; escapeMask's lowest bit names the first byte a
// per-byte check flags, in words of one such byte and in random words.
func TestExtJSONStrFastPath(t *testing.T) {
	needs := func(c byte) bool { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80 }
	first := func(w [8]byte) int { // escapeMask's answer: 8 for none
		return bits.TrailingZeros64(escapeMask(binary.LittleEndian.Uint64(w[:]))) >> 3
	}
	for c := range 256 {
		for pos := range 8 {
			var w [8]byte
			for i := range w {
				w[i] = 'a'
			}
			w[pos] = byte(c)
			want := 8
			if needs(byte(c)) {
				want = pos
			}
			if got := first(w); got != want {
				t.Fatalf("escapeMask with %#x at %d: first byte %d, want %d", c, pos, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200_000 {
		var w [8]byte
		for i := range w {
			switch rng.IntN(4) {
			case 0:
				w[i] = byte(rng.IntN(256))
			default:
				w[i] = byte(0x20 + rng.IntN(0x60))
			}
		}
		want := 8
		for i, c := range w {
			if needs(c) {
				want = i
				break
			}
		}
		if got := first(w); got != want {
			t.Fatalf("escapeMask(%q): first byte %d, want %d", w, got, want)
		}
	}
	pieces := []string{"a", "Z", "0", " ", "~", "\x7f", "<", "&", "\"", "\\", "\n", "\x00", "\x1f", "é", "日", "🎉", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82"}
	for n := range 200000 {
		var s []byte
		if n < 256*8 {
			// every byte at every position of a 9-byte string
			s = []byte("abcdefghi")
			s[n%9] = byte(n / 8)
		} else {
			for range rng.IntN(40) {
				if rng.IntN(3) == 0 {
					s = append(s, pieces[rng.IntN(len(pieces))]...)
				} else {
					s = append(s, byte('a'+rng.IntN(26)))
				}
			}
		}
		var e extJSONEncoder
		fast := e.str([]byte("x"), s)
		slow := e.strFrom([]byte("x"), s, 0)
		if !bytes.Equal(fast, slow) {
			t.Fatalf("%q: str %q, byte by byte %q", s, fast, slow)
		}
		for _, b := range s {
			if needs(b) {
				goto escaped
			}
		}
		if want := append(append([]byte(`x"`), s...), '"'); !bytes.Equal(fast, want) {
			t.Fatalf("%q: escape-free string written as %q", s, fast)
		}
	escaped:
	}
}

// BenchmarkAppendExtJSONChangeEvent encodes an insert change event shaped
// like the end-to-end benchmark's (a resume token, a timestamp, a date and
// an eight-field document) into a reused buffer, as a batch body is built.
func BenchmarkAppendExtJSONChangeEvent(b *testing.B) {
	raw, err := bson.Marshal(bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: strings.Repeat("8264A1B2C3", 13)}}},
		{Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1_700_000_000, I: 7}},
		{Key: "wallTime", Value: bson.DateTime(1_700_000_000_123)},
		{Key: "fullDocument", Value: bson.D{
			{Key: "_id", Value: int64(12345)}, {Key: "seq", Value: int64(12345)}, {Key: "sku", Value: "SKU-112345"},
			{Key: "name", Value: "benchmark item"}, {Key: "qty", Value: int32(45)}, {Key: "price", Value: 34.5},
			{Key: "tags", Value: bson.A{"bench", "changehook"}}, {Key: "updatedAt", Value: bson.DateTime(1_700_000_012_345)},
		}},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "bench"}, {Key: "coll", Value: "drain_batched_none"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int64(12345)}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	benchAppendExtJSON(b, raw)
}

// BenchmarkAppendExtJSONObjectIDEvent is BenchmarkAppendExtJSONChangeEvent
// for BenchmarkDeliverBatched's insert event, whose document's _id is an
// ObjectID (written twice: in fullDocument and documentKey), as most
// collections' are.
func BenchmarkAppendExtJSONObjectIDEvent(b *testing.B) {
	benchAppendExtJSON(b, benchChangeEvent(b, 12345).Raw)
}

// benchAppendExtJSON encodes the event raw (relaxed) into a reused buffer
// once per iteration.
func benchAppendExtJSON(b *testing.B, raw []byte) {
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if buf, ok = appendExtJSON(buf[:0], raw, false, false); !ok {
			b.Fatal("not encoded")
		}
	}
	b.SetBytes(int64(len(buf)))
}
