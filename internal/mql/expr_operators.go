package mql

import (
	"fmt"

	"github.com/changehook/changehook/internal/mongoerr"
)

// exprCompiler compiles the argument of the expression operator name (the
// name is passed so that one compiler can serve several operators, such as
// $toUpper and $toLower).
type exprCompiler func(name string, arg any) (exprNode, error)

// exprOperators maps every expression operator devdb implements to its
// compiler. init assembles it from the per-family tables (control flow and
// comparison in expr_control.go, arithmetic in expr_arith.go, strings in
// expr_string.go, arrays and objects in expr_array.go, types in
// expr_convert.go, dates in expr_date.go; sets in expr_set.go,
// trigonometry, logarithms and sizes in expr_trig.go, n-element and
// sorting array operators in expr_arrayn.go, date arithmetic and parts in
// expr_dateparts.go); it is only read afterwards.
var exprOperators = map[string]exprCompiler{}

func init() {
	for _, family := range []map[string]exprCompiler{
		controlOperators(),
		arithOperators(),
		stringOperators(),
		arrayOperators(),
		convertOperators(),
		dateOperators(),
		hashOperators(),
		setOperators(),
		trigOperators(),
		nArrayOperators(),
		dateArithOperators(),
	} {
		for name, c := range family {
			if _, dup := exprOperators[name]; dup {
				panic(fmt.Sprintf("mql: expression operator %s registered twice", name))
			}
			exprOperators[name] = c
		}
	}
}

// compileOperator compiles {name: arg} with the compiler registered for
// name; a MongoDB operator mql does not implement is code 238
// NotImplemented, any other unknown name code 168 InvalidPipelineOperator.
func compileOperator(name string, arg any) (exprNode, error) {
	if c, ok := exprOperators[name]; ok {
		return c(name, arg)
	}
	if unsupportedExprOperators[name] {
		return nil, unsupportedOperatorErr(name)
	}
	return nil, mongoerr.Errorf(mongoerr.InvalidPipelineOperator, "Unrecognized expression '%s'", name)
}

// fixedOp is the compiler of an operator taking lo..hi positional
// arguments (hi < 0: no upper bound) evaluated eagerly and passed to fn.
func fixedOp(lo, hi int, fn func(c *evalCtx, vals []any) (any, error)) exprCompiler {
	return func(name string, arg any) (exprNode, error) {
		return fixed(name, arg, lo, hi, fn)
	}
}

// namedOp is fixedOp for an evaluator that also needs the operator's name.
func namedOp(lo, hi int, fn func(name string, vals []any) (any, error)) exprCompiler {
	return func(name string, arg any) (exprNode, error) {
		return fixed(name, arg, lo, hi, func(_ *evalCtx, v []any) (any, error) { return fn(name, v) })
	}
}

// unaryOp is namedOp for an evaluator of exactly one argument.
func unaryOp(fn func(name string, v any) (any, error)) exprCompiler {
	return func(name string, arg any) (exprNode, error) {
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return fn(name, v[0]) })
	}
}

// argOnly adapts a compiler that does not need the operator's name.
func argOnly(compile func(arg any) (exprNode, error)) exprCompiler {
	return func(_ string, arg any) (exprNode, error) { return compile(arg) }
}
