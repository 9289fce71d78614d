package triggers

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// stringOperators take only strings (or expressions, which are checked
// when they run): a literal of another type is a mistake known before any
// event arrives.
var stringOperators = map[string]bool{
	"$concat":   true,
	"$strLenCP": true, "$strLenBytes": true,
}

// scalarResult names what an operator always returns when that is never a
// document (so a payload that is only this operator can never be a body).
var scalarResult = map[string]string{
	"$concat": "a string", "$toString": "a string", "$toUpper": "a string", "$toLower": "a string",
	"$substrCP": "a string", "$substr": "a string", "$dateToString": "a string",
	"$add": "a number or a date", "$subtract": "a number or a date", "$multiply": "a number",
	"$divide": "a number", "$size": "a number", "$strLenCP": "a number", "$toInt": "a number",
	"$toLong": "a number", "$toDouble": "a number", "$toDecimal": "a number",
	"$eq": "a boolean", "$ne": "a boolean", "$gt": "a boolean", "$gte": "a boolean",
	"$lt": "a boolean", "$lte": "a boolean", "$and": "a boolean", "$or": "a boolean",
	"$not": "a boolean", "$in": "a boolean", "$toBool": "a boolean",
	"$concatArrays": "an array", "$split": "an array", "$map": "an array", "$filter": "an array",
}

// checkPayloadStatic returns what is wrong with a payload expression
// without evaluating it: a top-level operator that never returns a
// document, and literal arguments of the wrong type to string operators
// (a number literal in $concat). Each problem is one message; nil when
// none is known before data arrives.
func checkPayloadStatic(spec any) []string {
	var out []string
	if d, ok := spec.(bson.D); ok && len(d) == 1 && strings.HasPrefix(d[0].Key, "$") {
		if what, ok := scalarResult[d[0].Key]; ok {
			out = append(out, fmt.Sprintf("%s always evaluates to %s, never to a document (the request body); wrap it in a field, e.g. {text: {%s: ...}}", d[0].Key, what, d[0].Key))
		}
	}
	walkPayload(spec, 0, &out)
	return out
}

func walkPayload(v any, depth int, out *[]string) {
	if depth > maxDepth {
		return
	}
	switch x := v.(type) {
	case bson.D:
		for _, e := range x {
			if stringOperators[e.Key] {
				args, ok := e.Value.(bson.A)
				if !ok {
					args = bson.A{e.Value}
				}
				for i, a := range args {
					if what := literalNonString(a); what != "" {
						*out = append(*out, fmt.Sprintf("%s takes strings, but argument %d is %s %s; convert it with {$toString: ...}", e.Key, i+1, what, extJSONValue(a)))
					}
				}
			}
			walkPayload(e.Value, depth+1, out)
		}
	case bson.A:
		for _, a := range x {
			walkPayload(a, depth+1, out)
		}
	}
}

// literalNonString names the type of a literal that is not a string ("a
// number"), or "" for strings, field paths, expressions and null.
func literalNonString(v any) string {
	switch v.(type) {
	case int32, int64, float64, bson.Decimal128:
		return "the number"
	case bool:
		return "the boolean"
	case bson.DateTime:
		return "the date"
	case bson.A:
		return "the array"
	}
	return ""
}
