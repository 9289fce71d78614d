package storage

import (
	"encoding/binary"
	"math"
	"math/big"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mql"
)

// Canonical type classes in MongoDB's comparison order (BSON spec
// "Comparison/Sort Order"); they are the first byte of every encoded key
// component, so byte order follows MongoDB's cross-type order.
const (
	classEnd       = 0x00 // terminates objects and arrays
	classMinKey    = 0x01
	classNull      = 0x05 // null, undefined and missing
	classNumber    = 0x0a
	classString    = 0x0f // string and symbol
	classObject    = 0x14
	classArray     = 0x19
	classBinary    = 0x1e
	classObjectID  = 0x23
	classBool      = 0x28
	classDate      = 0x2d
	classTimestamp = 0x2f
	classRegex     = 0x32
	classDBPointer = 0x37
	classCode      = 0x3c
	classCodeScope = 0x41
	classMaxKey    = 0x7f
)

// KeyString returns the order-preserving, type-canonical encoding of v used
// for index and _id keys: numerically equal values of different numeric types
// (int32(1), int64(1), 1.0) encode identically, strings and symbols collide,
// and bytes.Compare on two encodings agrees with MongoDB's comparison order
// for numbers, strings, ObjectIDs, booleans, dates, timestamps, binary data,
// null, MinKey and MaxKey. Embedded documents and arrays are encoded element
// by element (equality exact, order close to MongoDB's). Decimal128 values
// equal to a float64 collide with it; others are ordered through their
// float64 approximation with the decimal string as a tie-breaker.
func KeyString(v any) []byte { return appendKey(nil, v) }

// KeyStringCollation is KeyString with strings and symbols (also inside
// documents and arrays) encoded by their collation keys under c, so that
// values equal under the collation encode identically and bytewise order
// follows the collation's order: the key of an index with a collation. A
// nil c is KeyString.
func KeyStringCollation(v any, c *mql.Collation) []byte { return appendKeyColl(nil, v, c) }

func appendKey(b []byte, v any) []byte { return appendKeyColl(b, v, nil) }

// appendKeyColl appends the key encoding of v, strings under coll.
func appendKeyColl(b []byte, v any, coll *mql.Collation) []byte {
	switch x := v.(type) {
	case nil, bson.Undefined:
		return append(b, classNull)
	case bson.MinKey:
		return append(b, classMinKey)
	case bson.MaxKey:
		return append(b, classMaxKey)
	case int32:
		return appendInt(b, int64(x))
	case int64:
		return appendInt(b, x)
	case int:
		return appendInt(b, int64(x))
	case float64:
		return appendFloat(b, x, 0, nil)
	case bson.Decimal128:
		return appendDecimal(b, x)
	case string:
		if coll != nil {
			return appendString(append(b, classString), string(coll.Key(x)))
		}
		return appendString(append(b, classString), x)
	case bson.Symbol:
		if coll != nil {
			return appendString(append(b, classString), string(coll.Key(string(x))))
		}
		return appendString(append(b, classString), string(x))
	case bson.D:
		b = append(b, classObject)
		for _, e := range x {
			b = appendKeyColl(b, e.Value, coll)
			b = appendString(b, e.Key)
		}
		return append(b, classEnd)
	case bson.M:
		return appendKeyColl(b, mapToD(x), coll)
	case bson.A:
		b = append(b, classArray)
		for _, e := range x {
			b = appendKeyColl(b, e, coll)
		}
		return append(b, classEnd)
	case []any:
		return appendKeyColl(b, bson.A(x), coll)
	case bson.Binary:
		b = append(b, classBinary)
		b = binary.BigEndian.AppendUint32(b, uint32(len(x.Data)))
		b = append(b, x.Subtype)
		return append(b, x.Data...)
	case bson.ObjectID:
		return append(append(b, classObjectID), x[:]...)
	case bool:
		if x {
			return append(b, classBool, 1)
		}
		return append(b, classBool, 0)
	case bson.DateTime:
		return binary.BigEndian.AppendUint64(append(b, classDate), uint64(x)^(1<<63))
	case bson.Timestamp:
		b = binary.BigEndian.AppendUint32(append(b, classTimestamp), x.T)
		return binary.BigEndian.AppendUint32(b, x.I)
	case bson.Regex:
		return appendString(appendString(append(b, classRegex), x.Pattern), x.Options)
	case bson.DBPointer:
		return append(appendString(append(b, classDBPointer), x.DB), x.Pointer[:]...)
	case bson.JavaScript:
		return appendString(append(b, classCode), string(x))
	case bson.CodeWithScope:
		return appendKey(appendString(append(b, classCodeScope), string(x.Code)), x.Scope)
	default:
		// Unknown Go types never reach storage from the wire; encode their
		// BSON form so equal values still collide.
		t, data, err := bson.MarshalValue(v)
		if err != nil {
			return append(b, classMaxKey)
		}
		b = append(b, classMaxKey, byte(t))
		return append(b, data...)
	}
}

func mapToD(m bson.M) bson.D {
	d := make(bson.D, 0, len(m))
	for k, v := range m {
		d = append(d, bson.E{Key: k, Value: v})
	}
	return d
}

// appendDecimal encodes a Decimal128 as the number it equals when a float64
// represents it exactly (so NumberDecimal("1") collides with 1), and otherwise
// as its nearest float64 plus the decimal string as a tie-breaker.
func appendDecimal(b []byte, x bson.Decimal128) []byte {
	s := x.String()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		f = math.NaN()
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendFloat(b, f, 0, nil)
	}
	if r, ok := new(big.Rat).SetString(s); ok {
		if fr, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64)); ok && r.Cmp(fr) == 0 {
			return appendFloat(b, f, 0, nil)
		}
	}
	return appendFloat(b, f, 0, []byte(s))
}

// appendString appends s with 0x00 escaped as 0x00 0xff and terminated by
// 0x00 0x00, which preserves bytewise order and makes the encoding
// self-delimiting.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b = append(b, 0, 0xff)
			continue
		}
		b = append(b, s[i])
	}
	return append(b, 0, 0)
}

// appendInt appends the key encoding of the integer v. Numbers are encoded
// as classNumber, an 8-byte order-preserving image of the
// nearest float64, and an 8-byte signed correction (value - float64 image)
// that is non-zero only for int64 values float64 cannot represent. Two
// numbers are equal exactly when both parts are, and the pair orders like the
// exact value. A trailing decimal tie-breaker distinguishes Decimal128s.
func appendInt(b []byte, v int64) []byte {
	f := float64(v)
	var diff int64
	if f >= math.MaxInt64 { // 2^63 rounds above every int64
		diff = v - math.MaxInt64 - 1
	} else {
		diff = v - int64(f)
	}
	return appendFloat(b, f, diff, nil)
}

func appendFloat(b []byte, f float64, diff int64, dec []byte) []byte {
	b = append(b, classNumber)
	var u uint64
	switch {
	case math.IsNaN(f):
		u = 0 // NaN sorts below every other number, as in MongoDB.
	case f == 0:
		u = math.Float64bits(0) ^ (1 << 63) // -0 == 0
	default:
		u = math.Float64bits(f)
		if u&(1<<63) != 0 {
			u = ^u
		} else {
			u ^= 1 << 63
		}
		if u == 0 {
			u = 1
		}
	}
	b = binary.BigEndian.AppendUint64(b, u)
	b = binary.BigEndian.AppendUint64(b, uint64(diff)^(1<<63))
	if dec != nil {
		b = appendString(append(b, 1), string(dec))
	}
	return append(b, 0)
}
