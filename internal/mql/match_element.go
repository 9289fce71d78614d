package mql

import (
	"fmt"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// elementQuery is the table of element query operators.
func elementQuery() map[string]queryCompiler {
	return map[string]queryCompiler{
		"$exists": func(parts []string, op bson.E, _ compileCx) (matchNode, error) {
			n := newMatchPath(parts, existsMatch{}, true)
			if Truthy(op.Value) {
				return n, nil
			}
			return matchNot{n}, nil
		},
		"$type": func(parts []string, op bson.E, _ compileCx) (matchNode, error) {
			p, err := newTypeMatch(op.Value)
			if err != nil {
				return nil, err
			}
			return newMatchPath(parts, p, true), nil
		},
	}
}

// existsMatch implements $exists: true (the path reaches a value).
type existsMatch struct{}

func (existsMatch) test(v any) bool { return !IsMissing(v) }

// typeMatch implements $type with type numbers and aliases ("number" means
// any numeric type).
type typeMatch struct {
	types  []int
	number bool
}

func newTypeMatch(v any) (*typeMatch, error) {
	p := &typeMatch{}
	add := func(x any) error {
		switch t := x.(type) {
		case string:
			if t == "number" {
				p.number = true
				return nil
			}
			n, ok := typeAliasNumber(t)
			if !ok {
				return badValue("Unknown type name alias: %s", t)
			}
			p.types = append(p.types, n)
			return nil
		}
		if !IsNumber(x) {
			return mongoerr.Errorf(mongoerr.TypeMismatch, "type must be represented as a number or a string")
		}
		n, ok := ToInt64(x)
		if !ok || !validTypeNumber(n) {
			return badValue("Invalid numerical type code: %s", formatTypeCode(x))
		}
		p.types = append(p.types, int(n))
		return nil
	}
	if arr, ok := AsArray(v); ok {
		for _, x := range arr {
			if err := add(x); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	if err := add(v); err != nil {
		return nil, err
	}
	return p, nil
}

func formatTypeCode(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprint(f)
	}
	return fmt.Sprint(v)
}

func validTypeNumber(n int64) bool {
	return (n >= 1 && n <= 19) || n == -1 || n == 127
}

// typeAliasNumber maps a $type alias to its BSON type number.
func typeAliasNumber(s string) (int, bool) {
	for n := -1; n <= 127; n++ {
		if !validTypeNumber(int64(n)) {
			continue
		}
		if typeNameOfNumber(n) == s {
			return n, true
		}
	}
	return 0, false
}

func (p *typeMatch) test(v any) bool {
	if IsMissing(v) {
		return false
	}
	if p.number && IsNumber(v) {
		return true
	}
	t := TypeNumber(v)
	for _, x := range p.types {
		if x == t {
			return true
		}
	}
	return false
}
