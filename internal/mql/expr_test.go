package mql

import (
	"errors"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// aggTestDoc parses relaxed Extended JSON into a bson.D (integers decode as
// int32, or int64 beyond int32; fractions as double).
func aggTestDoc(tb testing.TB, s string) bson.D {
	tb.Helper()
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		tb.Fatalf("parse %s: %v", s, err)
	}
	return d
}

// aggTestCode returns the *mongoerr.Error code of err, or 0.
func aggTestCode(err error) mongoerr.Code {
	var e *mongoerr.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// aggTestWantErr checks err against a table case's expected error code:
// with code != 0 err must carry that code, with code 0 err must be nil. It
// reports whether the case expected an error (and so has nothing more to
// check).
func aggTestWantErr(tb testing.TB, err error, code mongoerr.Code) bool {
	tb.Helper()
	if code != 0 {
		if aggTestCode(err) != code {
			tb.Fatalf("error = %v (code %d), want code %d", err, aggTestCode(err), code)
		}
		return true
	}
	if err != nil {
		tb.Fatalf("unexpected error: %v", err)
	}
	return false
}

// aggTestJSON renders {"v": v} as canonical Extended JSON so that the
// comparison is exact about BSON types (int vs long vs double).
func aggTestJSON(tb testing.TB, v any) string {
	tb.Helper()
	if v == Missing {
		return "missing"
	}
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, true, false)
	if err != nil {
		tb.Fatalf("marshal %#v: %v", v, err)
	}
	return string(b)
}

// aggExprCase is one expression test: expr and doc are relaxed Extended
// JSON ({"e": <expr>} and a document); want is relaxed Extended JSON of
// {"v": <result>} or "missing"; code, when non-zero, is the expected error.
type aggExprCase struct {
	name string
	expr string
	doc  string
	want string
	code mongoerr.Code
}

func runExprCases(t *testing.T, cases []aggExprCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := aggTestDoc(t, `{"e": `+tc.expr+`}`)[0].Value
			doc := bson.D{}
			if tc.doc != "" {
				doc = aggTestDoc(t, tc.doc)
			}
			e, err := CompileExpr(spec)
			var got any
			if err == nil {
				got, err = e.Eval(doc)
			}
			if aggTestWantErr(t, err, tc.code) {
				return
			}
			want := tc.want
			if want != "missing" {
				want = aggTestJSON(t, aggTestDoc(t, tc.want)[0].Value)
			}
			if g := aggTestJSON(t, got); g != want {
				t.Fatalf("got %s, want %s", g, want)
			}
		})
	}
}

func TestExprPathsAndLiterals(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "field", expr: `"$a"`, doc: `{"a": 1}`, want: `{"v": 1}`},
		{name: "nested field", expr: `"$a.b"`, doc: `{"a": {"b": "x"}}`, want: `{"v": "x"}`},
		{name: "missing field", expr: `"$nope"`, doc: `{"a": 1}`, want: "missing"},
		{name: "path through array collects", expr: `"$a.b"`, doc: `{"a": [{"b": 1}, {"c": 2}, {"b": 3}, 4]}`, want: `{"v": [1, 3]}`},
		{name: "nested arrays keep shape", expr: `"$a.b"`, doc: `{"a": [[{"b": 1}], {"b": 2}]}`, want: `{"v": [[1], 2]}`},
		{name: "numeric component is a field name", expr: `"$a.0"`, doc: `{"a": [10, 20]}`, want: `{"v": []}`},
		{name: "ROOT", expr: `"$$ROOT.a"`, doc: `{"a": 5}`, want: `{"v": 5}`},
		{name: "CURRENT", expr: `"$$CURRENT"`, doc: `{"a": 5}`, want: `{"v": {"a": 5}}`},
		{name: "REMOVE is missing", expr: `"$$REMOVE"`, want: "missing"},
		{name: "undefined variable", expr: `"$$nope"`, code: 17276},
		{name: "literal", expr: `{"$literal": "$a"}`, doc: `{"a": 1}`, want: `{"v": "$a"}`},
		{name: "literal document", expr: `{"$literal": {"$add": 1}}`, want: `{"v": {"$add": 1}}`},
		{name: "object literal omits missing", expr: `{"x": "$a", "y": "$nope"}`, doc: `{"a": 1}`, want: `{"v": {"x": 1}}`},
		{name: "array literal missing is null", expr: `["$a", "$nope"]`, doc: `{"a": 1}`, want: `{"v": [1, null]}`},
		{name: "unknown operator", expr: `{"$foo": 1}`, code: 168},
		{name: "two operators", expr: `{"$add": [1], "$concat": ["a"]}`, code: 15983},
		{name: "bare dollar", expr: `"$"`, code: 16872},
		{name: "empty path component", expr: `"$a..b"`, code: 15998},
		{name: "dotted literal key", expr: `{"a.b": 1}`, code: 16412},
	})
}

func TestExprControlAndComparison(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "cond array", expr: `{"$cond": [{"$gt": ["$q", 5]}, "many", "few"]}`, doc: `{"q": 7}`, want: `{"v": "many"}`},
		{name: "cond object", expr: `{"$cond": {"if": "$flag", "then": 1, "else": 2}}`, doc: `{"flag": 0}`, want: `{"v": 2}`},
		{name: "cond missing else", expr: `{"$cond": {"if": true, "then": 1}}`, code: 17082},
		{name: "cond arity", expr: `{"$cond": [true, 1]}`, code: 16020},
		{name: "ifNull first non-null", expr: `{"$ifNull": ["$a", "$b", "d"]}`, doc: `{"a": null, "b": 2}`, want: `{"v": 2}`},
		{name: "ifNull falls to last", expr: `{"$ifNull": ["$a", "$b", "d"]}`, want: `{"v": "d"}`},
		{name: "ifNull needs two", expr: `{"$ifNull": ["$a"]}`, code: 1257300},
		{name: "switch", expr: `{"$switch": {"branches": [{"case": {"$eq": ["$a", 1]}, "then": "one"}, {"case": true, "then": "other"}]}}`, doc: `{"a": 2}`, want: `{"v": "other"}`},
		{name: "switch default", expr: `{"$switch": {"branches": [{"case": false, "then": 1}], "default": 0}}`, want: `{"v": 0}`},
		{name: "switch no match", expr: `{"$switch": {"branches": [{"case": false, "then": 1}]}}`, code: 40066},
		{name: "eq across numeric types", expr: `{"$eq": [1, 1.0]}`, want: `{"v": true}`},
		{name: "eq missing vs null is false", expr: `{"$eq": ["$nope", null]}`, want: `{"v": false}`},
		{name: "ne", expr: `{"$ne": ["a", "b"]}`, want: `{"v": true}`},
		{name: "gt cross type order", expr: `{"$gt": ["a", 5]}`, want: `{"v": true}`},
		{name: "lt null below numbers", expr: `{"$lt": [null, 0]}`, want: `{"v": true}`},
		{name: "gte", expr: `{"$gte": [2, 2]}`, want: `{"v": true}`},
		{name: "lte", expr: `{"$lte": [3, 2]}`, want: `{"v": false}`},
		{name: "cmp", expr: `{"$cmp": ["a", "b"]}`, want: `{"v": -1}`},
		{name: "eq arity", expr: `{"$eq": [1]}`, code: 16020},
		{name: "and", expr: `{"$and": [1, "x", true]}`, want: `{"v": true}`},
		{name: "and empty", expr: `{"$and": []}`, want: `{"v": true}`},
		{name: "and short circuits", expr: `{"$and": [false, {"$divide": [1, "$z"]}]}`, doc: `{"z": 0}`, want: `{"v": false}`},
		{name: "or", expr: `{"$or": [0, null, "$nope"]}`, want: `{"v": false}`},
		{name: "not", expr: `{"$not": [0]}`, want: `{"v": true}`},
		{name: "let", expr: `{"$let": {"vars": {"x": 2, "y": "$a"}, "in": {"$multiply": ["$$x", "$$y"]}}}`, doc: `{"a": 3}`, want: `{"v": 6}`},
		{name: "let bad name", expr: `{"$let": {"vars": {"X": 1}, "in": 1}}`, code: 16867},
		{name: "let missing in", expr: `{"$let": {"vars": {}}}`, code: 16877},
		{name: "in", expr: `{"$in": [2, [1, 2.0]]}`, want: `{"v": true}`},
		{name: "in needs array", expr: `{"$in": [1, "$nope"]}`, code: 40081},
	})
}

func TestExprArithmetic(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "add ints", expr: `{"$add": [1, 2]}`, want: `{"v": 3}`},
		{name: "add overflow widens to long", expr: `{"$add": [2147483647, 1]}`, want: `{"v": {"$numberLong": "2147483648"}}`},
		{name: "add long overflow widens to double", expr: `{"$add": [{"$numberLong": "9223372036854775807"}, 1]}`, want: `{"v": 9.223372036854775808e18}`},
		{name: "add double", expr: `{"$add": [1, 0.5]}`, want: `{"v": 1.5}`},
		{name: "add decimal wins", expr: `{"$add": [1, {"$numberDecimal": "0.1"}]}`, want: `{"v": {"$numberDecimal": "1.1"}}`},
		{name: "add null", expr: `{"$add": [1, null]}`, want: `{"v": null}`},
		{name: "add missing", expr: `{"$add": [1, "$nope"]}`, want: `{"v": null}`},
		{name: "add date", expr: `{"$add": [{"$date": "2021-01-01T00:00:00Z"}, 1000]}`, want: `{"v": {"$date": "2021-01-01T00:00:01Z"}}`},
		{name: "add two dates", expr: `{"$add": [{"$date": "2021-01-01T00:00:00Z"}, {"$date": "2021-01-01T00:00:00Z"}]}`, code: 16612},
		{name: "add string", expr: `{"$add": [1, "a"]}`, code: 14},
		{name: "subtract", expr: `{"$subtract": [5, 7]}`, want: `{"v": -2}`},
		{name: "subtract dates", expr: `{"$subtract": [{"$date": "2021-01-01T00:00:01Z"}, {"$date": "2021-01-01T00:00:00Z"}]}`, want: `{"v": {"$numberLong": "1000"}}`},
		{name: "subtract number from date", expr: `{"$subtract": [{"$date": "2021-01-01T00:00:01Z"}, 1000]}`, want: `{"v": {"$date": "2021-01-01T00:00:00Z"}}`},
		{name: "subtract date from number", expr: `{"$subtract": [1, {"$date": "2021-01-01T00:00:00Z"}]}`, code: 16556},
		{name: "multiply", expr: `{"$multiply": [2, 3, 4]}`, want: `{"v": 24}`},
		{name: "multiply overflow", expr: `{"$multiply": [65536, 65536]}`, want: `{"v": {"$numberLong": "4294967296"}}`},
		{name: "multiply string", expr: `{"$multiply": [2, "x"]}`, code: 16555},
		{name: "divide is double", expr: `{"$divide": [6, 3]}`, want: `{"v": 2.0}`},
		{name: "divide by zero", expr: `{"$divide": [1, 0]}`, code: 2},
		{name: "divide decimal", expr: `{"$divide": [{"$numberDecimal": "1"}, 4]}`, want: `{"v": {"$numberDecimal": "0.25"}}`},
		{name: "mod", expr: `{"$mod": [-7, 3]}`, want: `{"v": -1}`},
		{name: "mod double", expr: `{"$mod": [7.5, 2]}`, want: `{"v": 1.5}`},
		{name: "mod by zero", expr: `{"$mod": [1, 0]}`, code: 16610},
		{name: "abs", expr: `{"$abs": -5}`, want: `{"v": 5}`},
		{name: "abs int min", expr: `{"$abs": -2147483648}`, want: `{"v": {"$numberLong": "2147483648"}}`},
		{name: "abs null", expr: `{"$abs": null}`, want: `{"v": null}`},
		{name: "abs string", expr: `{"$abs": "x"}`, code: 28765},
		{name: "ceil", expr: `{"$ceil": 1.2}`, want: `{"v": 2.0}`},
		{name: "floor", expr: `{"$floor": -1.2}`, want: `{"v": -2.0}`},
		{name: "floor int unchanged", expr: `{"$floor": 3}`, want: `{"v": 3}`},
		{name: "round half even", expr: `{"$round": [2.5, 0]}`, want: `{"v": 2.0}`},
		{name: "round places", expr: `{"$round": [1.2345, 2]}`, want: `{"v": 1.23}`},
		{name: "round negative place int", expr: `{"$round": [1250, -2]}`, want: `{"v": 1200}`},
		{name: "round bad place", expr: `{"$round": [1, 101]}`, code: 51083},
		{name: "trunc", expr: `{"$trunc": [-1.99, 1]}`, want: `{"v": -1.9}`},
		{name: "trunc default", expr: `{"$trunc": 7.9}`, want: `{"v": 7.0}`},
		{name: "pow int", expr: `{"$pow": [2, 10]}`, want: `{"v": 1024}`},
		{name: "pow negative exponent", expr: `{"$pow": [2, -1]}`, want: `{"v": 0.5}`},
		{name: "pow minus one huge exponent", expr: `{"$pow": [-1, {"$numberLong": "9000000000000000001"}]}`, want: `{"v": {"$numberLong": "-1"}}`},
		{name: "pow int overflow to double", expr: `{"$pow": [10, 20]}`, want: `{"v": 1e20}`},
		{name: "pow zero base negative", expr: `{"$pow": [0, -1]}`, code: 28764},
		{name: "sqrt", expr: `{"$sqrt": 16}`, want: `{"v": 4.0}`},
		{name: "sqrt negative", expr: `{"$sqrt": -1}`, code: 28714},
		{name: "sum of array field", expr: `{"$sum": "$a"}`, doc: `{"a": [1, 2, "x", 3.5]}`, want: `{"v": 6.5}`},
		{name: "sum of args", expr: `{"$sum": [1, 2, {"$numberLong": "3"}]}`, want: `{"v": {"$numberLong": "6"}}`},
		{name: "sum of nothing", expr: `{"$sum": "$nope"}`, want: `{"v": 0}`},
		{name: "avg", expr: `{"$avg": [1, 2]}`, want: `{"v": 1.5}`},
		{name: "avg no numbers", expr: `{"$avg": ["a", null]}`, want: `{"v": null}`},
		{name: "min", expr: `{"$min": [3, null, 1]}`, want: `{"v": 1}`},
		{name: "max of array", expr: `{"$max": "$a"}`, doc: `{"a": [1, "z", 3]}`, want: `{"v": "z"}`},
		{name: "max all null", expr: `{"$max": [null, "$nope"]}`, want: `{"v": null}`},
	})
}

func TestExprStrings(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "concat", expr: `{"$concat": ["a", "$b", "c"]}`, doc: `{"b": "-"}`, want: `{"v": "a-c"}`},
		{name: "concat null", expr: `{"$concat": ["a", "$nope"]}`, want: `{"v": null}`},
		{name: "concat number", expr: `{"$concat": ["a", 1]}`, code: 16702},
		{name: "toUpper", expr: `{"$toUpper": "abc"}`, want: `{"v": "ABC"}`},
		{name: "toLower null", expr: `{"$toLower": null}`, want: `{"v": ""}`},
		{name: "toLower number", expr: `{"$toLower": 12}`, want: `{"v": "12"}`},
		{name: "toLower double uses %g", expr: `{"$toLower": 1234567.0}`, want: `{"v": "1.23457e+06"}`},
		{name: "toLower fraction", expr: `{"$toLower": 2.5}`, want: `{"v": "2.5"}`},
		{name: "toUpper object", expr: `{"$toUpper": {"$literal": {"a": 1}}}`, code: 16007},
		{name: "substrBytes", expr: `{"$substrBytes": ["hello", 1, 3]}`, want: `{"v": "ell"}`},
		{name: "substr negative length", expr: `{"$substr": ["hello", 2, -1]}`, want: `{"v": "llo"}`},
		// MongoDB truncates the start and length to longs first.
		{name: "substrBytes fractional negative start", expr: `{"$substrBytes": ["hello", -0.5, 2]}`, want: `{"v": "he"}`},
		{name: "substr fractional negative start", expr: `{"$substr": ["hello", -0.9, 2]}`, want: `{"v": "he"}`},
		{name: "substrBytes fractional start", expr: `{"$substrBytes": ["hello", 1.9, 2]}`, want: `{"v": "el"}`},
		{name: "substrBytes fractional length", expr: `{"$substrBytes": ["hello", 1, 2.9]}`, want: `{"v": "el"}`},
		{name: "substrBytes fractional negative length", expr: `{"$substrBytes": ["hello", 1, -0.5]}`, want: `{"v": ""}`},
		{name: "substrBytes start below -1", expr: `{"$substrBytes": ["hello", -1.5, 2]}`, code: 50752},
		{name: "substrBytes mid rune", expr: `{"$substrBytes": ["é", 1, 1]}`, code: 28656},
		{name: "substrCP", expr: `{"$substrCP": ["héllo", 1, 2]}`, want: `{"v": "él"}`},
		{name: "substrCP negative length", expr: `{"$substrCP": ["abc", 0, -1]}`, code: 34454},
		{name: "strLenBytes", expr: `{"$strLenBytes": "é"}`, want: `{"v": 2}`},
		{name: "strLenCP", expr: `{"$strLenCP": "é"}`, want: `{"v": 1}`},
		{name: "strLenCP missing", expr: `{"$strLenCP": "$nope"}`, code: 34471},
		{name: "split", expr: `{"$split": ["a,b,,c", ","]}`, want: `{"v": ["a", "b", "", "c"]}`},
		{name: "split empty separator", expr: `{"$split": ["a", ""]}`, code: 40087},
		{name: "split null", expr: `{"$split": [null, ","]}`, want: `{"v": null}`},
		{name: "trim", expr: `{"$trim": {"input": "  a b \n"}}`, want: `{"v": "a b"}`},
		{name: "ltrim chars", expr: `{"$ltrim": {"input": "xxaxx", "chars": "x"}}`, want: `{"v": "axx"}`},
		{name: "rtrim", expr: `{"$rtrim": {"input": " a "}}`, want: `{"v": " a"}`},
		{name: "trim non-string", expr: `{"$trim": {"input": 1}}`, code: 50699},
		{name: "indexOfBytes", expr: `{"$indexOfBytes": ["cafe", "fe"]}`, want: `{"v": 2}`},
		{name: "indexOfBytes not found", expr: `{"$indexOfBytes": ["cafe", "x"]}`, want: `{"v": -1}`},
		{name: "indexOfBytes start", expr: `{"$indexOfBytes": ["abab", "ab", 1]}`, want: `{"v": 2}`},
		{name: "indexOfCP", expr: `{"$indexOfCP": ["éa", "a"]}`, want: `{"v": 1}`},
		{name: "regexMatch", expr: `{"$regexMatch": {"input": "Hello", "regex": "^h", "options": "i"}}`, want: `{"v": true}`},
		{name: "regexMatch regex value", expr: `{"$regexMatch": {"input": "abc", "regex": {"$regularExpression": {"pattern": "B", "options": "i"}}}}`, want: `{"v": true}`},
		{name: "regexMatch null input", expr: `{"$regexMatch": {"input": null, "regex": "a"}}`, want: `{"v": false}`},
		{name: "regexMatch bad input", expr: `{"$regexMatch": {"input": 1, "regex": "a"}}`, code: 51104},
		{name: "regexFind", expr: `{"$regexFind": {"input": "xaby", "regex": "a(b)"}}`, want: `{"v": {"match": "ab", "idx": 1, "captures": ["b"]}}`},
		{name: "regexFindAll", expr: `{"$regexFindAll": {"input": "a1a2", "regex": "a\\d"}}`, want: `{"v": [{"match": "a1", "idx": 0, "captures": []}, {"match": "a2", "idx": 2, "captures": []}]}`},
		{name: "replaceAll", expr: `{"$replaceAll": {"input": "a-b-c", "find": "-", "replacement": "+"}}`, want: `{"v": "a+b+c"}`},
		{name: "concat doubling is bounded", expr: `{"$reduce": {"input": {"$range": [0, 40]}, "initialValue": "ab", "in": {"$concat": ["$$value", "$$value"]}}}`, code: 10334},
		{name: "replaceAll amplification is bounded", expr: `{"$replaceAll": {"input": {"$reduce": {"input": {"$range": [0, 20]}, "initialValue": "a", "in": {"$concat": ["$$value", "$$value"]}}}, "find": "a", "replacement": "0123456789abcdefghij"}}`, code: 10334},
		{name: "replaceOne", expr: `{"$replaceOne": {"input": "a-b-c", "find": "-", "replacement": "+"}}`, want: `{"v": "a+b-c"}`},
		{name: "strcasecmp", expr: `{"$strcasecmp": ["ABC", "abc"]}`, want: `{"v": 0}`},
	})
}

func TestExprArraysAndObjects(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "size", expr: `{"$size": "$a"}`, doc: `{"a": [1, 2, 3]}`, want: `{"v": 3}`},
		{name: "size missing", expr: `{"$size": "$a"}`, code: 17124},
		{name: "arrayElemAt", expr: `{"$arrayElemAt": ["$a", -1]}`, doc: `{"a": [1, 2, 3]}`, want: `{"v": 3}`},
		{name: "arrayElemAt out of range", expr: `{"$arrayElemAt": [[1], 5]}`, want: "missing"},
		{name: "arrayElemAt null", expr: `{"$arrayElemAt": [null, 0]}`, want: `{"v": null}`},
		{name: "arrayElemAt not array", expr: `{"$arrayElemAt": ["x", 0]}`, code: 28689},
		{name: "arrayElemAt fractional", expr: `{"$arrayElemAt": [[1], 0.5]}`, code: 28691},
		{name: "first", expr: `{"$first": [[4, 5]]}`, want: `{"v": 4}`},
		{name: "last", expr: `{"$last": "$a"}`, doc: `{"a": [4, 5]}`, want: `{"v": 5}`},
		{name: "first empty", expr: `{"$first": [[]]}`, want: "missing"},
		{name: "first not array", expr: `{"$first": "x"}`, code: 28689},
		{name: "concatArrays", expr: `{"$concatArrays": [[1], ["a", [2]]]}`, want: `{"v": [1, "a", [2]]}`},
		{name: "concatArrays null", expr: `{"$concatArrays": [[1], null]}`, want: `{"v": null}`},
		{name: "isArray", expr: `{"$isArray": ["$a"]}`, doc: `{"a": []}`, want: `{"v": true}`},
		{name: "filter", expr: `{"$filter": {"input": [1, 2, 3, 4], "as": "n", "cond": {"$gt": ["$$n", 2]}}}`, want: `{"v": [3, 4]}`},
		{name: "filter limit", expr: `{"$filter": {"input": [1, 2, 3, 4], "cond": {"$gt": ["$$this", 1]}, "limit": 2}}`, want: `{"v": [2, 3]}`},
		{name: "filter null input", expr: `{"$filter": {"input": "$nope", "cond": true}}`, want: `{"v": null}`},
		{name: "filter bad input", expr: `{"$filter": {"input": 1, "cond": true}}`, code: 28651},
		{name: "map", expr: `{"$map": {"input": "$a", "as": "x", "in": {"$multiply": ["$$x", 10]}}}`, doc: `{"a": [1, 2]}`, want: `{"v": [10, 20]}`},
		{name: "map default this", expr: `{"$map": {"input": [1], "in": {"$add": ["$$this", "$k"]}}}`, doc: `{"k": 1}`, want: `{"v": [2]}`},
		{name: "map missing in", expr: `{"$map": {"input": []}}`, code: 28649},
		{name: "reduce sum", expr: `{"$reduce": {"input": [1, 2, 3], "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}}`, want: `{"v": 6}`},
		{name: "reduce concat", expr: `{"$reduce": {"input": ["a", "b"], "initialValue": "", "in": {"$concat": ["$$value", "$$this"]}}}`, want: `{"v": "ab"}`},
		{name: "slice", expr: `{"$slice": [[1, 2, 3], -2]}`, want: `{"v": [2, 3]}`},
		{name: "slice position", expr: `{"$slice": [[1, 2, 3], 1, 1]}`, want: `{"v": [2]}`},
		{name: "reverseArray", expr: `{"$reverseArray": [[1, 2]]}`, want: `{"v": [2, 1]}`},
		{name: "range", expr: `{"$range": [0, 10, 3]}`, want: `{"v": [0, 3, 6, 9]}`},
		{name: "range too large", expr: `{"$range": [0, 2147483647]}`, code: mongoerr.BadValue},
		{name: "concatArrays doubling is bounded", expr: `{"$reduce": {"input": {"$range": [0, 40]}, "initialValue": [1], "in": {"$concatArrays": ["$$value", "$$value"]}}}`, code: 10334},
		{name: "range zero step", expr: `{"$range": [0, 10, 0]}`, code: 34449},
		{name: "indexOfArray", expr: `{"$indexOfArray": [["a", "b"], "b"]}`, want: `{"v": 1}`},
		{name: "mergeObjects", expr: `{"$mergeObjects": [{"a": 1, "b": 1}, null, {"b": 2, "c": 3}]}`, want: `{"v": {"a": 1, "b": 2, "c": 3}}`},
		{name: "mergeObjects bad", expr: `{"$mergeObjects": [1]}`, code: 40400},
		{name: "objectToArray", expr: `{"$objectToArray": "$o"}`, doc: `{"o": {"a": 1}}`, want: `{"v": [{"k": "a", "v": 1}]}`},
		{name: "arrayToObject pairs", expr: `{"$arrayToObject": [[["a", 1], ["b", 2]]]}`, want: `{"v": {"a": 1, "b": 2}}`},
		{name: "arrayToObject kv", expr: `{"$arrayToObject": [[{"k": "a", "v": 1}]]}`, want: `{"v": {"a": 1}}`},
		{name: "arrayToObject bad pair", expr: `{"$arrayToObject": [[["a"]]]}`, code: 40397},
		{name: "getField", expr: `{"$getField": "a.b"}`, doc: `{"a.b": 1, "a": {"b": 2}}`, want: `{"v": 1}`},
		{name: "getField input", expr: `{"$getField": {"field": "x", "input": {"x": 5}}}`, want: `{"v": 5}`},
		{name: "getField dollar literal", expr: `{"$getField": {"$literal": "$p"}}`, doc: `{"$p": 3}`, want: `{"v": 3}`},
		{name: "getField dollar string", expr: `{"$getField": "$p"}`, code: 5654600},
		{name: "getField missing", expr: `{"$getField": "zz"}`, want: "missing"},
		{name: "setField", expr: `{"$setField": {"field": "b", "input": {"a": 1}, "value": 2}}`, want: `{"v": {"a": 1, "b": 2}}`},
		{name: "setField remove", expr: `{"$setField": {"field": "a", "input": {"a": 1}, "value": "$$REMOVE"}}`, want: `{"v": {}}`},
		{name: "unsetField", expr: `{"$unsetField": {"field": "a", "input": {"a": 1, "b": 2}}}`, want: `{"v": {"b": 2}}`},
	})
}

func TestExprTypesAndConversion(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "type int", expr: `{"$type": 1}`, want: `{"v": "int"}`},
		{name: "type missing", expr: `{"$type": "$nope"}`, want: `{"v": "missing"}`},
		{name: "type array", expr: `{"$type": [[1]]}`, want: `{"v": "array"}`},
		{name: "isNumber", expr: `{"$isNumber": "1"}`, want: `{"v": false}`},
		{name: "toString double", expr: `{"$toString": 2.5}`, want: `{"v": "2.5"}`},
		{name: "toString small double", expr: `{"$toString": 0.1}`, want: `{"v": "0.1"}`},
		{name: "toString large double", expr: `{"$toString": 1e20}`, want: `{"v": "1e+20"}`},
		{name: "toString tiny double", expr: `{"$toString": 1e-5}`, want: `{"v": "1e-05"}`},
		{name: "toString whole double", expr: `{"$toString": 3.0}`, want: `{"v": "3"}`},
		{name: "toString int", expr: `{"$toString": 42}`, want: `{"v": "42"}`},
		{name: "toString long", expr: `{"$toString": {"$numberLong": "1000"}}`, want: `{"v": "1000"}`},
		{name: "toString bool", expr: `{"$toString": true}`, want: `{"v": "true"}`},
		{name: "toString objectId", expr: `{"$toString": {"$oid": "5ab9c3da31c2ab715d421285"}}`, want: `{"v": "5ab9c3da31c2ab715d421285"}`},
		{name: "toString date", expr: `{"$toString": {"$date": "2018-03-27T16:58:51.538Z"}}`, want: `{"v": "2018-03-27T16:58:51.538Z"}`},
		{name: "toString decimal", expr: `{"$toString": {"$numberDecimal": "1.50"}}`, want: `{"v": "1.50"}`},
		{name: "toString null", expr: `{"$toString": null}`, want: `{"v": null}`},
		{name: "toString object fails", expr: `{"$toString": {"$literal": {"a": 1}}}`, code: 241},
		{name: "toInt double truncates", expr: `{"$toInt": 2.9}`, want: `{"v": 2}`},
		{name: "toInt string", expr: `{"$toInt": "-12"}`, want: `{"v": -12}`},
		{name: "toInt bad string", expr: `{"$toInt": "1.5"}`, code: 241},
		{name: "toInt overflow", expr: `{"$toInt": 1e10}`, code: 241},
		{name: "toLong date", expr: `{"$toLong": {"$date": "1970-01-01T00:00:01Z"}}`, want: `{"v": {"$numberLong": "1000"}}`},
		{name: "toDouble string", expr: `{"$toDouble": "1.5e3"}`, want: `{"v": 1500.0}`},
		{name: "toDouble bool", expr: `{"$toDouble": true}`, want: `{"v": 1.0}`},
		{name: "toDecimal double", expr: `{"$toDecimal": 2.5}`, want: `{"v": {"$numberDecimal": "2.50000000000000"}}`},
		{name: "toDecimal int", expr: `{"$toDecimal": 7}`, want: `{"v": {"$numberDecimal": "7"}}`},
		{name: "toBool zero", expr: `{"$toBool": 0}`, want: `{"v": false}`},
		{name: "toBool string", expr: `{"$toBool": ""}`, want: `{"v": true}`},
		{name: "toDate string", expr: `{"$toDate": "2021-01-01T00:00:00Z"}`, want: `{"v": {"$date": "2021-01-01T00:00:00Z"}}`},
		{name: "toDate long", expr: `{"$toDate": {"$numberLong": "1000"}}`, want: `{"v": {"$date": "1970-01-01T00:00:01Z"}}`},
		{name: "toDate objectId", expr: `{"$toDate": {"$oid": "5ab9c3da31c2ab715d421285"}}`, want: `{"v": {"$date": "2018-03-27T04:08:58Z"}}`},
		{name: "toDate bad string", expr: `{"$toDate": "nope"}`, code: 241},
		{name: "toObjectId", expr: `{"$toObjectId": "5ab9c3da31c2ab715d421285"}`, want: `{"v": {"$oid": "5ab9c3da31c2ab715d421285"}}`},
		{name: "toObjectId short", expr: `{"$toObjectId": "abc"}`, code: 241},
		{name: "convert onError", expr: `{"$convert": {"input": "x", "to": "int", "onError": -1}}`, want: `{"v": -1}`},
		{name: "convert onNull", expr: `{"$convert": {"input": "$nope", "to": "int", "onNull": 0}}`, want: `{"v": 0}`},
		{name: "convert numeric to", expr: `{"$convert": {"input": "5", "to": 18}}`, want: `{"v": {"$numberLong": "5"}}`},
		{name: "convert unknown to", expr: `{"$convert": {"input": 1, "to": "nope"}}`, code: 2},
		{name: "convert missing to", expr: `{"$convert": {"input": 1}}`, code: 9},
	})
}

func TestExprDates(t *testing.T) {
	t.Parallel()
	const doc = `{"d": {"$date": "2021-03-07T05:06:07.089Z"}}`
	runExprCases(t, []aggExprCase{
		{name: "dateToString default", expr: `{"$dateToString": {"date": "$d"}}`, doc: doc, want: `{"v": "2021-03-07T05:06:07.089Z"}`},
		{name: "dateToString all specifiers", expr: `{"$dateToString": {"date": "$d", "format": "%Y|%m|%d|%H|%M|%S|%L|%j|%w|%u|%U|%G|%V|%z|%Z|%%"}}`, doc: doc,
			want: `{"v": "2021|03|07|05|06|07|089|066|1|7|10|2021|09|+0000|0|%"}`},
		{name: "dateToString offset tz", expr: `{"$dateToString": {"date": "$d", "format": "%H:%M %z %Z", "timezone": "+04:45"}}`, doc: doc, want: `{"v": "09:51 +0445 285"}`},
		{name: "dateToString olson tz", expr: `{"$dateToString": {"date": "$d", "format": "%Y-%m-%d %H", "timezone": "America/New_York"}}`, doc: doc, want: `{"v": "2021-03-07 00"}`},
		{name: "dateToString tz default format", expr: `{"$dateToString": {"date": "$d", "timezone": "+01"}}`, doc: doc, want: `{"v": "2021-03-07T06:06:07.089"}`},
		{name: "dateToString onNull", expr: `{"$dateToString": {"date": "$nope", "onNull": "n/a"}}`, want: `{"v": "n/a"}`},
		{name: "dateToString null", expr: `{"$dateToString": {"date": null}}`, want: `{"v": null}`},
		{name: "dateToString bad tz", expr: `{"$dateToString": {"date": "$d", "timezone": "Mars/Base"}}`, code: 40485},
		{name: "dateToString bad format", expr: `{"$dateToString": {"date": "$d", "format": "%Q"}}`, code: 18536},
		{name: "dateToString not a date", expr: `{"$dateToString": {"date": "x"}}`, code: 16006},
		{name: "dateToString missing date", expr: `{"$dateToString": {"format": "%Y"}}`, code: 9},
		{name: "year", expr: `{"$year": "$d"}`, doc: doc, want: `{"v": 2021}`},
		{name: "month", expr: `{"$month": "$d"}`, doc: doc, want: `{"v": 3}`},
		{name: "dayOfMonth", expr: `{"$dayOfMonth": "$d"}`, doc: doc, want: `{"v": 7}`},
		{name: "hour with tz", expr: `{"$hour": {"date": "$d", "timezone": "-06:00"}}`, doc: doc, want: `{"v": 23}`},
		{name: "minute", expr: `{"$minute": "$d"}`, doc: doc, want: `{"v": 6}`},
		{name: "second", expr: `{"$second": "$d"}`, doc: doc, want: `{"v": 7}`},
		{name: "millisecond", expr: `{"$millisecond": "$d"}`, doc: doc, want: `{"v": 89}`},
		{name: "dayOfWeek sunday", expr: `{"$dayOfWeek": "$d"}`, doc: doc, want: `{"v": 1}`},
		{name: "year of objectId", expr: `{"$year": {"$oid": "5ab9c3da31c2ab715d421285"}}`, want: `{"v": 2018}`},
		{name: "year null", expr: `{"$year": null}`, want: `{"v": null}`},
		{name: "year string", expr: `{"$year": "x"}`, code: 16006},
		{name: "dateFromString", expr: `{"$dateFromString": {"dateString": "2021-01-02 03:04:05", "timezone": "+01:00"}}`, want: `{"v": {"$date": "2021-01-02T02:04:05Z"}}`},
		{name: "dateFromString format", expr: `{"$dateFromString": {"dateString": "02/01/2021", "format": "%d/%m/%Y"}}`, want: `{"v": {"$date": "2021-01-02T00:00:00Z"}}`},
		{name: "dateFromString onError", expr: `{"$dateFromString": {"dateString": "junk", "onError": 0}}`, want: `{"v": 0}`},
	})
}

func TestTruthy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    any
		want bool
	}{
		{"false", false, false},
		{"true", true, true},
		{"null", nil, false},
		{"missing", Missing, false},
		{"undefined", bson.Undefined{}, false},
		{"int zero", int32(0), false},
		{"long zero", int64(0), false},
		{"double zero", 0.0, false},
		{"decimal zero", bson.NewDecimal128(0x3040000000000000, 0), false},
		{"int", int32(2), true},
		{"empty string", "", true},
		{"empty array", bson.A{}, true},
		{"empty document", bson.D{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Truthy(tc.v); got != tc.want {
				t.Fatalf("Truthy(%#v) = %v, want %v", tc.v, got, tc.want)
			}
		})
	}
}

func TestEvalVarsAndNow(t *testing.T) {
	t.Parallel()
	e, err := CompileExprVars("$$target.name", map[string]any{"target": nil})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.EvalVars(bson.D{}, map[string]any{"target": bson.D{{Key: "name", Value: "x"}}})
	if err != nil || got != "x" {
		t.Fatalf("EvalVars = %v, %v; want x", got, err)
	}
	now := bson.DateTime(1234)
	n, err := CompileExpr(bson.D{{Key: "$eq", Value: bson.A{"$$NOW", "$$NOW"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := n.Eval(bson.D{}); err != nil || v != true {
		t.Fatalf("$$NOW not stable within one evaluation: %v, %v", v, err)
	}
	fixed, _ := CompileExpr("$$NOW")
	if v, err := fixed.EvalVars(nil, map[string]any{"NOW": now}); err != nil || v != now {
		t.Fatalf("$$NOW override = %v, %v", v, err)
	}
}

func TestExprConcurrentEval(t *testing.T) {
	t.Parallel()
	e, err := CompileExpr(aggTestDoc(t, `{"e": {"$map": {"input": "$a", "in": {"$add": ["$$this", 1]}}}}`)[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	doc := aggTestDoc(t, `{"a": [1, 2, 3]}`)
	done := make(chan error, 8)
	for range 8 {
		go func() {
			for range 200 {
				v, err := e.Eval(doc)
				if err != nil {
					done <- err
					return
				}
				if a, ok := v.(bson.A); !ok || len(a) != 3 || a[2] != int32(4) {
					done <- errors.New("wrong result")
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestExprNestingLimit(t *testing.T) {
	t.Parallel()
	var deep any = "$a"
	for range 1000 {
		deep = bson.D{{Key: "$not", Value: bson.A{deep}}}
	}
	if _, err := CompileExpr(deep); aggTestCode(err) != 15 {
		t.Fatalf("err = %v, want Overflow", err)
	}
	if _, err := CompilePipeline([]bson.D{{{Key: "$project", Value: bson.D{{Key: "x", Value: deep}}}}}); aggTestCode(err) != 15 {
		t.Fatalf("pipeline err = %v, want Overflow", err)
	}
	var ok any = "$a"
	for range 50 {
		ok = bson.D{{Key: "$not", Value: bson.A{ok}}}
	}
	if _, err := CompileExpr(ok); err != nil {
		t.Fatalf("50 levels: %v", err)
	}
}

func TestExprStepBudget(t *testing.T) {
	t.Parallel()
	spec := aggTestDoc(t, `{"e": {"$map": {"input": {"$range": [0, 100]}, "as": "i",
		"in": {"$size": {"$map": {"input": {"$range": [0, 100]}, "in": "$$this"}}}}}}`)[0].Value
	e, err := CompileExpr(spec)
	if err != nil {
		t.Fatal(err)
	}
	// About 20,000 steps: fine under the default budget, refused under 1,000.
	if _, err := e.Eval(bson.D{}); err != nil {
		t.Fatalf("default budget: %v", err)
	}
	if _, err := e.evalCtx(&evalCtx{root: bson.D{}, maxStep: 1000}); aggTestCode(err) != mongoerr.BadValue {
		t.Fatalf("err = %v, want step budget error", err)
	}
}
