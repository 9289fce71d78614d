package mql

import (
	"errors"
	"sync"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// coreDoc parses relaxed Extended JSON into a bson.D (integers decode as
// int32/int64, fractions as double).
func coreDoc(tb testing.TB, s string) bson.D {
	tb.Helper()
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		tb.Fatalf("parse %s: %v", s, err)
	}
	return d
}

// coreErrCode returns the *mongoerr.Error code of err, or 0.
func coreErrCode(err error) mongoerr.Code {
	var e *mongoerr.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestFilterMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		filter string
		doc    string
		want   bool
	}{
		// Equality and implicit array traversal
		// (https://www.mongodb.com/docs/manual/tutorial/query-arrays/).
		{"eq scalar", `{"a": 1}`, `{"a": 1}`, true},
		{"eq scalar miss", `{"a": 1}`, `{"a": 2}`, false},
		{"eq across numeric types", `{"a": 1}`, `{"a": 1.0}`, true},
		{"eq long vs double", `{"a": {"$numberLong": "5"}}`, `{"a": 5.0}`, true},
		{"eq decimal vs int", `{"a": {"$numberDecimal": "2.0"}}`, `{"a": 2}`, true},
		{"eq array element", `{"a": 2}`, `{"a": [1, 2, 3]}`, true},
		{"eq whole array", `{"a": [1, 2]}`, `{"a": [1, 2]}`, true},
		{"eq whole array order matters", `{"a": [2, 1]}`, `{"a": [1, 2]}`, false},
		{"eq nested array element", `{"a": [1, 2]}`, `{"a": [[1, 2], 3]}`, true},
		{"eq no double expansion", `{"a": 1}`, `{"a": [[1, 2]]}`, false},
		{"eq embedded doc exact", `{"a": {"b": 1, "c": 2}}`, `{"a": {"b": 1, "c": 2}}`, true},
		{"eq embedded doc order", `{"a": {"c": 2, "b": 1}}`, `{"a": {"b": 1, "c": 2}}`, false},
		{"dotted path", `{"a.b": 1}`, `{"a": {"b": 1}}`, true},
		{"dotted through array", `{"a.b": 2}`, `{"a": [{"b": 1}, {"b": 2}]}`, true},
		{"dotted through array into array", `{"a.b": 3}`, `{"a": [{"b": [1, 3]}]}`, true},
		{"dotted numeric index", `{"a.1": 5}`, `{"a": [4, 5]}`, true},
		{"dotted numeric index miss", `{"a.0": 5}`, `{"a": [4, 5]}`, false},
		{"numeric index then field", `{"a.1.b": 2}`, `{"a": [{"b": 1}, {"b": 2}]}`, true},
		{"numeric field in subdoc", `{"a.0": 7}`, `{"a": {"0": 7}}`, true},
		{"numeric component on array of docs with field", `{"a.0": 7}`, `{"a": [{"0": 7}]}`, true},
		{"scalar array with field path", `{"a.b": 1}`, `{"a": [1, 2]}`, false},
		{"nested arrays not traversed by name", `{"a.b": 1}`, `{"a": [[{"b": 1}]]}`, false},
		// Null and missing (https://www.mongodb.com/docs/manual/tutorial/query-for-null-fields/
		// and jstests/core/null2.js).
		{"null matches null", `{"a": null}`, `{"a": null}`, true},
		{"null matches missing", `{"a": null}`, `{"b": 1}`, true},
		{"null no match value", `{"a": null}`, `{"a": 0}`, false},
		{"null in array", `{"a": null}`, `{"a": [1, null]}`, true},
		{"null empty array", `{"a": null}`, `{"a": []}`, false},
		{"null dotted subdoc missing", `{"a.b": null}`, `{"a": [{}]}`, true},
		{"null dotted some missing", `{"a.b": null}`, `{"a": [{}, {"b": 5}]}`, true},
		{"null dotted all present", `{"a.b": null}`, `{"a": [{"b": 5}]}`, false},
		{"null dotted empty array", `{"a.b": null}`, `{"a": []}`, false},
		{"null dotted scalar element", `{"a.b": null}`, `{"a": [5, {"b": 5}]}`, false},
		{"null dotted scalar parent", `{"a.b": null}`, `{"a": 4}`, true},
		{"ne null missing", `{"a": {"$ne": null}}`, `{}`, false},
		{"ne null present", `{"a": {"$ne": null}}`, `{"a": 1}`, true},
		{"gte null matches missing", `{"a": {"$gte": null}}`, `{}`, true},
		{"gt null never", `{"a": {"$gt": null}}`, `{"a": 1}`, false},
		{"in null matches missing", `{"a.b": {"$in": [null]}}`, `{"a": [{}, {"b": 5}]}`, true},
		// Comparison operators with type bracketing
		// (https://www.mongodb.com/docs/manual/reference/operator/query/gt/).
		{"gt number", `{"a": {"$gt": 1}}`, `{"a": 2}`, true},
		{"gt equal", `{"a": {"$gt": 2}}`, `{"a": 2}`, false},
		{"gte equal", `{"a": {"$gte": 2}}`, `{"a": 2.0}`, true},
		{"lt", `{"a": {"$lt": 2}}`, `{"a": 1.5}`, true},
		{"lte", `{"a": {"$lte": 2}}`, `{"a": 3}`, false},
		{"gt no cross type string", `{"a": {"$gt": 1}}`, `{"a": "x"}`, false},
		{"lt no cross type null", `{"a": {"$lt": 1}}`, `{"a": null}`, false},
		{"lt missing never", `{"a": {"$lt": 1}}`, `{}`, false},
		{"gt string bytes", `{"a": {"$gt": "B"}}`, `{"a": "a"}`, true},
		{"gt array any element", `{"a": {"$gt": 5}}`, `{"a": [1, 10]}`, true},
		{"range on array can use different elements", `{"a": {"$gt": 5, "$lt": 3}}`, `{"a": [1, 10]}`, true},
		{"gt date", `{"a": {"$gt": {"$date": "2020-01-01T00:00:00Z"}}}`, `{"a": {"$date": "2021-01-01T00:00:00Z"}}`, true},
		{"gt minKey matches all", `{"a": {"$gt": {"$minKey": 1}}}`, `{"a": "x"}`, true},
		{"lt maxKey matches all", `{"a": {"$lt": {"$maxKey": 1}}}`, `{"a": null}`, true},
		{"eq NaN", `{"a": {"$numberDouble": "NaN"}}`, `{"a": {"$numberDouble": "NaN"}}`, true},
		{"gt NaN never", `{"a": {"$gt": {"$numberDouble": "NaN"}}}`, `{"a": 1}`, false},
		{"lt NaN never", `{"a": {"$lt": 0}}`, `{"a": {"$numberDouble": "NaN"}}`, false},
		{"gt large int64 vs double exact", `{"a": {"$gt": {"$numberLong": "9007199254740992"}}}`, `{"a": {"$numberLong": "9007199254740993"}}`, true},
		{"eq large int64 vs double", `{"a": 9007199254740992.0}`, `{"a": {"$numberLong": "9007199254740993"}}`, false},
		{"eq objectId", `{"a": {"$oid": "5f0000000000000000000001"}}`, `{"a": {"$oid": "5f0000000000000000000001"}}`, true},
		// $in / $nin / $ne (https://www.mongodb.com/docs/manual/reference/operator/query/in/).
		{"in", `{"a": {"$in": [1, 2]}}`, `{"a": 2}`, true},
		{"in array field", `{"a": {"$in": [5, 3]}}`, `{"a": [1, 3]}`, true},
		{"in empty", `{"a": {"$in": []}}`, `{"a": 1}`, false},
		{"in regex", `{"a": {"$in": [{"$regularExpression": {"pattern": "^b", "options": ""}}]}}`, `{"a": "bob"}`, true},
		{"nin", `{"a": {"$nin": [1, 2]}}`, `{"a": 3}`, true},
		{"nin missing", `{"a": {"$nin": [1, 2]}}`, `{}`, true},
		{"nin array element", `{"a": {"$nin": [1]}}`, `{"a": [1, 3]}`, false},
		{"ne array element", `{"a": {"$ne": 1}}`, `{"a": [1, 3]}`, false},
		{"ne missing", `{"a": {"$ne": 1}}`, `{}`, true},
		// Logical (https://www.mongodb.com/docs/manual/reference/operator/query-logical/).
		{"and", `{"$and": [{"a": 1}, {"b": 2}]}`, `{"a": 1, "b": 2}`, true},
		{"and fails", `{"$and": [{"a": 1}, {"b": 3}]}`, `{"a": 1, "b": 2}`, false},
		{"or", `{"$or": [{"a": 5}, {"b": 2}]}`, `{"a": 1, "b": 2}`, true},
		{"nor", `{"$nor": [{"a": 5}, {"b": 5}]}`, `{"a": 1, "b": 2}`, true},
		{"nor fails", `{"$nor": [{"a": 1}]}`, `{"a": 1}`, false},
		{"not gt", `{"a": {"$not": {"$gt": 5}}}`, `{"a": 3}`, true},
		{"not gt missing", `{"a": {"$not": {"$gt": 5}}}`, `{}`, true},
		{"not gt fails", `{"a": {"$not": {"$gt": 5}}}`, `{"a": 6}`, false},
		{"not regex", `{"a": {"$not": {"$regularExpression": {"pattern": "^x", "options": ""}}}}`, `{"a": "yes"}`, true},
		{"implicit and of fields", `{"a": 1, "b": {"$exists": false}}`, `{"a": 1}`, true},
		// $exists (https://www.mongodb.com/docs/manual/reference/operator/query/exists/).
		{"exists true", `{"a": {"$exists": true}}`, `{"a": null}`, true},
		{"exists false", `{"a": {"$exists": false}}`, `{"b": 1}`, true},
		{"exists false present", `{"a": {"$exists": false}}`, `{"a": 1}`, false},
		{"exists through array", `{"a.b": {"$exists": true}}`, `{"a": [{"c": 1}, {"b": 1}]}`, true},
		{"exists through scalar array", `{"a.b": {"$exists": true}}`, `{"a": [1, 2]}`, false},
		{"exists empty array", `{"a": {"$exists": true}}`, `{"a": []}`, true},
		{"exists 0 is false", `{"a": {"$exists": 0}}`, `{}`, true},
		// $type (https://www.mongodb.com/docs/manual/reference/operator/query/type/).
		{"type string alias", `{"a": {"$type": "string"}}`, `{"a": "x"}`, true},
		{"type number code", `{"a": {"$type": 2}}`, `{"a": "x"}`, true},
		{"type number alias", `{"a": {"$type": "number"}}`, `{"a": {"$numberLong": "1"}}`, true},
		{"type int vs double", `{"a": {"$type": "int"}}`, `{"a": 1.5}`, false},
		{"type array of types", `{"a": {"$type": ["string", "double"]}}`, `{"a": 1.5}`, true},
		{"type array field", `{"a": {"$type": "array"}}`, `{"a": [1]}`, true},
		{"type array element", `{"a": {"$type": "string"}}`, `{"a": [1, "x"]}`, true},
		{"type null", `{"a": {"$type": "null"}}`, `{"a": null}`, true},
		{"type missing never", `{"a": {"$type": "null"}}`, `{}`, false},
		{"type minKey", `{"a": {"$type": -1}}`, `{"a": {"$minKey": 1}}`, true},
		{"type object", `{"a": {"$type": "object"}}`, `{"a": {}}`, true},
		// $regex (https://www.mongodb.com/docs/manual/reference/operator/query/regex/).
		{"regex literal", `{"a": {"$regularExpression": {"pattern": "^ab", "options": ""}}}`, `{"a": "abc"}`, true},
		{"regex operator", `{"a": {"$regex": "b.d"}}`, `{"a": "abcd"}`, true},
		{"regex options i", `{"a": {"$regex": "^AB", "$options": "i"}}`, `{"a": "abc"}`, true},
		{"regex options first", `{"a": {"$options": "i", "$regex": "^AB"}}`, `{"a": "abc"}`, true},
		{"regex case sensitive", `{"a": {"$regex": "^AB"}}`, `{"a": "abc"}`, false},
		{"regex m", `{"a": {"$regex": "^b", "$options": "m"}}`, `{"a": "a\nb"}`, true},
		{"regex no m", `{"a": {"$regex": "^b"}}`, `{"a": "a\nb"}`, false},
		{"regex s", `{"a": {"$regex": "a.b", "$options": "s"}}`, `{"a": "a\nb"}`, true},
		{"regex x", `{"a": {"$regex": "a b # comment", "$options": "x"}}`, `{"a": "ab"}`, true},
		{"regex on array", `{"a": {"$regex": "^x"}}`, `{"a": ["y", "xz"]}`, true},
		{"regex non-string", `{"a": {"$regex": "1"}}`, `{"a": 1}`, false},
		{"regex equal regex value", `{"a": {"$regularExpression": {"pattern": "x", "options": "i"}}}`, `{"a": {"$regularExpression": {"pattern": "x", "options": "i"}}}`, true},
		{"regex symbol", `{"a": {"$regex": "^s"}}`, `{"a": {"$symbol": "sym"}}`, true},
		// $mod (https://www.mongodb.com/docs/manual/reference/operator/query/mod/).
		{"mod", `{"a": {"$mod": [4, 0]}}`, `{"a": 8}`, true},
		{"mod miss", `{"a": {"$mod": [4, 0]}}`, `{"a": 6}`, false},
		{"mod truncates value", `{"a": {"$mod": [4, 0]}}`, `{"a": 8.9}`, true},
		{"mod negative", `{"a": {"$mod": [4, -1]}}`, `{"a": -5}`, true},
		{"mod non-number", `{"a": {"$mod": [4, 0]}}`, `{"a": "8"}`, false},
		// $all, $size, $elemMatch.
		{"all", `{"a": {"$all": [1, 3]}}`, `{"a": [1, 2, 3]}`, true},
		{"all missing one", `{"a": {"$all": [1, 4]}}`, `{"a": [1, 2, 3]}`, false},
		{"all scalar field", `{"a": {"$all": [1]}}`, `{"a": 1}`, true},
		{"all nested array", `{"a": {"$all": [[1, 2]]}}`, `{"a": [[1, 2], 3]}`, true},
		{"all empty", `{"a": {"$all": []}}`, `{"a": [1]}`, false},
		{"all elemMatch", `{"a": {"$all": [{"$elemMatch": {"b": 1}}, {"$elemMatch": {"c": 2}}]}}`, `{"a": [{"b": 1}, {"c": 2}]}`, true},
		{"size", `{"a": {"$size": 2}}`, `{"a": [1, 2]}`, true},
		{"size miss", `{"a": {"$size": 1}}`, `{"a": [1, 2]}`, false},
		{"size non-array", `{"a": {"$size": 1}}`, `{"a": 1}`, false},
		{"size nested not expanded", `{"a": {"$size": 2}}`, `{"a": [[1, 2]]}`, false},
		{"size zero", `{"a": {"$size": 0}}`, `{"a": []}`, true},
		{"size through array path", `{"a.b": {"$size": 2}}`, `{"a": [{"b": [1]}, {"b": [1, 2]}]}`, true},
		{"elemMatch doc", `{"a": {"$elemMatch": {"b": 1, "c": 2}}}`, `{"a": [{"b": 1, "c": 1}, {"b": 1, "c": 2}]}`, true},
		{"elemMatch doc split", `{"a": {"$elemMatch": {"b": 1, "c": 2}}}`, `{"a": [{"b": 1}, {"c": 2}]}`, false},
		{"elemMatch value", `{"a": {"$elemMatch": {"$gte": 80, "$lt": 85}}}`, `{"a": [82, 90]}`, true},
		{"elemMatch value split", `{"a": {"$elemMatch": {"$gt": 5, "$lt": 3}}}`, `{"a": [1, 10]}`, false},
		{"elemMatch non-array", `{"a": {"$elemMatch": {"$gt": 1}}}`, `{"a": 5}`, false},
		{"elemMatch with or", `{"a": {"$elemMatch": {"$or": [{"b": 1}, {"c": 1}]}}}`, `{"a": [{"c": 1}]}`, true},
		{"elemMatch value element array not expanded", `{"a": {"$elemMatch": {"$eq": 1}}}`, `{"a": [[1]]}`, false},
		{"elemMatch nested array as doc", `{"a": {"$elemMatch": {"0": 1}}}`, `{"a": [[1, 2]]}`, true},
		// Bitwise (https://www.mongodb.com/docs/manual/reference/operator/query-bitwise/).
		{"bitsAllSet mask", `{"a": {"$bitsAllSet": 5}}`, `{"a": 7}`, true},
		{"bitsAllSet positions", `{"a": {"$bitsAllSet": [1, 5]}}`, `{"a": 34}`, true},
		{"bitsAllSet miss", `{"a": {"$bitsAllSet": [1, 5]}}`, `{"a": 2}`, false},
		{"bitsAnySet", `{"a": {"$bitsAnySet": [1, 5]}}`, `{"a": 2}`, true},
		{"bitsAllClear", `{"a": {"$bitsAllClear": [0, 2]}}`, `{"a": 2}`, true},
		{"bitsAnyClear", `{"a": {"$bitsAnyClear": [1, 2]}}`, `{"a": 2}`, true},
		{"bits negative sign extends", `{"a": {"$bitsAllSet": [100]}}`, `{"a": -1}`, true},
		{"bits fractional never", `{"a": {"$bitsAnySet": 1}}`, `{"a": 1.5}`, false},
		{"bits binData", `{"a": {"$bitsAllSet": {"$binary": {"base64": "Aw==", "subType": "00"}}}}`, `{"a": 3}`, true},
		// Misc.
		{"comment ignored", `{"$comment": "hi", "a": 1}`, `{"a": 1}`, true},
		{"alwaysTrue", `{"$alwaysTrue": 1}`, `{}`, true},
		{"alwaysFalse", `{"$alwaysFalse": 1}`, `{}`, false},
		{"empty filter", `{}`, `{"a": 1}`, true},
		{"dbref equality", `{"r": {"$ref": "c", "$id": 1}}`, `{"r": {"$ref": "c", "$id": 1}}`, true},
		{"comment operator", `{"a": {"$eq": 1, "$comment": "x"}}`, `{"a": 1}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := CompileFilter(coreDoc(t, tc.filter))
			if err != nil {
				t.Fatalf("CompileFilter(%s): %v", tc.filter, err)
			}
			if got := f.Match(coreDoc(t, tc.doc)); got != tc.want {
				t.Errorf("filter %s on %s = %v, want %v", tc.filter, tc.doc, got, tc.want)
			}
		})
	}
}

func TestFilterMatchGoValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		filter bson.D
		doc    bson.D
		want   bool
	}{
		{"go int operand", bson.D{{Key: "a", Value: 3}}, bson.D{{Key: "a", Value: int64(3)}}, true},
		{"slice operand", bson.D{{Key: "a", Value: bson.D{{Key: "$in", Value: []any{1, 2}}}}}, bson.D{{Key: "a", Value: int32(2)}}, true},
		{"bson.M subdoc in doc", bson.D{{Key: "a.b", Value: 1}}, bson.D{{Key: "a", Value: bson.M{"b": 1}}}, true},
		{"undefined equals null", bson.D{{Key: "a", Value: nil}}, bson.D{{Key: "a", Value: bson.Undefined{}}}, true},
		{"decimal NaN eq double NaN", bson.D{{Key: "a", Value: coreDecimal(t, "NaN")}}, coreDoc(t, `{"a": {"$numberDouble": "NaN"}}`), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := CompileFilter(tc.filter)
			if err != nil {
				t.Fatalf("CompileFilter: %v", err)
			}
			if got := f.Match(tc.doc); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func coreDecimal(tb testing.TB, s string) bson.Decimal128 {
	tb.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		tb.Fatalf("ParseDecimal128(%q): %v", s, err)
	}
	return d
}

func TestCompileFilterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		filter  string
		code    mongoerr.Code
		message string
	}{
		{"unknown operator", `{"a": {"$foo": 1}}`, mongoerr.BadValue, "unknown operator: $foo"},
		{"unknown top level", `{"$foo": 1}`, mongoerr.BadValue, "unknown top level operator: $foo"},
		{"mixed operator doc", `{"a": {"$gt": 1, "b": 2}}`, mongoerr.BadValue, "unknown operator: b"},
		{"in not array", `{"a": {"$in": 1}}`, mongoerr.BadValue, "$in needs an array"},
		{"nin not array", `{"a": {"$nin": 1}}`, mongoerr.BadValue, "$nin needs an array"},
		{"and empty", `{"$and": []}`, mongoerr.BadValue, "$and must be a nonempty array"},
		{"or not array", `{"$or": {"a": 1}}`, mongoerr.BadValue, "$or must be a nonempty array"},
		{"nor entry not object", `{"$nor": [1]}`, mongoerr.BadValue, "$nor argument's entries must be objects"},
		{"not empty", `{"a": {"$not": {}}}`, mongoerr.BadValue, "$not cannot be empty"},
		{"not scalar", `{"a": {"$not": 1}}`, mongoerr.BadValue, "$not needs a regex or a document"},
		{"size negative", `{"a": {"$size": -1}}`, mongoerr.BadValue, "$size may not be negative"},
		{"size fraction", `{"a": {"$size": 1.5}}`, mongoerr.BadValue, "$size must be a whole number"},
		{"size string", `{"a": {"$size": "1"}}`, mongoerr.BadValue, "$size needs a number"},
		{"mod not array", `{"a": {"$mod": 1}}`, mongoerr.BadValue, "malformed mod, needs to be an array"},
		{"mod short", `{"a": {"$mod": [1]}}`, mongoerr.BadValue, "malformed mod, not enough elements"},
		{"mod long", `{"a": {"$mod": [1, 2, 3]}}`, mongoerr.BadValue, "malformed mod, too many elements"},
		{"mod zero", `{"a": {"$mod": [0, 1]}}`, mongoerr.BadValue, "divisor cannot be 0"},
		{"type alias", `{"a": {"$type": "foo"}}`, mongoerr.BadValue, "Unknown type name alias: foo"},
		{"type code", `{"a": {"$type": 99}}`, mongoerr.BadValue, "Invalid numerical type code: 99"},
		{"type bool", `{"a": {"$type": true}}`, mongoerr.TypeMismatch, "type must be represented as a number or a string"},
		{"regex bad", `{"a": {"$regex": "("}}`, mongoerr.RegexInvalid, ""},
		{"regex bad option", `{"a": {"$regex": "a", "$options": "z"}}`, mongoerr.RegexBadOption, "invalid flag in regex options: z"},
		{"options alone", `{"a": {"$options": "i"}}`, mongoerr.BadValue, "$options needs a $regex"},
		{"regex non-string", `{"a": {"$regex": 1}}`, mongoerr.BadValue, "$regex has to be a string"},
		{"elemMatch non-object", `{"a": {"$elemMatch": 1}}`, mongoerr.BadValue, "$elemMatch needs an Object"},
		{"elemMatch unknown", `{"a": {"$elemMatch": {"$foo": 1}}}`, mongoerr.BadValue, "unknown operator: $foo"},
		{"all not array", `{"a": {"$all": 1}}`, mongoerr.BadValue, "$all needs an array"},
		{"in with operator", `{"a": {"$in": [{"$gt": 1}]}}`, mongoerr.BadValue, "cannot nest $ under $in"},
		{"where", `{"$where": "true"}`, mongoerr.NotImplemented, ""},
		{"text", `{"$text": {"$search": "x"}}`, mongoerr.IndexNotFound, "text index required for $text query"},
		{"jsonSchema unknown keyword", `{"$jsonSchema": {"nope": 1}}`, mongoerr.FailedToParse, ""},
		{"near", `{"a": {"$near": [0, 0]}}`, mongoerr.NoQueryExecutionPlans, ""},
		{"geoWithin", `{"a": {"$geoWithin": {}}}`, mongoerr.NotImplemented, ""},
		{"bits negative", `{"a": {"$bitsAllSet": -1}}`, mongoerr.BadValue, ""},
		{"bits bad type", `{"a": {"$bitsAllSet": "x"}}`, mongoerr.BadValue, ""},
		{"alwaysTrue arg", `{"$alwaysTrue": 2}`, mongoerr.BadValue, "$alwaysTrue must be an integer value of 1"},
		{"nested unknown in and", `{"$and": [{"a": {"$bar": 1}}]}`, mongoerr.BadValue, "unknown operator: $bar"},
		{"expr invalid", `{"$expr": {"$bad": 1}}`, mongoerr.InvalidPipelineOperator, ""},
		{"expr in elemMatch", `{"a": {"$elemMatch": {"$expr": true}}}`, mongoerr.BadValue, "$expr can only be applied to the top-level document"},
		{"eq undefined", `{"a": {"$undefined": true}}`, mongoerr.BadValue, "cannot compare to undefined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := CompileFilter(coreDoc(t, tc.filter))
			if err == nil {
				t.Fatalf("CompileFilter(%s) succeeded, want code %d", tc.filter, tc.code)
			}
			var me *mongoerr.Error
			if !errors.As(err, &me) {
				t.Fatalf("error %v is %T, want *mongoerr.Error", err, err)
			}
			if me.Code != tc.code {
				t.Errorf("code = %d (%s), want %d", me.Code, me.Message, tc.code)
			}
			if tc.message != "" && me.Message != tc.message && !startsWith(me.Message, tc.message) {
				t.Errorf("message = %q, want %q", me.Message, tc.message)
			}
			if me.Code.String() == "" {
				t.Errorf("empty CodeName")
			}
		})
	}
}

func startsWith(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

func TestFilterDepthLimit(t *testing.T) {
	t.Parallel()
	f := bson.D{{Key: "a", Value: 1}}
	for range 150 {
		f = bson.D{{Key: "$and", Value: bson.A{f}}}
	}
	if _, err := CompileFilter(f); coreErrCode(err) != mongoerr.BadValue {
		t.Fatalf("deep filter: err = %v, want BadValue", err)
	}
}

func TestMatchPositional(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		filter  string
		doc     string
		matched bool
		index   int
	}{
		{"no array", `{"a": 1}`, `{"a": 1}`, true, -1},
		{"array element", `{"grades": {"$gte": 85}}`, `{"grades": [80, 85, 90]}`, true, 1},
		{"array of docs", `{"a.b": 2}`, `{"a": [{"b": 1}, {"b": 2}]}`, true, 1},
		{"elemMatch", `{"a": {"$elemMatch": {"b": 2, "c": 3}}}`, `{"a": [{"b": 2}, {"b": 2, "c": 3}]}`, true, 1},
		{"outer array wins", `{"a.b": 5}`, `{"a": [{"b": [1]}, {"b": [4, 5]}]}`, true, 1},
		{"last predicate wins", `{"x": 1, "a": 3}`, `{"x": [0, 1], "a": [1, 2, 3]}`, true, 2},
		{"no match", `{"a": 9}`, `{"a": [1]}`, false, -1},
		{"negation records none", `{"a": {"$ne": 9}}`, `{"a": [1, 2]}`, true, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := CompileFilter(coreDoc(t, tc.filter))
			if err != nil {
				t.Fatal(err)
			}
			matched, idx := f.MatchPositional(coreDoc(t, tc.doc))
			if matched != tc.matched || idx != tc.index {
				t.Errorf("MatchPositional = (%v, %d), want (%v, %d)", matched, idx, tc.matched, tc.index)
			}
		})
	}
}

func TestFilterExpr(t *testing.T) {
	t.Parallel()
	f, err := CompileFilter(coreDoc(t, `{"$expr": {"$gt": ["$spent", "$budget"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		doc  string
		want bool
	}{
		{`{"spent": 10, "budget": 5}`, true},
		{`{"spent": 1, "budget": 5}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.doc, func(t *testing.T) {
			if got := f.Match(coreDoc(t, tc.doc)); got != tc.want {
				t.Errorf("Match(%s) = %v, want %v", tc.doc, got, tc.want)
			}
			got, err := f.MatchErr(coreDoc(t, tc.doc))
			if err != nil || got != tc.want {
				t.Errorf("MatchErr(%s) = %v, %v; want %v, nil", tc.doc, got, err, tc.want)
			}
		})
	}
}

func TestFilterConcurrentUse(t *testing.T) {
	t.Parallel()
	f, err := CompileFilter(coreDoc(t, `{"a.b": {"$in": [1, {"$regularExpression": {"pattern": "^x", "options": "i"}}]}, "c": {"$elemMatch": {"$gt": 2}}}`))
	if err != nil {
		t.Fatal(err)
	}
	yes := coreDoc(t, `{"a": [{"b": "XY"}], "c": [1, 3]}`)
	no := coreDoc(t, `{"a": [{"b": "y"}], "c": [1, 3]}`)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if !f.Match(yes) || f.Match(no) {
					errs <- "wrong result under concurrency"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func BenchmarkMatch(b *testing.B) {
	filter := coreDoc(b, `{"status": "active", "age": {"$gte": 21, "$lt": 65}, "tags": {"$in": ["go", "mongo"]}, "address.city": "Berlin", "$or": [{"score": {"$gt": 50}}, {"vip": true}]}`)
	doc := coreDoc(b, `{"_id": {"$oid": "5f0000000000000000000001"}, "name": "Ada Lovelace", "email": "ada@example.com", "status": "active", "age": 36, "vip": false, "score": 72.5,
		"tags": ["math", "go", "poetry"], "address": {"street": "1 Main St", "city": "Berlin", "zip": "10115"},
		"orders": [{"sku": "A1", "qty": 2, "price": 9.99}, {"sku": "B2", "qty": 1, "price": 19.5}], "createdAt": {"$date": "2024-01-01T00:00:00Z"}}`)
	f, err := CompileFilter(filter)
	if err != nil {
		b.Fatal(err)
	}
	if !f.Match(doc) {
		b.Fatal("benchmark filter does not match its document")
	}
	b.ReportAllocs()
	for b.Loop() {
		f.Match(doc)
	}
}
