package mql

import (
	"bytes"
	"math"
	"math/big"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Decimal128 special values, as BSON stores them (high word; low word 0).
const (
	updDecNaNHigh    uint64 = 0x7C00000000000000
	updDecPosInfHigh uint64 = 0x7800000000000000
	updDecNegInfHigh uint64 = 0xF800000000000000
	updDecMaxDigits         = 34
	updDecMinExp            = -6176
	updDecMaxExp            = 6111
)

// updIsNumeric reports whether v is one of the four BSON number types.
func updIsNumeric(v any) bool {
	switch v.(type) {
	case int32, int64, float64, bson.Decimal128:
		return true
	}
	return false
}

// updArith applies $inc (mul false) or $mul (mul true) to two numbers with
// MongoDB's SafeNum type rules: decimal wins over double, double over long,
// long over int; int32 results that overflow widen to int64; an int64
// overflow is invalid (ok false).
func updArith(mul bool, a, b any) (any, bool) {
	_, ad := a.(bson.Decimal128)
	_, bd := b.(bson.Decimal128)
	if ad || bd {
		return updDecArith(mul, updToDec(a), updToDec(b)), true
	}
	_, af := a.(float64)
	_, bf := b.(float64)
	if af || bf {
		x, _ := ToFloat64(a)
		y, _ := ToFloat64(b)
		if mul {
			return x * y, true
		}
		return x + y, true
	}
	_, al := a.(int64)
	_, bl := b.(int64)
	x, _ := ToInt64(a)
	y, _ := ToInt64(b)
	if al || bl {
		if mul {
			if x != 0 && y != 0 {
				r := x * y
				if r/y != x || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64) {
					return nil, false
				}
				return r, true
			}
			return int64(0), true
		}
		r := x + y
		if (x > 0 && y > 0 && r < 0) || (x < 0 && y < 0 && r >= 0) {
			return nil, false
		}
		return r, true
	}
	var r int64
	if mul {
		r = x * y
	} else {
		r = x + y
	}
	if r >= math.MinInt32 && r <= math.MaxInt32 {
		return int32(r), true
	}
	return r, true
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

// updDec is a decimal128 value in arithmetic form: a special (NaN or an
// infinity) or coef × 10^exp.
type updDec struct {
	nan  bool
	inf  int // +1, -1 or 0
	coef *big.Int
	exp  int
}

// updToDec converts a number to decimal form; doubles are rounded to 15
// significant digits as MongoDB does when it mixes doubles and decimals.
func updToDec(v any) updDec {
	switch x := v.(type) {
	case bson.Decimal128:
		if x.IsNaN() {
			return updDec{nan: true}
		}
		if s := x.IsInf(); s != 0 {
			return updDec{inf: s}
		}
		c, e, err := x.BigInt()
		if err != nil {
			return updDec{nan: true}
		}
		return updDec{coef: c, exp: e}
	case float64:
		switch {
		case math.IsNaN(x):
			return updDec{nan: true}
		case math.IsInf(x, 1):
			return updDec{inf: 1}
		case math.IsInf(x, -1):
			return updDec{inf: -1}
		}
		s := strconv.FormatFloat(x, 'e', 14, 64) // d.dddddddddddddde±XX
		mant, expPart, _ := strings.Cut(s, "e")
		e, _ := strconv.Atoi(expPart)
		digits := strings.Replace(mant, ".", "", 1)
		c, _ := new(big.Int).SetString(digits, 10)
		return updDec{coef: c, exp: e - 14}
	default:
		i, _ := ToInt64(v)
		return updDec{coef: big.NewInt(i), exp: 0}
	}
}

var updBigTen = big.NewInt(10)

func updPow10(n int) *big.Int {
	return new(big.Int).Exp(updBigTen, big.NewInt(int64(n)), nil)
}

// updDecArith adds or multiplies two decimals with IEEE 754-2008 decimal128
// semantics (34 digits, round half to even).
func updDecArith(mul bool, x, y updDec) bson.Decimal128 {
	if x.nan || y.nan {
		return bson.NewDecimal128(updDecNaNHigh, 0)
	}
	if mul {
		if x.inf != 0 || y.inf != 0 {
			sx, sy := x.inf, y.inf
			if sx == 0 {
				if x.coef.Sign() == 0 {
					return bson.NewDecimal128(updDecNaNHigh, 0)
				}
				sx = x.coef.Sign()
			}
			if sy == 0 {
				if y.coef.Sign() == 0 {
					return bson.NewDecimal128(updDecNaNHigh, 0)
				}
				sy = y.coef.Sign()
			}
			return updDecInf(sx * sy)
		}
		c := new(big.Int).Mul(x.coef, y.coef)
		return updDecRound(c, x.exp+y.exp)
	}
	if x.inf != 0 || y.inf != 0 {
		if x.inf != 0 && y.inf != 0 && x.inf != y.inf {
			return bson.NewDecimal128(updDecNaNHigh, 0)
		}
		if x.inf != 0 {
			return updDecInf(x.inf)
		}
		return updDecInf(y.inf)
	}
	e := min(x.exp, y.exp)
	a := new(big.Int).Mul(x.coef, updPow10(x.exp-e))
	b := new(big.Int).Mul(y.coef, updPow10(y.exp-e))
	return updDecRound(a.Add(a, b), e)
}

func updDecInf(sign int) bson.Decimal128 {
	if sign < 0 {
		return bson.NewDecimal128(updDecNegInfHigh, 0)
	}
	return bson.NewDecimal128(updDecPosInfHigh, 0)
}

// updDecRound rounds coef × 10^exp to 34 digits (half to even) and encodes
// it; values too large become infinities.
func updDecRound(coef *big.Int, exp int) bson.Decimal128 {
	neg := coef.Sign() < 0
	c := new(big.Int).Abs(coef)
	drop := len(c.String()) - updDecMaxDigits
	if exp+max(drop, 0) < updDecMinExp {
		drop = updDecMinExp - exp
	}
	if drop > 0 {
		c = updRoundHalfEven(c, drop)
		exp += drop
		if len(c.String()) > updDecMaxDigits {
			c.Quo(c, updBigTen)
			exp++
		}
	}
	if neg {
		c.Neg(c)
	}
	if d, ok := bson.ParseDecimal128FromBigInt(c, exp); ok {
		return d
	}
	if neg {
		return updDecInf(-1)
	}
	return updDecInf(1)
}

// updRoundHalfEven divides c by 10^drop rounding half to even.
func updRoundHalfEven(c *big.Int, drop int) *big.Int {
	div := updPow10(drop)
	q, r := new(big.Int).QuoRem(c, div, new(big.Int))
	twice := new(big.Int).Lsh(r, 1)
	switch twice.Cmp(div) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}

// updIdentical reports whether a and b are the same BSON value bit for bit:
// same types, same field names in the same order, same bytes. It is
// MongoDB's binaryEqualValues, used to detect no-op updates.
func updIdentical(a, b any) bool {
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
			if x[i].Key != y[i].Key || !updIdentical(x[i].Value, y[i].Value) {
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
			if !updIdentical(x[i], y[i]) {
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
			return updIdentical(xs, ys)
		}
		return Compare(a, b) == 0
	case string, int32, int64, bool, bson.ObjectID, bson.DateTime, bson.Timestamp,
		bson.Decimal128, bson.Regex, bson.Undefined, bson.MinKey, bson.MaxKey,
		bson.JavaScript, bson.Symbol, bson.DBPointer:
		return a == b
	}
	return Compare(a, b) == 0 && TypeName(a) == TypeName(b)
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
