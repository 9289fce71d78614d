package mql

import (
	"errors"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestCompileLet(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		let  string
		want string // canonical JSON of the variables other than NOW
		code mongoerr.Code
	}{
		{name: "empty", let: `{}`, want: `{}`},
		{name: "constants", let: `{"id": 1, "x": "foo"}`, want: `{"id": 1, "x": "foo"}`},
		{name: "literal keeps dollar", let: `{"y": {"$literal": "$bar"}}`, want: `{"y": "$bar"}`},
		{name: "expression evaluated once", let: `{"n": {"$add": [1, 2]}}`, want: `{"n": 3}`},
		{name: "earlier variable visible", let: `{"a": 2, "b": {"$multiply": ["$$a", 10]}}`, want: `{"a": 2, "b": 20}`},
		{name: "NOW fixed", let: `{"t": "$$NOW"}`, want: `{"t": {"$date": "2026-01-02T03:04:05Z"}}`},
		{name: "uppercase name refused", let: `{"Id": 1}`, code: mongoerr.VariableNameBadStart},
		{name: "bad character refused", let: `{"a-b": 1}`, code: mongoerr.VariableNameBadChar},
		{name: "undefined variable", let: `{"a": "$$nope"}`, code: mongoerr.UndefinedVariable},
		{name: "unknown operator", let: `{"a": {"$nope": 1}}`, code: mongoerr.InvalidPipelineOperator},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vars, err := CompileLet(aggTestDoc(t, tt.let), now)
			if tt.code != 0 {
				var me *mongoerr.Error
				if !errors.As(err, &me) || me.Code != tt.code {
					t.Fatalf("CompileLet(%s) error = %v, want code %d", tt.let, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileLet(%s): %v", tt.let, err)
			}
			if got := vars["NOW"]; got != bson.NewDateTimeFromTime(now) {
				t.Errorf("NOW = %v, want %v", got, now)
			}
			got := bson.D{}
			for _, e := range aggTestDoc(t, tt.let) {
				got = append(got, bson.E{Key: e.Key, Value: vars[e.Key]})
			}
			if len(vars) != len(got)+1 {
				t.Errorf("CompileLet(%s) has %d variables, want %d", tt.let, len(vars), len(got)+1)
			}
			if g, w := aggTestJSON(t, bson.A{got}), aggTestJSON(t, bson.A{aggTestDoc(t, tt.want)}); g != w {
				t.Errorf("CompileLet(%s) = %s, want %s", tt.let, g, w)
			}
		})
	}
}

func TestLetVariablesInFilterAndPipeline(t *testing.T) {
	t.Parallel()
	docs := aggTestDocs(t, `[{"_id": 1, "x": 5}, {"_id": 2, "x": 7}, {"_id": 3, "x": 9}]`)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	vars, err := CompileLet(aggTestDoc(t, `{"id": 2, "lim": 6, "tag": "t"}`), now)
	if err != nil {
		t.Fatal(err)
	}
	filterTests := []struct {
		name   string
		filter string
		want   []bool
	}{
		{name: "expr eq", filter: `{"$expr": {"$eq": ["$_id", "$$id"]}}`, want: []bool{false, true, false}},
		{name: "expr gt inside and", filter: `{"$and": [{"$expr": {"$gt": ["$x", "$$lim"]}}, {"_id": {"$ne": 3}}]}`, want: []bool{false, true, false}},
		{name: "expr inside nor", filter: `{"$nor": [{"$expr": {"$gt": ["$x", "$$lim"]}}]}`, want: []bool{true, false, false}},
	}
	for _, tt := range filterTests {
		f, err := CompileFilter(aggTestDoc(t, tt.filter))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		fv := f.WithVars(vars)
		for i, d := range docs {
			if got := fv.Match(d); got != tt.want[i] {
				t.Errorf("%s: Match(%v) = %v, want %v", tt.name, d, got, tt.want[i])
			}
			if got, err := fv.MatchErr(d); err != nil || got != tt.want[i] {
				t.Errorf("%s: MatchErr(%v) = %v, %v, want %v", tt.name, d, got, err, tt.want[i])
			}
		}
		// Without the variables the same filter fails as MongoDB does.
		if _, err := f.MatchErr(docs[0]); !isCode(err, mongoerr.UndefinedVariable) {
			t.Errorf("%s without let: error = %v, want UndefinedVariable", tt.name, err)
		}
	}

	pipeTests := []struct {
		name     string
		pipeline string
		want     string
	}{
		{name: "match and project", pipeline: `[{"$match": {"$expr": {"$eq": ["$_id", "$$id"]}}}, {"$project": {"_id": 0, "tag": "$$tag", "x": 1}}]`, want: `[{"x": 7, "tag": "t"}]`},
		{name: "NOW from let", pipeline: `[{"$limit": 1}, {"$project": {"_id": 0, "t": "$$NOW"}}]`, want: `[{"t": {"$date": "2026-01-02T03:04:05Z"}}]`},
		{name: "group accumulator", pipeline: `[{"$group": {"_id": null, "n": {"$sum": {"$cond": [{"$gt": ["$x", "$$lim"]}, 1, 0]}}}}]`, want: `[{"_id": null, "n": 2}]`},
		{name: "facet sub-pipeline", pipeline: `[{"$facet": {"f": [{"$match": {"$expr": {"$eq": ["$_id", "$$id"]}}}, {"$project": {"_id": 1}}]}}]`, want: `[{"f": [{"_id": 2}]}]`},
		{name: "redact", pipeline: `[{"$redact": {"$cond": [{"$eq": ["$_id", "$$id"]}, "$$KEEP", "$$PRUNE"]}}]`, want: `[{"_id": 2, "x": 7}]`},
		{name: "let shadowed by $let", pipeline: `[{"$match": {"_id": 1}}, {"$project": {"_id": 0, "v": {"$let": {"vars": {"id": 40}, "in": "$$id"}}}}]`, want: `[{"v": 40}]`},
	}
	for _, tt := range pipeTests {
		p, err := CompilePipeline(aggTestDocs(t, tt.pipeline))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got, err := aggTestRun(t, p.WithVars(vars), docs)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if want := aggTestJSON(t, toA(aggTestDocs(t, tt.want))); got != want {
			t.Errorf("%s: got %s, want %s", tt.name, got, want)
		}
		if tt.name == "match and project" {
			out, keep, err := p.WithVars(vars).ApplyOne(docs[1])
			if err != nil || !keep || aggTestJSON(t, bson.A{out}) != aggTestJSON(t, bson.A{aggTestDoc(t, `{"x": 7, "tag": "t"}`)}) {
				t.Errorf("%s: ApplyOne = %v, %v, %v", tt.name, out, keep, err)
			}
		}
	}
}

func TestRand(t *testing.T) {
	t.Parallel()
	x, err := CompileExpr(aggTestDoc(t, `{"v": {"$rand": {}}}`)[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		v, err := x.Eval(nil)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := v.(float64)
		if !ok || f < 0 || f >= 1 {
			t.Fatalf("$rand = %v (%T), want a double in [0, 1)", v, v)
		}
	}
	for _, bad := range []string{`{"v": {"$rand": {"a": 1}}}`, `{"v": {"$rand": 1}}`, `{"v": {"$rand": []}}`} {
		if _, err := CompileExpr(aggTestDoc(t, bad)[0].Value); !isCode(err, codeRandArguments) {
			t.Errorf("%s: error = %v, want code %d", bad, err, codeRandArguments)
		}
	}
}

// isCode reports whether err is a *mongoerr.Error with code.
func isCode(err error, code mongoerr.Code) bool {
	var me *mongoerr.Error
	return errors.As(err, &me) && me.Code == code
}

// toA converts documents to an array.
func toA(docs []bson.D) bson.A {
	a := make(bson.A, len(docs))
	for i, d := range docs {
		a[i] = d
	}
	return a
}
