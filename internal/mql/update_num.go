package mql

import (
	"bytes"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// updArith applies $inc (mul false) or $mul (mul true) to two numbers with
// MongoDB's SafeNum type rules: decimal wins over double, double over long,
// long over int; int32 results that overflow widen to int64; an int64
// overflow is invalid (ok false).
//
// Decimal arithmetic is shared with the aggregation expressions (aggDec).
// The integer rules are kept apart from $add/$multiply's (aggArith) on
// purpose: MongoDB's update operators use SafeNum, which rejects an int64
// overflow, while expressions widen an overflowing long to a double.
func updArith(mul bool, a, b any) (any, bool) {
	op := byte('+')
	if mul {
		op = '*'
	}
	if k := max(aggNumKind(a), aggNumKind(b)); k == aggKInt || k == aggKLong {
		x, _ := ToInt64(a)
		y, _ := ToInt64(b)
		r, overflow := aggInt64Op(op, x, y)
		if overflow {
			return nil, false
		}
		return aggNarrow(r, k), true
	}
	return aggArith(op, a, b), true
}

// updBitwise applies and/or/xor to two integers (int32 or int64); the result
// is int64 when either operand is.
func updBitwise(op string, a, b any) any {
	_, al := a.(int64)
	_, bl := b.(int64)
	x, _ := ToInt64(a)
	y, _ := ToInt64(b)
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

// updDeepCopy copies documents and arrays so that values taken from an
// update specification are never shared with the documents it produces.
func updDeepCopy(v any) any {
	switch x := v.(type) {
	case bson.D:
		out := make(bson.D, len(x))
		for i, e := range x {
			out[i] = bson.E{Key: e.Key, Value: updDeepCopy(e.Value)}
		}
		return out
	case bson.A:
		out := make(bson.A, len(x))
		for i, e := range x {
			out[i] = updDeepCopy(e)
		}
		return out
	case bson.Binary:
		return bson.Binary{Subtype: x.Subtype, Data: bytes.Clone(x.Data)}
	}
	return v
}
