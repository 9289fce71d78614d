package mql

import (
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestConstantExpressionErrorsAtCompile: a sub-expression whose operands are
// all constants fails when the expression is compiled, wherever it sits (a
// branch never taken, a $map body, a $let variable), as MongoDB's constant
// folding fails the command while parsing it; the same operator over a field
// path compiles and fails only when evaluated. Literals, field paths,
// variables and $rand are never folded.
func TestConstantExpressionErrorsAtCompile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		expr        string
		compileCode mongoerr.Code // 0: compiles
		doc         string        // evaluated against when it compiles
		evalCode    mongoerr.Code
	}{
		{name: "divide by zero", expr: `{"$divide": [1, 0]}`, compileCode: mongoerr.BadValue},
		{name: "conversion", expr: `{"$add": [1, {"$toInt": "x"}]}`, compileCode: mongoerr.ConversionFailure},
		{name: "branch never taken", expr: `{"$cond": [true, 1, {"$divide": [1, 0]}]}`, compileCode: mongoerr.BadValue},
		{name: "and after false", expr: `{"$and": [false, {"$divide": [1, 0]}]}`, compileCode: mongoerr.BadValue},
		{name: "map body", expr: `{"$map": {"input": "$a", "in": {"$divide": [1, 0]}}}`, compileCode: mongoerr.BadValue},
		{name: "let variable", expr: `{"$let": {"vars": {"x": {"$divide": [1, 0]}}, "in": "$$x"}}`, compileCode: mongoerr.BadValue},
		{name: "switch branch", expr: `{"$switch": {"branches": [{"case": "$a", "then": {"$toInt": "x"}}], "default": 1}}`, compileCode: mongoerr.ConversionFailure},
		{name: "object literal", expr: `{"a": {"b": {"$arrayElemAt": ["s", 0]}}}`, compileCode: mongoerr.ArrayElemAtNotArray},
		{name: "array literal", expr: `[1, {"$divide": [1, 0]}]`, compileCode: mongoerr.BadValue},
		{name: "field path divisor", expr: `{"$divide": [1, "$z"]}`, doc: `{"z": 0}`, evalCode: mongoerr.BadValue},
		{name: "field path conversion", expr: `{"$toInt": "$s"}`, doc: `{"s": "x"}`, evalCode: mongoerr.ConversionFailure},
		{name: "literal not folded", expr: `{"$literal": {"$divide": [1, 0]}}`, doc: `{}`},
		{name: "constant that evaluates", expr: `{"$add": [1, {"$toInt": "2"}]}`, doc: `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := CompileExpr(aggTestDoc(t, `{"e": `+tc.expr+`}`)[0].Value)
			if aggTestWantErr(t, err, tc.compileCode) {
				return
			}
			_, err = e.Eval(aggTestDoc(t, tc.doc))
			aggTestWantErr(t, err, tc.evalCode)
		})
	}
}

// TestConstantAccumulatorErrorsAtCompile: $group's _id and accumulator
// arguments are folded too, so a constant failure fails CompilePipeline.
func TestConstantAccumulatorErrorsAtCompile(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		`[{"$group": {"_id": null, "s": {"$sum": {"$divide": [1, 0]}}}}]`,
		`[{"$group": {"_id": {"$divide": [1, 0]}}}]`,
		`[{"$match": {"$expr": {"$divide": [1, 0]}}}]`,
		`[{"$project": {"q": {"$divide": [1, 0]}}}]`,
	} {
		if _, err := CompilePipeline(aggTestDocs(t, p)); aggTestCode(err) != mongoerr.BadValue {
			t.Errorf("CompilePipeline(%s) = %v, want BadValue (2)", p, err)
		}
	}
}
