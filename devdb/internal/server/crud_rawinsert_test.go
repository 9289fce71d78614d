package server

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/changehook/changehook/devdb/internal/storage"
)

// rawInsertCorpus returns encoded documents covering every BSON type,
// nesting, arrays, _id placement and the $-name and depth rules; want
// reports whether storage.RawInsertable should accept each.
func rawInsertCorpus(t testing.TB) (docs [][]byte, want []bool) {
	t.Helper()
	add := func(ok bool, d any) {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatalf("marshal %v: %v", d, err)
		}
		docs, want = append(docs, b), append(want, ok)
	}
	nan := math.Float64frombits(0x7ff8_0000_0000_0abc)
	dec, _ := bson.ParseDecimal128("1234.5678E-300")
	oid := bson.ObjectID{0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	every := bson.D{
		{Key: "_id", Value: oid},
		{Key: "d", Value: 1.5}, {Key: "nan", Value: nan}, {Key: "negz", Value: math.Copysign(0, -1)},
		{Key: "s", Value: "héllo"}, {Key: "empty", Value: ""}, {Key: "nul", Value: "a\x00b"}, {Key: "bad", Value: "\xff\xfe"},
		{Key: "\xffkey", Value: int32(1)},
		{Key: "doc", Value: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: bson.A{int32(1), "x", bson.D{}}}}}}},
		{Key: "arr", Value: bson.A{int32(1), int64(2), 3.0, bson.A{}, bson.A{bson.A{"deep"}}}},
		{Key: "bin0", Value: bson.Binary{Subtype: 0, Data: []byte{1, 2, 3}}},
		{Key: "bin4", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{7}, 16)}},
		{Key: "bin80", Value: bson.Binary{Subtype: 0x80, Data: nil}},
		{Key: "oid", Value: oid}, {Key: "t", Value: true}, {Key: "f", Value: false},
		{Key: "date", Value: bson.DateTime(-62135596800000)}, {Key: "null", Value: nil},
		{Key: "i32", Value: int32(math.MinInt32)}, {Key: "i64", Value: int64(math.MaxInt64)},
		{Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}, {Key: "dec", Value: dec},
		{Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}},
		{Key: "$dollar", Value: int32(1)}, {Key: "a.b", Value: int32(2)}, {Key: "dup", Value: 1}, {Key: "dup", Value: 2},
	}
	add(true, every)
	add(true, bson.D{{Key: "_id", Value: bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: bson.D{{Key: "c", Value: "x"}}}}}, {Key: "x", Value: 1}})
	add(true, bson.D{{Key: "_id", Value: "str"}})
	add(true, bson.D{{Key: "_id", Value: nil}})
	add(true, bson.D{{Key: "_id", Value: bson.MinKey{}}, {Key: "n", Value: bson.D{{Key: "$x", Value: 1}}}})
	// The insert fills in an empty timestamp at the top level, and stores
	// one in _id, in embedded fields and Timestamp(0, 1) as sent.
	add(false, bson.D{{Key: "_id", Value: "ets1"}, {Key: "t", Value: bson.Timestamp{}}})
	add(true, bson.D{{Key: "_id", Value: bson.Timestamp{}}, {Key: "n", Value: bson.D{{Key: "t", Value: bson.Timestamp{}}}},
		{Key: "a", Value: bson.A{bson.Timestamp{}}}, {Key: "one", Value: bson.Timestamp{I: 1}}, {Key: "t1", Value: bson.Timestamp{T: 1}}})
	// The decoded path changes or refuses these.
	add(false, bson.D{})
	add(false, bson.D{{Key: "x", Value: 1}})
	add(false, bson.D{{Key: "x", Value: 1}, {Key: "_id", Value: 2}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "_id", Value: 2}})
	add(false, bson.D{{Key: "_id", Value: bson.A{1}}})
	add(false, bson.D{{Key: "_id", Value: bson.Regex{Pattern: "a"}}})
	add(false, bson.D{{Key: "_id", Value: bson.Undefined{}}})
	add(false, bson.D{{Key: "_id", Value: bson.D{{Key: "$a", Value: 1}}}})
	add(false, bson.D{{Key: "_id", Value: bson.D{{Key: "a", Value: bson.A{bson.D{{Key: "$b", Value: 1}}}}}}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "re", Value: bson.Regex{Pattern: "a", Options: "mi"}}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: bson.Undefined{}}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "js", Value: bson.JavaScript("x")}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "sym", Value: bson.Symbol("x")}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "cws", Value: bson.CodeWithScope{Code: "x", Scope: bson.D{}}}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "dbp", Value: bson.DBPointer{DB: "a", Pointer: oid}}})
	add(false, bson.D{{Key: "_id", Value: 1}, {Key: "old", Value: bson.Binary{Subtype: 2, Data: []byte{1}}}})
	// Depth: the document is level 1; 100 levels are stored, 101 are not.
	nested := func(levels int) bson.D {
		d := bson.D{{Key: "leaf", Value: 1}}
		for range levels - 2 {
			d = bson.D{{Key: "a", Value: d}}
		}
		return bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: d}}
	}
	add(true, nested(100))
	add(false, nested(101))
	// Bytes the encoder never writes: array keys out of order, a boolean 2.
	arr, _ := bson.Marshal(bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{"x", "y"}}})
	i := bytes.Index(arr, []byte("1\x00"))
	bad := bytes.Clone(arr)
	bad[i] = '5'
	docs, want = append(docs, bad), append(want, false)
	b2, _ := bson.Marshal(bson.D{{Key: "_id", Value: 1}, {Key: "b", Value: true}})
	b2[len(b2)-2] = 2
	docs, want = append(docs, b2), append(want, false)
	return docs, want
}

// checkRawInsertable fails when RawInsertable accepts raw although the
// decoded path would store other bytes or refuse it.
func checkRawInsertable(t testing.TB, raw []byte) bool {
	t.Helper()
	if !storage.RawInsertable(raw) {
		return false
	}
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		t.Fatalf("RawInsertable accepts %x, which does not decode: %v", raw, err)
	}
	if err := checkStorable(d); err != nil {
		t.Fatalf("RawInsertable accepts %v, which checkStorable refuses: %v", d, err)
	}
	w := withID(d)
	if len(w) != len(d) || &w[0] != &d[0] {
		t.Fatalf("RawInsertable accepts %v, which withID changes to %v", d, w)
	}
	if hasEmptyTimestamp(w) {
		t.Fatalf("RawInsertable accepts %v, whose empty timestamp the insert fills in", d)
	}
	enc, err := bson.Marshal(w)
	if err != nil || !bytes.Equal(enc, raw) {
		t.Fatalf("RawInsertable accepts %x, which is stored as %x (%v)", raw, enc, err)
	}
	return true
}

func TestRawInsertableCorpus(t *testing.T) {
	docs, want := rawInsertCorpus(t)
	for i, raw := range docs {
		if got := checkRawInsertable(t, raw); got != want[i] {
			var d bson.D
			_ = bson.Unmarshal(raw, &d)
			t.Errorf("storage.RawInsertable(%v) = %v, want %v", d, got, want[i])
		}
	}
}

// TestRawInsertableMutations flips bytes of the corpus documents: whatever
// RawInsertable accepts must be stored unchanged by the decoded path.
func TestRawInsertableMutations(t *testing.T) {
	docs, _ := rawInsertCorpus(t)
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for range 20000 {
		raw := bytes.Clone(docs[rng.IntN(len(docs))])
		for range 1 + rng.IntN(3) {
			raw[4+rng.IntN(len(raw)-4)] = byte(rng.IntN(256))
		}
		if bsoncore.Document(raw).Validate() != nil {
			continue // the wire parser refuses it
		}
		if checkRawInsertable(t, raw) {
			accepted++
		}
	}
	if accepted == 0 {
		t.Fatal("no mutated document was accepted: the test checks nothing")
	}
}

func FuzzRawInsertable(f *testing.F) {
	docs, _ := rawInsertCorpus(f)
	for _, d := range docs {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) < 5 || int(binary.LittleEndian.Uint32(raw)) != len(raw) || bsoncore.Document(raw).Validate() != nil {
			return
		}
		checkRawInsertable(t, raw)
	})
}
