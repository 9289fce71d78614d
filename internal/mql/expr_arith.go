package mql

import (
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// arithOperators is the table of arithmetic operators, including the
// expression forms of $sum $avg $min $max.
func arithOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$add":      fixedOp(0, -1, evalAdd),
		"$rand":     compileRand,
		"$subtract": fixedOp(2, 2, evalSubtract),
		"$multiply": fixedOp(0, -1, evalMultiply),
		"$divide":   fixedOp(2, 2, evalDivide),
		"$mod":      fixedOp(2, 2, evalMod),
		"$abs":      unaryOp(evalUnaryMath),
		"$ceil":     unaryOp(evalUnaryMath),
		"$floor":    unaryOp(evalUnaryMath),
		"$sqrt":     unaryOp(evalUnaryMath),
		"$exp":      unaryOp(evalUnaryMath),
		"$ln":       unaryOp(evalUnaryMath),
		"$log10":    unaryOp(evalUnaryMath),
		"$pow":      fixedOp(2, 2, evalPow),
		"$round":    namedOp(1, 2, evalRound),
		"$trunc":    namedOp(1, 2, evalRound),
		"$sum":      compileExprAccum,
		"$avg":      compileExprAccum,
		"$min":      compileExprAccum,
		"$max":      compileExprAccum,
	}
}

// Numeric kinds in MongoDB's widening order.
const (
	aggKNone = iota
	aggKInt
	aggKLong
	aggKDouble
	aggKDecimal
)

// aggNumKind returns the numeric kind of v, or aggKNone.
func aggNumKind(v any) int {
	switch v.(type) {
	case int32:
		return aggKInt
	case int64:
		return aggKLong
	case float64:
		return aggKDouble
	case bson.Decimal128:
		return aggKDecimal
	}
	return aggKNone
}

// aggToFloat converts a number to float64 (decimals through their string).
func aggToFloat(v any) float64 {
	switch t := v.(type) {
	case int32:
		return float64(t)
	case int64:
		return float64(t)
	case float64:
		return t
	case bson.Decimal128:
		// ParseFloat returns ±Inf (with an error) for out-of-range values,
		// which is the conversion wanted here.
		f, _ := strconv.ParseFloat(aggDecString(t), 64)
		return f
	}
	return math.NaN()
}

// aggDecString renders a Decimal128 in a form strconv.ParseFloat accepts.
func aggDecString(d bson.Decimal128) string {
	s := d.String()
	switch s {
	case "Infinity":
		return "+Inf"
	case "-Infinity":
		return "-Inf"
	}
	return s
}

// aggToInt64Exact converts a number with an exact integral value that fits
// in int64.
func aggToInt64Exact(v any) (int64, bool) {
	switch t := v.(type) {
	case int32:
		return int64(t), true
	case int64:
		return t, true
	case float64:
		if t != math.Trunc(t) || t < -9.223372036854775808e18 || t >= 9.223372036854775808e18 {
			return 0, false
		}
		return int64(t), true
	case bson.Decimal128:
		d := aggDecFrom(t)
		if d.nan || d.inf != 0 {
			return 0, false
		}
		r, ok := d.rat()
		if !ok || !r.IsInt() || !r.Num().IsInt64() {
			return 0, false
		}
		return r.Num().Int64(), true
	}
	return 0, false
}

// aggDec is an arbitrary-precision decimal coef × 10^exp used for Decimal128
// arithmetic, plus the special values.
type aggDec struct {
	coef *big.Int
	exp  int
	nan  bool
	inf  int
}

// aggDecFrom converts a number to aggDec; doubles are rounded to 15
// significant digits as MongoDB does.
func aggDecFrom(v any) aggDec {
	switch t := v.(type) {
	case int32:
		return aggDec{coef: big.NewInt(int64(t))}
	case int64:
		return aggDec{coef: big.NewInt(t)}
	case float64:
		switch {
		case math.IsNaN(t):
			return aggDec{nan: true}
		case math.IsInf(t, 1):
			return aggDec{inf: 1}
		case math.IsInf(t, -1):
			return aggDec{inf: -1}
		}
		s := strconv.FormatFloat(t, 'e', 14, 64)
		mant, expStr, _ := strings.Cut(s, "e")
		e, _ := strconv.Atoi(expStr)
		digits := strings.Replace(mant, ".", "", 1)
		c, _ := new(big.Int).SetString(digits, 10)
		return aggDec{coef: c, exp: e - 14}
	case bson.Decimal128:
		if t.IsNaN() {
			return aggDec{nan: true}
		}
		if s := t.IsInf(); s != 0 {
			return aggDec{inf: s}
		}
		bi, e, err := t.BigInt()
		if err != nil {
			return aggDec{nan: true}
		}
		return aggDec{coef: bi, exp: e}
	}
	return aggDec{nan: true}
}

// rat returns the exact value of a finite decimal.
func (d aggDec) rat() (*big.Rat, bool) {
	if d.nan || d.inf != 0 {
		return nil, false
	}
	r := new(big.Rat).SetInt(d.coef)
	if d.exp > 0 {
		r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.exp)), nil)))
	} else if d.exp < 0 {
		r.Quo(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-d.exp)), nil)))
	}
	return r, true
}

// aggPow10 returns 10^n for n >= 0.
func aggPow10(n int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// Decimal128 limits (IEEE 754-2008 decimal128) and special values, as BSON
// stores them (high word; the low word is 0).
const (
	aggDecMaxDigits         = 34
	aggDecMinExp            = -6176
	aggDecNaNHigh    uint64 = 0x7C00000000000000
	aggDecPosInfHigh uint64 = 0x7800000000000000
	aggDecNegInfHigh uint64 = 0xF800000000000000
)

// aggDivPow10HalfEven returns c / 10^drop (drop > 0) rounded half to even;
// the sign follows c.
func aggDivPow10HalfEven(c *big.Int, drop int) *big.Int {
	div := aggPow10(drop)
	q, r := new(big.Int).QuoRem(c, div, new(big.Int)) // truncates toward zero
	twice := r.Abs(r)
	twice.Lsh(twice, 1)
	if cmp := twice.Cmp(div); cmp > 0 || cmp == 0 && q.Bit(0) == 1 {
		if c.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}

// aggDecDigits returns the number of decimal digits of |c|.
func aggDecDigits(c *big.Int) int {
	n := len(c.String())
	if c.Sign() < 0 {
		n--
	}
	return n
}

// to128 converts back to Decimal128 with IEEE 754-2008 decimal128 rules:
// the coefficient is rounded once, half to even, to 34 digits or to the
// smallest exponent (subnormals), and values too large saturate to
// ±Infinity. Every Decimal128 result in mql, from expressions ($add,
// $round, $avg, ...) and from update operators ($inc, $mul), goes through
// here.
func (d aggDec) to128() bson.Decimal128 {
	switch {
	case d.nan:
		return bson.NewDecimal128(aggDecNaNHigh, 0)
	case d.inf > 0:
		return bson.NewDecimal128(aggDecPosInfHigh, 0)
	case d.inf < 0:
		return bson.NewDecimal128(aggDecNegInfHigh, 0)
	}
	coef, exp := d.coef, d.exp
	drop := aggDecDigits(coef) - aggDecMaxDigits
	if exp+max(drop, 0) < aggDecMinExp {
		drop = aggDecMinExp - exp
	}
	if drop > 0 {
		coef = aggDivPow10HalfEven(coef, drop)
		exp += drop
		if aggDecDigits(coef) > aggDecMaxDigits { // 999… rounded up to 1000…
			coef.Quo(coef, big.NewInt(10))
			exp++
		}
	}
	r, ok := bson.ParseDecimal128FromBigInt(coef, exp)
	if !ok {
		if coef.Sign() < 0 {
			return bson.NewDecimal128(aggDecNegInfHigh, 0)
		}
		return bson.NewDecimal128(aggDecPosInfHigh, 0)
	}
	return r
}

func aggDecAdd(a, b aggDec) aggDec {
	switch {
	case a.nan || b.nan:
		return aggDec{nan: true}
	case a.inf != 0 && b.inf != 0 && a.inf != b.inf:
		return aggDec{nan: true}
	case a.inf != 0:
		return a
	case b.inf != 0:
		return b
	}
	e := min(a.exp, b.exp)
	x := new(big.Int).Mul(a.coef, aggPow10(a.exp-e))
	y := new(big.Int).Mul(b.coef, aggPow10(b.exp-e))
	return aggDec{coef: x.Add(x, y), exp: e}
}

func aggDecNeg(a aggDec) aggDec {
	if a.nan {
		return a
	}
	if a.inf != 0 {
		return aggDec{inf: -a.inf}
	}
	return aggDec{coef: new(big.Int).Neg(a.coef), exp: a.exp}
}

func aggDecMul(a, b aggDec) aggDec {
	switch {
	case a.nan || b.nan:
		return aggDec{nan: true}
	case a.inf != 0 || b.inf != 0:
		sa, sb := a.inf, b.inf
		if sa == 0 {
			if a.coef.Sign() == 0 {
				return aggDec{nan: true}
			}
			sa = a.coef.Sign()
		}
		if sb == 0 {
			if b.coef.Sign() == 0 {
				return aggDec{nan: true}
			}
			sb = b.coef.Sign()
		}
		return aggDec{inf: sa * sb}
	}
	return aggDec{coef: new(big.Int).Mul(a.coef, b.coef), exp: a.exp + b.exp}
}

// aggDecDiv divides a by a non-zero b to 34 significant digits.
func aggDecDiv(a, b aggDec) aggDec {
	switch {
	case a.nan || b.nan:
		return aggDec{nan: true}
	case a.inf != 0 && b.inf != 0:
		return aggDec{nan: true}
	case a.inf != 0:
		return aggDec{inf: a.inf * b.coef.Sign()}
	case b.inf != 0:
		return aggDec{coef: new(big.Int), exp: 0}
	}
	la := len(new(big.Int).Abs(a.coef).String())
	lb := len(new(big.Int).Abs(b.coef).String())
	shift := max(0, 36+lb-la)
	num := new(big.Int).Mul(a.coef, aggPow10(shift))
	q, r := new(big.Int).QuoRem(num, b.coef, new(big.Int))
	exp := a.exp - b.exp - shift
	if r.Sign() == 0 {
		// Exact: drop trailing zeros down to the preferred exponent.
		pref := a.exp - b.exp
		for exp < pref && q.Sign() != 0 {
			qq, rr := new(big.Int).QuoRem(q, big.NewInt(10), new(big.Int))
			if rr.Sign() != 0 {
				break
			}
			q = qq
			exp++
		}
		if q.Sign() == 0 {
			exp = pref
		}
	}
	return aggDec{coef: q, exp: exp}
}

// aggIsZero reports whether a number is zero.
func aggIsZero(v any) bool {
	switch t := v.(type) {
	case int32:
		return t == 0
	case int64:
		return t == 0
	case float64:
		return t == 0
	case bson.Decimal128:
		return aggDecIsZero(t)
	}
	return false
}

// aggDecIsZero reports whether a Decimal128 is zero with any exponent or
// sign (bson.Decimal128.IsZero only recognises the all-zero bit pattern).
func aggDecIsZero(d bson.Decimal128) bool {
	if d.IsNaN() || d.IsInf() != 0 {
		return false
	}
	bi, _, err := d.BigInt()
	return err == nil && bi.Sign() == 0
}

// aggNarrow builds an integer result of the narrowest type allowed by kind:
// int32 if kind is aggKInt and it fits, else int64.
func aggNarrow(v int64, kind int) any {
	if kind == aggKInt && v >= math.MinInt32 && v <= math.MaxInt32 {
		return int32(v)
	}
	return v
}

// evalAdd implements $add over numbers and at most one date.
func evalAdd(_ *evalCtx, vals []any) (any, error) {
	var s aggSummer
	var date *bson.DateTime
	for _, v := range vals {
		if aggNullish(v) {
			return nil, nil
		}
	}
	for _, v := range vals {
		switch t := v.(type) {
		case bson.DateTime:
			if date != nil {
				return nil, mongoerr.Errorf(mongoerr.AddMultipleDates, "only one date allowed in an $add expression")
			}
			d := t
			date = &d
			continue
		}
		if aggNumKind(v) == aggKNone {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$add only supports numeric or date types, not %s", TypeName(v))
		}
		s.add(v)
	}
	if date != nil {
		ms, err := aggDateOffsetMillis(s.result(), "$add")
		if err != nil {
			return nil, err
		}
		return bson.DateTime(int64(*date) + ms), nil
	}
	return s.result(), nil
}

// aggDateOffsetMillis converts the numeric part of date arithmetic to whole
// milliseconds; doubles and decimals are rounded to the nearest millisecond
// (halves away from zero).
func aggDateOffsetMillis(v any, op string) (int64, error) {
	switch t := v.(type) {
	case int32:
		return int64(t), nil
	case int64:
		return t, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) || math.Abs(t) > 9.2e18 {
			return 0, mongoerr.Errorf(mongoerr.Overflow, "date overflow in %s", op)
		}
		return int64(math.Round(t)), nil
	case bson.Decimal128:
		return aggDateOffsetMillis(aggToFloat(t), op)
	}
	return 0, nil
}

// evalSubtract implements $subtract: numbers, date − date (milliseconds as
// a long) and date − number (a date).
func evalSubtract(_ *evalCtx, vals []any) (any, error) {
	a, b := vals[0], vals[1]
	if aggNullish(a) || aggNullish(b) {
		return nil, nil
	}
	if da, ok := a.(bson.DateTime); ok {
		switch tb := b.(type) {
		case bson.DateTime:
			return int64(da) - int64(tb), nil
		}
		if aggNumKind(b) != aggKNone {
			ms, err := aggDateOffsetMillis(b, "$subtract")
			if err != nil {
				return nil, err
			}
			return bson.DateTime(int64(da) - ms), nil
		}
		return nil, mongoerr.Errorf(mongoerr.SubtractFromDate, "can't $subtract %s from date", TypeName(b))
	}
	ka, kb := aggNumKind(a), aggNumKind(b)
	if ka == aggKNone || kb == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.SubtractBadTypes, "can't $subtract %s from %s", TypeName(b), TypeName(a))
	}
	return aggArith('-', a, b), nil
}

// aggArith applies +, - or * to two numbers with MongoDB's type widening.
func aggArith(op byte, a, b any) any {
	k := max(aggNumKind(a), aggNumKind(b))
	switch k {
	case aggKDecimal:
		x, y := aggDecFrom(a), aggDecFrom(b)
		switch op {
		case '+':
			return aggDecAdd(x, y).to128()
		case '-':
			return aggDecAdd(x, aggDecNeg(y)).to128()
		default:
			return aggDecMul(x, y).to128()
		}
	case aggKDouble:
		x, y := aggToFloat(a), aggToFloat(b)
		switch op {
		case '+':
			return x + y
		case '-':
			return x - y
		default:
			return x * y
		}
	}
	x, _ := aggToInt64Exact(a)
	y, _ := aggToInt64Exact(b)
	r, overflow := aggInt64Op(op, x, y)
	if overflow {
		return aggArith(op, float64(x), float64(y))
	}
	return aggNarrow(r, k)
}

// aggInt64Op applies +, - or * to two int64s, reporting whether the result
// overflowed int64.
func aggInt64Op(op byte, x, y int64) (r int64, overflow bool) {
	switch op {
	case '+':
		r = x + y
		return r, (x > 0 && y > 0 && r < 0) || (x < 0 && y < 0 && r >= 0)
	case '-':
		r = x - y
		return r, (x >= 0 && y < 0 && r < 0) || (x < 0 && y > 0 && r >= 0)
	}
	overflow, r = aggMul64(x, y)
	return r, overflow
}

// aggMul64 multiplies with overflow detection.
func aggMul64(x, y int64) (overflow bool, r int64) {
	if x == 0 || y == 0 {
		return false, 0
	}
	r = x * y
	if r/y != x || (x == -1 && y == math.MinInt64) || (y == -1 && x == math.MinInt64) {
		return true, r
	}
	return false, r
}

// evalMultiply implements $multiply.
func evalMultiply(_ *evalCtx, vals []any) (any, error) {
	var acc any = int32(1)
	null := false
	for _, v := range vals {
		if aggNullish(v) {
			null = true
			continue
		}
		if aggNumKind(v) == aggKNone {
			return nil, mongoerr.Errorf(mongoerr.MultiplyNotNumeric, "$multiply only supports numeric types, not %s", TypeName(v))
		}
		acc = aggArith('*', acc, v)
	}
	if null {
		return nil, nil
	}
	return acc, nil
}

// divisorErr returns the error $divide and $mod (op) raise for b, a
// numeric divisor, when it is zero.
func divisorErr(op string, b any) error {
	switch {
	case !aggIsZero(b):
		return nil
	case op == "$mod":
		return mongoerr.Errorf(mongoerr.ModByZero, "can't $mod by zero")
	}
	return mongoerr.Errorf(mongoerr.BadValue, "can't $divide by zero")
}

// evalDivide implements $divide: a double result unless a decimal is
// involved; dividing by zero is BadValue.
func evalDivide(_ *evalCtx, vals []any) (any, error) {
	a, b := vals[0], vals[1]
	if aggNullish(a) || aggNullish(b) {
		return nil, nil
	}
	ka, kb := aggNumKind(a), aggNumKind(b)
	if ka == aggKNone || kb == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.DivideNotNumeric, "$divide only supports numeric types, not %s and %s", TypeName(a), TypeName(b))
	}
	if err := divisorErr("$divide", b); err != nil {
		return nil, err
	}
	if ka == aggKDecimal || kb == aggKDecimal {
		return aggDecDiv(aggDecFrom(a), aggDecFrom(b)).to128(), nil
	}
	return aggToFloat(a) / aggToFloat(b), nil
}

// evalMod implements $mod with the sign of the dividend.
func evalMod(_ *evalCtx, vals []any) (any, error) {
	a, b := vals[0], vals[1]
	if aggNullish(a) || aggNullish(b) {
		return nil, nil
	}
	ka, kb := aggNumKind(a), aggNumKind(b)
	if ka == aggKNone || kb == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.ModNotNumeric, "$mod only supports numeric types, not %s and %s", TypeName(a), TypeName(b))
	}
	if err := divisorErr("$mod", b); err != nil {
		return nil, err
	}
	k := max(ka, kb)
	switch k {
	case aggKDecimal:
		x, _ := aggDecFrom(a).rat()
		y, _ := aggDecFrom(b).rat()
		if x == nil || y == nil {
			return aggDec{nan: true}.to128(), nil
		}
		q := new(big.Rat).Quo(x, y)
		t := new(big.Int).Quo(q.Num(), q.Denom())
		r := new(big.Rat).Sub(x, new(big.Rat).Mul(new(big.Rat).SetInt(t), y))
		d, _ := bson.ParseDecimal128(r.FloatString(34))
		return aggDecFrom(d).to128(), nil
	case aggKDouble:
		return math.Mod(aggToFloat(a), aggToFloat(b)), nil
	}
	x, _ := aggToInt64Exact(a)
	y, _ := aggToInt64Exact(b)
	if y == -1 {
		return aggNarrow(0, k), nil
	}
	return aggNarrow(x%y, k), nil
}

// evalUnaryMath implements $abs $ceil $floor $sqrt $exp $ln $log10.
func evalUnaryMath(name string, v any) (any, error) {
	if aggNullish(v) {
		return nil, nil
	}
	k := aggNumKind(v)
	if k == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.NumericOnly, "%s only supports numeric types, not %s", name, TypeName(v))
	}
	switch name {
	case "$abs":
		switch t := v.(type) {
		case int32:
			if t == math.MinInt32 {
				return -int64(t), nil
			}
			if t < 0 {
				return -t, nil
			}
			return t, nil
		case int64:
			if t == math.MinInt64 {
				return nil, mongoerr.Errorf(mongoerr.AbsLongMin, "can't take $abs of long long min")
			}
			if t < 0 {
				return -t, nil
			}
			return t, nil
		case float64:
			return math.Abs(t), nil
		case bson.Decimal128:
			d := aggDecFrom(t)
			if d.inf != 0 {
				d.inf = 1
			} else if !d.nan {
				d.coef = new(big.Int).Abs(d.coef)
			}
			return d.to128(), nil
		}
	case "$ceil", "$floor":
		switch t := v.(type) {
		case int32, int64:
			return t, nil
		case float64:
			if name == "$ceil" {
				return math.Ceil(t), nil
			}
			return math.Floor(t), nil
		case bson.Decimal128:
			mode := aggRoundFloor
			if name == "$ceil" {
				mode = aggRoundCeil
			}
			return aggDecRoundPlace(aggDecFrom(t), 0, mode).to128(), nil
		}
	}
	if k == aggKDecimal {
		// Transcendental functions on decimals go through float64; MongoDB
		// computes them in decimal with more precision.
		f, err := evalUnaryFloat(name, aggToFloat(v))
		if err != nil {
			return nil, err
		}
		return aggDecFrom(f).to128(), nil
	}
	return evalUnaryFloat(name, aggToFloat(v))
}

func evalUnaryFloat(name string, f float64) (any, error) {
	switch name {
	case "$sqrt":
		if f < 0 {
			return nil, mongoerr.Errorf(mongoerr.SqrtNegative, "$sqrt's argument must be greater than or equal to 0")
		}
		return math.Sqrt(f), nil
	case "$exp":
		return math.Exp(f), nil
	case "$ln":
		if f <= 0 {
			return nil, mongoerr.Errorf(mongoerr.LnNotPositive, "$ln's argument must be a positive number, but %v", f)
		}
		return math.Log(f), nil
	case "$log10":
		if f <= 0 {
			return nil, mongoerr.Errorf(mongoerr.Log10NotPositive, "$log10's argument must be a positive number, but %v", f)
		}
		return math.Log10(f), nil
	}
	return nil, mongoerr.Errorf(mongoerr.InternalError, "unknown math operator %s", name)
}

// evalPow implements $pow.
func evalPow(_ *evalCtx, vals []any) (any, error) {
	a, b := vals[0], vals[1]
	if aggNullish(a) || aggNullish(b) {
		return nil, nil
	}
	ka, kb := aggNumKind(a), aggNumKind(b)
	if ka == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.PowBaseNotNumeric, "$pow's base must be numeric, not %s", TypeName(a))
	}
	if kb == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.PowExponentNotNumeric, "$pow's exponent must be numeric, not %s", TypeName(b))
	}
	if aggIsZero(a) && aggToFloat(b) < 0 {
		return nil, mongoerr.Errorf(mongoerr.PowZeroNegativeExponent, "$pow cannot take a base of 0 and a negative exponent")
	}
	k := max(ka, kb)
	if k <= aggKLong {
		x, _ := aggToInt64Exact(a)
		y, _ := aggToInt64Exact(b)
		if y >= 0 {
			r, ok := aggIntPow(x, y)
			if ok {
				return aggNarrow(r, k), nil
			}
		} else if x == 1 || x == -1 {
			if x == -1 && y%2 != 0 {
				return aggNarrow(-1, k), nil
			}
			return aggNarrow(1, k), nil
		}
	}
	r := math.Pow(aggToFloat(a), aggToFloat(b))
	if k == aggKDecimal {
		return aggDecFrom(r).to128(), nil
	}
	return r, nil
}

// aggIntPow computes x^y (y >= 0) exactly when it fits in int64; bases
// 0, 1 and -1 are answered without looping so huge exponents stay cheap.
func aggIntPow(x, y int64) (int64, bool) {
	switch x {
	case 0:
		if y == 0 {
			return 1, true
		}
		return 0, true
	case 1:
		return 1, true
	case -1:
		if y%2 == 0 {
			return 1, true
		}
		return -1, true
	}
	r := int64(1)
	// |x| >= 2, so at most 63 multiplications happen before overflow.
	for ; y > 0; y-- {
		of, p := aggMul64(r, x)
		if of {
			return 0, false
		}
		r = p
	}
	return r, true
}

// Rounding modes for decimals.
const (
	aggRoundHalfEven = iota
	aggRoundTrunc
	aggRoundFloor
	aggRoundCeil
)

// aggDecRoundPlace rounds d to place decimal digits (negative place rounds
// to tens, hundreds...).
func aggDecRoundPlace(d aggDec, place int, mode int) aggDec {
	if d.nan || d.inf != 0 {
		return d
	}
	if -d.exp <= place {
		return d
	}
	drop := -d.exp - place
	if drop > 6200 {
		return aggDec{coef: new(big.Int), exp: -place}
	}
	div := aggPow10(drop)
	q, r := new(big.Int).QuoRem(d.coef, div, new(big.Int)) // truncates toward zero
	if r.Sign() != 0 {
		switch mode {
		case aggRoundHalfEven:
			q = aggDivPow10HalfEven(d.coef, drop)
		case aggRoundFloor:
			if d.coef.Sign() < 0 {
				q.Sub(q, big.NewInt(1))
			}
		case aggRoundCeil:
			if d.coef.Sign() > 0 {
				q.Add(q, big.NewInt(1))
			}
		}
	}
	return aggDec{coef: q, exp: -place}
}

// roundPlace returns p, the non-null place of $round or $trunc (name), or
// the error when it is not an integral number in [-20, 100].
func roundPlace(name string, p any) (int64, error) {
	if aggNumKind(p) == aggKNone {
		return 0, mongoerr.Errorf(mongoerr.RoundNotNumeric, "%s only supports numeric types, not %s", name, TypeName(p))
	}
	n, ok := aggToInt64Exact(p)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.RoundPrecisionNotIntegral, "precision argument to %s must be a integral value", name)
	}
	if n < -20 || n > 100 {
		return 0, mongoerr.Errorf(mongoerr.RoundPrecisionOutOfRange, "cannot apply %s with precision value %d value must be in [-20, 100]", name, n)
	}
	return n, nil
}

// evalRound implements $round (half to even) and $trunc with an optional
// place in [-20, 100].
func evalRound(name string, vals []any) (any, error) {
	v := vals[0]
	// As in MongoDB, the number is checked before the place: a null number
	// is null whatever the place, a non-number an error even with a null
	// place.
	if aggNullish(v) {
		return nil, nil
	}
	k := aggNumKind(v)
	if k == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.RoundNotNumeric, "%s only supports numeric types, not %s", name, TypeName(v))
	}
	place := int64(0)
	if len(vals) == 2 {
		p := vals[1]
		if aggNullish(p) {
			return nil, nil
		}
		n, err := roundPlace(name, p)
		if err != nil {
			return nil, err
		}
		place = n
	}
	mode := aggRoundHalfEven
	if name == "$trunc" {
		mode = aggRoundTrunc
	}
	switch t := v.(type) {
	case int32, int64:
		if place >= 0 {
			return t, nil
		}
		x, _ := aggToInt64Exact(t)
		r := aggDecRoundPlace(aggDec{coef: big.NewInt(x)}, int(place), mode)
		val, _ := r.rat()
		if !val.IsInt() || !val.Num().IsInt64() {
			return nil, mongoerr.Errorf(mongoerr.Overflow, "%s overflowed", name)
		}
		return aggNarrow(val.Num().Int64(), k), nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return t, nil
		}
		// Round through the double's binary value rounded to 34 significant
		// digits, as MongoDB does (Decimal128 kRoundTo34Digits): 2.45 is
		// 2.4500000000000001776… and rounds to 2.5 at one place, not 2.4.
		s := strconv.FormatFloat(t, 'e', 33, 64)
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			return t, nil
		}
		r := aggDecRoundPlace(aggDecFrom(d), int(place), mode)
		f, _ := strconv.ParseFloat(r.to128().String(), 64)
		return f, nil
	case bson.Decimal128:
		return aggDecRoundPlace(aggDecFrom(t), int(place), mode).to128(), nil
	}
	return nil, nil
}

// aggSummer accumulates a sum with MongoDB's widening: int32 → int64 →
// double on overflow; any double makes it a double; any decimal a decimal.
type aggSummer struct {
	kind  int
	long  int64
	dbl   float64
	comp  float64 // Kahan compensation
	dec   aggDec
	count int64
}

func (s *aggSummer) add(v any) {
	k := aggNumKind(v)
	if k == aggKNone {
		return
	}
	s.count++
	if s.kind == aggKNone {
		s.kind = aggKInt
	}
	if k == aggKDecimal || s.kind == aggKDecimal {
		if s.kind != aggKDecimal {
			s.dec = s.currentDec()
			s.kind = aggKDecimal
		}
		s.dec = aggDecAdd(s.dec, aggDecFrom(v))
		return
	}
	if k == aggKDouble || s.kind == aggKDouble {
		if s.kind != aggKDouble {
			s.dbl, s.comp = float64(s.long), 0
			s.kind = aggKDouble
		}
		s.kahan(aggToFloat(v))
		return
	}
	x, _ := aggToInt64Exact(v)
	r := s.long + x
	if (s.long > 0 && x > 0 && r < 0) || (s.long < 0 && x < 0 && r >= 0) {
		s.dbl, s.comp = float64(s.long), 0
		s.kind = aggKDouble
		s.kahan(float64(x))
		return
	}
	s.long = r
	if k == aggKLong && s.kind == aggKInt {
		s.kind = aggKLong
	}
}

func (s *aggSummer) kahan(x float64) {
	if math.IsInf(x, 0) || math.IsNaN(x) || math.IsInf(s.dbl, 0) || math.IsNaN(s.dbl) {
		s.dbl += x
		return
	}
	y := x - s.comp
	t := s.dbl + y
	s.comp = (t - s.dbl) - y
	s.dbl = t
}

func (s *aggSummer) currentDec() aggDec {
	switch s.kind {
	case aggKDouble:
		return aggDecFrom(s.dbl)
	case aggKDecimal:
		return s.dec
	}
	return aggDec{coef: big.NewInt(s.long)}
}

// result returns the sum (int32 0 when nothing numeric was added).
func (s *aggSummer) result() any {
	switch s.kind {
	case aggKNone:
		return int32(0)
	case aggKDecimal:
		return s.dec.to128()
	case aggKDouble:
		return s.dbl
	}
	return aggNarrow(s.long, s.kind)
}

// avg returns the mean, or null when nothing numeric was added: a double,
// or a decimal if any input was a decimal.
func (s *aggSummer) avg() any {
	if s.count == 0 {
		return nil
	}
	if s.kind == aggKDecimal {
		return aggDecDiv(s.dec, aggDec{coef: big.NewInt(s.count)}).to128()
	}
	if s.kind == aggKDouble {
		return s.dbl / float64(s.count)
	}
	return float64(s.long) / float64(s.count)
}

// compileExprAccum compiles the expression forms of $sum $avg $min $max:
// one array argument is operated on element-wise; several arguments are
// operated on as a list.
func compileExprAccum(name string, arg any) (exprNode, error) {
	nodes, err := compileArgs(name, arg, 0, -1)
	if err != nil {
		return nil, err
	}
	return &funcNode{args: nodes, fn: func(c *evalCtx, vals []any) (any, error) {
		items := vals
		if len(vals) == 1 {
			if a, ok := vals[0].(bson.A); ok {
				items = a
			}
		}
		return aggReduceList(name, items, c.coll), nil
	}}, nil
}

// aggReduceList applies $sum $avg $min $max to a list of values, comparing
// strings under coll for $min and $max.
func aggReduceList(name string, items []any, coll *Collation) any {
	switch name {
	case "$sum", "$avg":
		var s aggSummer
		for _, v := range items {
			s.add(v)
		}
		if name == "$sum" {
			return s.result()
		}
		return s.avg()
	}
	var best any = Missing
	for _, v := range items {
		if aggNullish(v) {
			continue
		}
		if best == Missing {
			best = v
			continue
		}
		c := aggCompare(v, best, coll)
		if name == "$min" && c < 0 || name == "$max" && c > 0 {
			best = v
		}
	}
	if best == Missing {
		return nil
	}
	return best
}

// SafeArith applies $inc (mul false) or $mul (mul true) to two numbers with
// MongoDB's SafeNum type rules: decimal wins over double, double over long,
// long over int; int32 results that overflow widen to int64; an int64
// overflow is invalid (ok false).
//
// Decimal arithmetic is the aggregation expressions' (aggDec).
// The integer rules are kept apart from $add/$multiply's (aggArith) on
// purpose: MongoDB's update operators use SafeNum, which rejects an int64
// overflow, while expressions widen an overflowing long to a double.
func SafeArith(mul bool, a, b any) (any, bool) {
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
