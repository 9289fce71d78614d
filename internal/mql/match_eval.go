package mql

import (
	"math"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// evalTopLevel is the table of top-level evaluation operators: $expr, and
// those devdb refuses with the error MongoDB gives without the needed
// index or feature.
func evalTopLevel() map[string]topLevelCompiler {
	refuse := func(code mongoerr.Code, msg string) topLevelCompiler {
		return func(string, any, compileCx) (matchNode, error) { return nil, mongoerr.Errorf(code, "%s", msg) }
	}
	return map[string]topLevelCompiler{
		"$expr": func(_ string, v any, cx compileCx) (matchNode, error) {
			x, err := compileExprOpen(v)
			if err != nil {
				return nil, err
			}
			return matchExprNode{x: x, coll: cx.coll}, nil
		},
		"$where":      refuse(mongoerr.NotImplemented, "$where is not supported by devdb"),
		"$text":       refuse(mongoerr.IndexNotFound, "text index required for $text query"),
		"$jsonSchema": compileJSONSchemaTop,
		"$sampleRate": compileSampleRate,
	}
}

// compileSampleRate checks $sampleRate's argument as MongoDB does (a
// number from 0 to 1) and fails with an *UnevaluatedError: mql does not
// sample.
func compileSampleRate(_ string, v any, _ compileCx) (matchNode, error) {
	if !IsNumber(v) {
		return nil, badValue("argument to $sampleRate must be a numeric type")
	}
	if f, _ := ToFloat64(v); !(f >= 0 && f <= 1) {
		return nil, badValue("numeric argument to $sampleRate must be in [0, 1]")
	}
	return nil, unevaluated("$sampleRate")
}

// evalQuery is the table of evaluation query operators applied to a path
// ($regex and $options are compiled by compileQueryOperators).
func evalQuery() map[string]queryCompiler {
	return map[string]queryCompiler{
		"$mod": func(parts []string, op bson.E, _ compileCx) (matchNode, error) {
			p, err := newModMatch(op.Value)
			if err != nil {
				return nil, err
			}
			return newMatchPath(parts, p, true), nil
		},
	}
}

// modMatch implements $mod: [divisor, remainder] on numbers, truncating
// both the value and the operands to integers as MongoDB does.
type modMatch struct{ div, rem int64 }

func newModMatch(v any) (*modMatch, error) {
	arr, ok := AsArray(v)
	if !ok {
		return nil, badValue("malformed mod, needs to be an array")
	}
	if len(arr) < 2 {
		return nil, badValue("malformed mod, not enough elements")
	}
	if len(arr) > 2 {
		return nil, badValue("malformed mod, too many elements")
	}
	div, err := modOperandValue(arr[0], "divisor")
	if err != nil {
		return nil, err
	}
	rem, err := modOperandValue(arr[1], "remainder")
	if err != nil {
		return nil, err
	}
	if div == 0 {
		return nil, badValue("divisor cannot be 0")
	}
	return &modMatch{div: div, rem: rem}, nil
}

func modOperandValue(v any, what string) (int64, error) {
	if !IsNumber(v) {
		return 0, badValue("malformed mod, %s not a number", what)
	}
	f, _ := ToFloat64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, badValue("malformed mod, %s value is invalid :: caused by :: Unable to coerce NaN/Inf to integral type", what)
	}
	return truncNumberToInt64(v), nil
}

// truncNumberToInt64 truncates a number toward zero, saturating at the int64
// range.
func truncNumberToInt64(v any) int64 {
	if i, ok := ToInt64(v); ok {
		return i
	}
	f, _ := ToFloat64(v)
	switch {
	case math.IsNaN(f):
		return 0
	case f >= 1<<63:
		return math.MaxInt64
	case f < -(1 << 63):
		return math.MinInt64
	}
	return int64(math.Trunc(f))
}

func (p *modMatch) test(v any) bool {
	if !IsNumber(v) {
		return false
	}
	if f, _ := ToFloat64(v); math.IsNaN(f) || math.IsInf(f, 0) {
		return false
	}
	x := truncNumberToInt64(v)
	if p.div == -1 {
		// Avoid the MinInt64 % -1 overflow; the remainder is always 0.
		return p.rem == 0
	}
	return x%p.div == p.rem
}

// matchExprNode evaluates an aggregation expression ($expr) for truthiness.
type matchExprNode struct {
	x *Expr
	// coll is the collation the expression's comparisons use.
	coll *Collation
}

func (n matchExprNode) match(doc bson.D, st *matchState) bool {
	var vars map[string]any
	if st != nil {
		vars = st.vars
	}
	v, err := n.x.evalColl(doc, vars, n.coll)
	if err != nil {
		if st != nil && st.err == nil {
			st.err = err
		}
		return false
	}
	return Truthy(v)
}
