package mql

import (
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Sort is a compiled sort specification. It is immutable after CompileSort
// and safe for concurrent use.
type Sort struct {
	keys []sortKey
	// coll is the collation strings compare under (nil: binary).
	coll *Collation
}

type sortKey struct {
	parts []string
	desc  bool
}

// CompileSort compiles a sort specification such as {a: 1, "b.c": -1}.
// Each direction must be a number equal to 1 or -1 (Location15975
// otherwise); {$meta: ...} is refused (devdb has no text or search score),
// and so are empty and '$'-prefixed field names. An empty specification is
// valid and orders nothing (find accepts it; the $sort stage requires a
// key, which is the stage's check).
func CompileSort(spec bson.D) (*Sort, error) {
	s := &Sort{keys: make([]sortKey, 0, len(spec))}
	for _, e := range spec {
		if e.Key == "" {
			return nil, badValue("sort key name cannot be an empty string")
		}
		if strings.HasPrefix(e.Key, "$") {
			return nil, badValue("FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
		parts := splitPath(e.Key)
		for _, p := range parts {
			if p == "" {
				return nil, badValue("FieldPath field names may not be empty strings.")
			}
		}
		if d, ok := AsDocument(e.Value); ok {
			if len(d) > 0 && d[0].Key == "$meta" {
				return nil, mongoerr.Errorf(mongoerr.NotImplemented, "$meta sort by %v is not supported by devdb", d[0].Value)
			}
			return nil, mongoerr.Errorf(mongoerr.SortBadDirection, "$sort key ordering must be 1 (for ascending) or -1 (for descending)")
		}
		f, ok := ToFloat64(e.Value)
		if !ok || (f != 1 && f != -1) {
			return nil, mongoerr.Errorf(mongoerr.SortBadDirection, "$sort key ordering must be 1 (for ascending) or -1 (for descending)")
		}
		s.keys = append(s.keys, sortKey{parts: parts, desc: f < 0})
	}
	return s, nil
}

// WithCollation returns a copy of s that compares strings under the
// collation c (nil: binary), as a command-level collation sorts in MongoDB.
func (s *Sort) WithCollation(c *Collation) *Sort {
	if s.coll == c {
		return s
	}
	t := *s
	t.coll = c
	return &t
}

// Len returns the number of sort keys.
func (s *Sort) Len() int { return len(s.keys) }

// Compare orders two documents by the sort specification and returns -1, 0
// or +1 (0 when they tie on every key; callers wanting a stable order use a
// stable sort). A missing field sorts as null. For a field whose value is an
// array (or a path through arrays), an ascending key uses the smallest
// value reached and a descending key the largest, and an empty array sorts
// before null, as MongoDB's manual describes in "Comparison/Sort Order".
func (s *Sort) Compare(a, b bson.D) int {
	for _, k := range s.keys {
		va, vb := sortKeyValue(a, k, s.coll), sortKeyValue(b, k, s.coll)
		c := compareValues(va, vb, s.coll)
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// sortKeyValue returns the value a document sorts by for one key: the
// minimum (ascending) or maximum (descending) of the values the path
// reaches with implicit array traversal, null when it reaches none.
func sortKeyValue(doc bson.D, k sortKey, coll *Collation) any {
	var best any
	found := false
	sawEmpty := false
	consider := func(v any) {
		if IsMissing(v) {
			v = nil
		}
		if !found {
			best, found = v, true
			return
		}
		c := compareValues(v, best, coll)
		if (!k.desc && c < 0) || (k.desc && c > 0) {
			best = v
		}
	}
	collectSortValues(doc, k.parts, consider, &sawEmpty)
	switch {
	case found:
		return best
	case sawEmpty:
		// An empty array sorts below null and above MinKey, which is where
		// undefined ranks.
		return bson.Undefined{}
	}
	return nil
}

// collectSortValues calls fn with each value the path reaches from v:
// through arrays, element documents are followed (a missing field yields
// Missing) and other elements ignored; numeric components also index
// arrays; a leaf array yields its elements (an empty one sets *empty).
func collectSortValues(v any, parts []string, fn func(any), empty *bool) {
	if len(parts) == 0 {
		if arr, ok := AsArray(v); ok {
			if len(arr) == 0 {
				*empty = true
			}
			for _, e := range arr {
				fn(e)
			}
			return
		}
		fn(v)
		return
	}
	switch x := v.(type) {
	case bson.D:
		collectSortValues(docField(x, parts[0]), parts[1:], fn, empty)
		return
	case bson.M, map[string]any:
		d, _ := AsDocument(x)
		collectSortValues(docField(d, parts[0]), parts[1:], fn, empty)
		return
	}
	arr, ok := AsArray(v)
	if !ok {
		fn(Missing)
		return
	}
	if idx, ok := arrayIndex(parts[0]); ok {
		if idx < len(arr) {
			collectSortValues(arr[idx], parts[1:], fn, empty)
		}
		return
	}
	if len(arr) == 0 {
		*empty = true
	}
	for _, e := range arr {
		if d, ok := AsDocument(e); ok {
			collectSortValues(docField(d, parts[0]), parts[1:], fn, empty)
		}
	}
}

// KeyValues returns the values doc sorts by, one per sort key (as Compare
// computes them), so that a caller can keep only these instead of the
// whole document; CompareKeys orders two such slices as Compare orders the
// documents.
func (s *Sort) KeyValues(doc bson.D) []any {
	out := make([]any, len(s.keys))
	for i, k := range s.keys {
		out[i] = sortKeyValue(doc, k, s.coll)
	}
	return out
}

// CompareKeys orders two KeyValues results of s as Compare orders their
// documents.
func (s *Sort) CompareKeys(a, b []any) int {
	for i, k := range s.keys {
		c := compareValues(a[i], b[i], s.coll)
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// Fields returns the sort's field paths and directions (1 or -1), in order.
func (s *Sort) Fields() bson.D {
	out := make(bson.D, len(s.keys))
	for i, k := range s.keys {
		dir := 1
		if k.desc {
			dir = -1
		}
		out[i] = bson.E{Key: strings.Join(k.parts, "."), Value: dir}
	}
	return out
}
