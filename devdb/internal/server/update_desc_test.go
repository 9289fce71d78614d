package server

import (
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestUpdateDescriptionOfOperators runs updates through the driver and
// checks the change event each produces and the o of its local.oplog.rs
// entry, against what MongoDB 6.0 reports: an operator update is described
// by what each operator logged (the path it named, with its whole new value;
// $pull, $pop, $addToSet and a $push with $sort, $slice or $position the
// whole array; a plain $push onto a non-empty array each appended element),
// not by a diff of the document before and after, and is always logged as
// a delta; a pipeline update is diffed, and logged (and reported) as a
// replacement when the diff is not smaller than the document.
func TestUpdateDescriptionOfOperators(t *testing.T) {
	pad := strings.Repeat("p", 64)
	tests := []struct {
		name   string
		doc    string // the document inserted first
		filter string // default {"_id": 1}
		update string // an operator document, or a pipeline ([...])
		af     string // arrayFilters
		// desc is the updateDescription of the update event, diff the diff
		// of the oplog entry's {$v: 2, diff}; both empty: no event and no
		// entry. replace: a replace event with this fullDocument, logged as
		// the replacement.
		desc, diff, replace string
	}{
		{name: "$set of a whole subdocument",
			doc: `{"_id": 1, "addr": {"city": "X", "zip": "1"}}`, update: `{"$set": {"addr": {"city": "Y", "zip": "1"}}}`,
			desc: `{"updatedFields": {"addr": {"city": "Y", "zip": "1"}}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"addr": {"city": "Y", "zip": "1"}}}`},
		{name: "$set of a whole array",
			doc: `{"_id": 1, "tags": ["a", "b", "c"]}`, update: `{"$set": {"tags": ["z"]}}`,
			desc: `{"updatedFields": {"tags": ["z"]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"tags": ["z"]}}`},
		{name: "$pull",
			doc: `{"_id": 1, "tags": ["a", "b", "c"]}`, update: `{"$pull": {"tags": "b"}}`,
			desc: `{"updatedFields": {"tags": ["a", "c"]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"tags": ["a", "c"]}}`},
		{name: "$pullAll",
			doc: `{"_id": 1, "tags": ["a", "b", "c", "b"]}`, update: `{"$pullAll": {"tags": ["b"]}}`,
			desc: `{"updatedFields": {"tags": ["a", "c"]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"tags": ["a", "c"]}}`},
		{name: "$pop of a nested array",
			doc: `{"_id": 1, "a": {"c": [1, 2, 3], "d": 1}}`, update: `{"$pop": {"a.c": 1}}`,
			desc: `{"updatedFields": {"a.c": [1, 2]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sa": {"u": {"c": [1, 2]}}}`},
		{name: "$addToSet",
			doc: `{"_id": 1, "tags": ["a"]}`, update: `{"$addToSet": {"tags": "q"}}`,
			desc: `{"updatedFields": {"tags": ["a", "q"]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"tags": ["a", "q"]}}`},
		{name: "plain $push appends elements",
			doc: `{"_id": 1, "n": [1, 2, 3]}`, update: `{"$push": {"n": {"$each": [4, 5]}}}`,
			desc: `{"updatedFields": {"n.3": 4, "n.4": 5}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sn": {"a": true, "u3": 4, "u4": 5}}`},
		{name: "$push onto an empty array",
			doc: `{"_id": 1, "n": []}`, update: `{"$push": {"n": 1}}`,
			desc: `{"updatedFields": {"n": [1]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"n": [1]}}`},
		{name: "$push with $sort",
			doc: `{"_id": 1, "n": [3, 1, 2]}`, update: `{"$push": {"n": {"$each": [0], "$sort": 1}}}`,
			desc: `{"updatedFields": {"n": [0, 1, 2, 3]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"n": [0, 1, 2, 3]}}`},
		{name: "$push with $position",
			doc: `{"_id": 1, "n": [1, 2]}`, update: `{"$push": {"n": {"$each": [0], "$position": 0}}}`,
			desc: `{"updatedFields": {"n": [0, 1, 2]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"n": [0, 1, 2]}}`},
		{name: "$push with a $slice that cuts",
			doc: `{"_id": 1, "n": [1, 2]}`, update: `{"$push": {"n": {"$each": [3], "$slice": -2}}}`,
			desc: `{"updatedFields": {"n": [2, 3]}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"n": [2, 3]}}`},
		{name: "$max of a subdocument",
			doc: `{"_id": 1, "a": {"b": 1, "c": 1}}`, update: `{"$max": {"a": {"b": 2, "c": 1}}}`,
			desc: `{"updatedFields": {"a": {"b": 2, "c": 1}}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"a": {"b": 2, "c": 1}}}`},
		{name: "$inc of a nested field",
			doc: `{"_id": 1, "a": {"b": 1}}`, update: `{"$inc": {"a.b": 1}}`,
			desc: `{"updatedFields": {"a.b": 2}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sa": {"u": {"b": 2}}}`},
		{name: "$set creating a path logs its first new component",
			doc: `{"_id": 1, "x": {"k": 1}}`, update: `{"$set": {"x.y.z": 1, "x.y.w": 2}}`,
			desc: `{"updatedFields": {"x.y": {"w": 2, "z": 1}}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sx": {"i": {"y": {"w": 2, "z": 1}}}}`},
		{name: "$set of an element past the end of an array",
			doc: `{"_id": 1, "a": [1]}`, update: `{"$set": {"a.3": 4}}`,
			desc: `{"updatedFields": {"a.3": 4}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sa": {"a": true, "u3": 4}}`},
		{name: "$unset",
			doc: `{"_id": 1, "a": 1, "b": {"c": 1, "d": 2}}`, update: `{"$unset": {"a": "", "b.c": ""}}`,
			desc: `{"updatedFields": {}, "removedFields": ["a", "b.c"], "truncatedArrays": []}`,
			diff: `{"d": {"a": false}, "sb": {"d": {"c": false}}}`},
		{name: "$unset of an array element sets it to null",
			doc: `{"_id": 1, "arr": [1, 2]}`, update: `{"$unset": {"arr.0": ""}}`,
			desc: `{"updatedFields": {"arr.0": null}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sarr": {"a": true, "u0": null}}`},
		{name: "$rename",
			doc: `{"_id": 1, "a": 1, "b": 2}`, update: `{"$rename": {"a": "c"}}`,
			desc: `{"updatedFields": {"c": 1}, "removedFields": ["a"], "truncatedArrays": []}`,
			diff: `{"d": {"a": false}, "i": {"c": 1}}`},
		{name: "$rename onto an equal value still removes the source",
			doc: `{"_id": 1, "a": 1, "b": 1}`, update: `{"$rename": {"a": "b"}}`,
			desc: `{"updatedFields": {}, "removedFields": ["a"], "truncatedArrays": []}`,
			diff: `{"d": {"a": false}}`},
		{name: "positional $",
			doc: `{"_id": 1, "arr": [{"x": 1}, {"x": 2}]}`, filter: `{"_id": 1, "arr.x": 2}`, update: `{"$set": {"arr.$.x": 5}}`,
			desc: `{"updatedFields": {"arr.1.x": 5}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sarr": {"a": true, "s1": {"u": {"x": 5}}}}`},
		{name: "$[<id>] with arrayFilters",
			doc: `{"_id": 1, "arr": [{"x": 1}, {"x": 2}, {"x": 3}]}`, update: `{"$inc": {"arr.$[e].x": 10}}`, af: `{"e.x": {"$gte": 2}}`,
			desc: `{"updatedFields": {"arr.1.x": 12, "arr.2.x": 13}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sarr": {"a": true, "s1": {"u": {"x": 12}}, "s2": {"u": {"x": 13}}}}`},
		{name: "$[] setting whole elements",
			doc: `{"_id": 1, "arr": [{"x": 1, "y": 1}]}`, update: `{"$set": {"arr.$[]": {"x": 2, "y": 1}}}`,
			desc: `{"updatedFields": {"arr.0": {"x": 2, "y": 1}}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sarr": {"a": true, "u0": {"x": 2, "y": 1}}}`},
		{name: "operators are logged in field order",
			doc: `{"_id": 1, "b": 1, "a": [1]}`, update: `{"$set": {"b": 2}, "$push": {"a": 2}, "$unset": {"z": ""}}`,
			desc: `{"updatedFields": {"b": 2, "a.1": 2}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"b": 2}, "sa": {"a": true, "u1": 2}}`},
		{name: "a delta not smaller than the document is still a delta",
			doc: `{"_id": 1, "a": {"b": {"c": {"d": 1}}}}`, update: `{"$set": {"a.b.c.d": 2}}`,
			desc: `{"updatedFields": {"a.b.c.d": 2}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"sa": {"sb": {"sc": {"u": {"d": 2}}}}}`},
		{name: "no change: no event, no oplog entry",
			doc: `{"_id": 1, "a": 1, "t": ["a"], "u": [1]}`, update: `{"$set": {"a": 1}, "$addToSet": {"t": "a"}, "$pull": {"u": 2}, "$unset": {"z": ""}}`},
		{name: "pipeline on a small document is a replacement",
			doc: `{"_id": 1, "a": 1}`, update: `[{"$set": {"a": 2}}]`,
			replace: `{"_id": 1, "a": 2}`},
		{name: "pipeline with a small delta is diffed",
			doc: `{"_id": 1, "a": 1, "p": "` + pad + `"}`, update: `[{"$set": {"a": 2}}]`,
			desc: `{"updatedFields": {"a": 2}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"a": 2}}`},
		{name: "pipeline: a nested diff not smaller than the value reports it whole",
			doc: `{"_id": 1, "x": {"a": 1}, "p": "` + pad + `"}`, update: `[{"$set": {"x.a": 2}}]`,
			desc: `{"updatedFields": {"x": {"a": 2}}, "removedFields": [], "truncatedArrays": []}`,
			diff: `{"u": {"x": {"a": 2}}}`},
		{name: "pipeline truncating an array",
			doc: `{"_id": 1, "arr": [1, 2, 3], "p": "` + pad + `"}`, update: `[{"$set": {"arr": {"$slice": ["$arr", 2]}}}]`,
			desc: `{"updatedFields": {}, "removedFields": [], "truncatedArrays": [{"field": "arr", "newSize": 2}]}`,
			diff: `{"sarr": {"a": true, "l": 2}}`},
	}

	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("updesc")
	cs, err := db.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	collName := func(i int) string { return fmt.Sprintf("c%02d", i) }
	for i, tc := range tests {
		coll := db.Collection(collName(i))
		if _, err := coll.InsertOne(ctx, extDoc(t, tc.doc)); err != nil {
			t.Fatalf("%s: insert: %v", tc.name, err)
		}
		filter := `{"_id": 1}`
		if tc.filter != "" {
			filter = tc.filter
		}
		u := extDoc(t, `{"u": `+tc.update+`}`)[0].Value
		opts := options.UpdateOne()
		if tc.af != "" {
			opts.SetArrayFilters([]any{extDoc(t, tc.af)})
		}
		if _, err := coll.UpdateOne(ctx, extDoc(t, filter), u, opts); err != nil {
			t.Fatalf("%s: update: %v", tc.name, err)
		}
	}
	if _, err := db.Collection("zz_end").InsertOne(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}

	events := map[string][]bson.D{}
	for cs.Next(ctx) {
		var ev bson.D
		if err := bson.Unmarshal(cs.Current, &ev); err != nil {
			t.Fatal(err)
		}
		coll, _ := get(ev, "ns", "coll").(string)
		if coll == "zz_end" {
			break
		}
		if op := get(ev, "operationType"); op != "insert" {
			events[coll] = append(events[coll], ev)
		}
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
	entries := map[string][]bson.D{}
	for _, e := range oplogEntries(t, c, bson.D{{Key: "op", Value: "u"}}) {
		ns, _ := get(e, "ns").(string)
		coll := strings.TrimPrefix(ns, "updesc.")
		entries[coll] = append(entries[coll], e)
	}

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, ents := events[collName(i)], entries[collName(i)]
			if tc.desc == "" && tc.replace == "" {
				if len(evs) != 0 || len(ents) != 0 {
					t.Fatalf("an update that changes nothing: events %v, oplog entries %v", evs, ents)
				}
				return
			}
			if len(evs) != 1 || len(ents) != 1 {
				t.Fatalf("want one event and one oplog entry, got events %v, entries %v", evs, ents)
			}
			ev, o := evs[0], get(ents[0], "o")
			if tc.replace != "" {
				if op := get(ev, "operationType"); op != "replace" {
					t.Errorf("operationType %v, want replace: %v", op, ev)
				}
				want := extDoc(t, tc.replace)
				if !equalDoc(t, get(ev, "fullDocument"), want) {
					t.Errorf("fullDocument %v, want %v", get(ev, "fullDocument"), want)
				}
				if !equalDoc(t, o, want) {
					t.Errorf("oplog o %v, want the replacement %v", o, want)
				}
				return
			}
			if op := get(ev, "operationType"); op != "update" {
				t.Fatalf("operationType %v, want update: %v", op, ev)
			}
			if want := extDoc(t, tc.desc); !equalDoc(t, get(ev, "updateDescription"), want) {
				t.Errorf("updateDescription\n got %v\nwant %v", get(ev, "updateDescription"), want)
			}
			wantO := bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: extDoc(t, tc.diff)}}
			if !equalDoc(t, o, wantO) {
				t.Errorf("oplog o\n got %v\nwant %v", o, wantO)
			}
		})
	}
}
