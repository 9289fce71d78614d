package mql

import (
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// convertOperators is the table of type and conversion operators.
func convertOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$type":       fixedOp(1, 1, func(_ *evalCtx, v []any) (any, error) { return TypeName(v[0]), nil }),
		"$isNumber":   fixedOp(1, 1, func(_ *evalCtx, v []any) (any, error) { return aggNumKind(v[0]) != 0, nil }),
		"$toString":   compileToX,
		"$toInt":      compileToX,
		"$toLong":     compileToX,
		"$toDouble":   compileToX,
		"$toDecimal":  compileToX,
		"$toBool":     compileToX,
		"$toDate":     compileToX,
		"$toObjectId": compileToX,
		"$convert":    argOnly(compileConvert),
	}
}

// convertNode is $convert and the $toX shorthands.
type convertNode struct {
	input, to, onError, onNull exprNode
	constTo                    string // target type when "to" is a constant
}

// compileToX compiles $toString, $toInt, ... as $convert without onError.
func compileToX(name string, arg any) (exprNode, error) {
	nodes, err := compileArgs(name, arg, 1, 1)
	if err != nil {
		return nil, err
	}
	target := map[string]string{
		"$toString": "string", "$toInt": "int", "$toLong": "long", "$toDouble": "double",
		"$toDecimal": "decimal", "$toBool": "bool", "$toDate": "date", "$toObjectId": "objectId",
	}[name]
	return &convertNode{input: nodes[0], constTo: target}, nil
}

func compileConvert(arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$convert expects an object of named arguments but found: %s", TypeName(arg))
	}
	n := &convertNode{}
	err := aggCompileNamedArgs(d, func(key string) error {
		switch key {
		case "format", "base", "byteOrder", "subtype":
			return mongoerr.Errorf(mongoerr.NotImplemented, "$convert option '%s' is not supported by devdb", key)
		}
		return mongoerr.Errorf(mongoerr.FailedToParse, "$convert found an unknown argument: %s", key)
	}, aggArg{"input", &n.input}, aggArg{"to", &n.to}, aggArg{"onError", &n.onError}, aggArg{"onNull", &n.onNull})
	if err != nil {
		return nil, err
	}
	if n.input == nil {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Missing 'input' parameter to $convert")
	}
	if n.to == nil {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Missing 'to' parameter to $convert")
	}
	if c, ok := n.to.(constNode); ok && !aggNullish(c.v) {
		t, err := aggConvertTarget(c.v)
		if err != nil {
			return nil, err
		}
		n.constTo = t
	}
	return n, nil
}

// aggConvertTarget resolves a $convert "to" value (a type alias or number).
func aggConvertTarget(v any) (string, error) {
	names := map[int64]string{1: "double", 2: "string", 7: "objectId", 8: "bool", 9: "date", 16: "int", 18: "long", 19: "decimal"}
	switch t := v.(type) {
	case string:
		if _, ok := typeAliasNumber(t); ok {
			return t, nil
		}
		return "", mongoerr.Errorf(mongoerr.BadValue, "Unknown type name: %s", t)
	}
	if n, ok := aggToInt64Exact(v); ok && aggNumKind(v) != aggKNone {
		if name, ok := names[n]; ok {
			return name, nil
		}
		if n >= -1 && n <= 127 {
			return strconv.FormatInt(n, 10), nil
		}
		return "", mongoerr.Errorf(mongoerr.FailedToParse, "In $convert, numeric value for 'to' does not correspond to a BSON type: %d", n)
	}
	return "", mongoerr.Errorf(mongoerr.FailedToParse, "$convert's 'to' argument must be a string or number, but is %s", TypeName(v))
}

func (n *convertNode) eval(c *evalCtx) (any, error) {
	in, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	target := n.constTo
	if target == "" && n.to != nil {
		tv, err := n.to.eval(c)
		if err != nil {
			return nil, err
		}
		if aggNullish(tv) {
			return nil, nil
		}
		if target, err = aggConvertTarget(tv); err != nil {
			return nil, err
		}
	}
	if aggNullish(in) {
		if n.onNull != nil {
			return n.onNull.eval(c)
		}
		return nil, nil
	}
	out, err := aggConvert(in, target, n.onError != nil)
	if err != nil {
		if n.onError != nil {
			if e, ok := err.(*mongoerr.Error); ok && e.Code == mongoerr.ConversionFailure {
				return n.onError.eval(c)
			}
		}
		return nil, err
	}
	return out, nil
}

// aggConvertFail is the ConversionFailure for an unsupported or failed
// conversion.
func aggConvertFail(onError bool, format string, args ...any) error {
	suffix := " in $convert with no onError value"
	if onError {
		suffix = ""
	}
	return mongoerr.Errorf(mongoerr.ConversionFailure, strings.Replace(format, "@@", suffix, 1), args...)
}

// aggConvert converts a non-null value to the target type as $convert does.
func aggConvert(v any, target string, onError bool) (any, error) {
	unsupported := func() error {
		return aggConvertFail(onError, "Unsupported conversion from %s to %s@@", TypeName(v), target)
	}
	overflow := func() error {
		return aggConvertFail(onError, "Conversion would overflow target type@@: %s", aggFmt(v))
	}
	switch target {
	case "double":
		switch t := v.(type) {
		case bool:
			return map[bool]float64{true: 1, false: 0}[t], nil
		case int32, int64:
			return aggToFloat(t), nil
		case float64:
			return t, nil
		case bson.Decimal128:
			f := aggToFloat(t)
			if math.IsInf(f, 0) && t.IsInf() == 0 {
				return nil, overflow()
			}
			return f, nil
		case bson.DateTime:
			return float64(t), nil
		case string:
			f, err := aggParseNumberString(t)
			if err != nil {
				return nil, aggConvertFail(onError, "Failed to parse number '%s'@@: %s", t, err.Error())
			}
			return f, nil
		}
	case "int", "long":
		var i int64
		switch t := v.(type) {
		case bool:
			if t {
				i = 1
			}
		case int32:
			i = int64(t)
		case int64:
			i = t
		case float64, bson.Decimal128:
			f := aggToFloat(t)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, aggConvertFail(onError, "Attempt to convert NaN or infinity value to integer type@@: %s", aggFmt(v))
			}
			tr := math.Trunc(f)
			if tr < -9.223372036854775808e18 || tr >= 9.223372036854775808e18 {
				return nil, overflow()
			}
			i = int64(tr)
			if d, ok := t.(bson.Decimal128); ok {
				// Truncate exactly rather than through float64.
				dd := aggDecRoundPlace(aggDecFrom(d), 0, aggRoundTrunc)
				if r, ok := dd.rat(); ok && r.Num().IsInt64() {
					i = r.Num().Int64()
				}
			}
		case bson.DateTime:
			if target == "int" {
				return nil, unsupported()
			}
			i = int64(t)
		case string:
			var err error
			i, err = strconv.ParseInt(t, 10, 64)
			if err != nil || t == "" || t[0] == '+' {
				return nil, aggConvertFail(onError, "Failed to parse number '%s'@@: Did not consume whole string.", t)
			}
			if target == "int" && (i > math.MaxInt32 || i < math.MinInt32) {
				return nil, aggConvertFail(onError, "Failed to parse number '%s'@@: Overflow", t)
			}
		default:
			return nil, unsupported()
		}
		if target == "int" {
			if i > math.MaxInt32 || i < math.MinInt32 {
				return nil, overflow()
			}
			return int32(i), nil
		}
		return i, nil
	case "decimal":
		switch t := v.(type) {
		case bool:
			if t {
				return aggDec{coef: big.NewInt(1)}.to128(), nil
			}
			return aggDec{coef: big.NewInt(0)}.to128(), nil
		case int32, int64, float64:
			return aggDecFrom(t).to128(), nil
		case bson.Decimal128:
			return t, nil
		case bson.DateTime:
			return aggDec{coef: big.NewInt(int64(t))}.to128(), nil
		case string:
			d, err := bson.ParseDecimal128(t)
			if err != nil || strings.TrimSpace(t) != t {
				return nil, aggConvertFail(onError, "Failed to parse number '%s'@@: Failed to parse string to decimal", t)
			}
			return d, nil
		}
	case "bool":
		switch t := v.(type) {
		case bool:
			return t, nil
		case int32, int64, float64, bson.Decimal128:
			return !aggIsZero(t), nil
		case string, bson.ObjectID, bson.DateTime, bson.Timestamp:
			return true, nil
		}
	case "string":
		switch t := v.(type) {
		case bool:
			return strconv.FormatBool(t), nil
		case float64:
			return aggFormatDouble(t), nil
		case int32:
			return strconv.FormatInt(int64(t), 10), nil
		case int64:
			return strconv.FormatInt(t, 10), nil
		case bson.Decimal128:
			return t.String(), nil
		case bson.ObjectID:
			return t.Hex(), nil
		case string:
			return t, nil
		case bson.DateTime:
			return aggISODate(t), nil
		case bson.Symbol:
			return string(t), nil
		}
	case "objectId":
		switch t := v.(type) {
		case bson.ObjectID:
			return t, nil
		case string:
			if len(t) != 24 {
				return nil, aggConvertFail(onError, "Failed to parse objectId '%s'@@: Invalid string length for parsing to OID, expected 24 but found %d", t, len(t))
			}
			oid, err := bson.ObjectIDFromHex(t)
			if err != nil {
				return nil, aggConvertFail(onError, "Failed to parse objectId '%s'@@: Invalid character found in hex string", t)
			}
			return oid, nil
		}
	case "date":
		switch t := v.(type) {
		case bson.DateTime:
			return t, nil
		case int64:
			return bson.DateTime(t), nil
		case float64, bson.Decimal128:
			f := aggToFloat(t)
			if math.IsNaN(f) || math.IsInf(f, 0) || f < -9.2e18 || f > 9.2e18 {
				return nil, overflow()
			}
			return bson.DateTime(int64(math.Trunc(f))), nil
		case bson.ObjectID:
			return bson.NewDateTimeFromTime(t.Timestamp()), nil
		case bson.Timestamp:
			return bson.DateTime(int64(t.T) * 1000), nil
		case string:
			d, err := aggParseDateString(t, nil)
			if err != nil {
				return nil, aggConvertFail(onError, "Error parsing date string '%s'@@; %s", t, err.Error())
			}
			return d, nil
		}
	}
	if target == TypeName(v) {
		return v, nil
	}
	return nil, unsupported()
}

// aggParseNumberString parses a string to double the way $convert does:
// decimal and exponent notation, "Infinity"/"-Infinity"/"NaN"; no leading
// or trailing spaces, no hex.
func aggParseNumberString(s string) (float64, error) {
	switch s {
	case "Infinity", "inf", "+Infinity", "infinity":
		return math.Inf(1), nil
	case "-Infinity", "-inf", "-infinity":
		return math.Inf(-1), nil
	case "NaN", "nan":
		return math.NaN(), nil
	}
	if s == "" || strings.ContainsAny(s, "xXpP_ \t\n") || strings.HasPrefix(s, "+") {
		return 0, mongoerr.Errorf(mongoerr.ConversionFailure, "Did not consume whole string.")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, mongoerr.Errorf(mongoerr.ConversionFailure, "Out of range")
		}
		return 0, mongoerr.Errorf(mongoerr.ConversionFailure, "Did not consume whole string.")
	}
	return f, nil
}
