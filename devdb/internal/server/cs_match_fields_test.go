package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestMatchFieldsOf: the fields a $match-only pipeline reads, and no fast
// path for filters that may read the whole document.
func TestMatchFieldsOf(t *testing.T) {
	tests := []struct {
		pipeline string
		want     []string // nil: no fast path
	}{
		{`[{"$match": {"$or": [{"operationType": "invalidate"}, {"operationType": {"$in": ["insert"]}}]}}]`, []string{"operationType"}},
		{`[{"$match": {"ns.db": {"$ne": "state"}}}, {"$match": {"fullDocument.qty": {"$lt": 5}, "operationType": "update"}}]`, []string{"ns", "fullDocument", "operationType"}},
		{`[{"$match": {"$nor": [{"a": 1}], "$and": [{"b.c": {"$elemMatch": {"x": 1}}}]}}]`, []string{"a", "b"}},
		{`[{"$match": {}}]`, []string{}},
		{`[{"$match": {"$expr": {"$eq": ["$a", 1]}}}]`, nil},
		{`[{"$match": {"$or": [{"a": 1}, {"$where": "true"}]}}]`, nil},
		{`[{"$match": {"$jsonSchema": {}}}]`, nil},
		{`[{"$match": {"$and": {"a": 1}}}]`, nil},
		{`[{"$project": {"a": 1}}]`, nil},
	}
	for _, tc := range tests {
		got, ok := matchFieldsOf(stagesOf(t, tc.pipeline))
		if ok != (tc.want != nil) || (ok && !slices.Equal(got, tc.want)) {
			t.Errorf("%s: %v %v, want %v", tc.pipeline, got, ok, tc.want)
		}
	}
}

// TestMatchDecodeSameAnswers is the differential test of the fast path:
// for $match-only pipelines whose fields matchFieldsOf names, the pipeline
// keeps or drops an event decoded with only those fields (matchDecode)
// exactly as it does the whole event decoded (decodeEventD).
func TestMatchDecodeSameAnswers(t *testing.T) {
	pipelines := []string{
		`[{"$match": {"$or": [{"operationType": "invalidate"}, {"operationType": {"$in": ["insert"]}}]}}]`,
		`[{"$match": {"$or": [{"operationType": "invalidate"}, {"operationType": {"$in": ["update", "replace"]}}]}}]`,
		`[{"$match": {"ns.db": {"$ne": "state"}}}, {"$match": {"$or": [{"operationType": "invalidate"}, {"$and": [{"operationType": {"$in": ["insert", "update"]}}, {"fullDocument.qty": {"$lt": 50}}]}]}}]`,
		`[{"$match": {"fullDocument.tags": {"$elemMatch": {"$eq": "b"}}}}]`,
		`[{"$match": {"fullDocument.tags": "a", "documentKey._id": {"$gte": 3}}}]`,
		`[{"$match": {"updateDescription.updatedFields.qty": {"$exists": true}}}]`,
		`[{"$match": {"fullDocument": null}}]`,
		`[{"$match": {"fullDocument.missing": {"$exists": false}, "wallTime": {"$type": "date"}}}]`,
		`[{"$match": {"$nor": [{"fullDocument.name": {"$regex": "^w"}}]}}]`,
		`[{"$match": {"fullDocument.qty": {"$not": {"$gt": 10}}}}]`,
		`[{"$match": {"clusterTime": {"$gt": {"$timestamp": {"t": 1700000000, "i": 3}}}}}]`,
		`[{"$match": {"dup": 1}}]`,
		`[{"$match": {}}]`,
	}
	var events []bson.Raw
	for i := range 8 {
		ev := bson.D{
			{Key: "_id", Value: bson.D{{Key: "_data", Value: fmt.Sprintf("82%04X", i)}}},
			{Key: "operationType", Value: []string{"insert", "update", "replace", "delete"}[i%4]},
			{Key: "clusterTime", Value: bson.Timestamp{T: 1700000000, I: uint32(i)}},
			{Key: "wallTime", Value: bson.NewDateTimeFromTime(time.Unix(1700000000, 0))},
			{Key: "ns", Value: bson.D{{Key: "db", Value: []string{"shop", "state"}[i%2]}, {Key: "coll", Value: "items"}}},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int64(i)}}},
		}
		if i%4 != 3 {
			ev = append(ev, bson.E{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: int64(i)}, {Key: "qty", Value: int32(i * 15)},
				{Key: "name", Value: []string{"widget", "gadget"}[i%2]}, {Key: "tags", Value: bson.A{"a", []string{"b", "c"}[i%2]}},
				{Key: "dec", Value: bson.NewDecimal128(1, uint64(i))}}})
		}
		if i%4 == 1 {
			ev = append(ev, bson.E{Key: "updateDescription", Value: bson.D{{Key: "updatedFields", Value: bson.D{{Key: "qty", Value: int32(i)}}}, {Key: "removedFields", Value: bson.A{}}}})
		}
		if i == 5 {
			ev = append(ev, bson.E{Key: "fullDocument", Value: nil}, bson.E{Key: "dup", Value: int32(1)}, bson.E{Key: "dup", Value: int32(2)})
		}
		if i == 6 {
			// A value decodeEventD declines (old binary): both fall back.
			ev = append(ev, bson.E{Key: "old", Value: bson.Binary{Subtype: 2, Data: []byte{1, 2}}})
		}
		raw, err := bson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, raw)
	}
	for _, src := range pipelines {
		stages := stagesOf(t, src)
		fields, ok := matchFieldsOf(stages)
		if !ok {
			t.Fatalf("%s: no fast path", src)
		}
		p, err := compileChangeStreamPipeline(stages)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		kept := 0
		for i, raw := range events {
			full, ok := decodeEventD(raw)
			if !ok {
				if err := bson.Unmarshal(raw, &full); err != nil {
					t.Fatal(err)
				}
			}
			_, want, werr := p.ApplyOne(full)
			part, ok := matchDecode(raw, fields)
			if !ok {
				if i != 6 {
					t.Errorf("%s: event %d: matchDecode declined", src, i)
				}
				continue
			}
			_, got, gerr := p.ApplyOne(part)
			if got != want || (gerr == nil) != (werr == nil) {
				t.Errorf("%s: event %d: keep %v (%v) on %v, want %v (%v)", src, i, got, gerr, part, want, werr)
			}
			if want {
				kept++
			}
		}
		t.Logf("%s: %d of %d kept", src, kept, len(events))
	}
}

func stagesOf(t *testing.T, src string) bson.A {
	t.Helper()
	var doc bson.D
	if err := bson.UnmarshalExtJSON([]byte(`{"p": `+src+`}`), false, &doc); err != nil {
		t.Fatal(err)
	}
	return doc[0].Value.(bson.A)
}

// TestOpFilterSameAnswers is the differential test of the operation-type
// fast path: which pipelines opFilterOf recognises, and for those, on
// events of every operation type (an entry's op is its event's
// operationType), the set it returns keeps or drops an event exactly as
// the compiled pipeline does on the whole decoded event.
func TestOpFilterSameAnswers(t *testing.T) {
	recognised := []string{
		`[{"$match": {"$or": [{"operationType": "invalidate"}, {"operationType": {"$in": ["insert"]}}]}}]`,
		`[{"$match": {"$or": [{"operationType": "invalidate"}, {"operationType": {"$in": ["update", "replace"]}}]}}]`,
		`[{"$match": {"operationType": "delete"}}]`,
		`[{"$match": {"operationType": {"$in": []}}}]`,
		`[{"$match": {"$or": [{"operationType": "insert"}, {"$or": [{"operationType": "delete"}, {"operationType": {"$in": ["update"]}}]}]}}]`,
	}
	declined := []string{
		`[{"$match": {"ns.db": {"$ne": "state"}}}, {"$match": {"$or": [{"operationType": "invalidate"}, {"operationType": {"$in": ["insert"]}}]}}]`,
		`[{"$match": {"operationType": {"$in": ["insert", {"$regex": "^up"}]}}}]`,
		`[{"$match": {"operationType": {"$in": ["insert"], "$ne": "x"}}}]`,
		`[{"$match": {"operationType": {"$nin": ["insert"]}}}]`,
		`[{"$match": {"operationType": "insert", "ns.db": "shop"}}]`,
		`[{"$match": {"$or": [{"operationType": "insert"}, {"fullDocument.qty": 1}]}}]`,
		`[{"$match": {"$and": [{"operationType": "insert"}]}}]`,
		`[{"$match": {"operationType": 1}}]`,
		`[{"$match": {}}]`,
		`[{"$match": {"operationType": "insert"}}, {"$match": {"operationType": "insert"}}]`,
	}
	for _, src := range declined {
		if ops, ok := opFilterOf(stagesOf(t, src)); ok {
			t.Errorf("%s: recognised as %v", src, ops)
		}
	}
	opTypes := []string{opInsert, opUpdate, opReplace, opDelete, "invalidate", "", "Insert"}
	for _, src := range recognised {
		stages := stagesOf(t, src)
		ops, ok := opFilterOf(stages)
		if !ok {
			t.Fatalf("%s: not recognised", src)
		}
		p, err := compileChangeStreamPipeline(stages)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		for _, op := range opTypes {
			ev := bson.D{
				{Key: "_id", Value: bson.D{{Key: "_data", Value: "8200"}}},
				{Key: "operationType", Value: op},
				{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "items"}}},
				{Key: "fullDocument", Value: bson.D{{Key: "operationType", Value: "insert"}}},
			}
			_, want, err := p.ApplyOne(ev)
			if got := slices.Contains(ops, op); err != nil || got != want {
				t.Errorf("%s: operationType %q: fast path keeps %v, the pipeline %v (%v)", src, op, got, want, err)
			}
		}
	}
}
