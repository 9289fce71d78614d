package mql

import (
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestFormatValue checks the BSONElement::toString rendering shared by
// update errors and devdb's duplicate-key and index messages.
func TestFormatValue(t *testing.T) {
	t.Parallel()
	dec, err := bson.ParseDecimal128("1.50")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"null", nil, "null"},
		{"integral double", 5.0, "5.0"},
		{"fractional double", 2.5, "2.5"},
		{"large double", 1e15, "1e+15"},
		{"NaN", math.NaN(), "nan.0"},
		{"infinity", math.Inf(-1), "-inf.0"},
		{"int32", int32(7), "7"},
		{"int64", int64(-7), "-7"},
		{"Go int", 3, "3"},
		{"string", `a"b`, `"a\"b"`},
		{"decimal", dec, `NumberDecimal("1.50")`},
		{"objectId", bson.ObjectID{0xab}, "ObjectId('ab0000000000000000000000')"},
		{"date", bson.DateTime(1000), "new Date(1000)"},
		{"timestamp", bson.Timestamp{T: 1, I: 2}, "Timestamp(1, 2)"},
		{"binary", bson.Binary{Subtype: 4, Data: []byte{0xab, 0x01}}, "BinData(4, AB01)"},
		{"regex", bson.Regex{Pattern: "^a", Options: "i"}, "/^a/i"},
		{"empty document", bson.D{}, "{}"},
		{"document", bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: bson.A{"x", 1.0}}}, `{ a: 1, b: [ "x", 1.0 ] }`},
		{"empty array", bson.A{}, "[]"},
		{"min and max", bson.A{bson.MinKey{}, bson.MaxKey{}}, "[ MinKey, MaxKey ]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := FormatValue(tc.v); got != tc.want {
				t.Fatalf("FormatValue(%#v) = %s, want %s", tc.v, got, tc.want)
			}
		})
	}
}
