package mql

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

func TestJSONSchema(t *testing.T) {
	schema := `{"$jsonSchema": {
		"bsonType": "object",
		"required": ["name", "qty"],
		"properties": {
			"name": {"bsonType": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
			"qty": {"bsonType": ["int", "long"], "minimum": 0, "maximum": 10, "exclusiveMaximum": true},
			"price": {"bsonType": "number", "minimum": 0},
			"tags": {"bsonType": "array", "items": {"bsonType": "string"}, "minItems": 1, "uniqueItems": true},
			"size": {"enum": ["S", "M", "L"]},
			"meta": {"bsonType": "object", "additionalProperties": false, "properties": {"a": {}}},
			"either": {"anyOf": [{"bsonType": "string"}, {"bsonType": "bool"}]},
			"one": {"oneOf": [{"minimum": 5}, {"maximum": 7}]},
			"notNull": {"not": {"bsonType": "null"}}
		},
		"patternProperties": {"^x_": {"bsonType": "int"}}
	}}`
	var filter bson.D
	if err := bson.UnmarshalExtJSON([]byte(schema), false, &filter); err != nil {
		t.Fatal(err)
	}
	f, err := CompileFilter(filter)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		doc  string
		want bool
	}{
		{`{"name": "abc", "qty": 3}`, true},
		{`{"name": "abc"}`, false},                               // required
		{`{"name": "a", "qty": 3}`, false},                       // minLength
		{`{"name": "abcdef", "qty": 3}`, false},                  // maxLength
		{`{"name": "ABC", "qty": 3}`, false},                     // pattern
		{`{"name": "abc", "qty": 3.5}`, false},                   // bsonType int/long
		{`{"name": "abc", "qty": {"$numberLong": "9"}}`, true},   // long
		{`{"name": "abc", "qty": 10}`, false},                    // exclusiveMaximum
		{`{"name": "abc", "qty": -1}`, false},                    // minimum
		{`{"name": "abc", "qty": 1, "price": 2.5}`, true},        // number
		{`{"name": "abc", "qty": 1, "price": "2"}`, false},       // number
		{`{"name": "abc", "qty": 1, "tags": ["a", "b"]}`, true},  // items
		{`{"name": "abc", "qty": 1, "tags": []}`, false},         // minItems
		{`{"name": "abc", "qty": 1, "tags": ["a", "a"]}`, false}, // uniqueItems
		{`{"name": "abc", "qty": 1, "tags": ["a", 1]}`, false},   // items type
		{`{"name": "abc", "qty": 1, "size": "M"}`, true},         // enum
		{`{"name": "abc", "qty": 1, "size": "XL"}`, false},       // enum
		{`{"name": "abc", "qty": 1, "meta": {"a": 1}}`, true},    // additionalProperties
		{`{"name": "abc", "qty": 1, "meta": {"a": 1, "b": 2}}`, false},
		{`{"name": "abc", "qty": 1, "either": true}`, true}, // anyOf
		{`{"name": "abc", "qty": 1, "either": 1}`, false},
		{`{"name": "abc", "qty": 1, "one": 3}`, true},         // oneOf: only maximum
		{`{"name": "abc", "qty": 1, "one": 6}`, false},        // oneOf: both
		{`{"name": "abc", "qty": 1, "notNull": null}`, false}, // not
		{`{"name": "abc", "qty": 1, "x_a": 1}`, true},         // patternProperties
		{`{"name": "abc", "qty": 1, "x_a": "s"}`, false},
	}
	for _, tc := range tests {
		var doc bson.D
		if err := bson.UnmarshalExtJSON([]byte(tc.doc), false, &doc); err != nil {
			t.Fatal(err)
		}
		if got := f.Match(doc); got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.doc, got, tc.want)
		}
	}
	for _, bad := range []struct {
		schema string
		code   mongoerr.Code
	}{
		{`{"$jsonSchema": {"format": "email"}}`, mongoerr.FailedToParse},
		{`{"$jsonSchema": {"nope": 1}}`, mongoerr.FailedToParse},
		{`{"$jsonSchema": {"type": "integer"}}`, mongoerr.BadValue},
		{`{"$jsonSchema": {"type": "string", "bsonType": "string"}}`, mongoerr.FailedToParse},
		{`{"$jsonSchema": {"required": []}}`, mongoerr.FailedToParse},
		{`{"$jsonSchema": 1}`, mongoerr.TypeMismatch},
	} {
		var filter bson.D
		if err := bson.UnmarshalExtJSON([]byte(bad.schema), false, &filter); err != nil {
			t.Fatal(err)
		}
		_, err := CompileFilter(filter)
		var me *mongoerr.Error
		if !errors.As(err, &me) || me.Code != bad.code {
			t.Errorf("%s: err = %v, want code %s", bad.schema, err, bad.code)
		}
	}
}
