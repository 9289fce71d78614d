package mql

import (
	"math"
	"math/big"
	"reflect"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// missing is the type of Missing.
type missing struct{}

// Missing is the value of an absent field. It is distinct from nil, which is
// BSON null: {a: null} has a null "a", {} has a Missing "a". Functions that
// can report "absent" return Missing; compare with == or use IsMissing.
// Missing is never stored in a document.
var Missing = missing{}

// IsMissing reports whether v is Missing.
func IsMissing(v any) bool {
	_, ok := v.(missing)
	return ok
}

// TypeName returns MongoDB's $type alias for the BSON type of v ("double",
// "string", "object", "array", "binData", "undefined", "objectId", "bool",
// "date", "null", "regex", "dbPointer", "javascript", "symbol",
// "javascriptWithScope", "int", "timestamp", "long", "decimal", "minKey",
// "maxKey"), "missing" for Missing, and "unknown" for a Go value outside the
// shared value model.
func TypeName(v any) string {
	if name := typeNameOfNumber(TypeNumber(v)); name != "" {
		return name
	}
	if IsMissing(v) {
		return "missing"
	}
	return "unknown"
}

// typeNameOfNumber returns MongoDB's $type alias for a BSON type number,
// or "" for a number that names no type. It is the one alias table that
// TypeName, $type in filters and $convert share.
func typeNameOfNumber(n int) string {
	switch n {
	case 1:
		return "double"
	case 2:
		return "string"
	case 3:
		return "object"
	case 4:
		return "array"
	case 5:
		return "binData"
	case 6:
		return "undefined"
	case 7:
		return "objectId"
	case 8:
		return "bool"
	case 9:
		return "date"
	case 10:
		return "null"
	case 11:
		return "regex"
	case 12:
		return "dbPointer"
	case 13:
		return "javascript"
	case 14:
		return "symbol"
	case 15:
		return "javascriptWithScope"
	case 16:
		return "int"
	case 17:
		return "timestamp"
	case 18:
		return "long"
	case 19:
		return "decimal"
	case -1:
		return "minKey"
	case 127:
		return "maxKey"
	}
	return ""
}

// typeNumberMissing is TypeNumber's result for Missing and for Go values
// outside the value model (BSON's end-of-object marker, 0).
const typeNumberMissing = 0

// TypeNumber returns the BSON type number of v: 1 double, 2 string,
// 3 object, 4 array, 5 binData, 6 undefined, 7 objectId, 8 bool, 9 date,
// 10 null, 11 regex, 12 dbPointer, 13 javascript, 14 symbol,
// 15 javascriptWithScope, 16 int, 17 timestamp, 18 long, 19 decimal,
// -1 minKey, 127 maxKey. Missing and values outside the model return 0.
// A Go int is typed as the driver encodes it: int32 when it fits, else int64.
func TypeNumber(v any) int {
	switch x := v.(type) {
	case float64, float32:
		return 1
	case string:
		return 2
	case bson.D, bson.M, map[string]any:
		return 3
	case bson.A, []any:
		return 4
	case bson.Binary, []byte:
		return 5
	case bson.Undefined:
		return 6
	case bson.ObjectID:
		return 7
	case bool:
		return 8
	case bson.DateTime:
		return 9
	case nil, bson.Null:
		return 10
	case bson.Regex:
		return 11
	case bson.DBPointer:
		return 12
	case bson.JavaScript:
		return 13
	case bson.Symbol:
		return 14
	case bson.CodeWithScope:
		return 15
	case int32, int16, int8, uint8, uint16:
		return 16
	case bson.Timestamp:
		return 17
	case int64, uint32:
		return 18
	case int:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return 16
		}
		return 18
	case bson.Decimal128:
		return 19
	case bson.MinKey:
		return -1
	case bson.MaxKey:
		return 127
	}
	return typeNumberMissing
}

// IsNumber reports whether v is a BSON number (int32, int64, double or
// decimal128, or a Go int or float32 treated as one).
func IsNumber(v any) bool {
	switch v.(type) {
	case float64, int32, int64, bson.Decimal128, int, float32, int8, int16, uint8, uint16, uint32:
		return true
	}
	return false
}

// AsArray returns v as a bson.A when it is an array (bson.A or []any).
func AsArray(v any) (bson.A, bool) {
	switch x := v.(type) {
	case bson.A:
		return x, true
	case []any:
		return bson.A(x), true
	}
	return nil, false
}

// AsDocument returns v as a bson.D when it is a document. A bson.M or
// map[string]any is converted with its keys in sorted order (maps carry no
// order).
func AsDocument(v any) (bson.D, bool) {
	switch x := v.(type) {
	case bson.D:
		return x, true
	case bson.M:
		return mapToD(x), true
	case map[string]any:
		return mapToD(x), true
	}
	return nil, false
}

// mapToD converts a map to a bson.D with sorted keys.
func mapToD(m map[string]any) bson.D {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := make(bson.D, 0, len(keys))
	for _, k := range keys {
		d = append(d, bson.E{Key: k, Value: m[k]})
	}
	return d
}

// Normalize returns v in the shared value model: Go ints become int32 (when
// they fit) or int64, float32 becomes float64, []any and maps become bson.A
// and bson.D (recursively), []byte becomes generic binary and bson.Null
// becomes nil. Values already in the model are returned unchanged (documents
// and arrays are copied only when something inside them changes).
func Normalize(v any) any {
	switch x := v.(type) {
	case int:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return int32(x)
		}
		return int64(x)
	case int8:
		return int32(x)
	case int16:
		return int32(x)
	case uint8:
		return int32(x)
	case uint16:
		return int32(x)
	case uint32:
		return int64(x)
	case float32:
		return float64(x)
	case bson.Null:
		return nil
	case []byte:
		return bson.Binary{Data: x}
	case []any:
		return normalizeArray(bson.A(x), true)
	case bson.A:
		return normalizeArray(x, false)
	case bson.M:
		return normalizeDoc(mapToD(x), true)
	case map[string]any:
		return normalizeDoc(mapToD(x), true)
	case bson.D:
		return normalizeDoc(x, false)
	}
	return v
}

func normalizeArray(a bson.A, fresh bool) bson.A {
	out := a
	for i, e := range a {
		n := Normalize(e)
		if !fresh && !sameValue(n, e) {
			out = append(bson.A(nil), a...)
			fresh = true
		}
		out[i] = n
	}
	return out
}

func normalizeDoc(d bson.D, fresh bool) bson.D {
	out := d
	for i, e := range d {
		n := Normalize(e.Value)
		if !fresh && !sameValue(n, e.Value) {
			out = append(bson.D(nil), d...)
			fresh = true
		}
		out[i].Value = n
	}
	return out
}

// sameValue reports whether Normalize left a value untouched (same dynamic
// type; containers are compared by identity of their backing array).
func sameValue(a, b any) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb {
		return false
	}
	switch x := a.(type) {
	case bson.A:
		y := b.(bson.A)
		return len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
	case bson.D:
		y := b.(bson.D)
		return len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
	}
	return true
}

// ToFloat64 converts a number to float64 (decimal128 is rounded to the
// nearest double). ok is false when v is not a number.
func ToFloat64(v any) (f float64, ok bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case float32:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case bson.Decimal128:
		return decimalToFloat64(x), true
	}
	return 0, false
}

// ToInt64 converts a number with an integral value representable as int64
// to int64. ok is false when v is not a number, is fractional, NaN,
// infinite or out of range.
func ToInt64(v any) (i int64, ok bool) {
	switch x := v.(type) {
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case float32:
		return floatToInt64(float64(x))
	case float64:
		return floatToInt64(x)
	case bson.Decimal128:
		r, ok := decimalToRat(x)
		if !ok || !r.IsInt() || !r.Num().IsInt64() {
			return 0, false
		}
		return r.Num().Int64(), true
	}
	return 0, false
}

// floatToInt64 converts an integral float64 in int64 range exactly.
func floatToInt64(f float64) (int64, bool) {
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// decimalToFloat64 rounds a decimal128 to the nearest double.
func decimalToFloat64(d bson.Decimal128) float64 {
	if d.IsNaN() {
		return math.NaN()
	}
	if s := d.IsInf(); s != 0 {
		return math.Inf(s)
	}
	r, ok := decimalToRat(d)
	if !ok {
		return math.NaN()
	}
	f, _ := r.Float64()
	if f == 0 {
		h, _ := d.GetBytes()
		if h>>63 == 1 {
			return math.Copysign(0, -1)
		}
	}
	return f
}

// decimalToRat returns the exact value of a finite decimal128; ok is false
// for NaN and infinities.
func decimalToRat(d bson.Decimal128) (*big.Rat, bool) {
	coef, exp, err := d.BigInt()
	if err != nil {
		return nil, false
	}
	r := new(big.Rat).SetInt(coef)
	if exp == 0 || coef.Sign() == 0 {
		return r, true
	}
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(absInt(exp))), nil)
	if exp > 0 {
		r.Mul(r, new(big.Rat).SetInt(scale))
	} else {
		r.Quo(r, new(big.Rat).SetInt(scale))
	}
	return r, true
}

func absInt(i int) int {
	if i < 0 {
		return -i
	}
	return i
}
