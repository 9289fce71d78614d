package mql

import "testing"

// TestExprNArray checks the expression forms of $firstN $lastN $maxN
// $minN with the manual's games example (n 3 for $firstN/$lastN, n 2 for
// $maxN/$minN) and their argument rules.
func TestExprNArray(t *testing.T) {
	t.Parallel()
	n := func(op string, k int, input string) string {
		return `{"` + op + `": {"n": ` + string(rune('0'+k)) + `, "input": ` + input + `}}`
	}
	const mixed = `["12.1", 2, {"$numberLong": "2090845886852"}, 23]`
	runExprCases(t, []aggExprCase{
		{name: "firstN manual", expr: n("$firstN", 3, `[12, 90, 7, 89, 8]`), want: `{"v": [12, 90, 7]}`},
		{name: "firstN keeps nulls", expr: n("$firstN", 3, `[1293, null, 3489, 9]`), want: `{"v": [1293, null, 3489]}`},
		{name: "firstN short", expr: n("$firstN", 3, `[null]`), want: `{"v": [null]}`},
		{name: "firstN empty", expr: n("$firstN", 3, `[]`), want: `{"v": []}`},
		{name: "firstN mixed", expr: n("$firstN", 3, mixed), want: `{"v": ["12.1", 2, {"$numberLong": "2090845886852"}]}`},
		{name: "lastN manual", expr: n("$lastN", 3, `[12, 90, 7, 89, 8]`), want: `{"v": [7, 89, 8]}`},
		{name: "lastN keeps nulls", expr: n("$lastN", 3, `[null, 2, null, 1]`), want: `{"v": [2, null, 1]}`},
		{name: "maxN manual", expr: n("$maxN", 2, `[12, 90, 7, 89, 8]`), want: `{"v": [90, 89]}`},
		{name: "maxN skips nulls", expr: n("$maxN", 2, `[1293, null, 3489, 9]`), want: `{"v": [3489, 1293]}`},
		{name: "maxN only null", expr: n("$maxN", 2, `[null]`), want: `{"v": []}`},
		{name: "maxN mixed types", expr: n("$maxN", 2, mixed), want: `{"v": ["12.1", {"$numberLong": "2090845886852"}]}`},
		{name: "minN manual", expr: n("$minN", 2, `[12, 90, 7, 89, 8]`), want: `{"v": [7, 8]}`},
		{name: "minN skips nulls", expr: n("$minN", 2, `[1293, null, 3489, 9]`), want: `{"v": [9, 1293]}`},
		{name: "minN mixed types", expr: n("$minN", 2, mixed), want: `{"v": [2, 23]}`},
		{name: "n from field", expr: `{"$firstN": {"n": "$n", "input": "$a"}}`, doc: `{"n": {"$numberLong": "2"}, "a": [1, 2, 3]}`, want: `{"v": [1, 2]}`},
		{name: "n integral double", expr: `{"$lastN": {"n": 2.0, "input": [1, 2, 3]}}`, want: `{"v": [2, 3]}`},
		{name: "n zero", expr: n("$firstN", 0, `[1]`), code: 5787908},
		{name: "n fraction", expr: `{"$firstN": {"n": 1.5, "input": [1]}}`, code: 5787903},
		{name: "n null", expr: `{"$maxN": {"n": null, "input": [1]}}`, code: 5787902},
		{name: "input not array", expr: n("$firstN", 1, `"$s"`), doc: `{"s": 1}`, code: 5788200},
		{name: "input missing", expr: n("$minN", 1, `"$nope"`), code: 5788200},
		{name: "not object", expr: `{"$firstN": [1, 2]}`, code: 5787801},
		{name: "maxN not object", expr: `{"$maxN": "x"}`, code: 5787900},
		{name: "unknown field", expr: `{"$firstN": {"n": 1, "input": [1], "sortBy": 1}}`, code: 5787901},
		{name: "missing n", expr: `{"$lastN": {"input": [1]}}`, code: 5787906},
		{name: "missing input", expr: `{"$lastN": {"n": 1}}`, code: 5787907},
	})
}

// TestExprSortArray checks $sortArray against the manual's examples:
// whole values in BSON order, documents by a sort specification.
func TestExprSortArray(t *testing.T) {
	t.Parallel()
	const team = `{"team": [{"name": "pat", "age": 30, "address": {"street": "12 Baker St", "city": "London"}}, {"name": "dallas", "age": 36, "address": {"street": "12 Cowper St", "city": "Palo Alto"}}, {"name": "charlie", "age": 42, "address": {"street": "12 French St", "city": "New Brunswick"}}]}`
	runExprCases(t, []aggExprCase{
		{name: "manual by name", expr: `{"$map": {"input": {"$sortArray": {"input": "$team", "sortBy": {"name": 1}}}, "in": "$$this.name"}}`, doc: team, want: `{"v": ["charlie", "dallas", "pat"]}`},
		{name: "manual by age desc", expr: `{"$map": {"input": {"$sortArray": {"input": "$team", "sortBy": {"age": -1}}}, "in": "$$this.name"}}`, doc: team, want: `{"v": ["charlie", "dallas", "pat"]}`},
		{name: "manual by subfield", expr: `{"$map": {"input": {"$sortArray": {"input": "$team", "sortBy": {"address.city": -1}}}, "in": "$$this.name"}}`, doc: team, want: `{"v": ["dallas", "charlie", "pat"]}`},
		{name: "manual values", expr: `{"$sortArray": {"input": [1, 4, 1, 6, 12, 5], "sortBy": 1}}`, want: `{"v": [1, 1, 4, 5, 6, 12]}`},
		{name: "manual values desc", expr: `{"$sortArray": {"input": [1, 4, 1, 6, 12, 5], "sortBy": -1}}`, want: `{"v": [12, 6, 5, 4, 1, 1]}`},
		{name: "manual mixed types", expr: `{"$sortArray": {"input": [20, 4, {"a": "Free"}, 6, 21, 5, "Gratis", {"a": null}, {"a": {"sale": true, "price": 19}}, {"$numberDecimal": "10.23"}, {"a": "On sale"}], "sortBy": 1}}`,
			want: `{"v": [4, 5, 6, {"$numberDecimal": "10.23"}, 20, 21, "Gratis", {"a": null}, {"a": "Free"}, {"a": "On sale"}, {"a": {"sale": true, "price": 19}}]}`},
		{name: "stable", expr: `{"$sortArray": {"input": [{"k": 1, "i": 0}, {"k": 0, "i": 1}, {"k": 1, "i": 2}], "sortBy": {"k": 1}}}`, want: `{"v": [{"k": 0, "i": 1}, {"k": 1, "i": 0}, {"k": 1, "i": 2}]}`},
		{name: "null input", expr: `{"$sortArray": {"input": "$nope", "sortBy": 1}}`, want: `{"v": null}`},
		{name: "input not array", expr: `{"$sortArray": {"input": "$s", "sortBy": 1}}`, doc: `{"s": 1}`, code: 2942504},
		{name: "not object", expr: `{"$sortArray": [1]}`, code: 2942500},
		{name: "unknown field", expr: `{"$sortArray": {"input": [1], "sortBy": 1, "n": 1}}`, code: 2942501},
		{name: "missing input", expr: `{"$sortArray": {"sortBy": 1}}`, code: 2942502},
		{name: "missing sortBy", expr: `{"$sortArray": {"input": [1]}}`, code: 2942503},
		{name: "bad sortBy", expr: `{"$sortArray": {"input": [1], "sortBy": 2}}`, code: 2942505},
		{name: "empty sortBy", expr: `{"$sortArray": {"input": [1], "sortBy": {}}}`, code: 2942505},
	})
}

// TestExprZip checks $zip against the manual's matrix transposition and
// its rules for useLongestLength and defaults.
func TestExprZip(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "manual transpose", expr: `{"$zip": {"inputs": [{"$arrayElemAt": ["$m", 0]}, {"$arrayElemAt": ["$m", 1]}, {"$arrayElemAt": ["$m", 2]}]}}`, doc: `{"m": [[1, 2], [2, 3], [3, 4]]}`, want: `{"v": [[1, 2, 3], [2, 3, 4]]}`},
		{name: "shortest", expr: `{"$zip": {"inputs": [["a"], ["b", "c"]]}}`, want: `{"v": [["a", "b"]]}`},
		{name: "longest", expr: `{"$zip": {"inputs": [["a"], ["b", "c"]], "useLongestLength": true}}`, want: `{"v": [["a", "b"], [null, "c"]]}`},
		{name: "defaults", expr: `{"$zip": {"inputs": [[1], [2, 3]], "useLongestLength": true, "defaults": ["a", "b"]}}`, want: `{"v": [[1, 2], ["a", 3]]}`},
		{name: "one input", expr: `{"$zip": {"inputs": [[1, 2]]}}`, want: `{"v": [[1], [2]]}`},
		{name: "null input", expr: `{"$zip": {"inputs": [[1], "$nope"]}}`, want: `{"v": null}`},
		{name: "input not array", expr: `{"$zip": {"inputs": [[1], "$s"]}}`, doc: `{"s": 3}`, code: 34468},
		{name: "not object", expr: `{"$zip": [[1]]}`, code: 34460},
		{name: "inputs not array", expr: `{"$zip": {"inputs": "$a"}}`, code: 34461},
		{name: "defaults not array", expr: `{"$zip": {"inputs": [[1]], "useLongestLength": true, "defaults": 1}}`, code: 34462},
		{name: "longest not bool", expr: `{"$zip": {"inputs": [[1]], "useLongestLength": 1}}`, code: 34463},
		{name: "unknown field", expr: `{"$zip": {"inputs": [[1]], "foo": 1}}`, code: 34464},
		{name: "no inputs", expr: `{"$zip": {"inputs": []}}`, code: 34465},
		{name: "defaults without longest", expr: `{"$zip": {"inputs": [[1]], "defaults": [0]}}`, code: 34466},
		{name: "defaults length", expr: `{"$zip": {"inputs": [[1], [2]], "useLongestLength": true, "defaults": [0]}}`, code: 34467},
	})
}

// TestExprStdDev checks the expression forms of $stdDevPop and
// $stdDevSamp: one array argument or a list, non-numbers ignored.
func TestExprStdDev(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "pop of array", expr: `{"$stdDevPop": "$a"}`, doc: `{"a": [2, 4, 4, 4, 5, 5, 7, 9]}`, want: `{"v": 2.0}`},
		{name: "pop of list", expr: `{"$stdDevPop": [1, 3]}`, want: `{"v": 1.0}`},
		{name: "samp of array", expr: `{"$stdDevSamp": [[1, 3, "x"]]}`, want: `{"v": 1.4142135623730951}`},
		{name: "samp of one", expr: `{"$stdDevSamp": [5]}`, want: `{"v": null}`},
		{name: "pop of nothing", expr: `{"$stdDevPop": "$nope"}`, want: `{"v": null}`},
	})
}

// TestUnsupportedOperators checks that MongoDB operators mql does not
// implement are NotImplemented, naming them, not unrecognized.
func TestUnsupportedOperators(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "function", expr: `{"$function": {"body": "function() {}", "args": [], "lang": "js"}}`, code: 238},
		{name: "meta", expr: `{"$meta": "textScore"}`, code: 238},
		{name: "still unknown", expr: `{"$dateTruncate": {}}`, code: 168},
	})
	if _, err := CompilePipeline(aggTestDocs(t, `[{"$group": {"_id": 1, "a": {"$accumulator": {}}}}]`)); aggTestCode(err) != 238 {
		t.Fatalf("$accumulator: %v, want NotImplemented", err)
	}
	got := CheckExpr(aggTestDoc(t, `{"e": {"$function": {}}}`)[0].Value)
	if len(got) != 1 || got[0].Message != "$function is a MongoDB operator that changehook does not support" {
		t.Fatalf("CheckExpr($function) = %+v", got)
	}
}
