package mql

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// argKind is the type MongoDB requires of one operator argument. A literal
// of another type fails on every event, so it is known before data arrives.
// Field paths, variables and nested expressions are not literals and are
// never reported; null is accepted wherever MongoDB returns null for it.
type argKind int

const (
	kAny     argKind = iota
	kString          // a string
	kNumber          // a number
	kNumDate         // a number or a date ($add, $subtract)
	kArray           // an array
	kDoc             // a document
)

func (k argKind) String() string {
	return [...]string{"anything", "strings", "numbers", "numbers or dates", "arrays", "documents"}[k]
}

// signature is what an expression operator accepts. Positional operators
// take lo..hi arguments (hi < 0: no upper bound); kinds[i] is the type of
// argument i (the last entry repeats for further arguments). Operators
// whose argument is a document of named arguments have named set instead.
type signature struct {
	lo, hi int
	kinds  []argKind
	named  map[string]argKind
}

func pos(lo, hi int, kinds ...argKind) signature { return signature{lo: lo, hi: hi, kinds: kinds} }

// exprSignatures holds, for the expression operators whose arguments
// MongoDB's manual constrains, their arity and argument types. Every key is
// a registered operator (checked by a test), and the positional arities are
// those the compilers enforce (also checked by a test), so CheckExpr and
// CompileExpr cannot disagree.
var exprSignatures = map[string]signature{
	// arithmetic
	"$add": pos(0, -1, kNumDate), "$subtract": pos(2, 2, kNumDate),
	"$multiply": pos(0, -1, kNumber), "$divide": pos(2, 2, kNumber), "$mod": pos(2, 2, kNumber),
	"$abs": pos(1, 1, kNumber), "$ceil": pos(1, 1, kNumber), "$floor": pos(1, 1, kNumber),
	"$sqrt": pos(1, 1, kNumber), "$exp": pos(1, 1, kNumber), "$ln": pos(1, 1, kNumber),
	"$log10": pos(1, 1, kNumber), "$pow": pos(2, 2, kNumber),
	"$round": pos(1, 2, kNumber), "$trunc": pos(1, 2, kNumber),
	// strings ($toUpper, $toLower, $substr* and $strcasecmp convert their
	// first arguments to strings, so only their counts are checked)
	"$concat": pos(0, -1, kString), "$strLenBytes": pos(1, 1, kString), "$strLenCP": pos(1, 1, kString),
	"$split": pos(2, 2, kString), "$toUpper": pos(1, 1), "$toLower": pos(1, 1),
	"$substr": pos(3, 3, kAny, kNumber, kNumber), "$substrBytes": pos(3, 3, kAny, kNumber, kNumber),
	"$substrCP": pos(3, 3, kAny, kNumber, kNumber), "$strcasecmp": pos(2, 2),
	"$indexOfBytes": pos(2, 4, kString, kString, kNumber, kNumber),
	"$indexOfCP":    pos(2, 4, kString, kString, kNumber, kNumber),
	"$trim":         {named: map[string]argKind{"input": kString, "chars": kString}},
	"$ltrim":        {named: map[string]argKind{"input": kString, "chars": kString}},
	"$rtrim":        {named: map[string]argKind{"input": kString, "chars": kString}},
	"$replaceOne":   {named: map[string]argKind{"input": kString, "find": kString, "replacement": kString}},
	"$replaceAll":   {named: map[string]argKind{"input": kString, "find": kString, "replacement": kString}},
	"$regexMatch":   {named: map[string]argKind{"input": kString, "options": kString}},
	"$regexFind":    {named: map[string]argKind{"input": kString, "options": kString}},
	"$regexFindAll": {named: map[string]argKind{"input": kString, "options": kString}},
	// arrays and objects
	"$size": pos(1, 1, kArray), "$arrayElemAt": pos(2, 2, kArray, kNumber),
	"$first": pos(1, 1, kArray), "$last": pos(1, 1, kArray), "$in": pos(2, 2, kAny, kArray),
	"$concatArrays": pos(0, -1, kArray), "$isArray": pos(1, 1),
	"$slice": pos(2, 3, kArray, kNumber, kNumber), "$reverseArray": pos(1, 1, kArray),
	"$range": pos(2, 3, kNumber), "$indexOfArray": pos(2, 4, kArray, kAny, kNumber, kNumber),
	"$mergeObjects": pos(0, -1, kDoc), "$objectToArray": pos(1, 1, kDoc), "$arrayToObject": pos(1, 1, kArray),
	"$filter": {named: map[string]argKind{"input": kArray, "as": kString, "limit": kNumber}},
	"$map":    {named: map[string]argKind{"input": kArray, "as": kString}},
	"$reduce": {named: map[string]argKind{"input": kArray}},
	// logic, comparison and types
	"$not": pos(1, 1), "$type": pos(1, 1), "$isNumber": pos(1, 1),
	"$eq": pos(2, 2), "$ne": pos(2, 2), "$gt": pos(2, 2), "$gte": pos(2, 2),
	"$lt": pos(2, 2), "$lte": pos(2, 2), "$cmp": pos(2, 2),
	// dates
	"$dateToString":   {named: map[string]argKind{"format": kString, "timezone": kString}},
	"$dateFromString": {named: map[string]argKind{"dateString": kString, "format": kString, "timezone": kString}},
	"$dateAdd":        {named: map[string]argKind{"unit": kString, "amount": kNumber, "timezone": kString}},
	"$dateSubtract":   {named: map[string]argKind{"unit": kString, "amount": kNumber, "timezone": kString}},
	"$dateDiff":       {named: map[string]argKind{"unit": kString, "timezone": kString, "startOfWeek": kString}},
	"$dateTrunc":      {named: map[string]argKind{"unit": kString, "binSize": kNumber, "timezone": kString, "startOfWeek": kString}},
	"$dateToParts":    {named: map[string]argKind{"timezone": kString}},
	"$dateFromParts": {named: map[string]argKind{
		"year": kNumber, "month": kNumber, "day": kNumber, "isoWeekYear": kNumber, "isoWeek": kNumber, "isoDayOfWeek": kNumber,
		"hour": kNumber, "minute": kNumber, "second": kNumber, "millisecond": kNumber, "timezone": kString,
	}},
	// sets
	"$setUnion": pos(0, -1, kArray), "$setIntersection": pos(0, -1, kArray), "$setDifference": pos(2, 2, kArray),
	"$setEquals": pos(2, -1, kArray), "$setIsSubset": pos(2, 2, kArray),
	"$allElementsTrue": pos(1, 1, kArray), "$anyElementTrue": pos(1, 1, kArray),
	// n-element and sorting array operators
	"$firstN":    {named: map[string]argKind{"n": kNumber, "input": kArray}},
	"$lastN":     {named: map[string]argKind{"n": kNumber, "input": kArray}},
	"$maxN":      {named: map[string]argKind{"n": kNumber, "input": kArray}},
	"$minN":      {named: map[string]argKind{"n": kNumber, "input": kArray}},
	"$sortArray": {named: map[string]argKind{"input": kArray}},
	"$zip":       {named: map[string]argKind{"inputs": kArray, "defaults": kArray}},
	// trigonometry, logarithms, timestamps and sizes
	"$sin": pos(1, 1, kNumber), "$cos": pos(1, 1, kNumber), "$tan": pos(1, 1, kNumber),
	"$asin": pos(1, 1, kNumber), "$acos": pos(1, 1, kNumber), "$atan": pos(1, 1, kNumber),
	"$asinh": pos(1, 1, kNumber), "$acosh": pos(1, 1, kNumber), "$atanh": pos(1, 1, kNumber),
	"$sinh": pos(1, 1, kNumber), "$cosh": pos(1, 1, kNumber), "$tanh": pos(1, 1, kNumber),
	"$degreesToRadians": pos(1, 1, kNumber), "$radiansToDegrees": pos(1, 1, kNumber),
	"$atan2": pos(2, 2, kNumber), "$log": pos(2, 2, kNumber),
	"$tsSecond": pos(1, 1), "$tsIncrement": pos(1, 1), "$bsonSize": pos(1, 1), "$binarySize": pos(1, 1),
}

// PathStep is one step from an expression's root to one of its nodes: a
// document key, or an index into an array when IsIndex is set.
type PathStep struct {
	Key     string
	Index   int
	IsIndex bool
}

// Problem is one mistake in an aggregation expression known without data.
// Path leads from the checked expression to the offending node: the
// operator's key for an unknown operator or a wrong argument count, the
// argument itself for a literal of the wrong type.
type Problem struct {
	Path    []PathStep
	Message string
}

// CheckExpr returns every problem of the aggregation expression spec that
// is knowable without evaluating it: unknown operators, argument counts
// outside what MongoDB accepts, literal arguments of a type the operator
// never accepts (a number in $concat, a string in $add), constant
// arguments whose value makes every evaluation fail ($divide by 0, a
// negative $substrCP start; see constArgChecks), told with the run-time
// error's message, every error
// CompileExpr would stop at (each where it lies: a malformed operator, a
// constant sub-expression that fails to evaluate, a bad field path or
// variable name), and each variable read where it is not defined. It does
// not stop at the first problem, reports each once, in the order of the
// nodes they concern; nil means none is known, and then CompileExpr
// succeeds.
func CheckExpr(spec any) []Problem {
	var static []Problem
	checkNode(spec, nil, 0, &static)
	if aggNestingDepth(spec, aggMaxNesting) > aggMaxNesting {
		return append(static, Problem{Message: aggNestingErr().(*mongoerr.Error).Message})
	}
	c := compileChecker{static: static}
	c.check(spec, make([]PathStep, 0, 32), 0)
	var undefined []Problem
	walkUndefinedVars(spec, nil, func(p []PathStep, err error) bool {
		undefined = append(undefined, Problem{Path: p, Message: err.(*mongoerr.Error).Message})
		return true
	})
	out := orderProblems(spec, static, c.problems(), undefined)
	if len(out) == 0 {
		return nil
	}
	return out
}

func checkNode(v any, path []PathStep, depth int, out *[]Problem) {
	if depth > maxCheckDepth {
		return
	}
	switch x := v.(type) {
	case bson.A:
		for i, a := range x {
			checkNode(a, appendStep(path, PathStep{Index: i, IsIndex: true}), depth+1, out)
		}
	case bson.D:
		if len(x) == 1 && strings.HasPrefix(x[0].Key, "$") {
			checkOperator(x[0].Key, x[0].Value, appendStep(path, PathStep{Key: x[0].Key}), depth, out)
			return
		}
		for _, e := range x {
			checkNode(e.Value, appendStep(path, PathStep{Key: e.Key}), depth+1, out)
		}
	}
}

// maxCheckDepth bounds CheckExpr's recursion on hostile input.
const maxCheckDepth = 200

func appendStep(path []PathStep, s PathStep) []PathStep {
	p := make([]PathStep, len(path), len(path)+1)
	copy(p, path)
	return append(p, s)
}

func checkOperator(name string, arg any, path []PathStep, depth int, out *[]Problem) {
	add := func(p []PathStep, format string, a ...any) {
		*out = append(*out, Problem{Path: p, Message: fmt.Sprintf(format, a...)})
	}
	if _, ok := exprOperators[name]; !ok {
		if unsupportedExprOperators[name] {
			add(path, "%s is a MongoDB operator that changehook does not support", name)
			return
		}
		add(path, "Unrecognized expression '%s'", name)
		return
	}
	if name == "$literal" {
		return
	}
	sig, ok := exprSignatures[name]
	switch {
	case !ok:
		if datePartOperators[name] {
			checkDatePartTimezone(name, arg, path, add)
		}
		checkNode(arg, path, depth+1, out)
	case sig.named != nil:
		d, isDoc := arg.(bson.D)
		if !isDoc {
			if k := literalKind(arg); k != "" {
				add(path, "%s expects an object of named arguments but found: %s", name, TypeName(arg))
			} else {
				checkNode(arg, path, depth+1, out)
			}
			return
		}
		for _, e := range d {
			p := appendStep(path, PathStep{Key: e.Key})
			if want, ok := sig.named[e.Key]; ok {
				checkLiteral(name, fmt.Sprintf("%s.%s", name, e.Key), "", want, e.Value, p, add)
				checkConstArg(name, namedConstCheck(name, e.Key, d), want, e.Value, p, add)
			}
			checkNode(e.Value, p, depth+1, out)
		}
	default:
		args, isList := arg.(bson.A)
		if !isList {
			args = bson.A{arg}
		}
		if err := arityError(name, sig.lo, sig.hi, len(args)); err != nil {
			add(path, "%s", err.(*mongoerr.Error).Message)
		}
		for i, a := range args {
			p := path
			if isList {
				p = appendStep(path, PathStep{Index: i, IsIndex: true})
			}
			if len(sig.kinds) > 0 {
				want := sig.kinds[min(i, len(sig.kinds)-1)]
				checkLiteral(name, name, fmt.Sprintf(" argument %d", i+1), want, a, p, add)
				checkConstArg(name, constArgChecks[name].pos[i], want, a, p, add)
			}
			checkNode(a, p, depth+1, out)
		}
	}
}

// checkLiteral reports a literal v that is not of kind want.
func checkLiteral(op, what, which string, want argKind, v any, p []PathStep, add func([]PathStep, string, ...any)) {
	got := literalKind(v)
	if got == "" || want == kAny || got == "null" || kindAccepts(want, v) {
		return
	}
	hint := ""
	if want == kString {
		hint = "; convert it with {$toString: ...}"
	}
	if which == "" {
		add(p, "%s takes %s, but it is %s%s", what, singular(want), got, hint)
		return
	}
	add(p, "%s takes %s, but%s is %s%s", what, want, which, got, hint)
}

func singular(k argKind) string {
	return map[argKind]string{kString: "a string", kNumber: "a number", kNumDate: "a number or a date", kArray: "an array", kDoc: "a document"}[k]
}

func kindAccepts(want argKind, v any) bool {
	switch want {
	case kString:
		_, ok := v.(string)
		return ok
	case kNumber:
		return aggNumKind(v) != 0
	case kNumDate:
		_, isDate := v.(bson.DateTime)
		return isDate || aggNumKind(v) != 0
	case kArray:
		_, ok := v.(bson.A)
		return ok
	case kDoc:
		_, ok := v.(bson.D)
		return ok
	}
	return true
}

// literalKind describes v when it is a literal ("the number 42"), or
// returns "" for a field path, a variable or an operator expression, whose
// type is known only when it runs.
func literalKind(v any) string {
	switch x := v.(type) {
	case nil, bson.Null, bson.Undefined:
		return "null"
	case string:
		if strings.HasPrefix(x, "$") {
			return ""
		}
		return fmt.Sprintf("the string %q", x)
	case bson.D:
		if len(x) == 1 && strings.HasPrefix(x[0].Key, "$") {
			return ""
		}
		return "a document"
	case bson.A:
		return "an array"
	case bool:
		return fmt.Sprintf("the boolean %t", x)
	case int32, int64, float64:
		return fmt.Sprintf("the number %v", x)
	case bson.Decimal128:
		return fmt.Sprintf("the number %s", x.String())
	case bson.DateTime:
		return "a date"
	}
	return "a " + TypeName(v)
}
