package mql

import (
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// FuzzCompileFilter feeds arbitrary bytes, decoded as a BSON document when
// they are one, to CompileFilter, and matches every compiled filter against
// a few documents: compiling must return a filter or an error, and neither
// compiling nor matching may panic. Seeds live in
// testdata/fuzz/FuzzCompileFilter.
func FuzzCompileFilter(f *testing.F) {
	for _, s := range []string{
		`{"a": 1}`,
		`{"a.b": {"$gt": 1, "$lt": {"$numberDecimal": "5"}}}`,
		`{"$or": [{"a": {"$in": [1, null, {"$regularExpression": {"pattern": "^x", "options": "i"}}]}}, {"b": {"$exists": false}}]}`,
		`{"a": {"$elemMatch": {"$gte": 80, "$lt": 85}}, "c": {"$all": [1, 2]}, "d": {"$size": 2}}`,
		`{"a": {"$not": {"$type": ["string", 16]}}, "m": {"$mod": [3, 1]}, "bits": {"$bitsAnySet": [1, 63, 200]}}`,
	} {
		d := coreDoc(f, s)
		raw, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	docs := []bson.D{
		coreDoc(f, `{"a": 1, "b": null, "c": [1, 2, {"d": "x"}]}`),
		coreDoc(f, `{"a": [{"b": [1, {"c": 2}]}, 3], "d": [[1, 2]], "m": 4, "bits": -1}`),
		{},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var filter bson.D
		if err := bson.Unmarshal(data, &filter); err != nil {
			return
		}
		flt, err := CompileFilter(filter)
		if err != nil {
			if _, ok := err.(*mongoerr.Error); !ok {
				t.Fatalf("CompileFilter returned %T, want *mongoerr.Error: %v", err, err)
			}
			return
		}
		for _, d := range docs {
			flt.Match(d)
			flt.MatchPositional(d)
		}
	})
}
