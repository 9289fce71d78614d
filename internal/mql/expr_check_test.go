package mql

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

func pathString(p []PathStep) string {
	var b strings.Builder
	for _, s := range p {
		if s.IsIndex {
			fmt.Fprintf(&b, "[%d]", s.Index)
		} else {
			b.WriteString("." + s.Key)
		}
	}
	return b.String()
}

func TestCheckExpr(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []string // "path: message"
	}{
		{name: "field path", expr: `{"v": "$a"}`},
		{name: "good mix", expr: `{"a": {"$concat": ["x", "$b", {"$toString": 1}, null]}, "b": {"$add": [1, "$n", {"$date": "2024-01-01T00:00:00Z"}]}, "c": {"$round": ["$x", 2]}, "d": {"$size": [[1, 2]]}, "e": {"$dateToString": {"format": "%Y", "date": "$$NOW"}}, "f": {"$literal": {"$concat": 1}}}`},
		{name: "number in concat", expr: `{"t": {"$concat": ["a", 42, "b"]}}`,
			want: []string{".t.$concat[1]: $concat takes strings, but argument 2 is the number 42; convert it with {$toString: ...}"}},
		{name: "string in add", expr: `{"$add": [1, "two"]}`,
			want: []string{`.$add[1]: $add takes numbers or dates, but argument 2 is the string "two"`}},
		{name: "unary literal", expr: `{"$strLenCP": 42}`,
			want: []string{".$strLenCP: $strLenCP takes strings, but argument 1 is the number 42; convert it with {$toString: ...}"}},
		{name: "exact arity", expr: `{"$subtract": [1, 2, 3]}`,
			want: []string{".$subtract: Expression $subtract takes exactly 2 arguments. 3 were passed in."}},
		{name: "range arity", expr: `{"$round": [1, 2, 3]}`,
			want: []string{".$round: Expression $round takes at most 2 arguments, but 3 were passed in."}},
		{name: "min arity", expr: `{"$indexOfCP": ["a"]}`,
			want: []string{".$indexOfCP: Expression $indexOfCP takes at least 2 arguments, but 1 were passed in."}},
		{name: "array operator", expr: `{"$size": "abc"}`,
			want: []string{`.$size: $size takes arrays, but argument 1 is the string "abc"`}},
		{name: "round place", expr: `{"$round": ["$x", "2"]}`,
			want: []string{`.$round[1]: $round takes numbers, but argument 2 is the string "2"`}},
		{name: "dateToString format", expr: `{"$dateToString": {"date": "$$NOW", "format": 5}}`,
			want: []string{".$dateToString.format: $dateToString.format takes a string, but it is the number 5; convert it with {$toString: ...}"}},
		// $dateToString refuses these when it compiles; reported at the
		// constant, each of them.
		{name: "dateToString unknown timezone", expr: `{"$dateToString": {"date": "$$NOW", "format": "%H", "timezone": "Mars/Base"}}`,
			want: []string{`.$dateToString.timezone: unrecognized time zone identifier: "Mars/Base"`}},
		{name: "dateToString unknown format and timezone", expr: `{"$dateToString": {"date": "$$NOW", "format": "%Q", "timezone": "Mars/Base"}}`,
			want: []string{".$dateToString.format: Invalid format character '%Q' in format string",
				`.$dateToString.timezone: unrecognized time zone identifier: "Mars/Base"`}},
		{name: "named not a doc", expr: `{"$dateToString": 5}`,
			want: []string{".$dateToString: $dateToString expects an object of named arguments but found: int"}},
		{name: "map input", expr: `{"$map": {"input": 3, "in": "$$this"}}`,
			want: []string{".$map.input: $map.input takes an array, but it is the number 3"}},
		{name: "document in concatArrays", expr: `{"$concatArrays": [[1], {"a": 1}]}`,
			want: []string{".$concatArrays[1]: $concatArrays takes arrays, but argument 2 is a document"}},
		{name: "new operators known", expr: `{"a": {"$setUnion": ["$x", [1]]}, "b": {"$dateTrunc": {"date": "$$NOW", "unit": "day"}}, "c": {"$sin": "$x"}, "d": {"$firstN": {"n": 2, "input": "$x"}}, "e": {"$zip": {"inputs": ["$x", "$y"]}}, "f": {"$dateDiff": {"startDate": "$a", "endDate": "$$NOW", "unit": "hour"}}}`},
		{name: "set operator literal", expr: `{"$setIsSubset": [[1], "abc"]}`,
			want: []string{`.$setIsSubset[1]: $setIsSubset takes arrays, but argument 2 is the string "abc"`}},
		{name: "set operator arity", expr: `{"$setDifference": [[1]]}`,
			want: []string{".$setDifference: Expression $setDifference takes exactly 2 arguments. 1 were passed in."}},
		{name: "trig arity", expr: `{"$atan2": [1]}`,
			want: []string{".$atan2: Expression $atan2 takes exactly 2 arguments. 1 were passed in."}},
		{name: "dateTrunc unit literal", expr: `{"$dateTrunc": {"date": "$$NOW", "unit": 5}}`,
			want: []string{".$dateTrunc.unit: $dateTrunc.unit takes a string, but it is the number 5; convert it with {$toString: ...}"}},
		{name: "firstN n literal", expr: `{"$firstN": {"n": "two", "input": "$x"}}`,
			want: []string{`.$firstN.n: $firstN.n takes a number, but it is the string "two"`}},
		{name: "unknown operator", expr: `{"a": {"$nope": 1}, "b": {"$toUpper": {"$alsoNope": 2}}}`,
			want: []string{".a.$nope: Unrecognized expression '$nope'", ".b.$toUpper.$alsoNope: Unrecognized expression '$alsoNope'"}},
		{name: "every problem", expr: `{"a": {"$concat": [1, true]}, "b": {"$multiply": ["x"]}, "c": [{"$eq": [1]}]}`,
			want: []string{
				".a.$concat[0]: $concat takes strings, but argument 1 is the number 1; convert it with {$toString: ...}",
				".a.$concat[1]: $concat takes strings, but argument 2 is the boolean true; convert it with {$toString: ...}",
				`.b.$multiply[0]: $multiply takes numbers, but argument 1 is the string "x"`,
				".c[0].$eq: Expression $eq takes exactly 2 arguments. 1 were passed in.",
			}},
		{name: "nested in cond", expr: `{"$cond": {"if": true, "then": {"$abs": "x"}, "else": 1}}`,
			want: []string{`.$cond.then.$abs: $abs takes numbers, but argument 1 is the string "x"`}},
		{name: "null accepted", expr: `{"$concat": [null, "a"]}`},
		{name: "every compile error", expr: `{"a": {"$concatt": "x"}, "b": {"$toString": ["a", "b"]}, "c": {"$round": [1], "x": 1}, "d": {"$toUpper": "a", "$toLower": "b"}, "e": {"$cond": [false, {"$toInt": "n/a"}, 1]}}`,
			want: []string{
				".a.$concatt: Unrecognized expression '$concatt'",
				".b.$toString: Expression $toString takes exactly 1 arguments. 2 were passed in.",
				`.c.$round: an expression specification must contain exactly one field, the name of the expression. Found 2 fields in {$round: [1], x: 1}`,
				`.d.$toUpper: an expression specification must contain exactly one field, the name of the expression. Found 2 fields in {$toUpper: "a", $toLower: "b"}`,
				".e.$cond[1].$toInt: Failed to parse number 'n/a' in $convert with no onError value: Did not consume whole string.",
			}},
		{name: "operator and its argument", expr: `{"$toString": [{"$divide": [1, 0]}, {"$concat": ["$x", 1]}]}`,
			want: []string{
				".$toString: Expression $toString takes exactly 1 arguments. 2 were passed in.",
				".$toString[0].$divide[1]: can't $divide by zero",
				".$toString[1].$concat[1]: $concat takes strings, but argument 2 is the number 1; convert it with {$toString: ...}",
			}},
		{name: "constant failing once its argument is folded", expr: `{"$divide": [1, {"$subtract": [2, 2]}]}`,
			want: []string{".$divide: can't $divide by zero"}},
		{name: "shape errors", expr: `{"a.b": 1, "c": "$x..y", "d": {"$map": {"input": [], "as": "X", "in": "$$X"}}, "e": {"$let": {"vars": {"x": 1}, "in": "$$x", "out": 1}}}`,
			want: []string{
				".a.b: FieldPath field names may not contain '.'. Consider using $getField or $setField.",
				".c: FieldPath field names may not be empty strings.",
				".d.$map: 'X' starts with an invalid character for a user variable name",
				".e.$let: Unrecognized parameter to $let: out",
			}},
		{name: "undefined variables", expr: `{"f": "$$nosuchvar", "g": {"$let": {"vars": {"x": 1, "y": "$$x"}, "in": ["$$x", "$$z"]}}, "h": {"$map": {"input": "$$this", "as": "i", "in": ["$$i", "$$this"]}}, "k": {"$reduce": {"input": [], "initialValue": 0, "in": ["$$this", "$$value", "$$NOW"]}}}`,
			want: []string{
				".f: Use of undefined variable: nosuchvar",
				".g.$let.vars.y: Use of undefined variable: x",
				".g.$let.in[1]: Use of undefined variable: z",
				".h.$map.input: Use of undefined variable: this",
				".h.$map.in[1]: Use of undefined variable: this",
			}},
		{name: "told once", expr: `{"a": {"$subtract": {"$add": [1]}}, "b": {"$toInt": "n/a"}}`,
			want: []string{
				".a.$subtract: Expression $subtract takes exactly 2 arguments. 1 were passed in.",
				".b.$toInt: Failed to parse number 'n/a' in $convert with no onError value: Did not consume whole string.",
			}},
		{name: "static message preferred", expr: `{"$multiply": ["x", {"$toInt": "y"}]}`,
			want: []string{
				`.$multiply[0]: $multiply takes numbers, but argument 1 is the string "x"`,
				".$multiply[1].$toInt: Failed to parse number 'y' in $convert with no onError value: Did not consume whole string.",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, got := checkExprJSON(t, tt.expr)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("CheckExpr(%s):\n got %q\nwant %q", tt.expr, got, tt.want)
			}
			// What CheckExpr finds nothing in CompileExpr accepts.
			if len(tt.want) == 0 {
				if _, err := CompileExpr(spec); err != nil {
					t.Errorf("CheckExpr found nothing but CompileExpr failed: %v", err)
				}
			}
		})
	}
}

// TestExprSignaturesMatchCompilers keeps the signature table and the
// compilers from drifting: every entry names a registered operator, and a
// positional entry's argument counts are exactly those its compiler accepts.
func TestExprSignaturesMatchCompilers(t *testing.T) {
	for name, sig := range exprSignatures {
		if _, ok := exprOperators[name]; !ok {
			t.Errorf("%s: in exprSignatures but not a registered operator", name)
			continue
		}
		if sig.named != nil {
			continue
		}
		args := func(n int) bson.A {
			a := bson.A{}
			for i := 0; i < n; i++ {
				a = append(a, "$x")
			}
			return a
		}
		isArity := func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "argument")
		}
		if _, err := CompileExpr(bson.D{{Key: name, Value: args(sig.lo)}}); isArity(err) {
			t.Errorf("%s: table says %d arguments are enough, compiler says %v", name, sig.lo, err)
		}
		if sig.lo > 0 {
			if _, err := CompileExpr(bson.D{{Key: name, Value: args(sig.lo - 1)}}); !isArity(err) {
				t.Errorf("%s: table says at least %d arguments, compiler accepts %d (err %v)", name, sig.lo, sig.lo-1, err)
			}
		}
		if sig.hi >= 0 {
			if _, err := CompileExpr(bson.D{{Key: name, Value: args(sig.hi)}}); isArity(err) {
				t.Errorf("%s: table says %d arguments are allowed, compiler says %v", name, sig.hi, err)
			}
			if _, err := CompileExpr(bson.D{{Key: name, Value: args(sig.hi + 1)}}); !isArity(err) {
				t.Errorf("%s: table says at most %d arguments, compiler accepts %d (err %v)", name, sig.hi, sig.hi+1, err)
			}
		}
	}
}

// TestCheckExprConstantArguments checks the constant arguments that make
// every evaluation fail (with the field x set to a value of the type the
// operator takes), and that CheckExpr tells them with the run-time error's
// own message; a field path, an expression or null in the same place is
// left to run time, as is a constant whose failure depends on another
// argument.
func TestCheckExprConstantArguments(t *testing.T) {
	tests := []struct {
		name string
		expr string
		x    any    // the field the expression reads, for the run-time check
		want string // "path: message", "" when CheckExpr finds nothing
	}{
		{name: "substrCP negative start", expr: `{"$substrCP": ["$x", -1, 2]}`, x: "abc",
			want: ".$substrCP[1]: $substrCP: the starting index must be nonnegative integer."},
		{name: "substrCP negative length", expr: `{"$substrCP": ["$x", 0, -2]}`, x: "abc",
			want: ".$substrCP[2]: $substrCP: length must be a nonnegative integer."},
		{name: "substrCP fractional start", expr: `{"$substrCP": ["$x", 1.5, 2]}`, x: "abc",
			want: ".$substrCP[1]: $substrCP: starting index cannot be represented as a 32-bit integral value: 1.5"},
		{name: "substrBytes negative start", expr: `{"$substrBytes": ["$x", -1, 2]}`, x: "abc",
			want: ".$substrBytes[1]: $substrBytes: starting index must be non-negative (got: -1)"},
		{name: "substr negative start", expr: `{"$substr": ["$x", -2, 2]}`, x: "abc",
			want: ".$substr[1]: $substr: starting index must be non-negative (got: -2)"},
		{name: "substrBytes negative length is to the end", expr: `{"$substrBytes": ["$x", 0, -1]}`, x: "abc"},
		{name: "substrBytes start truncated to 0", expr: `{"$substrBytes": ["$x", -0.5, 2]}`, x: "abc"},
		{name: "substr start truncated to 0", expr: `{"$substr": ["$x", -0.9, 2]}`, x: "abc"},
		{name: "substrBytes start truncated to -1", expr: `{"$substrBytes": ["$x", -1.5, 2]}`, x: "abc",
			want: ".$substrBytes[1]: $substrBytes: starting index must be non-negative (got: -1)"},
		{name: "split empty separator", expr: `{"$split": ["$x", ""]}`, x: "a,b",
			want: ".$split[1]: $split requires a non-empty separator"},
		{name: "round place too large", expr: `{"$round": ["$x", 200]}`, x: 1.5,
			want: ".$round[1]: cannot apply $round with precision value 200 value must be in [-20, 100]"},
		{name: "trunc place too small", expr: `{"$trunc": ["$x", -21]}`, x: 1.5,
			want: ".$trunc[1]: cannot apply $trunc with precision value -21 value must be in [-20, 100]"},
		{name: "round place fractional", expr: `{"$round": ["$x", 1.5]}`, x: 1.5,
			want: ".$round[1]: precision argument to $round must be a integral value"},
		{name: "round place in range", expr: `{"$round": ["$x", 100]}`, x: 1.5},
		{name: "divide by zero", expr: `{"$divide": ["$x", 0]}`, x: int32(10),
			want: ".$divide[1]: can't $divide by zero"},
		{name: "divide by decimal zero", expr: `{"$divide": ["$x", {"$numberDecimal": "0.0"}]}`, x: int32(10),
			want: ".$divide[1]: can't $divide by zero"},
		{name: "mod by zero", expr: `{"$mod": ["$x", 0]}`, x: int32(10),
			want: ".$mod[1]: can't $mod by zero"},
		{name: "zero dividend", expr: `{"$divide": [0, "$x"]}`, x: int32(10)},
		{name: "log base one", expr: `{"$log": ["$x", 1]}`, x: int32(10),
			want: ".$log[1]: $log's base must be a positive number not equal to 1, but is 1"},
		{name: "log of negative", expr: `{"$log": [-5, "$x"]}`, x: int32(10),
			want: ".$log[0]: $log's argument must be a positive number, but is -5"},
		{name: "arrayElemAt fractional index", expr: `{"$arrayElemAt": ["$x", 0.5]}`, x: bson.A{1},
			want: ".$arrayElemAt[1]: $arrayElemAt's second argument must be representable as a 32-bit integer: 0.5"},
		{name: "arrayElemAt negative index", expr: `{"$arrayElemAt": ["$x", -1]}`, x: bson.A{1}},
		{name: "slice count zero", expr: `{"$slice": ["$x", 0, 0]}`, x: bson.A{1},
			want: ".$slice[2]: Third argument to $slice must be positive: 0"},
		{name: "slice n fractional", expr: `{"$slice": ["$x", 1.5]}`, x: bson.A{1},
			want: ".$slice[1]: Second argument to $slice must be numeric and a 32-bit integer, but is of type: double"},
		{name: "slice from the end", expr: `{"$slice": ["$x", -1]}`, x: bson.A{1}},
		{name: "indexOfCP negative start", expr: `{"$indexOfCP": ["$x", "b", -1]}`, x: "abc",
			want: ".$indexOfCP[2]: $indexOfCP requires a nonnegative start index, found: -1"},
		{name: "indexOfBytes fractional end", expr: `{"$indexOfBytes": ["$x", "b", 0, 1.5]}`, x: "abc",
			want: ".$indexOfBytes[3]: $indexOfBytes requires an integral starting index, found a value of type: double, with value: 1.5"},
		{name: "indexOfArray negative start", expr: `{"$indexOfArray": ["$x", 1, -1]}`, x: bson.A{1},
			want: ".$indexOfArray[2]: $indexOfArray requires a nonnegative starting index, found: -1"},
		{name: "range step zero", expr: `{"$range": [0, "$x", 0]}`, x: int32(5),
			want: ".$range[2]: $range requires a non-zero step value"},
		{name: "range fractional start", expr: `{"$range": [0.5, "$x"]}`, x: int32(5),
			want: ".$range[0]: $range requires a starting value that can be represented as a 32-bit integer, found value: 0.5"},
		{name: "filter limit zero", expr: `{"$filter": {"input": "$x", "cond": true, "limit": 0}}`, x: bson.A{1},
			want: ".$filter.limit: $filter: limit must be a positive 32-bit integer, got 0"},
		{name: "firstN n zero", expr: `{"$firstN": {"input": "$x", "n": 0}}`, x: bson.A{1},
			want: ".$firstN.n: 'n' must be greater than 0, found 0"},
		{name: "dateAdd unknown unit", expr: `{"$dateAdd": {"startDate": "$x", "unit": "days", "amount": 1}}`, x: bson.DateTime(0),
			want: ".$dateAdd.unit: unknown time unit value: days"},
		{name: "dateTrunc unknown unit", expr: `{"$dateTrunc": {"date": "$x", "unit": "days"}}`, x: bson.DateTime(0),
			want: ".$dateTrunc.unit: $dateTrunc parameter 'unit' value cannot be recognized as a time unit: days"},
		{name: "dateTrunc binSize zero", expr: `{"$dateTrunc": {"date": "$x", "unit": "day", "binSize": 0}}`, x: bson.DateTime(0),
			want: ".$dateTrunc.binSize: $dateTrunc requires 'binSize' to be greater than 0, but got value 0"},
		{name: "dateAdd fractional amount", expr: `{"$dateAdd": {"startDate": "$x", "unit": "day", "amount": 1.5}}`, x: bson.DateTime(0),
			want: ".$dateAdd.amount: $dateAdd expects integer amount of time units"},
		{name: "dateSubtract fractional amount", expr: `{"$dateSubtract": {"startDate": "$x", "unit": "day", "amount": 0.5}}`, x: bson.DateTime(0),
			want: ".$dateSubtract.amount: $dateSubtract expects integer amount of time units"},
		{name: "dateSubtract least long", expr: `{"$dateSubtract": {"startDate": "$x", "unit": "day", "amount": {"$numberLong": "-9223372036854775808"}}}`, x: bson.DateTime(0),
			want: ".$dateSubtract.amount: invalid $dateSubtract 'amount' parameter value: -9223372036854775808"},
		{name: "dateAdd integral double amount", expr: `{"$dateAdd": {"startDate": "$x", "unit": "day", "amount": 2.0}}`, x: bson.DateTime(0)},
		{name: "dateAdd unknown timezone", expr: `{"$dateAdd": {"startDate": "$x", "unit": "day", "amount": 1, "timezone": "Mars/Base"}}`, x: bson.DateTime(0),
			want: `.$dateAdd.timezone: unrecognized time zone identifier: "Mars/Base"`},
		{name: "dateSubtract unknown timezone", expr: `{"$dateSubtract": {"startDate": "$x", "unit": "day", "amount": 1, "timezone": "+25:00x"}}`, x: bson.DateTime(0),
			want: `.$dateSubtract.timezone: unrecognized time zone identifier: "+25:00x"`},
		{name: "dateTrunc unknown timezone", expr: `{"$dateTrunc": {"date": "$x", "unit": "day", "timezone": "Mars/Base"}}`, x: bson.DateTime(0),
			want: `.$dateTrunc.timezone: unrecognized time zone identifier: "Mars/Base"`},
		{name: "dateDiff unknown timezone", expr: `{"$dateDiff": {"startDate": "$x", "endDate": "$x", "unit": "day", "timezone": "Mars/Base"}}`, x: bson.DateTime(0),
			want: `.$dateDiff.timezone: unrecognized time zone identifier: "Mars/Base"`},
		{name: "dateToParts unknown timezone", expr: `{"$dateToParts": {"date": "$x", "timezone": "Mars/Base"}}`, x: bson.DateTime(0),
			want: `.$dateToParts.timezone: unrecognized time zone identifier: "Mars/Base"`},
		{name: "dateFromParts unknown timezone", expr: `{"$dateFromParts": {"year": "$x", "timezone": "Mars/Base"}}`, x: int32(2020),
			want: `.$dateFromParts.timezone: unrecognized time zone identifier: "Mars/Base"`},
		{name: "dateFromString unknown timezone", expr: `{"$dateFromString": {"dateString": "$x", "timezone": "Mars/Base", "onError": null}}`, x: "2020-01-01",
			want: `.$dateFromString.timezone: unrecognized time zone identifier: "Mars/Base"`},
		{name: "year unknown timezone", expr: `{"$year": {"date": "$x", "timezone": "Mars/Base"}}`, x: bson.DateTime(0),
			want: `.$year.timezone: unrecognized time zone identifier: "Mars/Base"`},
		{name: "hour known timezone", expr: `{"$hour": {"date": "$x", "timezone": "Europe/Paris"}}`, x: bson.DateTime(0)},
		{name: "dateTrunc unknown startOfWeek", expr: `{"$dateTrunc": {"date": "$x", "unit": "week", "startOfWeek": "funday"}}`, x: bson.DateTime(0),
			want: ".$dateTrunc.startOfWeek: $dateTrunc parameter 'startOfWeek' value cannot be recognized as a day of a week: funday"},
		{name: "dateDiff unknown startOfWeek", expr: `{"$dateDiff": {"startDate": "$x", "endDate": "$x", "unit": "week", "startOfWeek": "funday"}}`, x: bson.DateTime(0),
			want: ".$dateDiff.startOfWeek: $dateDiff parameter 'startOfWeek' value cannot be recognized as a day of a week: funday"},
		{name: "dateTrunc startOfWeek abbreviated", expr: `{"$dateTrunc": {"date": "$x", "unit": "week", "startOfWeek": "MON"}}`, x: bson.DateTime(0)},
		// Left to run time: the argument is not a constant, or is null,
		// or its failure depends on another argument's value.
		{name: "field path divisor", expr: `{"$divide": [1, "$x"]}`, x: int32(2)},
		{name: "expression divisor", expr: `{"$divide": [1, {"$abs": "$x"}]}`, x: int32(2)},
		{name: "null place", expr: `{"$round": ["$x", null]}`, x: 1.5},
		{name: "pow zero base", expr: `{"$pow": [0, "$x"]}`, x: int32(2)},
		{name: "pow negative exponent", expr: `{"$pow": ["$x", -1]}`, x: int32(2)},
		{name: "startOfWeek read only for week", expr: `{"$dateTrunc": {"date": "$x", "unit": "day", "startOfWeek": "funday"}}`, x: bson.DateTime(0)},
		{name: "startOfWeek with a computed unit", expr: `{"$dateDiff": {"startDate": "$x", "endDate": "$x", "unit": {"$literal": "day"}, "startOfWeek": "funday"}}`, x: bson.DateTime(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, got := checkExprJSON(t, tt.expr)
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("CheckExpr(%s):\n got %q\nwant %q", tt.expr, got, want)
			}
			// The run time fails with the same message, or succeeds when
			// CheckExpr finds nothing.
			e, err := CompileExpr(spec)
			if err != nil {
				t.Fatalf("CompileExpr(%s): %v", tt.expr, err)
			}
			_, err = e.Eval(bson.D{{Key: "x", Value: tt.x}})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("x = %v: run time fails (%v) but CheckExpr found nothing", tt.x, err)
			case tt.want != "" && (err == nil || !strings.HasSuffix(tt.want, ": "+mqlErrMessage(err))):
				t.Errorf("x = %v: run time gives %v, CheckExpr %q", tt.x, err, tt.want)
			}
		})
	}
}

// checkExprJSON decodes expr (Extended JSON) and returns it with
// CheckExpr's problems, each as "path: message".
func checkExprJSON(t *testing.T, expr string) (any, []string) {
	t.Helper()
	var spec bson.D
	if err := bson.UnmarshalExtJSON([]byte(`{"e": `+expr+`}`), false, &spec); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range CheckExpr(spec[0].Value) {
		got = append(got, pathString(p.Path)+": "+p.Message)
	}
	return spec[0].Value, got
}

// mqlErrMessage is err's MongoDB message without its code.
func mqlErrMessage(err error) string {
	var me *mongoerr.Error
	if errors.As(err, &me) {
		return me.Message
	}
	return err.Error()
}
