package mql

import (
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestCompareTypeOrder checks the cross-type order from the manual's
// "Comparison/Sort Order" page
// (https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/):
// each value must sort strictly before every later one.
func TestCompareTypeOrder(t *testing.T) {
	t.Parallel()
	oid := bson.ObjectID{1}
	ordered := []struct {
		name string
		v    any
	}{
		{"minKey", bson.MinKey{}},
		{"undefined", bson.Undefined{}},
		{"null", nil},
		{"NaN", math.NaN()},
		{"-inf", math.Inf(-1)},
		{"int -5", int32(-5)},
		{"double 1.5", 1.5},
		{"long 2", int64(2)},
		{"decimal 2.5", coreDecimal(t, "2.5")},
		{"+inf", math.Inf(1)},
		{"empty string", ""},
		{"symbol a", bson.Symbol("a")},
		{"string b", "b"},
		{"empty doc", bson.D{}},
		{"doc a:1", bson.D{{Key: "a", Value: int32(1)}}},
		{"doc a:'x' (string after number)", bson.D{{Key: "a", Value: "x"}}},
		{"empty array", bson.A{}},
		{"array [1]", bson.A{int32(1)}},
		{"array [1, 2]", bson.A{int32(1), int32(2)}},
		{"binData short", bson.Binary{Subtype: 5, Data: []byte{9}}},
		{"binData longer", bson.Binary{Subtype: 0, Data: []byte{0, 0}}},
		{"objectId", oid},
		{"false", false},
		{"true", true},
		{"date", bson.DateTime(-1)},
		{"date later", bson.DateTime(10)},
		{"timestamp", bson.Timestamp{T: 1, I: 0}},
		{"timestamp later", bson.Timestamp{T: 1, I: 1}},
		{"regex", bson.Regex{Pattern: "a"}},
		{"dbPointer", bson.DBPointer{DB: "db", Pointer: oid}},
		{"javascript", bson.JavaScript("x")},
		{"codeWithScope", bson.CodeWithScope{Code: "x", Scope: bson.D{}}},
		{"maxKey", bson.MaxKey{}},
	}
	for i := range ordered {
		for j := range ordered {
			a, b := ordered[i], ordered[j]
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := Compare(a.v, b.v); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a.name, b.name, got, want)
			}
		}
	}
}

func TestCompareEqualities(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b any
		want int
	}{
		{"int32 vs int64", int32(1), int64(1), 0},
		{"int vs double", int32(1), 1.0, 0},
		{"go int", 7, int64(7), 0},
		{"decimal vs double", coreDecimal(t, "0.5"), 0.5, 0},
		{"decimal 0.1 vs double 0.1", coreDecimal(t, "0.1"), 0.1, -1}, // 0.1 as a double is slightly above 1/10
		{"negative zero", math.Copysign(0, -1), int32(0), 0},
		{"NaN equals NaN", math.NaN(), coreDecimal(t, "NaN"), 0},
		{"int64 above 2^53", int64(1<<53 + 1), float64(1 << 53), 1},
		{"int64 max vs 2^63", int64(math.MaxInt64), math.Pow(2, 63), -1},
		{"int64 min vs -2^63", int64(math.MinInt64), -math.Pow(2, 63), 0},
		{"fraction", int64(2), 2.5, -1},
		{"negative fraction", int64(-2), -2.5, 1},
		{"decimal inf vs double inf", coreDecimal(t, "Infinity"), math.Inf(1), 0},
		{"decimal big", coreDecimal(t, "1E+400"), math.MaxFloat64, 1},
		{"missing is null", Missing, nil, 0},
		{"symbol equals string", bson.Symbol("a"), "a", 0},
		{"doc field names", bson.D{{Key: "a", Value: int32(1)}}, bson.D{{Key: "b", Value: int32(1)}}, -1},
		{"doc prefix", bson.D{{Key: "a", Value: int32(1)}}, bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: nil}}, -1},
		{"doc numeric values across types", bson.D{{Key: "a", Value: int32(1)}}, bson.D{{Key: "a", Value: 1.0}}, 0},
		{"bson.M vs D", bson.M{"a": 1}, bson.D{{Key: "a", Value: int32(1)}}, 0},
		{"[]any vs A", []any{1, "x"}, bson.A{int64(1), "x"}, 0},
		{"binData subtype", bson.Binary{Subtype: 0, Data: []byte{2}}, bson.Binary{Subtype: 1, Data: []byte{1}}, -1},
		{"regex options", bson.Regex{Pattern: "a", Options: "i"}, bson.Regex{Pattern: "a"}, 1},
		{"strings bytewise", "Z", "a", -1},
		{"dbPointer ns length first", bson.DBPointer{DB: "zz"}, bson.DBPointer{DB: "aaa"}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Compare(tc.a, tc.b); got != tc.want {
				t.Errorf("Compare = %d, want %d", got, tc.want)
			}
			if got := Compare(tc.b, tc.a); got != -tc.want {
				t.Errorf("reverse Compare = %d, want %d", got, -tc.want)
			}
			if got := Equal(tc.a, tc.b); got != (tc.want == 0) {
				t.Errorf("Equal = %v, want %v", got, tc.want == 0)
			}
		})
	}
}

func BenchmarkCompare(b *testing.B) {
	cases := []struct {
		name string
		a, b any
	}{
		{"int32-double", int32(42), 42.5},
		{"string", "customer-000123", "customer-000124"},
		{"document", bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: "x"}, {Key: "c", Value: bson.A{1.0, 2.0}}},
			bson.D{{Key: "a", Value: int64(1)}, {Key: "b", Value: "x"}, {Key: "c", Value: bson.A{1.0, 3.0}}}},
		{"decimal-int", bson.NewDecimal128(0x3040000000000000, 12345), int64(12346)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Compare(c.a, c.b)
			}
		})
	}
}

// TestIdentical checks binary equality: type, bytes and field order matter,
// unlike Equal.
func TestIdentical(t *testing.T) {
	t.Parallel()
	oid := bson.ObjectID{1}
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"int32 equal", int32(1), int32(1), true},
		{"int32 vs double", int32(1), 1.0, false},
		{"int32 vs int64", int32(1), int64(1), false},
		{"nil", nil, nil, true},
		{"nil vs string", nil, "", false},
		{"docs equal", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "a", Value: 1}}, true},
		{"docs reordered", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 1}}, bson.D{{Key: "b", Value: 1}, {Key: "a", Value: 1}}, false},
		{"nested number type", bson.D{{Key: "a", Value: bson.A{int32(1)}}}, bson.D{{Key: "a", Value: bson.A{1.0}}}, false},
		{"array length", bson.A{int32(1)}, bson.A{int32(1), int32(2)}, false},
		{"binary", bson.Binary{Subtype: 0, Data: []byte{1}}, bson.Binary{Subtype: 0, Data: []byte{1}}, true},
		{"binary subtype", bson.Binary{Subtype: 0, Data: []byte{1}}, bson.Binary{Subtype: 4, Data: []byte{1}}, false},
		{"javascript", bson.JavaScript("x"), bson.JavaScript("x"), true},
		{"javascript vs symbol", bson.JavaScript("x"), bson.Symbol("x"), false},
		{"code with scope", bson.CodeWithScope{Code: "f", Scope: bson.D{{Key: "x", Value: int32(1)}}}, bson.CodeWithScope{Code: "f", Scope: bson.D{{Key: "x", Value: int32(1)}}}, true},
		{"code with scope differs", bson.CodeWithScope{Code: "f", Scope: bson.D{{Key: "x", Value: int32(1)}}}, bson.CodeWithScope{Code: "f", Scope: bson.D{{Key: "x", Value: 1.0}}}, false},
		{"dbpointer", bson.DBPointer{DB: "c", Pointer: oid}, bson.DBPointer{DB: "c", Pointer: oid}, true},
		{"regex options", bson.Regex{Pattern: "a", Options: "i"}, bson.Regex{Pattern: "a"}, false},
		{"negative zero", 0.0, math.Copysign(0, -1), false},
		{"NaN", math.NaN(), math.NaN(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Identical(tc.a, tc.b); got != tc.want {
				t.Fatalf("Identical(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
