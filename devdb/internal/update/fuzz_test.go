package update

import (
	"testing"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// fuzzSample is the document every fuzzed update is applied to: it has
// scalars, embedded documents and arrays of scalars and documents.
const fuzzSample = `{"_id": 1, "a": 1, "b": {"c": [1, 2, {"d": 3}], "e": "x"}, "f": [{"g": 1}, {"g": 2}], "h": [3, 1, 2], "i": null, "j": {"$numberLong": "9223372036854775807"}, "k": {"$numberDecimal": "1.5"}, "l": 2.5}`

// FuzzCompile feeds arbitrary BSON to Compile: it must return an
// error or an update, and applying that update to a sample document must
// return an error or a document, never panic, and never modify the sample.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`{"$set": {"a": 2, "b.c.5": 1, "f.$.g": 3}}`,
		`{"$inc": {"a": 1, "j": 1, "k": 0.1, "l": 2}, "$mul": {"h.0": 2}}`,
		`{"$push": {"h": {"$each": [5, 4], "$sort": 1, "$slice": -3, "$position": 1}}}`,
		`{"$addToSet": {"f": {"$each": [{"g": 1}, {"g": 9}]}}, "$pop": {"h": -1}}`,
		`{"$pull": {"f": {"g": {"$gte": 2}}, "h": {"$in": [1, 2]}}, "$pullAll": {"b.c": [1]}}`,
		`{"$rename": {"a": "z.y", "b.e": "q"}, "$unset": {"i": ""}}`,
		`{"$set": {"f.$[].g": 0, "h.$[]": 1}, "$currentDate": {"t": {"$type": "timestamp"}}}`,
		`{"$bit": {"a": {"and": 3, "or": {"$numberLong": "4"}}}, "$min": {"l": 1}, "$max": {"zz": 1}}`,
		`{"$setOnInsert": {"n": 1}, "$set": {"a.b": 1}}`,
	} {
		var d bson.D
		if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
			f.Fatal(err)
		}
		raw, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	var sample bson.D
	if err := bson.UnmarshalExtJSON([]byte(fuzzSample), false, &sample); err != nil {
		f.Fatal(err)
	}
	filters := []bson.D{{{Key: "x", Value: bson.D{{Key: "$gt", Value: int32(1)}}}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var u bson.D
		if err := bson.Unmarshal(data, &u); err != nil {
			return
		}
		for _, opts := range []Options{{}, {ArrayFilters: filters}} {
			up, err := Compile(u, opts)
			if err != nil {
				continue
			}
			for _, ac := range []ApplyContext{{Positional: -1}, {Positional: 1, Insert: true}} {
				before := deepCopy(sample).(bson.D)
				out, changed, err := up.Apply(sample, ac)
				if !mql.Identical(sample, before) {
					t.Fatalf("Apply modified its input")
				}
				if err == nil && !changed && !mql.Identical(out, sample) {
					t.Fatalf("unchanged result differs: %s", mql.FormatValue(out))
				}
			}
		}
	})
}
