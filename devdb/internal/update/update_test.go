package update

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// parseDoc parses relaxed extended JSON into a bson.D (integers that fit
// become int32, others int64; numbers with a fraction or exponent double).
func parseDoc(tb testing.TB, s string) bson.D {
	tb.Helper()
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		tb.Fatalf("parse %s: %v", s, err)
	}
	return d
}

// testCase is one Apply scenario.
type testCase struct {
	name    string
	doc     string
	update  string
	filters []string
	ctx     *ApplyContext
	want    string // expected document; "" when an error is expected
	changed bool
	code    mongoerr.Code // expected error code (compile or apply)
	msg     string        // expected error message, if set
}

func runUpdateCases(t *testing.T, cases []testCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := parseDoc(t, tc.doc)
			before := deepCopy(doc).(bson.D)
			var opts Options
			for _, f := range tc.filters {
				opts.ArrayFilters = append(opts.ArrayFilters, parseDoc(t, f))
			}
			ac := ApplyContext{Positional: -1, Now: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)}
			if tc.ctx != nil {
				ac = *tc.ctx
			}
			u, err := Compile(parseDoc(t, tc.update), opts)
			var out bson.D
			var changed bool
			if err == nil {
				out, changed, err = u.Apply(doc, ac)
			}
			if !mql.Identical(doc, before) {
				t.Fatalf("Apply modified its input: %s, was %s", mql.FormatValue(doc), mql.FormatValue(before))
			}
			if tc.code != 0 {
				var me *mongoerr.Error
				if !errors.As(err, &me) {
					t.Fatalf("want error code %d, got %v (doc %s)", tc.code, err, mql.FormatValue(out))
				}
				if me.Code != tc.code || (tc.msg != "" && me.Message != tc.msg) {
					t.Fatalf("want error %d %q, got %d %q", tc.code, tc.msg, me.Code, me.Message)
				}
				if me.Code.String() == "" {
					t.Fatalf("error without code name: %v", me)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			want := parseDoc(t, tc.want)
			if !mql.Identical(out, want) {
				t.Fatalf("got  %s\nwant %s", mql.FormatValue(out), mql.FormatValue(want))
			}
			// As stored: an emptied array must stay an array, not become
			// the null a nil bson.A encodes as.
			if got, exp := mustMarshal(t, out), mustMarshal(t, want); !bytes.Equal(got, exp) {
				t.Fatalf("encoded %x\nwant    %x (%s)", got, exp, mql.FormatValue(want))
			}
			if changed != tc.changed {
				t.Fatalf("changed = %v, want %v", changed, tc.changed)
			}
		})
	}
}

func TestUpdateSet(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual top-level fields",
			doc:     `{"_id": 100, "quantity": 250, "instock": true, "details": {"model": "14QQ", "make": "Clothes Corp"}, "tags": ["apparel", "clothing"]}`,
			update:  `{"$set": {"quantity": 500, "details": {"model": "2600", "make": "Fashionaires"}, "tags": ["coats", "outerwear", "clothing"]}}`,
			want:    `{"_id": 100, "quantity": 500, "instock": true, "details": {"model": "2600", "make": "Fashionaires"}, "tags": ["coats", "outerwear", "clothing"]}`,
			changed: true},
		{name: "manual embedded document",
			doc:     `{"_id": 100, "details": {"model": "2600", "make": "Fashionaires"}}`,
			update:  `{"$set": {"details.make": "Kustom Kidz"}}`,
			want:    `{"_id": 100, "details": {"model": "2600", "make": "Kustom Kidz"}}`,
			changed: true},
		{name: "manual array elements",
			doc:     `{"_id": 100, "tags": ["coats", "outerwear", "clothing"], "ratings": [{"by": "Customer007", "rating": 4}]}`,
			update:  `{"$set": {"tags.1": "rain gear", "ratings.0.rating": 2}}`,
			want:    `{"_id": 100, "tags": ["coats", "rain gear", "clothing"], "ratings": [{"by": "Customer007", "rating": 2}]}`,
			changed: true},
		{name: "creates intermediate documents",
			doc: `{"_id": 1}`, update: `{"$set": {"a.b.c": 1, "a.b.a": 2}}`,
			want: `{"_id": 1, "a": {"b": {"a": 2, "c": 1}}}`, changed: true},
		{name: "new fields in lexicographic order across operators",
			doc: `{"_id": 1}`, update: `{"$set": {"z": 1, "b": 1}, "$inc": {"a": 1}}`,
			want: `{"_id": 1, "a": 1, "b": 1, "z": 1}`, changed: true},
		{name: "numeric field names in numeric order",
			doc: `{"_id": 1, "a": {}}`, update: `{"$set": {"a.10": 1, "a.2": 1}}`,
			want: `{"_id": 1, "a": {"2": 1, "10": 1}}`, changed: true},
		{name: "pads arrays with null",
			doc: `{"_id": 1, "a": [1]}`, update: `{"$set": {"a.3": 4}}`,
			want: `{"_id": 1, "a": [1, null, null, 4]}`, changed: true},
		{name: "same value is a no-op",
			doc: `{"_id": 1, "a": {"b": [1, 2]}}`, update: `{"$set": {"a": {"b": [1, 2]}}}`,
			want: `{"_id": 1, "a": {"b": [1, 2]}}`, changed: false},
		{name: "same number of another type is a change",
			doc: `{"_id": 1, "a": 1}`, update: `{"$set": {"a": 1.0}}`,
			want: `{"_id": 1, "a": 1.0}`, changed: true},
		{name: "same _id is allowed",
			doc: `{"_id": 1, "a": 1}`, update: `{"$set": {"_id": 1, "a": 2}}`,
			want: `{"_id": 1, "a": 2}`, changed: true},
		{name: "changing _id",
			doc: `{"_id": 1}`, update: `{"$set": {"_id": 2}}`, code: 66,
			msg: "Performing an update on the path '_id' would modify the immutable field '_id'"},
		{name: "field inside scalar",
			doc: `{"_id": 1, "a": 1}`, update: `{"$set": {"a.b": 1}}`, code: 28,
			msg: "Cannot create field 'b' in element {a: 1}"},
		{name: "named field inside array",
			doc: `{"_id": 1, "a": [{"b": 1}, {"b": 2}]}`, update: `{"$set": {"a.b": 5}}`, code: 28,
			msg: "Cannot create field 'b' in element {a: [ { b: 1 }, { b: 2 } ]}"},
		{name: "dollar-prefixed field", doc: `{"_id": 1}`, update: `{"$set": {"a.$b": 1}}`, code: 52},
	})
}

func TestUpdateParseErrors(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "unknown modifier", doc: `{}`, update: `{"$foo": {"a": 1}}`, code: 9,
			msg: "Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update specified as an array"},
		{name: "empty modifier", doc: `{}`, update: `{"$set": {}}`, code: 9,
			msg: "'$set' is empty. You must specify a field like so: {$set: {<field>: ...}}"},
		{name: "modifier not a document", doc: `{}`, update: `{"$set": 1}`, code: 9,
			msg: "Modifiers operate on fields but we found type int instead. For example: {$mod: {<field>: ...}} not {$set: 1}"},
		{name: "path below leaf", doc: `{}`, update: `{"$set": {"a": 1, "a.b": 2}}`, code: 40,
			msg: "Updating the path 'a.b' would create a conflict at 'a'"},
		{name: "leaf above path", doc: `{}`, update: `{"$set": {"a.b": 1}, "$inc": {"a": 2}}`, code: 40,
			msg: "Updating the path 'a' would create a conflict at 'a'"},
		{name: "same path twice", doc: `{}`, update: `{"$set": {"a": 1}, "$setOnInsert": {"a": 2}}`, code: 40,
			msg: "Updating the path 'a' would create a conflict at 'a'"},
		{name: "array update next to index", doc: `{}`, update: `{"$set": {"a.$[]": 1, "a.0": 2}}`, code: 40,
			msg: "Updating the path 'a.0' would create a conflict at 'a'"},
		{name: "empty path", doc: `{}`, update: `{"$set": {"": 1}}`, code: 56},
		{name: "empty component", doc: `{}`, update: `{"$set": {"a..b": 1}}`, code: 56,
			msg: "The update path 'a..b' contains an empty field name, which is not allowed."},
		{name: "positional first", doc: `{}`, update: `{"$set": {"$.a": 1}}`, code: 2,
			msg: "Cannot have positional (i.e. '$') element in the first position in path '$.a'"},
		{name: "two positionals", doc: `{}`, update: `{"$set": {"a.$.b.$": 1}}`, code: 2,
			msg: "Too many positional (i.e. '$') elements found in path 'a.$.b.$'"},
		{name: "unused array filter", doc: `{}`, update: `{"$set": {"a.$[i]": 5.0}}`, filters: []string{`{"i": 0}`, `{"j": 0}`}, code: 9,
			msg: "The array filter for identifier 'j' was not used in the update { $set: { a.$[i]: 5.0 } }"},
		{name: "undefined identifier", doc: `{}`, update: `{"$set": {"a.$[y]": 1}}`, code: 2,
			msg: "No array filter found for identifier 'y' in path 'a.$[y]'"},
		{name: "bad identifier", doc: `{}`, update: `{"$set": {"a.$[I]": 1}}`, filters: []string{`{"I": 0}`}, code: 2,
			msg: "Error parsing array filter :: caused by :: The top-level field name must be an alphanumeric string beginning with a lowercase letter, found 'I'"},
		{name: "two identifiers in a filter", doc: `{}`, update: `{"$set": {"a.$[i]": 1}}`, filters: []string{`{"i": 0, "j": 1}`}, code: 9,
			msg: "Error parsing array filter :: caused by :: Expected a single top-level field name, found 'i' and 'j'"},
		{name: "duplicate identifier", doc: `{}`, update: `{"$set": {"a.$[i]": 1}}`, filters: []string{`{"i": 0}`, `{"i": 1}`}, code: 9,
			msg: "Found multiple array filters with the same top-level field name i"},
		{name: "filter without identifier", doc: `{}`, update: `{"$set": {"a.$[i]": 1}}`, filters: []string{`{}`}, code: 9},
	})
}

func TestUpdateUnset(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual", doc: `{"_id": 1, "sku": "unknown", "quantity": 2, "instock": true}`,
			update: `{"$unset": {"quantity": "", "instock": ""}}`, want: `{"_id": 1, "sku": "unknown"}`, changed: true},
		{name: "missing field", doc: `{"_id": 1}`, update: `{"$unset": {"a.b": ""}}`, want: `{"_id": 1}`},
		{name: "through scalar", doc: `{"_id": 1, "a": 1}`, update: `{"$unset": {"a.b": 1}}`, want: `{"_id": 1, "a": 1}`},
		{name: "array element becomes null", doc: `{"_id": 1, "a": [1, 2, 3]}`, update: `{"$unset": {"a.1": ""}}`,
			want: `{"_id": 1, "a": [1, null, 3]}`, changed: true},
		{name: "embedded field", doc: `{"_id": 1, "a": {"b": 1, "c": 2}}`, update: `{"$unset": {"a.b": true}}`,
			want: `{"_id": 1, "a": {"c": 2}}`, changed: true},
		{name: "_id", doc: `{"_id": 1}`, update: `{"$unset": {"_id": ""}}`, code: 66},
	})
}

func TestUpdateIncMul(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual $inc",
			doc:    `{"_id": 1, "sku": "abc123", "quantity": 10, "metrics": {"orders": 2, "ratings": 3.5}}`,
			update: `{"$inc": {"quantity": -2, "metrics.orders": 1}}`,
			want:   `{"_id": 1, "sku": "abc123", "quantity": 8, "metrics": {"orders": 3, "ratings": 3.5}}`, changed: true},
		{name: "$inc creates", doc: `{"_id": 1}`, update: `{"$inc": {"a": {"$numberLong": "5"}}}`,
			want: `{"_id": 1, "a": {"$numberLong": "5"}}`, changed: true},
		{name: "int32 overflow widens to int64", doc: `{"_id": 1, "n": 2147483647}`, update: `{"$inc": {"n": 1}}`,
			want: `{"_id": 1, "n": {"$numberLong": "2147483648"}}`, changed: true},
		{name: "int with double gives double", doc: `{"_id": 1, "n": 1}`, update: `{"$inc": {"n": 0.5}}`,
			want: `{"_id": 1, "n": 1.5}`, changed: true},
		{name: "long with int gives long", doc: `{"_id": 1, "n": {"$numberLong": "1"}}`, update: `{"$inc": {"n": 1}}`,
			want: `{"_id": 1, "n": {"$numberLong": "2"}}`, changed: true},
		{name: "int64 overflow", doc: `{"_id": 1, "n": {"$numberLong": "9223372036854775807"}}`, update: `{"$inc": {"n": 1}}`, code: 2,
			msg: "Failed to apply $inc operations to current value ((NumberLong)9223372036854775807) for document {_id: 1}"},
		{name: "$inc by zero is a no-op", doc: `{"_id": 1, "n": 5}`, update: `{"$inc": {"n": 0}}`,
			want: `{"_id": 1, "n": 5}`},
		{name: "$inc on string", doc: `{"_id": 1, "a": "x"}`, update: `{"$inc": {"a": 1}}`, code: 14,
			msg: "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 'a' of non-numeric type string"},
		{name: "$inc with string", doc: `{"_id": 1}`, update: `{"$inc": {"a": "x"}}`, code: 14,
			msg: `Cannot increment with non-numeric argument: {a: "x"}`},
		{name: "manual $mul decimal",
			doc:    `{"_id": 1, "item": "Hats", "price": {"$numberDecimal": "10.99"}, "quantity": 25}`,
			update: `{"$mul": {"price": {"$numberDecimal": "1.25"}, "quantity": 2}}`,
			want:   `{"_id": 1, "item": "Hats", "price": {"$numberDecimal": "13.7375"}, "quantity": 50}`, changed: true},
		{name: "manual $mul missing field", doc: `{"_id": 2, "item": "Unknown"}`, update: `{"$mul": {"price": {"$numberLong": "100"}}}`,
			want: `{"_id": 2, "item": "Unknown", "price": {"$numberLong": "0"}}`, changed: true},
		{name: "manual $mul mixed types", doc: `{"_id": 3, "item": "Scarf", "price": {"$numberLong": "10"}}`, update: `{"$mul": {"price": 5}}`,
			want: `{"_id": 3, "item": "Scarf", "price": {"$numberLong": "50"}}`, changed: true},
		{name: "$mul with string", doc: `{"_id": 1}`, update: `{"$mul": {"a": "x"}}`, code: 14,
			msg: `Cannot multiply with non-numeric argument: {a: "x"}`},
		{name: "decimal plus double rounds the double to 15 digits", doc: `{"_id": 1, "d": {"$numberDecimal": "1"}}`, update: `{"$inc": {"d": 0.1}}`,
			want: `{"_id": 1, "d": {"$numberDecimal": "1.100000000000000"}}`, changed: true},
	})
}

func TestUpdateMinMax(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual $min lower", doc: `{"_id": 1, "highScore": 800, "lowScore": 200}`, update: `{"$min": {"lowScore": 150}}`,
			want: `{"_id": 1, "highScore": 800, "lowScore": 150}`, changed: true},
		{name: "manual $min higher", doc: `{"_id": 1, "highScore": 800, "lowScore": 150}`, update: `{"$min": {"lowScore": 250}}`,
			want: `{"_id": 1, "highScore": 800, "lowScore": 150}`},
		{name: "manual $max higher", doc: `{"_id": 1, "highScore": 800, "lowScore": 200}`, update: `{"$max": {"highScore": 950}}`,
			want: `{"_id": 1, "highScore": 950, "lowScore": 200}`, changed: true},
		{name: "manual $max lower", doc: `{"_id": 1, "highScore": 950}`, update: `{"$max": {"highScore": 870}}`,
			want: `{"_id": 1, "highScore": 950}`},
		{name: "equal across types is a no-op", doc: `{"_id": 1, "a": 5}`, update: `{"$max": {"a": 5.0}}`, want: `{"_id": 1, "a": 5}`},
		{name: "bson order across types", doc: `{"_id": 1, "a": "x"}`, update: `{"$min": {"a": 5}}`, want: `{"_id": 1, "a": 5}`, changed: true},
		{name: "missing field", doc: `{"_id": 1}`, update: `{"$max": {"a": 1}}`, want: `{"_id": 1, "a": 1}`, changed: true},
	})
}

func TestUpdateRename(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual top-level",
			doc:    `{"_id": 1, "alias": ["The American Cincinnatus"], "mobile": "555-555-5555", "nmae": {"first": "george", "last": "washington"}}`,
			update: `{"$rename": {"nmae": "name"}}`,
			want:   `{"_id": 1, "alias": ["The American Cincinnatus"], "mobile": "555-555-5555", "name": {"first": "george", "last": "washington"}}`, changed: true},
		{name: "manual embedded", doc: `{"_id": 1, "name": {"first": "george", "last": "washington"}}`, update: `{"$rename": {"name.first": "name.fname"}}`,
			want: `{"_id": 1, "name": {"last": "washington", "fname": "george"}}`, changed: true},
		{name: "manual missing source", doc: `{"_id": 1, "a": 1}`, update: `{"$rename": {"wife": "spouse"}}`, want: `{"_id": 1, "a": 1}`},
		{name: "existing destination replaced in place", doc: `{"_id": 1, "a": 1, "b": 2, "c": 3}`, update: `{"$rename": {"a": "b"}}`,
			want: `{"_id": 1, "b": 1, "c": 3}`, changed: true},
		{name: "to embedded", doc: `{"_id": 1, "a": 1}`, update: `{"$rename": {"a": "x.y"}}`, want: `{"_id": 1, "x": {"y": 1}}`, changed: true},
		{name: "same field", doc: `{}`, update: `{"$rename": {"a": "a"}}`, code: 2,
			msg: `The source and target field for $rename must differ: a: "a"`},
		{name: "same path", doc: `{}`, update: `{"$rename": {"a": "a.b"}}`, code: 2,
			msg: `The source and target field for $rename must not be on the same path: a: "a.b"`},
		{name: "not a string", doc: `{}`, update: `{"$rename": {"a": 1}}`, code: 2, msg: "The 'to' field for $rename must be a string: a: 1"},
		{name: "dynamic source", doc: `{}`, update: `{"$rename": {"a.$": "b"}}`, code: 2, msg: "The source field for $rename may not be dynamic: a.$"},
		{name: "conflicts with source", doc: `{}`, update: `{"$rename": {"a": "b"}, "$set": {"a": 1}}`, code: 40},
		{name: "source in array", doc: `{"_id": 1, "a": [{"b": 1}]}`, update: `{"$rename": {"a.0.b": "c"}}`, code: 2,
			msg: "The source field cannot be an array element, 'a.0.b' in doc with _id: 1 has an array field called 'a'"},
		{name: "destination in array", doc: `{"_id": 1, "a": 1, "b": [{"c": 1}]}`, update: `{"$rename": {"a": "b.0.c"}}`, code: 2,
			msg: "The destination field cannot be an array element, 'b.0.c' in doc with _id: 1 has an array field called 'b'"},
	})
}

func TestUpdateSetOnInsertCurrentDate(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	runUpdateCases(t, []testCase{
		{name: "$setOnInsert on insert", doc: `{"_id": 1}`, update: `{"$set": {"item": "apple"}, "$setOnInsert": {"defaultQty": 100}}`,
			ctx: &ApplyContext{Insert: true, Positional: -1}, want: `{"_id": 1, "defaultQty": 100, "item": "apple"}`, changed: true},
		{name: "$setOnInsert on update", doc: `{"_id": 1}`, update: `{"$set": {"item": "apple"}, "$setOnInsert": {"defaultQty": 100}}`,
			want: `{"_id": 1, "item": "apple"}`, changed: true},
		{name: "$currentDate", doc: `{"_id": 1, "status": "a"}`,
			update: `{"$currentDate": {"lastModified": true, "cancellation.date": {"$type": "timestamp"}}, "$set": {"status": "D"}}`,
			ctx:    &ApplyContext{Now: now, Positional: -1, ClusterTime: bson.Timestamp{T: 7, I: 3}},
			want:   `{"_id": 1, "status": "D", "cancellation": {"date": {"$timestamp": {"t": 7, "i": 3}}}, "lastModified": {"$date": "2026-01-02T03:04:05.006Z"}}`, changed: true},
		{name: "$currentDate bad type", doc: `{}`, update: `{"$currentDate": {"a": {"$type": "x"}}}`, code: 2,
			msg: "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}"},
		{name: "$currentDate bad value", doc: `{}`, update: `{"$currentDate": {"a": 1}}`, code: 2,
			msg: "int is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({$type: 'timestamp/date'})."},
	})
}

func TestUpdatePush(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "nothing sorted into an empty array stays an array", doc: `{"_id": 1, "a": []}`, update: `{"$push": {"a": {"$each": [], "$sort": 1}}}`, want: `{"_id": 1, "a": []}`, changed: true},
		{name: "manual append", doc: `{"_id": 1, "scores": [44, 78, 38, 80]}`, update: `{"$push": {"scores": 89}}`,
			want: `{"_id": 1, "scores": [44, 78, 38, 80, 89]}`, changed: true},
		{name: "manual $each", doc: `{"_id": 1, "scores": [44]}`, update: `{"$push": {"scores": {"$each": [90, 92, 85]}}}`,
			want: `{"_id": 1, "scores": [44, 90, 92, 85]}`, changed: true},
		{name: "manual $position 0", doc: `{"_id": 1, "scores": [100]}`, update: `{"$push": {"scores": {"$each": [50, 60, 70], "$position": 0}}}`,
			want: `{"_id": 1, "scores": [50, 60, 70, 100]}`, changed: true},
		{name: "manual negative $position", doc: `{"_id": 1, "scores": [50, 60, 70, 100]}`, update: `{"$push": {"scores": {"$each": [20, 30], "$position": -2}}}`,
			want: `{"_id": 1, "scores": [50, 60, 20, 30, 70, 100]}`, changed: true},
		{name: "manual $sort $slice",
			doc:    `{"_id": 5, "quizzes": [{"wk": 1, "score": 10}, {"wk": 2, "score": 8}, {"wk": 3, "score": 5}, {"wk": 4, "score": 6}]}`,
			update: `{"$push": {"quizzes": {"$each": [{"wk": 5, "score": 8}, {"wk": 6, "score": 7}, {"wk": 7, "score": 6}], "$sort": {"score": -1}, "$slice": 3}}}`,
			want:   `{"_id": 5, "quizzes": [{"wk": 1, "score": 10}, {"wk": 2, "score": 8}, {"wk": 5, "score": 8}]}`, changed: true},
		{name: "manual negative $slice", doc: `{"_id": 1, "scores": [40, 50, 60]}`, update: `{"$push": {"scores": {"$each": [80, 78, 86], "$slice": -5}}}`,
			want: `{"_id": 1, "scores": [50, 60, 80, 78, 86]}`, changed: true},
		{name: "sort whole elements", doc: `{"_id": 1, "t": [3, 1]}`, update: `{"$push": {"t": {"$each": [2], "$sort": 1}}}`,
			want: `{"_id": 1, "t": [1, 2, 3]}`, changed: true},
		{name: "creates array", doc: `{"_id": 1}`, update: `{"$push": {"a": {"$each": []}}}`, want: `{"_id": 1, "a": []}`, changed: true},
		{name: "empty $each is a no-op", doc: `{"_id": 1, "a": [1]}`, update: `{"$push": {"a": {"$each": []}}}`, want: `{"_id": 1, "a": [1]}`},
		{name: "document without $each is a value", doc: `{"_id": 1}`, update: `{"$push": {"a": {"b": 1}}}`, want: `{"_id": 1, "a": [{"b": 1}]}`, changed: true},
		{name: "not an array", doc: `{"_id": 1, "a": 5}`, update: `{"$push": {"a": 1}}`, code: 2,
			msg: "The field 'a' must be an array but is of type int in document {_id: 1}"},
		{name: "unknown clause", doc: `{}`, update: `{"$push": {"a": {"$each": [1], "$foo": 1}}}`, code: 2, msg: "Unrecognized clause in $push: $foo"},
		{name: "$each not array", doc: `{}`, update: `{"$push": {"a": {"$each": 1}}}`, code: 2,
			msg: "The argument to $each in $push must be an array but it was of type: int"},
		{name: "bad $sort", doc: `{}`, update: `{"$push": {"a": {"$each": [1], "$sort": 2}}}`, code: 2, msg: "The $sort element value must be either 1 or -1"},
		{name: "bad $slice", doc: `{}`, update: `{"$push": {"a": {"$each": [1], "$slice": "x"}}}`, code: 2,
			msg: "The value for $slice must be an integer value but was given type: string"},
	})
}

func TestUpdateAddToSet(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual array value", doc: `{"_id": 1, "letters": ["a", "b"]}`, update: `{"$addToSet": {"letters": ["c", "d"]}}`,
			want: `{"_id": 1, "letters": ["a", "b", ["c", "d"]]}`, changed: true},
		{name: "manual existing value", doc: `{"_id": 1, "colors": ["blue", "green", "red"]}`, update: `{"$addToSet": {"colors": "green"}}`,
			want: `{"_id": 1, "colors": ["blue", "green", "red"]}`},
		{name: "manual $each", doc: `{"_id": 2, "item": "cable", "tags": ["electronics", "supplies"]}`,
			update: `{"$addToSet": {"tags": {"$each": ["camera", "electronics", "accessories"]}}}`,
			want:   `{"_id": 2, "item": "cable", "tags": ["electronics", "supplies", "camera", "accessories"]}`, changed: true},
		{name: "equality by value", doc: `{"_id": 1, "a": [1]}`, update: `{"$addToSet": {"a": {"$each": [1.0, 2, 2]}}}`,
			want: `{"_id": 1, "a": [1, 2]}`, changed: true},
		{name: "missing field", doc: `{"_id": 1}`, update: `{"$addToSet": {"a": {"$each": [1, 1]}}}`, want: `{"_id": 1, "a": [1]}`, changed: true},
		{name: "not an array", doc: `{"_id": 1, "a": 5}`, update: `{"$addToSet": {"a": 1}}`, code: 2,
			msg: "Cannot apply $addToSet to non-array field. Field named 'a' has non-array type int"},
		{name: "fields after $each", doc: `{}`, update: `{"$addToSet": {"a": {"$each": [], "bad": 1}}}`, code: 2,
			msg: "Found unexpected fields after $each in $addToSet: { $each: [], bad: 1 }"},
	})
}

func TestUpdatePop(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual first", doc: `{"_id": 1, "scores": [8, 9, 10]}`, update: `{"$pop": {"scores": -1}}`, want: `{"_id": 1, "scores": [9, 10]}`, changed: true},
		{name: "manual last", doc: `{"_id": 1, "scores": [9, 10]}`, update: `{"$pop": {"scores": 1}}`, want: `{"_id": 1, "scores": [9]}`, changed: true},
		{name: "empty array", doc: `{"_id": 1, "a": []}`, update: `{"$pop": {"a": 1}}`, want: `{"_id": 1, "a": []}`},
		{name: "the last element from the back", doc: `{"_id": 1, "a": [7]}`, update: `{"$pop": {"a": 1}}`, want: `{"_id": 1, "a": []}`, changed: true},
		{name: "the last element from the front", doc: `{"_id": 1, "a": [7]}`, update: `{"$pop": {"a": -1}}`, want: `{"_id": 1, "a": []}`, changed: true},
		{name: "missing", doc: `{"_id": 1}`, update: `{"$pop": {"a": 1}}`, want: `{"_id": 1}`},
		{name: "not an array", doc: `{"_id": 1, "a": 5}`, update: `{"$pop": {"a": 1}}`, code: 14, msg: "Path 'a' contains an element of non-array type 'int'"},
		{name: "bad argument", doc: `{}`, update: `{"$pop": {"a": 2}}`, code: 9, msg: "$pop expects 1 or -1, found: 2"},
	})
}

func TestUpdatePull(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual $in and value",
			doc:    `{"_id": 1, "fruits": ["apples", "pears", "oranges", "grapes", "bananas"], "vegetables": ["carrots", "celery", "squash", "carrots"]}`,
			update: `{"$pull": {"fruits": {"$in": ["apples", "oranges"]}, "vegetables": "carrots"}}`,
			want:   `{"_id": 1, "fruits": ["pears", "grapes", "bananas"], "vegetables": ["celery", "squash"]}`, changed: true},
		{name: "manual condition", doc: `{"_id": 1, "votes": [3, 5, 6, 7, 7, 8]}`, update: `{"$pull": {"votes": {"$gte": 6}}}`,
			want: `{"_id": 1, "votes": [3, 5]}`, changed: true},
		{name: "manual document query", doc: `{"_id": 1, "results": [{"item": "A", "score": 5}, {"item": "B", "score": 8}]}`,
			update: `{"$pull": {"results": {"score": 8, "item": "B"}}}`, want: `{"_id": 1, "results": [{"item": "A", "score": 5}]}`, changed: true},
		{name: "manual nested $elemMatch",
			doc:    `{"_id": 1, "results": [{"item": "A", "answers": [{"q": 1, "a": 4}, {"q": 2, "a": 6}]}, {"item": "B", "answers": [{"q": 1, "a": 8}, {"q": 2, "a": 9}]}]}`,
			update: `{"$pull": {"results": {"answers": {"$elemMatch": {"q": 2, "a": {"$gte": 8}}}}}}`,
			want:   `{"_id": 1, "results": [{"item": "A", "answers": [{"q": 1, "a": 4}, {"q": 2, "a": 6}]}]}`, changed: true},
		{name: "numbers by value", doc: `{"_id": 1, "a": [1, 1.0, 2]}`, update: `{"$pull": {"a": 1}}`, want: `{"_id": 1, "a": [2]}`, changed: true},
		{name: "nothing removed", doc: `{"_id": 1, "a": [1]}`, update: `{"$pull": {"a": 3}}`, want: `{"_id": 1, "a": [1]}`},
		{name: "not an array", doc: `{"_id": 1, "a": 5}`, update: `{"$pull": {"a": 1}}`, code: 2, msg: "Cannot apply $pull to a non-array value"},
		{name: "manual $pullAll", doc: `{"_id": 1, "scores": [0, 2, 5, 5, 1, 0]}`, update: `{"$pullAll": {"scores": [0, 5]}}`,
			want: `{"_id": 1, "scores": [2, 1]}`, changed: true},
		{name: "$pullAll not array", doc: `{}`, update: `{"$pullAll": {"a": 1}}`, code: 2, msg: "$pullAll requires an array argument but was given a int"},
	})
}

func TestUpdateBit(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "manual and", doc: `{"_id": 1, "expdata": 13}`, update: `{"$bit": {"expdata": {"and": 10}}}`, want: `{"_id": 1, "expdata": 8}`, changed: true},
		{name: "manual or with long", doc: `{"_id": 2, "expdata": {"$numberLong": "3"}}`, update: `{"$bit": {"expdata": {"or": 5}}}`,
			want: `{"_id": 2, "expdata": {"$numberLong": "7"}}`, changed: true},
		{name: "manual xor", doc: `{"_id": 3, "expdata": 1}`, update: `{"$bit": {"expdata": {"xor": 5}}}`, want: `{"_id": 3, "expdata": 4}`, changed: true},
		{name: "no change", doc: `{"_id": 1, "a": 13}`, update: `{"$bit": {"a": {"or": 5}}}`, want: `{"_id": 1, "a": 13}`},
		{name: "missing field", doc: `{"_id": 1}`, update: `{"$bit": {"a": {"or": 5}}}`, want: `{"_id": 1, "a": 5}`, changed: true},
		{name: "double operand", doc: `{}`, update: `{"$bit": {"a": {"and": 1.0}}}`, code: 2,
			msg: "The $bit modifier field must be an Integer(32/64 bit); a 'double' is not supported here: {and: 1.0}"},
		{name: "not a document", doc: `{}`, update: `{"$bit": {"a": 5}}`, code: 2,
			msg: "The $bit modifier is not compatible with a int. You must pass in an embedded document: {$bit: {field: {and/or/xor: #}}"},
		{name: "non-integral field", doc: `{"_id": 1, "a": "x"}`, update: `{"$bit": {"a": {"and": 1}}}`, code: 2},
	})
}

func TestUpdateArrays(t *testing.T) {
	pos := func(i int) *ApplyContext { return &ApplyContext{Positional: i} }
	runUpdateCases(t, []testCase{
		{name: "manual positional", doc: `{"_id": 1, "grades": [85, 80, 80]}`, update: `{"$set": {"grades.$": 82}}`, ctx: pos(1),
			want: `{"_id": 1, "grades": [85, 82, 80]}`, changed: true},
		{name: "positional in documents", doc: `{"_id": 4, "grades": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 90}]}`,
			update: `{"$set": {"grades.$.std": 6}}`, ctx: pos(1),
			want: `{"_id": 4, "grades": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 90, "std": 6}]}`, changed: true},
		{name: "positional without match", doc: `{"_id": 1, "a": [1]}`, update: `{"$set": {"a.$": 2}}`, code: 2,
			msg: "The positional operator did not find the match needed from the query."},
		{name: "positional merged with the same index", doc: `{"_id": 1, "a": [{"x": 1}]}`, update: `{"$set": {"a.$.y": 2, "a.0.z": 3}}`, ctx: pos(0),
			want: `{"_id": 1, "a": [{"x": 1, "y": 2, "z": 3}]}`, changed: true},
		{name: "positional conflict with the same index", doc: `{"_id": 1, "a": [1]}`, update: `{"$set": {"a.$": 2, "a.0": 3}}`, ctx: pos(0), code: 40,
			msg: "Update created a conflict at 'a.0'"},
		{name: "manual all positional", doc: `{"_id": 1, "grades": [85, 82, 80]}`, update: `{"$inc": {"grades.$[]": 10}}`,
			want: `{"_id": 1, "grades": [95, 92, 90]}`, changed: true},
		{name: "manual filtered", doc: `{"_id": 3, "grades": [95, 110, 100]}`, update: `{"$set": {"grades.$[element]": 100}}`,
			filters: []string{`{"element": {"$gte": 100}}`}, want: `{"_id": 3, "grades": [95, 100, 100]}`, changed: true},
		{name: "manual filtered documents",
			doc:     `{"_id": 1, "grades": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 90}, {"grade": 85, "mean": 85}]}`,
			update:  `{"$set": {"grades.$[elem].mean": 100}}`,
			filters: []string{`{"elem.grade": {"$gte": 85}}`},
			want:    `{"_id": 1, "grades": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 100}, {"grade": 85, "mean": 100}]}`, changed: true},
		{name: "manual nested arrays",
			doc:     `{"_id": 1, "grades": [{"type": "quiz", "questions": [10, 8, 5]}, {"type": "hw", "questions": [5, 4, 3]}]}`,
			update:  `{"$inc": {"grades.$[t].questions.$[score]": 2}}`,
			filters: []string{`{"t.type": "quiz"}`, `{"score": {"$gte": 8}}`},
			want:    `{"_id": 1, "grades": [{"type": "quiz", "questions": [12, 10, 5]}, {"type": "hw", "questions": [5, 4, 3]}]}`, changed: true},
		{name: "filters matching the same element conflict", doc: `{"_id": 1, "a": [1]}`, update: `{"$set": {"a.$[]": 2, "a.$[x]": 3}}`,
			filters: []string{`{"x": 1}`}, code: 40, msg: "Update created a conflict at 'a.0'"},
		{name: "array update on missing path", doc: `{"_id": 1}`, update: `{"$set": {"a.$[]": 1}}`, code: 2,
			msg: "The path 'a' must exist in the document in order to apply array updates."},
		{name: "array update on scalar", doc: `{"_id": 1, "a": {"b": 123}}`, update: `{"$set": {"a.b.$[]": 1}}`, code: 2,
			msg: "Cannot apply array updates to non-array element b: 123"},
		{name: "no element matches", doc: `{"_id": 1, "a": [1, 2]}`, update: `{"$set": {"a.$[x]": 0}}`, filters: []string{`{"x": 5}`},
			want: `{"_id": 1, "a": [1, 2]}`},
	})
}

func TestUpdateHelpers(t *testing.T) {
	t.Run("IsOperatorUpdate", func(t *testing.T) {
		for _, tc := range []struct {
			doc  string
			want bool
		}{{`{"$set": {"a": 1}}`, true}, {`{"a": 1}`, false}, {`{}`, false}, {`{"a": 1, "$set": {}}`, false}} {
			if got := IsOperatorUpdate(parseDoc(t, tc.doc)); got != tc.want {
				t.Errorf("IsOperatorUpdate(%s) = %v", tc.doc, got)
			}
		}
	})
	t.Run("ValidateReplacement", func(t *testing.T) {
		if err := ValidateReplacement(parseDoc(t, `{"a": 1, "b": {"$c": 1}}`)); err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		err := ValidateReplacement(parseDoc(t, `{"a": 1, "$set": {"b": 1}}`))
		var me *mongoerr.Error
		if !errors.As(err, &me) || me.Code != 52 || me.Message != "The dollar ($) prefixed field '$set' in '$set' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith." {
			t.Fatalf("got %v", err)
		}
	})
}

func TestUpsertSeed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter string
		want   string
		code   mongoerr.Code
		msg    string
	}{
		{name: "equality", filter: `{"name": "Andy"}`, want: `{"name": "Andy"}`},
		{name: "$eq and ranges", filter: `{"a": {"$eq": 1}, "b": {"$gt": 2}, "c": {"$in": [3]}, "d": {"$in": [1, 2]}}`, want: `{"a": 1, "c": 3}`},
		{name: "$and and dotted paths", filter: `{"$and": [{"x.y": 1}, {"x.z": {"$eq": 2}}], "_id": 7}`, want: `{"_id": 7, "x": {"y": 1, "z": 2}}`},
		{name: "single-clause $or", filter: `{"$or": [{"a": 1}]}`, want: `{"a": 1}`},
		{name: "multi-clause $or and regex", filter: `{"$or": [{"a": 1}, {"b": 2}], "r": {"$regex": "x"}, "s": {"$regularExpression": {"pattern": "x", "options": ""}}}`, want: `{}`},
		{name: "null and documents", filter: `{"a": null, "b": {"c": 1}}`, want: `{"a": null, "b": {"c": 1}}`},
		{name: "paths sorted", filter: `{"b": 1, "a": 2}`, want: `{"a": 2, "b": 1}`},
		{name: "matched twice", filter: `{"$and": [{"a": 1}, {"a": 2}]}`, code: 54, msg: "cannot infer query fields to set, path 'a' is matched twice"},
		{name: "prefix", filter: `{"a": 1, "a.b": 2}`, code: 54, msg: "cannot infer query fields to set, both paths 'a.b' and 'a' are matched"},
		{name: "dotted _id", filter: `{"_id.name": "Robert Frost", "_id.uid": 0}`, code: 111,
			msg: "field at '_id' must be exactly specified, field at sub-path '_id.name'found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UpsertSeed(parseDoc(t, tc.filter))
			if tc.code != 0 {
				var me *mongoerr.Error
				if !errors.As(err, &me) || me.Code != tc.code || me.Message != tc.msg {
					t.Fatalf("want %d %q, got %v", tc.code, tc.msg, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if want := parseDoc(t, tc.want); !mql.Identical(got, want) {
				t.Fatalf("got %s, want %s", mql.FormatValue(got), mql.FormatValue(want))
			}
		})
	}
}

func TestUpdateConcurrentApply(t *testing.T) {
	u, err := Compile(parseDoc(t, `{"$inc": {"n": 1}, "$push": {"l": {"$each": [{"x": 1}]}}}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc := parseDoc(t, `{"_id": 1, "n": 1, "l": []}`)
	done := make(chan bson.D, 8)
	for range 8 {
		go func() {
			out, _, err := u.Apply(doc, ApplyContext{Positional: -1})
			if err != nil {
				t.Error(err)
			}
			done <- out
		}()
	}
	want := parseDoc(t, `{"_id": 1, "n": 2, "l": [{"x": 1}]}`)
	var outs []bson.D
	for range 8 {
		out := <-done
		if !mql.Identical(out, want) {
			t.Fatalf("got %s", mql.FormatValue(out))
		}
		outs = append(outs, out)
	}
	// Results must not share the pushed documents with the compiled update.
	outs[0][2].Value.(bson.A)[0].(bson.D)[0].Value = int32(9)
	if !mql.Identical(outs[1], want) {
		t.Fatalf("results share memory: %s", mql.FormatValue(outs[1]))
	}
}

func BenchmarkApplySetInc(b *testing.B) {
	u, err := Compile(parseDoc(b, `{"$set": {"status": "done", "meta.updatedBy": "bench"}, "$inc": {"count": 1, "meta.version": 1}}`), Options{})
	if err != nil {
		b.Fatal(err)
	}
	doc := parseDoc(b, `{"_id": 1, "name": "widget", "status": "new", "count": 41, "tags": ["a", "b", "c"], "meta": {"version": 3, "createdBy": "x"}}`)
	ac := ApplyContext{Positional: -1}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := u.Apply(doc, ac); err != nil {
			b.Fatal(err)
		}
	}
}

func TestUpdateFormat(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("5f0000000000000000000001")
	for _, tc := range []struct {
		v    any
		want string
	}{
		{bson.D{{Key: "a", Value: bson.A{int32(1), 2.0, "x"}}, {Key: "b", Value: bson.D{}}}, `{ a: [ 1, 2.0, "x" ], b: {} }`},
		{oid, "ObjectId('5f0000000000000000000001')"},
		{bson.DateTime(5), "new Date(5)"},
		{bson.Timestamp{T: 1, I: 2}, "Timestamp(1, 2)"},
		{0.25, "0.25"},
		{1e21, "1e+21"},
		{nil, "null"},
		{bson.Regex{Pattern: "a", Options: "i"}, "/a/i"},
		{bson.Binary{Subtype: 0, Data: []byte{0xab}}, "BinData(0, AB)"},
		{bson.MinKey{}, "MinKey"},
	} {
		if got := mql.FormatValue(tc.v); got != tc.want {
			t.Errorf("mql.FormatValue(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestUpdateArrayMerges(t *testing.T) {
	runUpdateCases(t, []testCase{
		{name: "filters merged into one element", doc: `{"_id": 1, "a": [{"k": 1}, {"k": 2}]}`,
			update: `{"$set": {"a.$[].b": 0, "a.$[x].c": 1}}`, filters: []string{`{"x.k": 2}`},
			want: `{"_id": 1, "a": [{"k": 1, "b": 0}, {"k": 2, "b": 0, "c": 1}]}`, changed: true},
		{name: "nested array nodes merged", doc: `{"_id": 1, "a": [{"l": [1, 2]}]}`,
			update: `{"$set": {"a.$[].l.$[y]": 0}, "$inc": {"a.$[x].l.$[]": 10}}`, filters: []string{`{"x.l": 1}`, `{"y": 2}`},
			code: 40, msg: "Update created a conflict at 'a.0.l.1'"},
		{name: "object and leaf conflict", doc: `{"_id": 1, "a": [{"k": 1}]}`,
			update: `{"$set": {"a.$[].b": 0, "a.$[x]": 1}}`, filters: []string{`{"x.k": 1}`},
			code: 40, msg: "Update created a conflict at 'a.0'"},
		{name: "$unset through all positional", doc: `{"_id": 1, "a": [{"k": 1, "z": 2}, 5]}`,
			update: `{"$unset": {"a.$[].z": ""}}`, want: `{"_id": 1, "a": [{"k": 1}, 5]}`, changed: true},
		{name: "$set through all positional on scalar element", doc: `{"_id": 1, "a": [5]}`,
			update: `{"$set": {"a.$[].z": 1}}`, code: 28, msg: "Cannot create field 'z' in element {0: 5}"},
	})
}

// mustMarshal encodes d.
func mustMarshal(t *testing.T, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatalf("encode %v: %v", d, err)
	}
	return b
}
