package mql

import (
	"math"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestTypeNameAndNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    any
		name string
		num  int
	}{
		{1.5, "double", 1},
		{"s", "string", 2},
		{bson.D{}, "object", 3},
		{bson.A{}, "array", 4},
		{bson.Binary{}, "binData", 5},
		{bson.Undefined{}, "undefined", 6},
		{bson.ObjectID{}, "objectId", 7},
		{true, "bool", 8},
		{bson.DateTime(0), "date", 9},
		{nil, "null", 10},
		{bson.Regex{}, "regex", 11},
		{bson.DBPointer{}, "dbPointer", 12},
		{bson.JavaScript(""), "javascript", 13},
		{bson.Symbol(""), "symbol", 14},
		{bson.CodeWithScope{}, "javascriptWithScope", 15},
		{int32(1), "int", 16},
		{bson.Timestamp{}, "timestamp", 17},
		{int64(1), "long", 18},
		{bson.Decimal128{}, "decimal", 19},
		{bson.MinKey{}, "minKey", -1},
		{bson.MaxKey{}, "maxKey", 127},
		{Missing, "missing", 0},
		{1, "int", 16},
		{math.MaxInt32 + 1, "long", 18},
		{[]any{}, "array", 4},
		{bson.M{}, "object", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := TypeName(tc.v); got != tc.name {
				t.Errorf("TypeName(%#v) = %q, want %q", tc.v, got, tc.name)
			}
			if got := TypeNumber(tc.v); got != tc.num {
				t.Errorf("TypeNumber(%#v) = %d, want %d", tc.v, got, tc.num)
			}
		})
	}
}

func TestMissingIsNotNull(t *testing.T) {
	t.Parallel()
	if !IsMissing(Missing) || IsMissing(nil) {
		t.Fatal("Missing must be distinct from nil and recognised by IsMissing")
	}
	if Lookup(bson.D{}, "a") != Missing {
		t.Fatal("Lookup of an absent field must return Missing")
	}
}

func TestNumberConversions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		v      any
		f      float64
		fOK    bool
		i      int64
		iOK    bool
		number bool
	}{
		{"int32", int32(-3), -3, true, -3, true, true},
		{"int64", int64(1) << 60, math.Pow(2, 60), true, 1 << 60, true, true},
		{"integral double", 4.0, 4, true, 4, true, true},
		{"fractional double", 4.5, 4.5, true, 0, false, true},
		{"NaN", math.NaN(), math.NaN(), true, 0, false, true},
		{"double out of range", 1e19, 1e19, true, 0, false, true},
		{"decimal", coreDecimal(t, "12.50"), 12.5, true, 0, false, true},
		{"integral decimal", coreDecimal(t, "1.2E+3"), 1200, true, 1200, true, true},
		{"string", "1", 0, false, 0, false, false},
		{"bool", true, 0, false, 0, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := IsNumber(tc.v); got != tc.number {
				t.Errorf("IsNumber = %v, want %v", got, tc.number)
			}
			f, ok := ToFloat64(tc.v)
			if ok != tc.fOK || (ok && !(f == tc.f || math.IsNaN(f) && math.IsNaN(tc.f))) {
				t.Errorf("ToFloat64 = %v, %v; want %v, %v", f, ok, tc.f, tc.fOK)
			}
			i, ok := ToInt64(tc.v)
			if ok != tc.iOK || i != tc.i {
				t.Errorf("ToInt64 = %v, %v; want %v, %v", i, ok, tc.i, tc.iOK)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	in := []any{1, map[string]any{"b": 2, "a": []any{int8(3)}}, bson.Null{}, float32(0.5)}
	want := bson.A{int32(1), bson.D{{Key: "a", Value: bson.A{int32(3)}}, {Key: "b", Value: int32(2)}}, nil, 0.5}
	got := Normalize(in)
	if Compare(got, want) != 0 {
		t.Fatalf("Normalize = %#v, want %#v", got, want)
	}
	// Exact Go types, not just equal values.
	arr := got.(bson.A)
	if _, ok := arr[0].(int32); !ok {
		t.Errorf("element 0 is %T, want int32", arr[0])
	}
	if _, ok := arr[1].(bson.D); !ok {
		t.Errorf("element 1 is %T, want bson.D", arr[1])
	}
	// Already-normal values are returned as is.
	d := bson.D{{Key: "a", Value: int32(1)}}
	if n := Normalize(d).(bson.D); &n[0] != &d[0] {
		t.Error("Normalize copied an already normal document")
	}
}

func TestErrorFormatting(t *testing.T) {
	t.Parallel()
	e := mongoerr.Errorf(mongoerr.BadValue, "unknown operator: %s", "$foo")
	if e.Code.String() != "BadValue" || e.Error() != "BadValue: unknown operator: $foo" {
		t.Errorf("got %q / %q", e.Code.String(), e.Error())
	}
	if got := mongoerr.Errorf(mongoerr.ProjectionExclusionInInclusion, "x").Code.String(); got != "Location31254" {
		t.Errorf("CodeName = %q, want Location31254", got)
	}
}
