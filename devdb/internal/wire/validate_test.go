package wire

import (
	"encoding/binary"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// nestedDoc returns the raw BSON of {a: {a: ... {}}} nested levels deep
// (levels 1 is {}), built without recursion.
func nestedDoc(levels int) []byte {
	size := 5 + 8*(levels-1)
	b := make([]byte, 0, size)
	for i := range levels - 1 {
		b = binary.LittleEndian.AppendUint32(b, uint32(size-8*i))
		b = append(b, 0x03, 'a', 0)
	}
	b = append(b, 5, 0, 0, 0, 0)
	for range levels - 1 {
		b = append(b, 0)
	}
	return b
}

func TestCheckDepth(t *testing.T) {
	mustMarshal := func(v any) []byte {
		b, err := bson.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	everyType := mustMarshal(bson.D{
		{Key: "d", Value: 1.5}, {Key: "s", Value: "x"}, {Key: "o", Value: bson.D{{Key: "a", Value: bson.A{int32(1), "y"}}}},
		{Key: "b", Value: bson.Binary{Subtype: 0, Data: []byte{1, 2}}}, {Key: "u", Value: bson.Undefined{}},
		{Key: "id", Value: bson.NewObjectID()}, {Key: "t", Value: true}, {Key: "dt", Value: bson.DateTime(5)},
		{Key: "n", Value: nil}, {Key: "re", Value: bson.Regex{Pattern: "a", Options: "i"}},
		{Key: "ptr", Value: bson.DBPointer{DB: "db.c", Pointer: bson.NewObjectID()}}, {Key: "js", Value: bson.JavaScript("f()")},
		{Key: "sym", Value: bson.Symbol("s")}, {Key: "cws", Value: bson.CodeWithScope{Code: "g()", Scope: bson.D{{Key: "v", Value: bson.D{}}}}},
		{Key: "i", Value: int32(1)}, {Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}, {Key: "l", Value: int64(3)},
		{Key: "dec", Value: bson.NewDecimal128(1, 2)}, {Key: "min", Value: bson.MinKey{}}, {Key: "max", Value: bson.MaxKey{}},
	})
	badInner := mustMarshal(bson.D{{Key: "o", Value: bson.D{}}})
	binary.LittleEndian.PutUint32(badInner[7:], 100) // {o: {}} with o's length beyond its parent
	tests := []struct {
		name string
		doc  []byte
		max  int
		want error
	}{
		{"every element type", everyType, MaxDepth, nil},
		{"at the limit", nestedDoc(MaxDepth), MaxDepth, nil},
		{"one level too deep", nestedDoc(MaxDepth + 1), MaxDepth, ErrTooDeep},
		{"a million levels (8 MB)", nestedDoc(1_000_000), MaxDepth, ErrTooDeep},
		{"code-with-scope counts a level", everyType, 2, ErrTooDeep},
		{"bad inner length", nestedDoc(3)[:len(nestedDoc(3))-1], MaxDepth, ErrMalformed},
		{"embedded length beyond its parent", badInner, MaxDepth, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDepth(tt.doc, tt.max)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("checkDepth = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				if err := bson.Raw(tt.doc).Validate(); err != nil {
					t.Fatalf("the driver rejects a document checkDepth accepts: %v", err)
				}
			}
		})
	}
}

// FuzzCheckDepth checks that checkDepth never panics or reads out of
// bounds on arbitrary input (bson.Raw.Validate, which runs after it, does the
// rest of the validation).
func FuzzCheckDepth(f *testing.F) {
	f.Add(nestedDoc(4))
	b, _ := bson.Marshal(bson.D{{Key: "a", Value: bson.A{"x", bson.D{{Key: "b", Value: 1.0}}}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, doc []byte) {
		if err := checkDepth(doc, 8); err == nil && len(doc) < 5 {
			t.Fatalf("accepted %d bytes", len(doc))
		}
	})
}
