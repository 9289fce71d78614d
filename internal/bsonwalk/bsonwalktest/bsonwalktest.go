// Package bsonwalktest holds what the differential tests of the one-walk
// BSON readers (bsonwalk and its callers) share: a document with a value of
// every BSON type, and random damage to a document.
package bsonwalktest

import (
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// EveryType returns a document with one value of every BSON type (an
// embedded document, an array and code with scope among them).
func EveryType() bson.D {
	return bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "seq", Value: int32(7)}, {Key: "at", Value: time.Now()},
		{Key: "x", Value: 1.5}, {Key: "tags", Value: bson.A{"a", "b", int64(3)}}, {Key: "bin", Value: bson.Binary{Subtype: 0, Data: []byte{1, 2}}},
		{Key: "re", Value: bson.Regex{Pattern: "a.*", Options: "i"}}, {Key: "n", Value: nil}, {Key: "d", Value: bson.NewDecimal128(1, 2)},
		{Key: "js", Value: bson.JavaScript("f()")}, {Key: "cws", Value: bson.CodeWithScope{Code: "g()", Scope: bson.D{{Key: "a", Value: 1}}}},
		{Key: "sym", Value: bson.Symbol("s")}, {Key: "ts", Value: bson.Timestamp{T: 1, I: 2}}, {Key: "min", Value: bson.MinKey{}},
		{Key: "max", Value: bson.MaxKey{}}, {Key: "u", Value: bson.Undefined{}}, {Key: "ptr", Value: bson.DBPointer{DB: "a.b", Pointer: bson.NewObjectID()}},
		{Key: "b", Value: true}}
}

// Corrupt returns a damaged copy of doc (which must not be empty): one
// byte replaced, the document cut short, or a bit flipped and a NUL
// written somewhere, chosen by rng.
func Corrupt(rng *rand.Rand, doc []byte) []byte {
	bad := append([]byte(nil), doc...)
	switch rng.IntN(3) {
	case 0:
		bad[rng.IntN(len(bad))] = byte(rng.IntN(256))
	case 1:
		bad = bad[:rng.IntN(len(bad))]
	default:
		i := rng.IntN(len(bad))
		bad[i] ^= 1 << rng.IntN(8)
		bad[rng.IntN(len(bad))] = 0
	}
	return bad
}
