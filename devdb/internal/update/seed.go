package update

import (
	"sort"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// equality is one equality clause of an upsert's filter.
type equality struct {
	path  string
	parts []string
	value any
}

// UpsertSeed returns the document an upsert that matched nothing starts
// from, as MongoDB builds it from "the equality clauses" of the filter:
// {a: 1}, {a: {$eq: 1}}, {a: {$in: [1]}} and those inside $and (or a
// one-clause $or) contribute a: 1; other conditions contribute nothing.
// Dotted paths become embedded documents, fields are added in path order and
// _id comes first. Two clauses on the same path or on a path and its prefix
// are an error (54 NotSingleValueField), and so is a dotted path below _id
// (111 NotExactValueField), as in MongoDB.
func UpsertSeed(filter bson.D) (bson.D, error) {
	var eqs []equality
	if err := collectEqualities(filter, &eqs); err != nil {
		return nil, err
	}
	sort.SliceStable(eqs, func(i, j int) bool { return eqs[i].path < eqs[j].path })
	out := bson.D{}
	for _, e := range eqs {
		out = setPath(out, e.parts, deepCopy(e.value))
	}
	for i, e := range out {
		if e.Key == "_id" && i > 0 {
			moved := append(bson.D{e}, out[:i]...)
			out = append(moved, out[i+1:]...)
			break
		}
	}
	return out, nil
}

func collectEqualities(filter bson.D, eqs *[]equality) error {
	for _, e := range filter {
		switch {
		case e.Key == "$and":
			if err := collectClauses(e.Value, eqs); err != nil {
				return err
			}
		case e.Key == "$or":
			if arr, ok := e.Value.(bson.A); ok && len(arr) == 1 {
				if err := collectClauses(arr, eqs); err != nil {
					return err
				}
			}
		case strings.HasPrefix(e.Key, "$"):
			// $nor, $expr, $comment, ... imply no equality.
		default:
			v, ok := equalityValue(e.Value)
			if !ok {
				continue
			}
			if err := addEquality(eqs, e.Key, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func collectClauses(v any, eqs *[]equality) error {
	arr, ok := v.(bson.A)
	if !ok {
		return nil
	}
	for _, c := range arr {
		if d, ok := c.(bson.D); ok {
			if err := collectEqualities(d, eqs); err != nil {
				return err
			}
		}
	}
	return nil
}

// equalityValue returns the value a field condition pins the field to.
func equalityValue(v any) (any, bool) {
	switch x := v.(type) {
	case bson.Regex:
		return nil, false
	case bson.D:
		if len(x) == 0 || !strings.HasPrefix(x[0].Key, "$") {
			return x, true
		}
		for _, op := range x {
			switch op.Key {
			case "$eq":
				return op.Value, true
			case "$in":
				if arr, ok := op.Value.(bson.A); ok && len(arr) == 1 {
					if _, isRe := arr[0].(bson.Regex); !isRe {
						return arr[0], true
					}
				}
			}
		}
		return nil, false
	}
	return v, true
}

func addEquality(eqs *[]equality, path string, v any) error {
	parts := strings.Split(path, ".")
	if parts[0] == "_id" && len(parts) > 1 {
		return mongoerr.Errorf(mongoerr.NotExactValueField, "field at '_id' must be exactly specified, field at sub-path '%s'found", path)
	}
	for _, prev := range *eqs {
		switch {
		case prev.path == path:
			return mongoerr.Errorf(mongoerr.NotSingleValueField, "cannot infer query fields to set, path '%s' is matched twice", path)
		case strings.HasPrefix(path, prev.path+"."):
			return mongoerr.Errorf(mongoerr.NotSingleValueField, "cannot infer query fields to set, both paths '%s' and '%s' are matched", path, prev.path)
		case strings.HasPrefix(prev.path, path+"."):
			return mongoerr.Errorf(mongoerr.NotSingleValueField, "cannot infer query fields to set, both paths '%s' and '%s' are matched", prev.path, path)
		}
	}
	*eqs = append(*eqs, equality{path: path, parts: parts, value: v})
	return nil
}

// setPath sets a dotted path in a document it owns, creating embedded
// documents for missing components.
func setPath(d bson.D, parts []string, v any) bson.D {
	for i := range d {
		if d[i].Key != parts[0] {
			continue
		}
		if len(parts) == 1 {
			d[i].Value = v
			return d
		}
		sub, ok := d[i].Value.(bson.D)
		if !ok {
			sub = bson.D{}
		}
		d[i].Value = setPath(sub, parts[1:], v)
		return d
	}
	if len(parts) == 1 {
		return append(d, bson.E{Key: parts[0], Value: v})
	}
	return append(d, bson.E{Key: parts[0], Value: setPath(bson.D{}, parts[1:], v)})
}
