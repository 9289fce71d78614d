package update

import (
	"bytes"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// bitwise applies and/or/xor to two integers (int32 or int64); the result
// is int64 when either operand is.
func bitwise(op string, a, b any) any {
	_, al := a.(int64)
	_, bl := b.(int64)
	x, _ := mql.ToInt64(a)
	y, _ := mql.ToInt64(b)
	var r int64
	switch op {
	case "and":
		r = x & y
	case "or":
		r = x | y
	default:
		r = x ^ y
	}
	if al || bl {
		return r
	}
	return int32(r)
}

// deepCopy copies documents and arrays so that values taken from an
// update specification are never shared with the documents it produces.
func deepCopy(v any) any {
	switch x := v.(type) {
	case bson.D:
		out := make(bson.D, len(x))
		for i, e := range x {
			out[i] = bson.E{Key: e.Key, Value: deepCopy(e.Value)}
		}
		return out
	case bson.A:
		out := make(bson.A, len(x))
		for i, e := range x {
			out[i] = deepCopy(e)
		}
		return out
	case bson.Binary:
		return bson.Binary{Subtype: x.Subtype, Data: bytes.Clone(x.Data)}
	}
	return v
}

// formatElement renders a named element as MongoDB's messages do:
// "name: value".
func formatElement(name string, v any) string {
	return name + ": " + mql.FormatValue(v)
}
