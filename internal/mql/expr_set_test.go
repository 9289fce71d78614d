package mql

import "testing"

// TestExprSetOperators checks the set operators against the examples and
// rules of MongoDB's manual pages. The manual leaves the order of
// $setUnion's and $setIntersection's results unspecified, so its examples
// are compared with $setEquals and counted with $size; two cases pin the
// sorted order the server itself returns.
func TestExprSetOperators(t *testing.T) {
	t.Parallel()
	same := func(expr, want string) string {
		return `{"$and": [{"$setEquals": [` + expr + `, ` + want + `]}, {"$eq": [{"$size": ` + expr + `}, {"$size": [` + want + `]}]}]}`
	}
	runExprCases(t, []aggExprCase{
		// $setUnion
		{name: "union manual", expr: same(`{"$setUnion": [["red", "blue"], ["red", "blue", "green"]]}`, `["red", "blue", "green"]`), want: `{"v": true}`},
		{name: "union nested arrays are elements", expr: same(`{"$setUnion": [["red", "blue"], [["red", "blue"]]]}`, `["red", "blue", ["red", "blue"]]`), want: `{"v": true}`},
		{name: "union dedups numbers across types", expr: same(`{"$setUnion": [[1, 1.0, {"$numberLong": "1"}], [2]]}`, `[1, 2]`), want: `{"v": true}`},
		{name: "union no args", expr: `{"$setUnion": []}`, want: `{"v": []}`},
		{name: "union null", expr: `{"$setUnion": [[1], null]}`, want: `{"v": null}`},
		{name: "union missing", expr: `{"$setUnion": [[1], "$nope"]}`, want: `{"v": null}`},
		{name: "union not array", expr: `{"$setUnion": [[1], "$s"]}`, doc: `{"s": "x"}`, code: 17043},
		// $setIntersection
		{name: "intersection manual", expr: same(`{"$setIntersection": [["red", "blue"], ["red", "blue", "green"]]}`, `["red", "blue"]`), want: `{"v": true}`},
		{name: "intersection nested", expr: `{"$setIntersection": [["red", "blue"], [["red", "blue"]]]}`, want: `{"v": []}`},
		{name: "intersection no args", expr: `{"$setIntersection": []}`, want: `{"v": []}`},
		{name: "intersection one arg dedups", expr: `{"$setIntersection": [[1, 1, 2]]}`, want: `{"v": [1, 2]}`},
		{name: "union sorted as the server does", expr: `{"$setUnion": [["b", 3], [1, "a", 2.5, 1.0]]}`, want: `{"v": [1, 2.5, 3, "a", "b"]}`},
		{name: "intersection sorted", expr: `{"$setIntersection": [[3, "x", 1], [1, "x", 3, 4]]}`, want: `{"v": [1, 3, "x"]}`},
		{name: "intersection null", expr: `{"$setIntersection": ["$nope", [1]]}`, want: `{"v": null}`},
		{name: "intersection not array", expr: `{"$setIntersection": [[1], "$s"]}`, doc: `{"s": 3}`, code: 17047},
		// $setDifference
		{name: "difference manual", expr: `{"$setDifference": [["red", "blue", "green"], ["red", "blue"]]}`, want: `{"v": ["green"]}`},
		{name: "difference none", expr: `{"$setDifference": [["red", "blue"], ["red", "blue", "green"]]}`, want: `{"v": []}`},
		{name: "difference dedups", expr: `{"$setDifference": [[1, 1, 2], []]}`, want: `{"v": [1, 2]}`},
		{name: "difference null", expr: `{"$setDifference": [null, [1]]}`, want: `{"v": null}`},
		{name: "difference first not array", expr: `{"$setDifference": ["$s", [1]]}`, doc: `{"s": 3}`, code: 17048},
		{name: "difference second not array", expr: `{"$setDifference": [[1], "$s"]}`, doc: `{"s": 3}`, code: 17049},
		{name: "difference arity", expr: `{"$setDifference": [[1]]}`, code: 16020},
		// $setEquals
		{name: "equals manual same", expr: `{"$setEquals": [["red", "blue"], ["red", "blue"]]}`, want: `{"v": true}`},
		{name: "equals manual duplicates", expr: `{"$setEquals": [["red", "blue"], ["blue", "red", "blue"]]}`, want: `{"v": true}`},
		{name: "equals manual superset", expr: `{"$setEquals": [["red", "blue"], ["red", "blue", "green"]]}`, want: `{"v": false}`},
		{name: "equals manual nested", expr: `{"$setEquals": [["red", "blue"], [["red"], ["blue"]]]}`, want: `{"v": false}`},
		{name: "equals manual empty", expr: `{"$setEquals": [["red", "blue"], []]}`, want: `{"v": false}`},
		{name: "equals three", expr: `{"$setEquals": [[1, 2], [2, 1], [1, 2.0]]}`, want: `{"v": true}`},
		{name: "equals one arg", expr: `{"$setEquals": [[1]]}`, code: 17045},
		{name: "equals null is an error", expr: `{"$setEquals": [[1], "$nope"]}`, code: 17044},
		// $setIsSubset
		{name: "subset manual", expr: `{"$setIsSubset": [["red", "blue"], ["red", "blue", "green"]]}`, want: `{"v": true}`},
		{name: "subset not", expr: `{"$setIsSubset": [["red", "white"], ["red", "blue"]]}`, want: `{"v": false}`},
		{name: "subset empty", expr: `{"$setIsSubset": [[], []]}`, want: `{"v": true}`},
		{name: "subset first null", expr: `{"$setIsSubset": [null, [1]]}`, code: 17046},
		{name: "subset second not array", expr: `{"$setIsSubset": [[1], "$s"]}`, doc: `{"s": 1}`, code: 17042},
		// $allElementsTrue / $anyElementTrue
		{name: "all manual true", expr: `{"$allElementsTrue": [[true, 1, "someString"]]}`, want: `{"v": true}`},
		{name: "all manual nested false", expr: `{"$allElementsTrue": [[[false]]]}`, want: `{"v": true}`},
		{name: "all manual empty", expr: `{"$allElementsTrue": [[]]}`, want: `{"v": true}`},
		{name: "all manual null", expr: `{"$allElementsTrue": [[null, false, 0]]}`, want: `{"v": false}`},
		{name: "all field", expr: `{"$allElementsTrue": "$a"}`, doc: `{"a": [1, 0]}`, want: `{"v": false}`},
		{name: "all not array", expr: `{"$allElementsTrue": "$a"}`, doc: `{"a": 1}`, code: 17040},
		{name: "all missing is an error", expr: `{"$allElementsTrue": "$nope"}`, code: 17040},
		{name: "all arity", expr: `{"$allElementsTrue": [[true], [true]]}`, code: 16020},
		{name: "any manual true", expr: `{"$anyElementTrue": [[true, false]]}`, want: `{"v": true}`},
		{name: "any manual nested", expr: `{"$anyElementTrue": [[[false]]]}`, want: `{"v": true}`},
		{name: "any manual false", expr: `{"$anyElementTrue": [[null, false, 0]]}`, want: `{"v": false}`},
		{name: "any manual empty", expr: `{"$anyElementTrue": [[]]}`, want: `{"v": false}`},
		{name: "any not array", expr: `{"$anyElementTrue": "$a"}`, doc: `{"a": "x"}`, code: 17041},
	})
}
