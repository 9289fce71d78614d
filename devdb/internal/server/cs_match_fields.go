package server

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// matchFieldsOf returns the top-level fields that the $match-only stages
// read: the first segment of every field path in their filters, through
// $and, $or and $nor. ok is false when a filter uses any other top-level
// operator ($expr, $where, $jsonSchema, $text, ...), which may read the
// whole document. A field's conditions ($in, $elemMatch, $not, ...) only
// read that field's value, so such a filter gives the same answer on a
// document holding just those fields as on the whole document: emitRaw then
// decodes only them (matchDecode), not the full event (fullDocument and
// all) that it keeps encoded anyway.
func matchFieldsOf(stages bson.A) (fields []string, ok bool) {
	for _, st := range stages {
		d, isDoc := st.(bson.D)
		if !isDoc || len(d) != 1 || d[0].Key != "$match" {
			return nil, false
		}
		f, isDoc := d[0].Value.(bson.D)
		if !isDoc || !filterFields(f, &fields) {
			return nil, false
		}
	}
	return fields, true
}

// filterFields adds the top-level fields filter f reads to *fields.
func filterFields(f bson.D, fields *[]string) bool {
	for _, e := range f {
		switch {
		case e.Key == "$and" || e.Key == "$or" || e.Key == "$nor":
			arr, ok := e.Value.(bson.A)
			if !ok {
				return false
			}
			for _, sub := range arr {
				sd, ok := sub.(bson.D)
				if !ok || !filterFields(sd, fields) {
					return false
				}
			}
		case strings.HasPrefix(e.Key, "$"):
			return false
		default:
			top, _, _ := strings.Cut(e.Key, ".")
			found := false
			for _, have := range *fields {
				found = found || have == top
			}
			if !found {
				*fields = append(*fields, top)
			}
		}
	}
	return true
}

// matchDecode decodes the top-level elements of the encoded event raw
// whose names are in fields, in order, as decodeEventD would (the values
// bson.Unmarshal gives). ok is false when the event or one of those values
// is not something decodeEventD handles: the caller then decodes it whole.
func matchDecode(raw []byte, fields []string) (bson.D, bool) {
	rest, ok := docElements(raw)
	if !ok {
		return nil, false
	}
	var out bson.D
	for len(rest) > 0 {
		key, v, next, ok := nextElement(rest)
		if !ok {
			return nil, false
		}
		rest = next
		want := false
		for _, f := range fields {
			if f == string(key) {
				want = true
				break
			}
		}
		if !want {
			continue
		}
		val, ok := decodeValue(v)
		if !ok {
			return nil, false
		}
		out = append(out, bson.E{Key: eventKey(key), Value: val})
	}
	return out, true
}

// opFilterOf recognises the pipeline a trigger filtering on operation
// types sends: one $match whose filter is {operationType: S},
// {operationType: {$in: [S, ...]}} or an $or of such filters (S strings).
// It returns the operation types that pass; ok is false for any other
// pipeline. Such a filter's answer on an event whose operationType is a
// string depends only on that string (no collation applies to a change
// stream's pipeline here), so processRaw decides it on the oplog entry's
// op, the operationType of the event it builds, before building it.
func opFilterOf(stages bson.A) (ops []string, ok bool) {
	if len(stages) != 1 {
		return nil, false
	}
	d, isDoc := stages[0].(bson.D)
	if !isDoc || len(d) != 1 || d[0].Key != "$match" {
		return nil, false
	}
	f, isDoc := d[0].Value.(bson.D)
	if !isDoc {
		return nil, false
	}
	return opSetOf(f, []string{})
}

// opSetOf adds the operation types filter f passes to ops (see
// opFilterOf).
func opSetOf(f bson.D, ops []string) ([]string, bool) {
	if len(f) != 1 {
		return nil, false
	}
	switch e := f[0]; e.Key {
	case "operationType":
		switch v := e.Value.(type) {
		case string:
			return append(ops, v), true
		case bson.D:
			if len(v) != 1 || v[0].Key != "$in" {
				return nil, false
			}
			arr, ok := v[0].Value.(bson.A)
			if !ok {
				return nil, false
			}
			for _, x := range arr {
				s, ok := x.(string)
				if !ok {
					return nil, false
				}
				ops = append(ops, s)
			}
			return ops, true
		}
	case "$or":
		arr, ok := e.Value.(bson.A)
		if !ok || len(arr) == 0 {
			return nil, false
		}
		for _, sub := range arr {
			sd, isDoc := sub.(bson.D)
			if !isDoc {
				return nil, false
			}
			if ops, ok = opSetOf(sd, ops); !ok {
				return nil, false
			}
		}
		return ops, true
	}
	return nil, false
}
