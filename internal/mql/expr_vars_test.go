package mql

import (
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestCompileExprUndefinedVariable: a variable read where nothing binds it
// fails the compile (MongoDB refuses it while parsing, 17276), not the
// evaluation of the first document that reaches it; one read where it is
// bound compiles and evaluates as before.
func TestCompileExprUndefinedVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		expr string
		code mongoerr.Code // at compile time; 0: compiles
		want string        // the value against {"a": 1}, when it compiles
	}{
		{name: "unbound", expr: `"$$nosuchvar"`, code: mongoerr.UndefinedVariable},
		{name: "unbound with a path", expr: `"$$nosuchvar.a"`, code: mongoerr.UndefinedVariable},
		{name: "in an object literal", expr: `{"f": "$$nosuchvar"}`, code: mongoerr.UndefinedVariable},
		{name: "in a branch never taken", expr: `{"$cond": [true, 1, "$$nope"]}`, code: mongoerr.UndefinedVariable},
		{name: "let in reads an unbound one", expr: `{"$let": {"vars": {"x": 1}, "in": "$$y"}}`, code: mongoerr.UndefinedVariable},
		{name: "let vars do not see each other", expr: `{"$let": {"vars": {"x": 1, "y": "$$x"}, "in": "$$y"}}`, code: mongoerr.UndefinedVariable},
		{name: "let vars outside their let", expr: `[{"$let": {"vars": {"x": 1}, "in": "$$x"}}, "$$x"]`, code: mongoerr.UndefinedVariable},
		{name: "let in sees its vars", expr: `{"$let": {"vars": {"x": 1, "y": 2}, "in": {"$add": ["$$x", "$$y"]}}}`, want: `{"v": 3}`},
		{name: "nested let sees the outer", expr: `{"$let": {"vars": {"x": 1}, "in": {"$let": {"vars": {"y": "$$x"}, "in": {"$add": ["$$x", "$$y"]}}}}}`, want: `{"v": 2}`},
		{name: "let rebinds CURRENT", expr: `{"$let": {"vars": {"CURRENT": {"b": 7}}, "in": "$b"}}`, want: `{"v": 7}`},
		{name: "bad let name before its reads", expr: `{"$let": {"vars": {"X": 1}, "in": "$$X"}}`, code: mongoerr.VariableNameBadStart},
		{name: "map this", expr: `{"$map": {"input": [1, 2], "in": {"$add": ["$$this", "$a"]}}}`, want: `{"v": [2, 3]}`},
		{name: "map as", expr: `{"$map": {"input": [1, 2], "as": "n", "in": "$$n"}}`, want: `{"v": [1, 2]}`},
		{name: "map as replaces this", expr: `{"$map": {"input": [1], "as": "n", "in": "$$this"}}`, code: mongoerr.UndefinedVariable},
		{name: "map input is outside", expr: `{"$map": {"input": "$$n", "as": "n", "in": "$$n"}}`, code: mongoerr.UndefinedVariable},
		{name: "filter this", expr: `{"$filter": {"input": [1, 2], "cond": {"$gt": ["$$this", 1]}}}`, want: `{"v": [2]}`},
		{name: "filter limit is outside", expr: `{"$filter": {"input": [1], "cond": true, "limit": "$$this"}}`, code: mongoerr.UndefinedVariable},
		{name: "reduce this and value", expr: `{"$reduce": {"input": [1, 2], "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}}`, want: `{"v": 3}`},
		{name: "reduce initialValue is outside", expr: `{"$reduce": {"input": [1], "initialValue": "$$value", "in": 0}}`, code: mongoerr.UndefinedVariable},
		{name: "getField input", expr: `{"$getField": {"field": "a", "input": "$$nope"}}`, code: mongoerr.UndefinedVariable},
		{name: "literal is no read", expr: `{"$literal": "$$nope"}`, want: `{"v": "$$nope"}`},
		{name: "system variables", expr: `{"$size": [["$$ROOT", "$$CURRENT", "$$NOW", "$$CLUSTER_TIME", "$$REMOVE", "$$DESCEND", "$$PRUNE", "$$KEEP"]]}`, want: `{"v": 8}`},
		// The manual lists USER_ROLES, but the engine has no value for it:
		// refused now rather than on every document.
		{name: "system variable the engine lacks", expr: `"$$USER_ROLES"`, code: mongoerr.UndefinedVariable},
	}
	doc := bson.D{{Key: "a", Value: int32(1)}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := aggTestDoc(t, `{"e": `+tt.expr+`}`)[0].Value
			e, err := CompileExpr(spec)
			if aggTestWantErr(t, err, tt.code) {
				return
			}
			got, err := e.Eval(doc)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if g, w := aggTestJSON(t, got), aggTestJSON(t, aggTestDoc(t, tt.want)[0].Value); g != w {
				t.Errorf("got %s, want %s", g, w)
			}
		})
	}
}

// TestCompileExprVars: the caller's variables are in scope for
// CompileExprVars, and only they; filters and pipelines, whose variables
// come later with WithVars, compile as before.
func TestCompileExprVars(t *testing.T) {
	t.Parallel()
	spec := bson.D{{Key: "$add", Value: bson.A{"$$lim", int32(1)}}}
	if _, err := CompileExpr(spec); aggTestCode(err) != mongoerr.UndefinedVariable {
		t.Errorf("CompileExpr: %v, want UndefinedVariable", err)
	}
	vars := map[string]any{"lim": int32(4)}
	e, err := CompileExprVars(spec, vars)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := e.EvalVars(nil, vars); err != nil || v != int32(5) {
		t.Errorf("EvalVars = %v, %v; want 5", v, err)
	}
	if _, err := CompileExprVars(spec, map[string]any{"other": 1}); aggTestCode(err) != mongoerr.UndefinedVariable {
		t.Errorf("CompileExprVars without lim: %v, want UndefinedVariable", err)
	}
	if _, err := CompileFilter(bson.D{{Key: "$expr", Value: bson.D{{Key: "$gt", Value: bson.A{"$x", "$$lim"}}}}}); err != nil {
		t.Errorf("CompileFilter: %v", err)
	}
	if _, err := CompilePipeline([]bson.D{{{Key: "$project", Value: bson.D{{Key: "v", Value: "$$lim"}}}}}); err != nil {
		t.Errorf("CompilePipeline: %v", err)
	}
}
