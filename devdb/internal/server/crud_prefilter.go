package server

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mql"
)

// fieldCondition is one top-level condition {field: <value or operators>} of
// a filter whose field name has no dots. Whether a document satisfies it
// depends only on the document's top-level field, so it can be evaluated on
// that single value, decoded from the stored bytes, without decoding the
// rest of the document.
type fieldCondition struct {
	field string
	match *mql.Filter // {field: <condition>} alone
}

// fieldConditions returns the conditions of filter that mayMatch evaluates
// on raw documents. A filter's top level is a conjunction, so a document
// failing one of them cannot match the filter. Operator entries ($and, $or,
// $expr, …), dotted paths and field names given twice are left to the full
// matcher.
func fieldConditions(filter bson.D, coll *mql.Collation) []fieldCondition {
	var out []fieldCondition
	for i, e := range filter {
		if e.Key == "" || strings.HasPrefix(e.Key, "$") || strings.Contains(e.Key, ".") || repeatedKey(filter, i) {
			continue
		}
		f, err := mql.CompileFilterCollation(bson.D{e}, coll)
		if err != nil {
			continue // the full filter reports it
		}
		out = append(out, fieldCondition{field: e.Key, match: f})
	}
	return out
}

// repeatedKey reports whether filter[i]'s field name occurs elsewhere in filter.
func repeatedKey(filter bson.D, i int) bool {
	for j, e := range filter {
		if j != i && e.Key == filter[i].Key {
			return true
		}
	}
	return false
}

// mayMatch reports whether the stored document raw can satisfy every field
// condition of the plan; false means it certainly does not match the
// filter, so the caller need not decode it. Each condition is evaluated by
// mql on a document holding only that field (or nothing, when the field is
// absent), which is exactly its value in the whole document. An undecodable
// value or an evaluation error answers true, leaving the verdict (and the
// error) to the full matcher. scratch is a reusable buffer (its contents are
// overwritten) so that a scan does not allocate a probe per document; it
// must not be shared between goroutines.
func (p *queryPlan) mayMatch(raw bson.Raw, scratch *bson.D) bool {
	for _, c := range p.pre {
		probe := (*scratch)[:0]
		if rv := raw.Lookup(c.field); rv.Type != 0 {
			v, ok := rawValue(rv)
			if !ok {
				return true
			}
			probe = append(probe, bson.E{Key: c.field, Value: v})
			*scratch = probe
		}
		m, err := c.match.MatchErr(probe)
		if err != nil {
			return true
		}
		if !m {
			return false
		}
	}
	return true
}

// rawValue decodes one BSON value into the shared value model, with fast
// paths for the common scalar types.
func rawValue(rv bson.RawValue) (any, bool) {
	switch rv.Type {
	case bson.TypeInt32:
		return rv.Int32(), true
	case bson.TypeInt64:
		return rv.Int64(), true
	case bson.TypeDouble:
		return rv.Double(), true
	case bson.TypeString:
		return rv.StringValue(), true
	case bson.TypeBoolean:
		return rv.Boolean(), true
	case bson.TypeObjectID:
		return rv.ObjectID(), true
	case bson.TypeDateTime:
		return bson.DateTime(rv.DateTime()), true
	case bson.TypeNull:
		return nil, true
	}
	var v any
	if err := rv.Unmarshal(&v); err != nil {
		return nil, false
	}
	return v, true
}
