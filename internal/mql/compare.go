package mql

import (
	"bytes"
	"cmp"
	"math"
	"math/big"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Canonical type ranks of MongoDB's comparison order (canonicalizeBSONType
// in the server): values of different ranks compare by rank, values of the
// same rank by value. All numbers share a rank, as do string and symbol.
const (
	rankMinKey    = -1
	rankUndefined = 0
	rankNull      = 5
	rankNumber    = 10
	rankString    = 15
	rankObject    = 20
	rankArray     = 25
	rankBinData   = 30
	rankObjectID  = 35
	rankBool      = 40
	rankDate      = 45
	rankTimestamp = 47
	rankRegex     = 50
	rankDBPointer = 55
	rankCode      = 60
	rankCodeScope = 65
	rankMaxKey    = 127
	// rankUnknown sorts Go values outside the value model after MaxKey so
	// that Compare stays a total order even on invalid input.
	rankUnknown = 200
)

// canonicalRank returns the comparison-order rank of v. Missing ranks as
// null, as it does when MongoDB sorts.
func canonicalRank(v any) int {
	switch TypeNumber(v) {
	case -1:
		return rankMinKey
	case 6:
		return rankUndefined
	case 10:
		return rankNull
	case 1, 16, 18, 19:
		return rankNumber
	case 2, 14:
		return rankString
	case 3:
		return rankObject
	case 4:
		return rankArray
	case 5:
		return rankBinData
	case 7:
		return rankObjectID
	case 8:
		return rankBool
	case 9:
		return rankDate
	case 17:
		return rankTimestamp
	case 11:
		return rankRegex
	case 12:
		return rankDBPointer
	case 13:
		return rankCode
	case 15:
		return rankCodeScope
	case 127:
		return rankMaxKey
	}
	if IsMissing(v) {
		return rankNull
	}
	return rankUnknown
}

// Compare compares two values in MongoDB's BSON comparison and sort order
// and returns -1, 0 or +1. Across types the order is MinKey < undefined <
// null (and Missing, which compares as null) < numbers < string and symbol <
// object < array < binData < objectId < bool < date < timestamp < regex <
// dbPointer < javascript < javascriptWithScope < MaxKey. Numbers compare by
// exact value across int32, int64, double and decimal128, with NaN equal to
// NaN and below every other number; strings compare bytewise (simple binary
// collation); documents compare element by element (type, then field name,
// then value) with a prefix first; arrays compare element-wise; binData
// compares by length, then subtype, then bytes. Compare never panics; Go
// values outside the value model sort after MaxKey.
func Compare(a, b any) int {
	return compareValues(a, b, nil)
}

// CompareCollated is Compare with strings (and symbols), also inside
// documents and arrays, compared under the collation c; field names still
// compare bytewise, as in MongoDB. A nil c is Compare.
func CompareCollated(a, b any, c *Collation) int {
	return compareValues(a, b, c)
}

// compareValues is Compare with an optional collation for strings.
func compareValues(a, b any, coll *Collation) int {
	ra, rb := canonicalRank(a), canonicalRank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch ra {
	case rankMinKey, rankUndefined, rankNull, rankMaxKey, rankUnknown:
		return 0
	case rankNumber:
		return compareNumbers(a, b)
	case rankString:
		if coll != nil {
			return coll.CompareStrings(stringValue(a), stringValue(b))
		}
		return strings.Compare(stringValue(a), stringValue(b))
	case rankObject:
		da, _ := AsDocument(a)
		db, _ := AsDocument(b)
		return compareDocs(da, db, coll)
	case rankArray:
		aa, _ := AsArray(a)
		ab, _ := AsArray(b)
		return compareArrays(aa, ab, coll)
	case rankBinData:
		return compareBinary(toBinary(a), toBinary(b))
	case rankObjectID:
		x, y := a.(bson.ObjectID), b.(bson.ObjectID)
		return bytes.Compare(x[:], y[:])
	case rankBool:
		x, y := a.(bool), b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case rankDate:
		return cmp.Compare(a.(bson.DateTime), b.(bson.DateTime))
	case rankTimestamp:
		return a.(bson.Timestamp).Compare(b.(bson.Timestamp))
	case rankRegex:
		x, y := a.(bson.Regex), b.(bson.Regex)
		if c := strings.Compare(x.Pattern, y.Pattern); c != 0 {
			return c
		}
		return strings.Compare(x.Options, y.Options)
	case rankDBPointer:
		// MongoDB compares the value bytes: namespace length, namespace, oid.
		x, y := a.(bson.DBPointer), b.(bson.DBPointer)
		if c := cmp.Compare(len(x.DB), len(y.DB)); c != 0 {
			return c
		}
		if c := strings.Compare(x.DB, y.DB); c != 0 {
			return c
		}
		return bytes.Compare(x.Pointer[:], y.Pointer[:])
	case rankCode:
		return strings.Compare(string(a.(bson.JavaScript)), string(b.(bson.JavaScript)))
	case rankCodeScope:
		x, y := a.(bson.CodeWithScope), b.(bson.CodeWithScope)
		if c := strings.Compare(string(x.Code), string(y.Code)); c != 0 {
			return c
		}
		return Compare(x.Scope, y.Scope)
	}
	return 0
}

// Equal reports whether a and b are equal in MongoDB's comparison order:
// numbers are equal by value across types (int32(1), int64(1), 1.0 and
// decimal 1 are all equal), documents must have the same field names in the
// same order with equal values, and Missing equals null.
func Equal(a, b any) bool {
	return Compare(a, b) == 0
}

func stringValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bson.Symbol:
		return string(x)
	}
	return ""
}

func toBinary(v any) bson.Binary {
	switch x := v.(type) {
	case bson.Binary:
		return x
	case []byte:
		return bson.Binary{Data: x}
	}
	return bson.Binary{}
}

func compareBinary(x, y bson.Binary) int {
	if c := cmp.Compare(len(x.Data), len(y.Data)); c != 0 {
		return c
	}
	if c := cmp.Compare(x.Subtype, y.Subtype); c != 0 {
		return c
	}
	return bytes.Compare(x.Data, y.Data)
}

// compareDocs compares documents as BSONObj::woCompare does: element by
// element, each by canonical type, then field name, then value; a document
// that is a prefix of the other is smaller.
func compareDocs(a, b bson.D, coll *Collation) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := cmp.Compare(canonicalRank(a[i].Value), canonicalRank(b[i].Value)); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].Key, b[i].Key); c != 0 {
			return c
		}
		if c := compareValues(a[i].Value, b[i].Value, coll); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// compareArrays compares arrays element-wise, a prefix first.
func compareArrays(a, b bson.A, coll *Collation) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := compareValues(a[i], b[i], coll); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// numKind classifies a number for comparison.
type numKind uint8

const (
	numInt numKind = iota
	numFloat
	numDecimal
)

// cmpNumber is a number unpacked for comparison.
type cmpNumber struct {
	kind numKind
	i    int64
	f    float64
	d    bson.Decimal128
}

func toNumber(v any) cmpNumber {
	switch x := v.(type) {
	case int32:
		return cmpNumber{kind: numInt, i: int64(x)}
	case int64:
		return cmpNumber{kind: numInt, i: x}
	case int:
		return cmpNumber{kind: numInt, i: int64(x)}
	case float64:
		return cmpNumber{kind: numFloat, f: x}
	case bson.Decimal128:
		return cmpNumber{kind: numDecimal, d: x}
	}
	// Rare Go types (int8, float32, ...): go through ToInt64/ToFloat64.
	if i, ok := ToInt64(v); ok && !isFloatType(v) {
		return cmpNumber{kind: numInt, i: i}
	}
	f, _ := ToFloat64(v)
	return cmpNumber{kind: numFloat, f: f}
}

func isFloatType(v any) bool {
	switch v.(type) {
	case float32, float64:
		return true
	}
	return false
}

// compareNumbers compares two numbers exactly by value; NaN equals NaN and
// is below every other number.
func compareNumbers(a, b any) int {
	x, y := toNumber(a), toNumber(b)
	switch {
	case x.kind == numInt && y.kind == numInt:
		return cmp.Compare(x.i, y.i)
	case x.kind == numFloat && y.kind == numFloat:
		return compareFloats(x.f, y.f)
	case x.kind == numInt && y.kind == numFloat:
		return compareIntFloat(x.i, y.f)
	case x.kind == numFloat && y.kind == numInt:
		return -compareIntFloat(y.i, x.f)
	}
	return compareWithDecimal(x, y)
}

// compareFloats orders doubles with NaN lowest and -0 == 0.
func compareFloats(x, y float64) int {
	xn, yn := math.IsNaN(x), math.IsNaN(y)
	switch {
	case xn && yn:
		return 0
	case xn:
		return -1
	case yn:
		return 1
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// compareIntFloat compares an int64 with a double exactly.
func compareIntFloat(i int64, f float64) int {
	switch {
	case math.IsNaN(f):
		return 1
	case f >= 1<<63:
		return -1
	case f < -(1 << 63):
		return 1
	}
	t := math.Trunc(f)
	if c := cmp.Compare(i, int64(t)); c != 0 {
		return c
	}
	// Same integral part: the fraction decides.
	frac := f - t
	switch {
	case frac > 0:
		return -1
	case frac < 0:
		return 1
	}
	return 0
}

// special classifies NaN and infinities: 0 finite, 1 NaN, 2 -Inf, 3 +Inf.
func (n cmpNumber) special() int {
	switch n.kind {
	case numFloat:
		switch {
		case math.IsNaN(n.f):
			return 1
		case math.IsInf(n.f, -1):
			return 2
		case math.IsInf(n.f, 1):
			return 3
		}
	case numDecimal:
		switch {
		case n.d.IsNaN():
			return 1
		case n.d.IsInf() < 0:
			return 2
		case n.d.IsInf() > 0:
			return 3
		}
	}
	return 0
}

// specialOrder maps special() to an order: NaN < -Inf < finite < +Inf.
func specialOrder(s int) int {
	switch s {
	case 1:
		return 0
	case 2:
		return 1
	case 3:
		return 3
	}
	return 2
}

func (n cmpNumber) rat() *big.Rat {
	switch n.kind {
	case numInt:
		return new(big.Rat).SetInt64(n.i)
	case numFloat:
		return new(big.Rat).SetFloat64(n.f)
	}
	r, _ := decimalToRat(n.d)
	return r
}

// compareWithDecimal compares two numbers at least one of which is a
// decimal128, exactly.
func compareWithDecimal(x, y cmpNumber) int {
	sx, sy := x.special(), y.special()
	if sx != 0 || sy != 0 {
		return cmp.Compare(specialOrder(sx), specialOrder(sy))
	}
	return x.rat().Cmp(y.rat())
}

// Identical reports whether a and b are the same BSON value bit for bit:
// same types, same field names in the same order, same bytes (1 and 1.0
// differ, as do -0.0 and 0.0, and {a, b} and {b, a}). It is MongoDB's
// binaryEqualValues: updates use it to detect no-ops and devdb's change
// streams to compute update descriptions. Equal is the comparison-order
// equality ({a: 1} equals {a: 1.0}).
func Identical(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case bson.D:
		y, ok := b.(bson.D)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i].Key != y[i].Key || !Identical(x[i].Value, y[i].Value) {
				return false
			}
		}
		return true
	case bson.A:
		y, ok := b.(bson.A)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !Identical(x[i], y[i]) {
				return false
			}
		}
		return true
	case bson.Binary:
		y, ok := b.(bson.Binary)
		return ok && x.Subtype == y.Subtype && bytes.Equal(x.Data, y.Data)
	case bson.CodeWithScope:
		y, ok := b.(bson.CodeWithScope)
		if !ok || x.Code != y.Code {
			return false
		}
		xs, xok := x.Scope.(bson.D)
		ys, yok := y.Scope.(bson.D)
		if xok && yok {
			return Identical(xs, ys)
		}
		return Compare(a, b) == 0
	case string, int32, int64, bool, bson.ObjectID, bson.DateTime, bson.Timestamp,
		bson.Decimal128, bson.Regex, bson.Undefined, bson.MinKey, bson.MaxKey,
		bson.JavaScript, bson.Symbol, bson.DBPointer:
		return a == b
	}
	return Compare(a, b) == 0 && TypeName(a) == TypeName(b)
}
