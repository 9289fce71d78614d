package mql

import (
	"math"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// trigOperators is the table of the trigonometric operators, $log, the
// timestamp parts and the size operators.
func trigOperators() map[string]exprCompiler {
	m := map[string]exprCompiler{
		"$atan2":       fixedOp(2, 2, evalAtan2),
		"$log":         fixedOp(2, 2, evalLog),
		"$tsSecond":    unaryOp(evalTsPart),
		"$tsIncrement": unaryOp(evalTsPart),
		"$bsonSize":    unaryOp(evalBsonSize),
		"$binarySize":  unaryOp(evalBinarySize),
	}
	for name := range aggTrigFuncs {
		m[name] = unaryOp(evalTrig)
	}
	return m
}

// aggTrigFunc is one unary trigonometric operator: its function and the
// closed domain outside which MongoDB refuses the argument (NaN is always
// accepted and yields NaN); bounds is the domain as the message prints it.
type aggTrigFunc struct {
	fn     func(float64) float64
	lo, hi float64
	bounds string
}

var aggTrigFuncs = map[string]aggTrigFunc{
	"$sin":              {math.Sin, math.Inf(-1), math.Inf(1), "(-inf,inf)"},
	"$cos":              {math.Cos, math.Inf(-1), math.Inf(1), "(-inf,inf)"},
	"$tan":              {math.Tan, math.Inf(-1), math.Inf(1), "(-inf,inf)"},
	"$asin":             {math.Asin, -1, 1, "[-1,1]"},
	"$acos":             {math.Acos, -1, 1, "[-1,1]"},
	"$atan":             {math.Atan, math.Inf(-1), math.Inf(1), ""},
	"$asinh":            {math.Asinh, math.Inf(-1), math.Inf(1), ""},
	"$acosh":            {math.Acosh, 1, math.Inf(1), "[1,inf]"},
	"$atanh":            {math.Atanh, -1, 1, "[-1,1]"},
	"$sinh":             {math.Sinh, math.Inf(-1), math.Inf(1), ""},
	"$cosh":             {math.Cosh, math.Inf(-1), math.Inf(1), ""},
	"$tanh":             {math.Tanh, math.Inf(-1), math.Inf(1), ""},
	"$degreesToRadians": {func(f float64) float64 { return f * math.Pi / 180 }, math.Inf(-1), math.Inf(1), ""},
	"$radiansToDegrees": {func(f float64) float64 { return f * 180 / math.Pi }, math.Inf(-1), math.Inf(1), ""},
}

// evalTrig implements the unary trigonometric operators: null for null or
// missing, a double for an int, long or double, a decimal for a decimal.
// $sin, $cos and $tan refuse infinities (their domain is open). Decimals
// are computed through float64, so a decimal result carries a double's
// precision where MongoDB computes in decimal.
func evalTrig(name string, v any) (any, error) {
	if aggNullish(v) {
		return nil, nil
	}
	k := aggNumKind(v)
	if k == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.NumericOnly, "%s only supports numeric types, not %s", name, TypeName(v))
	}
	t := aggTrigFuncs[name]
	f := aggToFloat(v)
	if t.bounds != "" && !math.IsNaN(f) {
		open := t.bounds[0] == '('
		if f < t.lo || f > t.hi || open && math.IsInf(f, 0) {
			return nil, mongoerr.Errorf(mongoerr.TrigOutOfBounds, "cannot apply %s to %s, value must be in %s", name, aggFmtNum(v), t.bounds)
		}
	}
	r := t.fn(f)
	if k == aggKDecimal {
		return aggDecFrom(r).to128(), nil
	}
	return r, nil
}

// aggFmtNum prints a number as MongoDB's messages do (infinities as inf).
func aggFmtNum(v any) string {
	if f, ok := v.(float64); ok {
		switch {
		case math.IsInf(f, 1):
			return "inf"
		case math.IsInf(f, -1):
			return "-inf"
		}
	}
	return aggFmt(v)
}

// evalAtan2 implements $atan2 [y, x]: null when either is null or
// missing; a decimal when either is a decimal, else a double.
func evalAtan2(_ *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) || aggNullish(vals[1]) {
		return nil, nil
	}
	for i, v := range vals {
		if aggNumKind(v) == aggKNone {
			code := mongoerr.Atan2FirstNotNumeric
			if i == 1 {
				code = mongoerr.Atan2SecondNotNumeric
			}
			return nil, mongoerr.Errorf(code, "$atan2 only supports numeric types, not %s", TypeName(v))
		}
	}
	r := math.Atan2(aggToFloat(vals[0]), aggToFloat(vals[1]))
	if aggNumKind(vals[0]) == aggKDecimal || aggNumKind(vals[1]) == aggKDecimal {
		return aggDecFrom(r).to128(), nil
	}
	return r, nil
}

// logArgErr returns the error $log raises for x, its numeric argument,
// when it is not positive.
func logArgErr(x any) error {
	if fx := aggToFloat(x); !(fx > 0) && !math.IsNaN(fx) {
		return mongoerr.Errorf(mongoerr.LogArgNotPositive, "$log's argument must be a positive number, but is %s", aggFmtNum(x))
	}
	return nil
}

// logBaseErr returns the error $log raises for b, its numeric base, when
// it is not positive or is 1.
func logBaseErr(b any) error {
	if fb := aggToFloat(b); (!(fb > 0) || fb == 1) && !math.IsNaN(fb) {
		return mongoerr.Errorf(mongoerr.LogBaseNotPositive, "$log's base must be a positive number not equal to 1, but is %s", aggFmtNum(b))
	}
	return nil
}

// evalLog implements $log [number, base]: null when either is null or
// missing; the number must be positive and the base positive and not 1.
// The result is a decimal when either is a decimal, else a double.
func evalLog(_ *evalCtx, vals []any) (any, error) {
	x, b := vals[0], vals[1]
	if aggNullish(x) || aggNullish(b) {
		return nil, nil
	}
	if aggNumKind(x) == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.LogArgNotNumeric, "$log's argument must be numeric, not %s", TypeName(x))
	}
	if aggNumKind(b) == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.LogBaseNotNumeric, "$log's base must be numeric, not %s", TypeName(b))
	}
	if err := logArgErr(x); err != nil {
		return nil, err
	}
	if err := logBaseErr(b); err != nil {
		return nil, err
	}
	fx, fb := aggToFloat(x), aggToFloat(b)
	r := math.Log(fx) / math.Log(fb)
	if aggNumKind(x) == aggKDecimal || aggNumKind(b) == aggKDecimal {
		return aggDecFrom(r).to128(), nil
	}
	return r, nil
}

// evalTsPart implements $tsSecond and $tsIncrement: the seconds or the
// increment of a timestamp as a long; null for null or missing.
func evalTsPart(name string, v any) (any, error) {
	if aggNullish(v) {
		return nil, nil
	}
	ts, ok := v.(bson.Timestamp)
	if !ok {
		code := mongoerr.TsSecondNotTimestamp
		if name == "$tsIncrement" {
			code = mongoerr.TsIncrementNotTimestamp
		}
		return nil, mongoerr.Errorf(code, "Argument to %s must be a timestamp, but is %s", name, TypeName(v))
	}
	if name == "$tsSecond" {
		return int64(ts.T), nil
	}
	return int64(ts.I), nil
}

// evalBsonSize implements $bsonSize: the encoded size of a document in
// bytes as an int; null for null or missing.
func evalBsonSize(_ string, v any) (any, error) {
	if aggNullish(v) {
		return nil, nil
	}
	d, ok := v.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.BsonSizeNotObject, "$bsonSize requires a document input, found: %s", TypeName(v))
	}
	b, err := bson.Marshal(d)
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "$bsonSize: %v", err)
	}
	return int32(len(b)), nil
}

// evalBinarySize implements $binarySize: the length in bytes of a string
// (UTF-8) or binary data as an int; null for null or missing.
func evalBinarySize(_ string, v any) (any, error) {
	switch t := v.(type) {
	case string:
		return int32(len(t)), nil
	case bson.Binary:
		return int32(len(t.Data)), nil
	}
	if aggNullish(v) {
		return nil, nil
	}
	return nil, mongoerr.Errorf(mongoerr.BinarySizeNotStringOrBinary, "$binarySize requires a string or BinData argument, found: %s", TypeName(v))
}
