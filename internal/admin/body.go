package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// errTrailingData refuses a body with more than one JSON value: a client
// that sent {"all": true} {"trigger": "x"} meant something the first value
// alone does not say, and acting on that value alone could purge or
// replay far more than it asked for.
var errTrailingData = errors.New("trailing data after the JSON body")

// bodyError is decodeJSONBody's error: what is wrong with the body, said
// in the API's terms (its fields and JSON types, never Go's), wrapping the
// decoder's error.
type bodyError struct {
	msg string
	err error
}

func (e *bodyError) Error() string { return e.msg }
func (e *bodyError) Unwrap() error { return e.err }

// decodeJSONBody decodes data, one JSON object, into v, a pointer to a
// struct, refusing the object fields v does not have and anything but
// white space after the value (errTrailingData). It is how every body of
// the admin API is read. want shows the object expected, such as
// {"reason": "…"}: an empty body, or one that is not a JSON object, is
// refused with an error quoting it. Every error says what is wrong in the
// API's terms — a field by its JSON name, a type by its JSON type — never
// naming a Go type, and the caller prefixes its action.
func decodeJSONBody(data []byte, v any, want string) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &bodyError{msg: "the body is empty: want " + want, err: io.EOF}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeBodyError(err, reflect.TypeOf(v).Elem(), want)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errTrailingData
	}
	return nil
}

// describeBodyError says what err, the decoder's error for a body decoded
// into struct type t, means in the API's terms.
func describeBodyError(err error, t reflect.Type, want string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return &bodyError{msg: fmt.Sprintf("the body must be a JSON object such as %s, not %s", want, jsonValueName(typeErr.Value)), err: err}
	case errors.As(err, &typeErr):
		field, _, _ := strings.Cut(typeErr.Field, ".")
		declared := typeErr.Type
		if f, ok := jsonField(t, field); ok {
			// The field's type: for an array's element, the array's.
			declared = f.Type
		}
		msg := field + " must be " + jsonTypeName(declared)
		if declared == typeErr.Type {
			msg += ", not " + jsonValueName(typeErr.Value)
		}
		return &bodyError{msg: msg, err: err}
	case errors.As(err, &syntaxErr):
		return &bodyError{msg: fmt.Sprintf("the body is not valid JSON: %s (at byte %d)", syntaxErr.Error(), syntaxErr.Offset), err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &bodyError{msg: "the body is not valid JSON: it ends before its value does", err: err}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &bodyError{msg: fmt.Sprintf("unknown field %s in the body (its fields: %s)", name, strings.Join(jsonFields(t), ", ")), err: err}
	}
	return &bodyError{msg: "the body cannot be read as " + want, err: err}
}

// jsonField returns the field of struct type t whose JSON name is name,
// matched as encoding/json matches it (case-insensitively).
func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		n, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if n == "" {
			n = f.Name
		}
		if f.IsExported() && n != "-" && strings.EqualFold(n, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// jsonTypeName names what a JSON value decoded into t must be: "a string",
// "true or false", "a number", "an array of strings", "a JSON object".
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	default:
		return "a JSON object"
	}
}

// jsonValueName names the JSON value encoding/json's UnmarshalTypeError
// describes ("array", "number", "bool", …), with its article.
func jsonValueName(value string) string {
	switch {
	case value == "bool":
		return "true or false"
	case value == "array" || value == "object":
		return "an " + value
	case strings.HasPrefix(value, "number"):
		return "a number"
	default:
		return "a " + value
	}
}
