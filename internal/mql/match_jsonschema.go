package mql

import (
	"math"
	"regexp"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// $jsonSchema: the JSON Schema draft 4 subset MongoDB implements, as a
// top-level query operator (mostly used in collection validators). Keywords
// that constrain a type (minimum, pattern, properties, items, …) apply only
// to values of that type, as in JSON Schema. Like MongoDB, devdb refuses
// the draft 4 keywords it does not implement ($ref, $schema, default,
// definitions, format, id) and the "integer" type.

// jsonSchema is one compiled schema (or subschema).
type jsonSchema struct {
	bsonTypes  []string // bsonType aliases ("number" matches every numeric type)
	required   []string
	properties map[string]*jsonSchema
	// additional is nil when any other property is allowed; else the schema
	// other properties must satisfy (allowNone for additionalProperties: false).
	additional   *jsonSchema
	allowNone    bool
	patternProps []patternSchema

	minimum, maximum any
	exclMin, exclMax bool
	minLength        int64
	maxLength        int64 // -1: none
	pattern          *regexp.Regexp
	enum             bson.A
	hasEnum          bool
	items            *jsonSchema
	itemsList        []*jsonSchema
	minItems         int64
	maxItems         int64 // -1: none
	uniqueItems      bool
	minProps         int64
	maxProps         int64 // -1: none
	allOf, anyOf     []*jsonSchema
	oneOf            []*jsonSchema
	not              *jsonSchema
}

type patternSchema struct {
	re *regexp.Regexp
	s  *jsonSchema
}

// jsonSchemaNode matches documents valid against a schema.
type jsonSchemaNode struct{ s *jsonSchema }

func (n jsonSchemaNode) match(doc bson.D, _ *matchState) bool { return n.s.valid(doc) }

// compileJSONSchemaTop compiles {$jsonSchema: <schema>}.
func compileJSONSchemaTop(_ string, v any, _ compileCx) (matchNode, error) {
	s, err := compileJSONSchema(v, 0)
	if err != nil {
		return nil, err
	}
	return jsonSchemaNode{s}, nil
}

// jsonSchemaMaxDepth bounds subschema nesting.
const jsonSchemaMaxDepth = 100

func schemaErr(format string, args ...any) error {
	return mongoerr.Errorf(mongoerr.FailedToParse, format, args...)
}

// jsonTypeAliases maps JSON Schema's type names to BSON type aliases.
var jsonTypeAliases = map[string][]string{
	"object":  {"object"},
	"array":   {"array"},
	"number":  {"number"},
	"boolean": {"bool"},
	"string":  {"string"},
	"null":    {"null"},
}

var bsonTypeAliases = []string{"double", "string", "object", "array", "binData", "undefined", "objectId", "bool",
	"date", "null", "regex", "dbPointer", "javascript", "symbol", "javascriptWithScope", "int", "timestamp",
	"long", "decimal", "minKey", "maxKey", "number"}

func compileJSONSchema(v any, depth int) (*jsonSchema, error) {
	if depth > jsonSchemaMaxDepth {
		return nil, schemaErr("$jsonSchema is nested more than %d levels", jsonSchemaMaxDepth)
	}
	spec, ok := v.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema must be an object")
	}
	s := &jsonSchema{maxLength: -1, maxItems: -1, maxProps: -1}
	sub := func(kw string, v any) (*jsonSchema, error) {
		x, err := compileJSONSchema(v, depth+1)
		if err != nil {
			return nil, err
		}
		return x, nil
	}
	subs := func(kw string, v any) ([]*jsonSchema, error) {
		arr, ok := v.(bson.A)
		if !ok || len(arr) == 0 {
			return nil, schemaErr("$jsonSchema keyword '%s' must be a nonempty array", kw)
		}
		out := make([]*jsonSchema, len(arr))
		for i, el := range arr {
			x, err := sub(kw, el)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	}
	count := func(kw string, v any) (int64, error) {
		n, ok := ToInt64(v)
		if !ok || n < 0 || !IsNumber(v) {
			return 0, schemaErr("$jsonSchema keyword '%s' must be a non-negative integer", kw)
		}
		return n, nil
	}
	types := func(kw string, v any, names func(string) ([]string, bool)) error {
		var list []any
		switch x := v.(type) {
		case string:
			list = []any{x}
		case bson.A:
			list = x
		default:
			return mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be either a string or an array of strings", kw)
		}
		for _, el := range list {
			name, _ := el.(string)
			aliases, ok := names(name)
			if !ok {
				return mongoerr.Errorf(mongoerr.BadValue, "Unknown type name alias: %v", el)
			}
			s.bsonTypes = append(s.bsonTypes, aliases...)
		}
		return nil
	}
	hasType := false
	for _, e := range spec {
		var err error
		switch e.Key {
		case "bsonType", "type":
			if hasType {
				return nil, schemaErr("Cannot specify both $jsonSchema keywords 'type' and 'bsonType'")
			}
			hasType = true
			if e.Key == "type" {
				err = types(e.Key, e.Value, func(n string) ([]string, bool) {
					if n == "integer" {
						return nil, false
					}
					a, ok := jsonTypeAliases[n]
					return a, ok
				})
			} else {
				err = types(e.Key, e.Value, func(n string) ([]string, bool) {
					return []string{n}, slices.Contains(bsonTypeAliases, n)
				})
			}
		case "required":
			arr, ok := e.Value.(bson.A)
			if !ok || len(arr) == 0 {
				return nil, schemaErr("$jsonSchema keyword 'required' must be a nonempty array of strings")
			}
			for _, el := range arr {
				name, ok := el.(string)
				if !ok {
					return nil, schemaErr("$jsonSchema keyword 'required' must be a nonempty array of strings")
				}
				s.required = append(s.required, name)
			}
		case "properties":
			d, ok := e.Value.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword 'properties' must be an object")
			}
			s.properties = make(map[string]*jsonSchema, len(d))
			for _, p := range d {
				if s.properties[p.Key], err = sub("properties", p.Value); err != nil {
					return nil, err
				}
			}
		case "patternProperties":
			d, ok := e.Value.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword 'patternProperties' must be an object")
			}
			for _, p := range d {
				re, rerr := regexp.Compile(p.Key)
				if rerr != nil {
					return nil, schemaErr("$jsonSchema keyword 'patternProperties' has an invalid regular expression %q: %v", p.Key, rerr)
				}
				x, err := sub("patternProperties", p.Value)
				if err != nil {
					return nil, err
				}
				s.patternProps = append(s.patternProps, patternSchema{re, x})
			}
		case "additionalProperties":
			switch x := e.Value.(type) {
			case bool:
				s.allowNone = !x
			case bson.D:
				s.additional, err = sub("additionalProperties", x)
			default:
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword 'additionalProperties' must be either an object or a boolean")
			}
		case "minimum", "maximum":
			if !IsNumber(e.Value) {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be a number", e.Key)
			}
			if e.Key == "minimum" {
				s.minimum = e.Value
			} else {
				s.maximum = e.Value
			}
		case "exclusiveMinimum", "exclusiveMaximum", "uniqueItems":
			b, ok := e.Value.(bool)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be a boolean", e.Key)
			}
			switch e.Key {
			case "exclusiveMinimum":
				s.exclMin = b
			case "exclusiveMaximum":
				s.exclMax = b
			default:
				s.uniqueItems = b
			}
		case "minLength":
			s.minLength, err = count(e.Key, e.Value)
		case "maxLength":
			s.maxLength, err = count(e.Key, e.Value)
		case "minItems":
			s.minItems, err = count(e.Key, e.Value)
		case "maxItems":
			s.maxItems, err = count(e.Key, e.Value)
		case "minProperties":
			s.minProps, err = count(e.Key, e.Value)
		case "maxProperties":
			s.maxProps, err = count(e.Key, e.Value)
		case "pattern":
			p, ok := e.Value.(string)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword 'pattern' must be a string")
			}
			if s.pattern, err = regexp.Compile(p); err != nil {
				return nil, schemaErr("$jsonSchema keyword 'pattern' is not a valid regular expression: %v", err)
			}
		case "enum":
			arr, ok := e.Value.(bson.A)
			if !ok || len(arr) == 0 {
				return nil, schemaErr("$jsonSchema keyword 'enum' cannot be an empty array")
			}
			s.enum, s.hasEnum = arr, true
		case "items":
			switch x := e.Value.(type) {
			case bson.D:
				s.items, err = sub("items", x)
			case bson.A:
				s.itemsList, err = subs("items", x)
			default:
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword 'items' must be an array or an object")
			}
		case "allOf":
			s.allOf, err = subs(e.Key, e.Value)
		case "anyOf":
			s.anyOf, err = subs(e.Key, e.Value)
		case "oneOf":
			s.oneOf, err = subs(e.Key, e.Value)
		case "not":
			s.not, err = sub(e.Key, e.Value)
		case "title", "description":
			if _, ok := e.Value.(string); !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be a string", e.Key)
			}
		case "$ref", "$schema", "default", "definitions", "format", "id", "dependencies", "additionalItems":
			return nil, schemaErr("$jsonSchema keyword '%s' is not currently supported", e.Key)
		default:
			return nil, schemaErr("Unknown $jsonSchema keyword: %s", e.Key)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// valid reports whether v satisfies the schema.
func (s *jsonSchema) valid(v any) bool {
	if len(s.bsonTypes) > 0 {
		t := TypeName(v)
		ok := false
		for _, want := range s.bsonTypes {
			if want == t || (want == "number" && IsNumber(v)) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if s.hasEnum && !slices.ContainsFunc(s.enum, func(x any) bool { return Equal(x, v) }) {
		return false
	}
	switch x := v.(type) {
	case bson.D:
		if !s.validObject(x) {
			return false
		}
	case bson.A:
		if !s.validArray(x) {
			return false
		}
	case string:
		n := int64(len([]rune(x)))
		if n < s.minLength || (s.maxLength >= 0 && n > s.maxLength) {
			return false
		}
		if s.pattern != nil && !s.pattern.MatchString(x) {
			return false
		}
	default:
		if IsNumber(v) {
			if f, _ := ToFloat64(v); math.IsNaN(f) && (s.minimum != nil || s.maximum != nil) {
				return false
			}
			if s.minimum != nil {
				c := Compare(v, s.minimum)
				if c < 0 || (s.exclMin && c == 0) {
					return false
				}
			}
			if s.maximum != nil {
				c := Compare(v, s.maximum)
				if c > 0 || (s.exclMax && c == 0) {
					return false
				}
			}
		}
	}
	for _, x := range s.allOf {
		if !x.valid(v) {
			return false
		}
	}
	if len(s.anyOf) > 0 && !slices.ContainsFunc(s.anyOf, func(x *jsonSchema) bool { return x.valid(v) }) {
		return false
	}
	if len(s.oneOf) > 0 {
		n := 0
		for _, x := range s.oneOf {
			if x.valid(v) {
				n++
			}
		}
		if n != 1 {
			return false
		}
	}
	return s.not == nil || !s.not.valid(v)
}

func (s *jsonSchema) validObject(d bson.D) bool {
	for _, name := range s.required {
		if !slices.ContainsFunc(d, func(e bson.E) bool { return e.Key == name }) {
			return false
		}
	}
	n := int64(len(d))
	if n < s.minProps || (s.maxProps >= 0 && n > s.maxProps) {
		return false
	}
	for _, e := range d {
		matched := false
		if p, ok := s.properties[e.Key]; ok {
			matched = true
			if !p.valid(e.Value) {
				return false
			}
		}
		for _, pp := range s.patternProps {
			if pp.re.MatchString(e.Key) {
				matched = true
				if !pp.s.valid(e.Value) {
					return false
				}
			}
		}
		if !matched {
			if s.allowNone {
				return false
			}
			if s.additional != nil && !s.additional.valid(e.Value) {
				return false
			}
		}
	}
	return true
}

func (s *jsonSchema) validArray(a bson.A) bool {
	n := int64(len(a))
	if n < s.minItems || (s.maxItems >= 0 && n > s.maxItems) {
		return false
	}
	if s.items != nil {
		for _, el := range a {
			if !s.items.valid(el) {
				return false
			}
		}
	}
	for i, x := range s.itemsList {
		if i < len(a) && !x.valid(a[i]) {
			return false
		}
	}
	if s.uniqueItems {
		for i := range a {
			for j := i + 1; j < len(a); j++ {
				if Equal(a[i], a[j]) {
					return false
				}
			}
		}
	}
	return true
}
