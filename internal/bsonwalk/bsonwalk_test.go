package bsonwalk

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/bsonwalk/bsonwalktest"
)

// docs are documents with a value of every BSON type, repeated and empty
// keys, nesting, and the change event shape the hot paths read.
func docs(t testing.TB) [][]byte {
	tok := bson.D{{Key: "_data", Value: "8267A1B2C3000000012B042C0100296E5A1004ABCDEF0123456789ABCDEF0123456789"}}
	every := append(bsonwalktest.EveryType(), bson.E{Key: "", Value: ""}, bson.E{Key: "seq", Value: "again"})
	ns := bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}
	in := []bson.D{
		{{Key: "_id", Value: tok}, {Key: "operationType", Value: "insert"}, {Key: "clusterTime", Value: bson.Timestamp{T: 1, I: 2}},
			{Key: "wallTime", Value: bson.NewDateTimeFromTime(time.Now())}, {Key: "fullDocument", Value: every}, {Key: "ns", Value: ns},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: bson.NewObjectID()}}}},
		every,
		{{Key: "a", Value: bson.A{}}, {Key: "b", Value: bson.D{}}, {Key: "c", Value: ""}},
		{},
	}
	var out [][]byte
	for _, d := range in {
		raw, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// checkWalk walks doc and checks it against the driver: every element
// yielded is the one LookupErr finds for its key (when it is the key's
// first), and a walk that ends without Malformed yields exactly
// bson.Raw.Elements. wellFormed docs must not be Malformed.
func checkWalk(t *testing.T, doc []byte, wellFormed bool) {
	t.Helper()
	w := New(doc)
	type elem struct {
		key string
		v   bson.RawValue
	}
	var got []elem
	seen := map[string]bool{}
	for {
		key, v, ok := w.Next()
		if !ok {
			break
		}
		got = append(got, elem{string(key), v})
		if seen[string(key)] {
			continue
		}
		seen[string(key)] = true
		want, err := bson.Raw(doc).LookupErr(string(key))
		if err != nil || want.Type != v.Type || !bytes.Equal(want.Value, v.Value) {
			t.Fatalf("%x: element %q is %v, LookupErr %v (%v)", doc, key, v, want, err)
		}
	}
	if wellFormed && w.Malformed() {
		t.Fatalf("%v: malformed", bson.Raw(doc))
	}
	if w.Malformed() {
		return
	}
	els, err := bson.Raw(doc).Elements()
	if err != nil {
		t.Fatalf("%x: walked to the end, but Elements: %v", doc, err)
	}
	if len(els) != len(got) {
		t.Fatalf("%x: %d elements, Elements %d", doc, len(got), len(els))
	}
	for i, e := range els {
		if e.Key() != got[i].key || e.Value().Type != got[i].v.Type || !bytes.Equal(e.Value().Value, got[i].v.Value) {
			t.Fatalf("%x: element %d is %q %v, Elements %q %v", doc, i, got[i].key, got[i].v, e.Key(), e.Value())
		}
	}
}

// TestWalkerMatchesElements checks the walk against the driver's readers
// on well-formed documents and on corrupted copies of them (bytes changed,
// truncated, NULs put in).
func TestWalkerMatchesElements(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, doc := range docs(t) {
		checkWalk(t, doc, true)
		for range 3000 {
			checkWalk(t, bsonwalktest.Corrupt(rng, doc), false)
		}
	}
}

// TestWalkerHeader: a document whose declared length is not its own, or
// without its final NUL, is malformed before any element is read; the
// zero Walker is an empty document.
func TestWalkerHeader(t *testing.T) {
	doc := docs(t)[2]
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short":          doc[:4],
		"trailing bytes": append(bytes.Clone(doc), 0),
		"no final NUL":   append(bytes.Clone(doc[:len(doc)-1]), 1),
		"negative":       {0xFF, 0xFF, 0xFF, 0xFF, 0},
	} {
		w := New(b)
		if _, _, ok := w.Next(); ok || !w.Malformed() {
			t.Errorf("%s: ok %v, malformed %v", name, ok, w.Malformed())
		}
	}
	var w Walker
	if _, _, ok := w.Next(); ok || w.Malformed() {
		t.Errorf("zero Walker: ok %v, malformed %v", ok, w.Malformed())
	}
}

// FuzzWalker checks the walk against the driver's readers on any input.
func FuzzWalker(f *testing.F) {
	for _, d := range docs(f) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkWalk(t, doc, false) })
}

// BenchmarkWalk walks a change event shaped as the server sends it.
func BenchmarkWalk(b *testing.B) {
	doc := docs(b)[0]
	b.ReportAllocs()
	for b.Loop() {
		w := New(doc)
		n := 0
		for {
			if _, _, ok := w.Next(); !ok {
				break
			}
			n++
		}
		if n != 7 {
			b.Fatal(n)
		}
	}
}
