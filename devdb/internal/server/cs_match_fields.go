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
