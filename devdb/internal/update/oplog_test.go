package update

import (
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestApplyDiff checks the $v: 2 diff ApplyDiff builds from what each
// operator did, as MongoDB's v2 log builder writes it (the server's change
// stream tests check the updateDescription read from it), and that
// ApplyDiff returns what Apply does.
func TestApplyDiff(t *testing.T) {
	for _, tc := range []struct {
		name, doc, update string
		filters           []string
		diff              string // "" when nothing changed
	}{
		{name: "$set replaces a subdocument whole", doc: `{"_id": 1, "a": {"b": 1, "c": 2}}`,
			update: `{"$set": {"a": {"b": 2, "c": 2}}}`, diff: `{"u": {"a": {"b": 2, "c": 2}}}`},
		{name: "a created path at its first new component", doc: `{"_id": 1, "a": {"k": 1}}`,
			update: `{"$set": {"a.b.c": 1, "a.b.d": 2, "n.m": 3}}`, diff: `{"i": {"n": {"m": 3}}, "sa": {"i": {"b": {"c": 1, "d": 2}}}}`},
		{name: "created below an array element", doc: `{"_id": 1, "a": [{"k": 1}]}`,
			update: `{"$set": {"a.0.b.c": 1, "a.2.x": 1}}`, diff: `{"sa": {"a": true, "s0": {"i": {"b": {"c": 1}}}, "u2": {"x": 1}}}`},
		{name: "arrays logged whole", doc: `{"_id": 1, "a": [1, 2, 3], "b": [1], "c": [3, 1]}`,
			update: `{"$pop": {"a": -1}, "$addToSet": {"b": 2}, "$pull": {"c": 3}}`, diff: `{"u": {"a": [2, 3], "b": [1, 2], "c": [1]}}`},
		{name: "$push appends, $slice that does not cut", doc: `{"_id": 1, "a": [1]}`,
			update: `{"$push": {"a": {"$each": [2, 3], "$slice": 5}}}`, diff: `{"sa": {"a": true, "u1": 2, "u2": 3}}`},
		{name: "$push with $position past the end appends", doc: `{"_id": 1, "a": [1]}`,
			update: `{"$push": {"a": {"$each": [2], "$position": 5}}}`, diff: `{"sa": {"a": true, "u1": 2}}`},
		{name: "$push with $position at the end is logged whole", doc: `{"_id": 1, "a": [1]}`,
			update: `{"$push": {"a": {"$each": [2], "$position": 1}}}`, diff: `{"u": {"a": [1, 2]}}`},
		{name: "$push creating the array", doc: `{"_id": 1}`,
			update: `{"$push": {"a": 1}}`, diff: `{"i": {"a": [1]}}`},
		{name: "$unset in documents and arrays", doc: `{"_id": 1, "a": {"b": 1, "c": 1}, "arr": [1, 2], "z": 1}`,
			update: `{"$unset": {"a.b": "", "arr.1": "", "z": "", "missing": ""}}`,
			diff:   `{"d": {"z": false}, "sa": {"d": {"b": false}}, "sarr": {"a": true, "u1": null}}`},
		{name: "$rename between subdocuments", doc: `{"_id": 1, "x": {"a": 1, "k": 1}, "y": {"k": 1}}`,
			update: `{"$rename": {"x.a": "y.b"}}`, diff: `{"sy": {"i": {"b": 1}}, "sx": {"d": {"a": false}}}`},
		{name: "$rename into a created subdocument", doc: `{"_id": 1, "a": 1}`,
			update: `{"$rename": {"a": "n.m"}}`, diff: `{"d": {"a": false}, "i": {"n": {"m": 1}}}`},
		{name: "$[<id>] and $[]", doc: `{"_id": 1, "a": [{"x": 1}, {"x": 5}], "b": [1, 2]}`, filters: []string{`{"e.x": {"$gt": 2}}`},
			update: `{"$set": {"a.$[e].x": 0}, "$inc": {"b.$[]": 1}}`,
			diff:   `{"sa": {"a": true, "s1": {"u": {"x": 0}}}, "sb": {"a": true, "u0": 2, "u1": 3}}`},
		{name: "$setOnInsert outside an insert does nothing", doc: `{"_id": 1}`,
			update: `{"$setOnInsert": {"a": 1}}`},
		{name: "only no-ops", doc: `{"_id": 1, "a": 1, "m": 5, "b": [1]}`,
			update: `{"$set": {"a": 1}, "$max": {"m": 0}, "$addToSet": {"b": 1}, "$unset": {"c": ""}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts Options
			for _, f := range tc.filters {
				opts.ArrayFilters = append(opts.ArrayFilters, parseDoc(t, f))
			}
			u, err := Compile(parseDoc(t, tc.update), opts)
			if err != nil {
				t.Fatal(err)
			}
			doc := parseDoc(t, tc.doc)
			ac := ApplyContext{Positional: -1, Now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			out, diff, changed, err := u.ApplyDiff(doc, ac)
			if err != nil {
				t.Fatal(err)
			}
			want, wantChanged, _ := u.Apply(doc, ac)
			if changed != wantChanged || !mql.Identical(out, want) {
				t.Fatalf("ApplyDiff gave %v (changed %v), Apply %v (changed %v)", out, changed, want, wantChanged)
			}
			if tc.diff == "" {
				if changed || diff != nil {
					t.Fatalf("changed %v, diff %v; want no change", changed, diff)
				}
				return
			}
			wantDiff := parseDoc(t, tc.diff)
			a, _ := bson.Marshal(diff)
			b, _ := bson.Marshal(wantDiff)
			if string(a) != string(b) {
				t.Fatalf("diff\n got %v\nwant %v", diff, wantDiff)
			}
		})
	}
}
