package mql

import "testing"

// TestExprTrig checks the trigonometric operators and $log: doubles for
// int, long and double input, decimals for decimal input, null for null,
// and MongoDB's domain errors.
func TestExprTrig(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "sin int", expr: `{"$sin": 0}`, want: `{"v": 0.0}`},
		{name: "cos long", expr: `{"$cos": {"$numberLong": "0"}}`, want: `{"v": 1.0}`},
		{name: "sin decimal", expr: `[{"$type": {"$sin": {"$numberDecimal": "0"}}}, {"$eq": [{"$sin": {"$numberDecimal": "0"}}, 0]}]`, want: `{"v": ["decimal", true]}`},
		{name: "manual sin of degrees", expr: `{"$round": [{"$multiply": [{"$sin": {"$degreesToRadians": "$a"}}, 5]}, 4]}`, doc: `{"a": 53.13010235415598}`, want: `{"v": 4.0}`},
		{name: "manual cos of degrees", expr: `{"$round": [{"$multiply": [{"$cos": {"$degreesToRadians": "$a"}}, 5]}, 4]}`, doc: `{"a": 53.13010235415598}`, want: `{"v": 3.0}`},
		{name: "tan", expr: `{"$round": [{"$tan": {"$degreesToRadians": 45}}, 6]}`, want: `{"v": 1.0}`},
		{name: "manual asin to degrees", expr: `{"$round": [{"$radiansToDegrees": {"$asin": {"$divide": [4, 5]}}}, 6]}`, want: `{"v": 53.130102}`},
		{name: "acos", expr: `{"$acos": 1}`, want: `{"v": 0.0}`},
		{name: "atan", expr: `{"$round": [{"$atan": 1}, 6]}`, want: `{"v": 0.785398}`},
		{name: "atan2", expr: `{"$round": [{"$atan2": [1, 1]}, 6]}`, want: `{"v": 0.785398}`},
		{name: "atan2 decimal", expr: `[{"$type": {"$atan2": [{"$numberDecimal": "0"}, 1]}}, {"$eq": [{"$atan2": [{"$numberDecimal": "0"}, 1]}, 0]}]`, want: `{"v": ["decimal", true]}`},
		{name: "atan2 null", expr: `{"$atan2": [1, null]}`, want: `{"v": null}`},
		{name: "sinh cosh tanh", expr: `[{"$sinh": 0}, {"$cosh": 0}, {"$tanh": 0}]`, want: `{"v": [0.0, 1.0, 0.0]}`},
		{name: "asinh acosh atanh", expr: `[{"$asinh": 0}, {"$acosh": 1}, {"$atanh": 0}]`, want: `{"v": [0.0, 0.0, 0.0]}`},
		{name: "degrees to radians", expr: `{"$round": [{"$degreesToRadians": 180}, 6]}`, want: `{"v": 3.141593}`},
		{name: "radians to degrees decimal", expr: `[{"$type": {"$radiansToDegrees": {"$numberDecimal": "0"}}}, {"$eq": [{"$radiansToDegrees": {"$numberDecimal": "0"}}, 0]}]`, want: `{"v": ["decimal", true]}`},
		{name: "null", expr: `{"$cos": null}`, want: `{"v": null}`},
		{name: "missing", expr: `{"$tan": "$nope"}`, want: `{"v": null}`},
		{name: "NaN passes", expr: `{"$acos": {"$numberDouble": "NaN"}}`, want: `{"v": {"$numberDouble": "NaN"}}`},
		{name: "acos out of range", expr: `{"$acos": "$x"}`, doc: `{"x": 2}`, code: 50989},
		{name: "asin out of range", expr: `{"$asin": "$x"}`, doc: `{"x": -1.5}`, code: 50989},
		{name: "acosh below one", expr: `{"$acosh": "$x"}`, doc: `{"x": 0}`, code: 50989},
		{name: "atanh out of range", expr: `{"$atanh": "$x"}`, doc: `{"x": 2}`, code: 50989},
		{name: "sin infinity", expr: `{"$sin": "$x"}`, doc: `{"x": {"$numberDouble": "Infinity"}}`, code: 50989},
		{name: "sinh infinity", expr: `{"$sinh": "$x"}`, doc: `{"x": {"$numberDouble": "Infinity"}}`, want: `{"v": {"$numberDouble": "Infinity"}}`},
		{name: "not numeric", expr: `{"$sin": "$s"}`, doc: `{"s": "x"}`, code: 28765},
		{name: "atan2 first not numeric", expr: `{"$atan2": ["$s", 0]}`, doc: `{"s": "x"}`, code: 51044},
		{name: "atan2 second not numeric", expr: `{"$atan2": [0, "$s"]}`, doc: `{"s": "x"}`, code: 51045},
		{name: "acosh infinity", expr: `{"$acosh": "$x"}`, doc: `{"x": {"$numberDouble": "Infinity"}}`, want: `{"v": {"$numberDouble": "Infinity"}}`},
		{name: "acosh minus infinity", expr: `{"$acosh": "$x"}`, doc: `{"x": {"$numberDouble": "-Infinity"}}`, code: 50989},
		{name: "atanh one", expr: `{"$atanh": 1}`, want: `{"v": {"$numberDouble": "Infinity"}}`},
		{name: "cos decimal infinity", expr: `{"$cos": "$x"}`, doc: `{"x": {"$numberDecimal": "Infinity"}}`, code: 50989},
		{name: "sinh decimal infinity", expr: `{"$sinh": "$x"}`, doc: `{"x": {"$numberDecimal": "-Infinity"}}`, want: `{"v": {"$numberDecimal": "-Infinity"}}`},
		{name: "sin decimal NaN", expr: `{"$sin": "$x"}`, doc: `{"x": {"$numberDecimal": "NaN"}}`, want: `{"v": {"$numberDecimal": "NaN"}}`},
		{name: "tanh infinity", expr: `{"$tanh": "$x"}`, doc: `{"x": {"$numberDouble": "Infinity"}}`, want: `{"v": 1.0}`},
		{name: "arity", expr: `{"$sin": [1, 2]}`, code: 16020},
		{name: "log", expr: `{"$log": [100, 10]}`, want: `{"v": 2.0}`},
		{name: "log manual", expr: `{"$ceil": {"$log": [{"$add": [255, 1]}, 2]}}`, want: `{"v": 8.0}`},
		{name: "log decimal", expr: `[{"$type": {"$log": [{"$numberDecimal": "100"}, 10]}}, {"$eq": [{"$log": [{"$numberDecimal": "100"}, 10]}, 2]}]`, want: `{"v": ["decimal", true]}`},
		{name: "log null", expr: `{"$log": [null, 10]}`, want: `{"v": null}`},
		{name: "log not positive", expr: `{"$log": [0, 10]}`, code: 28758},
		{name: "log base one", expr: `{"$log": [10, 1]}`, code: 28759},
		{name: "log base negative", expr: `{"$log": [10, -2]}`, code: 28759},
		{name: "log not numeric", expr: `{"$log": ["a", 10]}`, code: 28756},
		{name: "log base not numeric", expr: `{"$log": [10, "a"]}`, code: 28757},
	})
}

// TestExprTsAndSizes checks $tsSecond, $tsIncrement, $bsonSize and
// $binarySize against the manual's examples and null handling.
func TestExprTsAndSizes(t *testing.T) {
	t.Parallel()
	const ts = `{"ts": {"$timestamp": {"t": 1622731060, "i": 10}}}`
	runExprCases(t, []aggExprCase{
		{name: "tsSecond manual", expr: `{"$tsSecond": "$ts"}`, doc: ts, want: `{"v": {"$numberLong": "1622731060"}}`},
		{name: "tsIncrement manual", expr: `{"$tsIncrement": "$ts"}`, doc: ts, want: `{"v": {"$numberLong": "10"}}`},
		{name: "tsSecond null", expr: `{"$tsSecond": "$nope"}`, want: `{"v": null}`},
		{name: "tsSecond not timestamp", expr: `{"$tsSecond": "$s"}`, doc: `{"s": 1}`, code: 5687301},
		{name: "tsIncrement not timestamp", expr: `{"$tsIncrement": "$s"}`, doc: `{"s": "x"}`, code: 5687302},
		{name: "bsonSize empty", expr: `{"$bsonSize": {"$literal": {}}}`, want: `{"v": 5}`},
		{name: "bsonSize doc", expr: `{"$bsonSize": "$$ROOT"}`, doc: `{"a": 1}`, want: `{"v": 12}`},
		{name: "bsonSize null", expr: `{"$bsonSize": null}`, want: `{"v": null}`},
		{name: "bsonSize not doc", expr: `{"$bsonSize": "$a"}`, doc: `{"a": [1]}`, code: 31393},
		{name: "binarySize string", expr: `{"$binarySize": "Hello World!"}`, want: `{"v": 12}`},
		{name: "binarySize utf8", expr: `{"$binarySize": "héllo"}`, want: `{"v": 6}`},
		{name: "binarySize binary", expr: `{"$binarySize": "$b"}`, doc: `{"b": {"$binary": {"base64": "AAEC", "subType": "00"}}}`, want: `{"v": 3}`},
		{name: "binarySize missing", expr: `{"$binarySize": "$nope"}`, want: `{"v": null}`},
		{name: "binarySize number", expr: `{"$binarySize": "$a"}`, doc: `{"a": 1}`, code: 51276},
	})
}
