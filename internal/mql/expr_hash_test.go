package mql

import (
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestHashedIndexKey checks the hash against values MongoDB itself
// publishes: the server's startup self-test (hash64 of the int 42) and the
// manual's $toHashedIndexKey example ("string to hash").
func TestHashedIndexKey(t *testing.T) {
	dec, _ := bson.ParseDecimal128("42.9")
	for _, tc := range []struct {
		name string
		v    any
		want int64
	}{
		{"server self-test: 42", int32(42), -944302157085130861},
		{"manual example: string to hash", "string to hash", 763543691661428748},
		{"numbers squash to int64: long 42", int64(42), -944302157085130861},
		{"numbers squash to int64: double 42.7", 42.7, -944302157085130861},
		{"numbers squash to int64: decimal 42.9", dec, -944302157085130861},
	} {
		if got := HashedIndexKey(tc.v); got != tc.want {
			t.Errorf("%s: HashedIndexKey(%v) = %d, want %d", tc.name, tc.v, got, tc.want)
		}
	}
	if HashedIndexKey(Missing) != HashedIndexKey(nil) {
		t.Error("missing must hash as null")
	}
	if HashedIndexKey(math.NaN()) != HashedIndexKey(int32(0)) {
		t.Error("NaN must hash as 0")
	}
	oid := bson.NewObjectID()
	first, again := HashedIndexKey(oid), HashedIndexKey(oid)
	if first != again || first == HashedIndexKey(bson.NewObjectID()) {
		t.Error("object ids: same value same hash, different values different hashes")
	}
	a := bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: "x"}}
	b := bson.D{{Key: "b", Value: "x"}, {Key: "a", Value: int32(1)}}
	if HashedIndexKey(a) == HashedIndexKey(b) {
		t.Error("documents hash their field order")
	}
	if HashedIndexKey(bson.A{int32(1)}) == HashedIndexKey(bson.D{{Key: "0", Value: int32(1)}}) {
		t.Error("an array and a document with the same elements differ by type")
	}
}

func TestToHashedIndexKeyExpression(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "manual example", expr: `{"$toHashedIndexKey": "$s"}`, doc: `{"s": "string to hash"}`, want: `{"v": {"$numberLong": "763543691661428748"}}`},
		{name: "an array operand is hashed as an array", expr: `{"$eq": [{"$toHashedIndexKey": ["$s"]}, {"$toHashedIndexKey": "$s"}]}`, doc: `{"s": "x"}`, want: `{"v": false}`},
		{name: "self-test value", expr: `{"$toHashedIndexKey": 42}`, want: `{"v": {"$numberLong": "-944302157085130861"}}`},
		{name: "missing hashes as null", expr: `{"$eq": [{"$toHashedIndexKey": "$nope"}, {"$toHashedIndexKey": null}]}`, want: `{"v": true}`},
		{name: "partition of a document key", expr: `{"$abs": {"$mod": [{"$toHashedIndexKey": "$documentKey._id"}, 4]}}`, doc: `{"documentKey": {"_id": 42}}`, want: `{"v": {"$numberLong": "1"}}`},
	})
}
