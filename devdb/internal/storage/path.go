package storage

import (
	"strconv"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// maxKeysPerDocument bounds the index keys one document may generate for one
// index (multikey expansion of arrays), keeping memory bounded.
const maxKeysPerDocument = 10000

// indexKey is one index entry of a document: its encoded key and the values
// it was built from (for the E11000 message).
type indexKey struct {
	enc  []byte
	vals bson.D
}

// lookupField returns the value of top-level field name in doc.
func lookupField(doc bson.D, name string) (any, bool) {
	for _, e := range doc {
		if e.Key == name {
			return e.Value, true
		}
	}
	return nil, false
}

// pathValues returns the values an index on path sees in doc, expanding
// arrays as MongoDB's multikey indexes do. present reports whether any
// component of the path existed; an empty array yields undefined, a missing
// field yields null.
func pathValues(v any, parts []string, out []any) (vals []any, present bool) {
	if len(parts) == 0 {
		if arr, ok := v.(bson.A); ok {
			if len(arr) == 0 {
				return append(out, bson.Undefined{}), true
			}
			return append(out, arr...), true
		}
		return append(out, v), true
	}
	switch x := v.(type) {
	case bson.D:
		fv, ok := lookupField(x, parts[0])
		if !ok {
			return out, false
		}
		return pathValues(fv, parts[1:], out)
	case bson.A:
		if idx, err := strconv.Atoi(parts[0]); err == nil && idx >= 0 {
			if idx < len(x) {
				return pathValues(x[idx], parts[1:], out)
			}
			return out, false
		}
		found := false
		for _, el := range x {
			if d, ok := el.(bson.D); ok {
				var p bool
				out, p = pathValues(d, parts, out)
				found = found || p
			}
		}
		return out, found
	default:
		return out, false
	}
}

// documentKeys returns the distinct index keys of doc for key pattern
// pattern. ok is false when a sparse index skips the document (no key field
// present).
func documentKeys(doc bson.D, pattern bson.D, sparse bool, coll *mql.Collation) (keys []indexKey, ok bool, err error) {
	keys = []indexKey{{}}
	anyPresent := false
	arrays := 0
	for _, f := range pattern {
		vals, present := pathValues(doc, strings.Split(f.Key, "."), nil)
		anyPresent = anyPresent || present
		if !present || len(vals) == 0 {
			vals = []any{nil}
		}
		if len(vals) > 1 {
			arrays++
			if arrays > 1 {
				return nil, false, mongoerr.Errorf(mongoerr.CannotIndexParallelArrays, "cannot index parallel arrays [%s]", f.Key)
			}
		}
		next := make([]indexKey, 0, len(keys)*len(vals))
		for _, k := range keys {
			for _, v := range vals {
				enc := appendKeyColl(append([]byte(nil), k.enc...), v, coll)
				vv := append(append(bson.D(nil), k.vals...), bson.E{Key: f.Key, Value: v})
				next = append(next, indexKey{enc: enc, vals: vv})
			}
		}
		if len(next) > maxKeysPerDocument {
			return nil, false, mongoerr.Errorf(mongoerr.BadValue, "document generates more than %d keys for one index", maxKeysPerDocument)
		}
		keys = next
	}
	if sparse && !anyPresent {
		return nil, false, nil
	}
	// Deduplicate: a document may contain the same array value twice.
	seen := make(map[string]struct{}, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if _, dup := seen[string(k.enc)]; dup {
			continue
		}
		seen[string(k.enc)] = struct{}{}
		out = append(out, k)
	}
	return out, true, nil
}
