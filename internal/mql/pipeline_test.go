package mql

import (
	"errors"
	"iter"
	"slices"
	"strings"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// aggTestDocs parses a relaxed Extended JSON array of documents.
func aggTestDocs(tb testing.TB, s string) []bson.D {
	tb.Helper()
	arr, ok := aggTestDoc(tb, `{"a": `+s+`}`)[0].Value.(bson.A)
	if !ok {
		tb.Fatalf("%s is not an array", s)
	}
	out := make([]bson.D, len(arr))
	for i, v := range arr {
		d, ok := v.(bson.D)
		if !ok {
			tb.Fatalf("element %d of %s is not a document", i, s)
		}
		out[i] = d
	}
	return out
}

// aggTestRun runs a pipeline over docs and renders the output as one
// canonical Extended JSON string.
func aggTestRun(tb testing.TB, p *Pipeline, docs []bson.D) (string, error) {
	tb.Helper()
	out := bson.A{}
	for d, err := range p.Run(aggTestSource(docs)) {
		if err != nil {
			return "", err
		}
		out = append(out, d)
	}
	return aggTestJSON(tb, out), nil
}

// aggTestSource streams docs without errors.
func aggTestSource(docs []bson.D) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		for _, d := range docs {
			if !yield(d, nil) {
				return
			}
		}
	}
}

func TestPipelineStages(t *testing.T) {
	t.Parallel()
	const orders = `[
		{"_id": 1, "item": "a", "qty": 5, "price": 10, "tags": ["x", "y"], "cust": {"name": "ann", "tier": 1}},
		{"_id": 2, "item": "b", "qty": 1, "price": 2.5, "tags": [], "cust": {"name": "bob", "tier": 2}},
		{"_id": 3, "item": "a", "qty": 2, "price": 10, "tags": null, "cust": {"name": "cy", "tier": 1}},
		{"_id": 4, "item": "c", "qty": 7, "price": 1, "cust": {"name": "dee", "tier": 3}}
	]`
	tests := []struct {
		name     string
		pipeline string
		want     string
		code     mongoerr.Code
	}{
		{name: "match", pipeline: `[{"$match": {"item": "a"}}, {"$project": {"_id": 1}}]`, want: `[{"_id": 1}, {"_id": 3}]`},
		{name: "match expr", pipeline: `[{"$match": {"$expr": {"$gt": ["$qty", 4]}}}, {"$project": {"_id": 1}}]`, want: `[{"_id": 1}, {"_id": 4}]`},
		{name: "project computed", pipeline: `[{"$limit": 1}, {"$project": {"_id": 0, "total": {"$multiply": ["$qty", "$price"]}}}]`, want: `[{"total": 50}]`},
		{name: "addFields dotted and nested merge", pipeline: `[{"$limit": 1}, {"$addFields": {"cust.vip": true, "cust": {"since": 2020}, "n": "$qty"}}, {"$project": {"cust": 1, "n": 1, "_id": 0}}]`,
			want: `[{"cust": {"name": "ann", "tier": 1, "vip": true, "since": 2020}, "n": 5}]`},
		{name: "set evaluates against input", pipeline: `[{"$limit": 1}, {"$set": {"qty": 100, "old": "$qty"}}, {"$project": {"qty": 1, "old": 1, "_id": 0}}]`, want: `[{"qty": 100, "old": 5}]`},
		{name: "set REMOVE removes", pipeline: `[{"$limit": 1}, {"$set": {"qty": "$$REMOVE"}}, {"$project": {"qty": 1}}]`, want: `[{"_id": 1}]`},
		{name: "unset", pipeline: `[{"$limit": 1}, {"$unset": ["tags", "cust.tier", "price", "qty", "item"]}]`, want: `[{"_id": 1, "cust": {"name": "ann"}}]`},
		{name: "unset string", pipeline: `[{"$skip": 3}, {"$unset": "cust"}]`, want: `[{"_id": 4, "item": "c", "qty": 7, "price": 1}]`},
		{name: "sort skip limit", pipeline: `[{"$sort": {"qty": -1}}, {"$skip": 1}, {"$limit": 2}, {"$project": {"_id": 1}}]`, want: `[{"_id": 1}, {"_id": 3}]`},
		{name: "sort then limit top-k stable", pipeline: `[{"$sort": {"price": -1}}, {"$limit": 2}, {"$project": {"_id": 1}}]`, want: `[{"_id": 1}, {"_id": 3}]`},
		{name: "group", pipeline: `[{"$group": {"_id": "$item", "n": {"$sum": 1}, "q": {"$sum": "$qty"}, "avg": {"$avg": "$price"}, "ids": {"$push": "$_id"}, "first": {"$first": "$cust.name"}, "last": {"$last": "$cust.name"}, "min": {"$min": "$qty"}, "max": {"$max": "$qty"}}}]`,
			want: `[{"_id": "a", "n": 2, "q": 7, "avg": 10.0, "ids": [1, 3], "first": "ann", "last": "cy", "min": 2, "max": 5},
				{"_id": "b", "n": 1, "q": 1, "avg": 2.5, "ids": [2], "first": "bob", "last": "bob", "min": 1, "max": 1},
				{"_id": "c", "n": 1, "q": 7, "avg": 1.0, "ids": [4], "first": "dee", "last": "dee", "min": 7, "max": 7}]`},
		{name: "group null id and count", pipeline: `[{"$group": {"_id": null, "n": {"$count": {}}, "tiers": {"$addToSet": "$cust.tier"}}}]`, want: `[{"_id": null, "n": 4, "tiers": [1, 2, 3]}]`},
		{name: "group compound id", pipeline: `[{"$match": {"_id": {"$lte": 2}}}, {"$group": {"_id": {"i": "$item", "t": "$cust.tier"}}}]`, want: `[{"_id": {"i": "a", "t": 1}}, {"_id": {"i": "b", "t": 2}}]`},
		{name: "group avg of nothing", pipeline: `[{"$group": {"_id": 0, "a": {"$avg": "$nope"}, "s": {"$sum": "$item"}}}]`, want: `[{"_id": 0, "a": null, "s": 0}]`},
		{name: "count", pipeline: `[{"$match": {"item": "a"}}, {"$count": "total"}]`, want: `[{"total": 2}]`},
		{name: "count of nothing", pipeline: `[{"$match": {"item": "zz"}}, {"$count": "total"}]`, want: `[]`},
		{name: "replaceRoot", pipeline: `[{"$limit": 2}, {"$replaceRoot": {"newRoot": "$cust"}}]`, want: `[{"name": "ann", "tier": 1}, {"name": "bob", "tier": 2}]`},
		{name: "replaceWith", pipeline: `[{"$limit": 1}, {"$replaceWith": {"n": "$cust.name"}}]`, want: `[{"n": "ann"}]`},
		{name: "replaceRoot non-document", pipeline: `[{"$replaceRoot": {"newRoot": "$qty"}}]`, code: 40228},
		{name: "unwind", pipeline: `[{"$unwind": "$tags"}, {"$project": {"tags": 1}}]`, want: `[{"_id": 1, "tags": "x"}, {"_id": 1, "tags": "y"}]`},
		{name: "unwind preserve and index", pipeline: `[{"$unwind": {"path": "$tags", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}}, {"$project": {"tags": 1, "i": 1}}]`,
			want: `[{"_id": 1, "tags": "x", "i": {"$numberLong": "0"}}, {"_id": 1, "tags": "y", "i": {"$numberLong": "1"}}, {"_id": 2, "i": null}, {"_id": 3, "tags": null, "i": null}, {"_id": 4, "i": null}]`},
		{name: "unwind scalar", pipeline: `[{"$limit": 1}, {"$unwind": "$qty"}, {"$project": {"qty": 1}}]`, want: `[{"_id": 1, "qty": 5}]`},
		{name: "unwind path without dollar", pipeline: `[{"$unwind": "tags"}]`, code: 28818},
		{name: "sortByCount", pipeline: `[{"$sortByCount": "$item"}, {"$limit": 1}]`, want: `[{"_id": "a", "count": 2}]`},
		{name: "redact", pipeline: `[{"$limit": 1}, {"$redact": {"$cond": [{"$eq": ["$tier", 1]}, "$$PRUNE", "$$DESCEND"]}}, {"$project": {"cust": 1}}]`, want: `[{"_id": 1}]`},
		{name: "redact bad result", pipeline: `[{"$redact": 1}]`, code: 17053},
		{name: "facet", pipeline: `[{"$facet": {"n": [{"$count": "c"}], "top": [{"$sort": {"qty": -1}}, {"$limit": 1}, {"$project": {"_id": 1}}]}}]`, want: `[{"n": [{"c": 4}], "top": [{"_id": 4}]}]`},
		{name: "sample size covers all", pipeline: `[{"$sample": {"size": 10}}, {"$count": "n"}]`, want: `[{"n": 4}]`},
		{name: "unknown stage", pipeline: `[{"$foo": {}}]`, code: 40324},
		{name: "unsupported stage", pipeline: `[{"$lookup": {}}]`, code: mongoerr.NotImplemented},
		{name: "two fields in stage", pipeline: `[{"$match": {}, "$limit": 1}]`, code: 40323},
		{name: "limit zero", pipeline: `[{"$limit": 0}]`, code: 15958},
		{name: "skip negative", pipeline: `[{"$skip": -1}]`, code: 15956},
		{name: "group without id", pipeline: `[{"$group": {"n": {"$sum": 1}}}]`, code: 15955},
		{name: "group unknown accumulator", pipeline: `[{"$group": {"_id": 1, "n": {"$foo": 1}}}]`, code: 15952},
		{name: "group non-accumulator field", pipeline: `[{"$group": {"_id": 1, "n": 1}}]`, code: 40234},
		{name: "group array argument", pipeline: `[{"$group": {"_id": 1, "n": {"$push": [1, 2]}}}]`, code: 40237},
		{name: "count bad name", pipeline: `[{"$count": "$x"}]`, code: 40158},
		{name: "eval error surfaces", pipeline: `[{"$project": {"x": {"$divide": [1, 0]}}}]`, code: mongoerr.BadValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stages := aggTestDocs(t, tc.pipeline)
			p, err := CompilePipeline(stages)
			var got string
			if err == nil {
				got, err = aggTestRun(t, p, aggTestDocs(t, orders))
			}
			if aggTestWantErr(t, err, tc.code) {
				return
			}
			want := aggTestJSON(t, aggTestDoc(t, `{"v": `+tc.want+`}`)[0].Value)
			if got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestPipelineStreamingAndApplyOne(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		pipeline  string
		streaming bool
		doc       string
		want      string // "" means dropped
	}{
		{name: "match keeps", pipeline: `[{"$match": {"operationType": "insert"}}]`, streaming: true, doc: `{"operationType": "insert"}`, want: `{"operationType": "insert"}`},
		{name: "match drops", pipeline: `[{"$match": {"operationType": "insert"}}]`, streaming: true, doc: `{"operationType": "delete"}`},
		{name: "set then project", pipeline: `[{"$set": {"q": "$fullDocument.qty"}}, {"$project": {"_id": 1, "q": 1}}]`, streaming: true,
			doc: `{"_id": {"_data": "00"}, "fullDocument": {"qty": 3}}`, want: `{"_id": {"_data": "00"}, "q": 3}`},
		{name: "redact prune", pipeline: `[{"$redact": "$$PRUNE"}]`, streaming: true, doc: `{"a": 1}`},
		{name: "limit is not per-document", pipeline: `[{"$limit": 1}]`},
		{name: "group is not per-document", pipeline: `[{"$group": {"_id": 1}}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := CompilePipeline(aggTestDocs(t, tc.pipeline))
			if err != nil {
				t.Fatal(err)
			}
			if p.Streaming() != tc.streaming {
				t.Fatalf("Streaming() = %v, want %v", p.Streaming(), tc.streaming)
			}
			if !tc.streaming {
				if _, _, err := p.ApplyOne(bson.D{}); err == nil {
					t.Fatal("ApplyOne on a blocking pipeline succeeded")
				}
				return
			}
			out, keep, err := p.ApplyOne(aggTestDoc(t, tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if keep != (tc.want != "") {
				t.Fatalf("keep = %v, want %v", keep, tc.want != "")
			}
			if keep {
				if g, w := aggTestJSON(t, out), aggTestJSON(t, aggTestDoc(t, tc.want)); g != w {
					t.Fatalf("got %s, want %s", g, w)
				}
			}
		})
	}
}

func TestPipelineStageNames(t *testing.T) {
	t.Parallel()
	p, err := CompilePipeline(aggTestDocs(t, `[{"$match": {}}, {"$sortByCount": "$a"}, {"$limit": 1}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"$match", "$sortByCount", "$limit"}
	got := p.StageNames()
	if !slices.Equal(got, want) {
		t.Fatalf("StageNames() = %v, want %v", got, want)
	}
	got[0] = "changed"
	if p.StageNames()[0] != "$match" {
		t.Fatal("StageNames exposes internal state")
	}
}

func TestPipelineMemoryLimit(t *testing.T) {
	t.Parallel()
	docs := make([]bson.D, 100)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}, {Key: "s", Value: strings.Repeat("x", 100)}}
	}
	tests := []struct {
		name     string
		pipeline string
		limit    int64
		code     mongoerr.Code
	}{
		{name: "sort over limit", pipeline: `[{"$sort": {"s": 1}}]`, limit: 1000, code: mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed},
		{name: "sort with small limit stays under", pipeline: `[{"$sort": {"_id": -1}}, {"$limit": 2}]`, limit: 1000},
		{name: "group push over limit", pipeline: `[{"$group": {"_id": null, "all": {"$push": "$s"}}}]`, limit: 1000, code: mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed},
		{name: "group count stays under", pipeline: `[{"$group": {"_id": null, "n": {"$sum": 1}}}]`, limit: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := CompilePipeline(aggTestDocs(t, tc.pipeline))
			if err != nil {
				t.Fatal(err)
			}
			_, err = aggTestRun(t, p.WithMemoryLimit(tc.limit), docs)
			if aggTestCode(err) != tc.code {
				t.Fatalf("err = %v, want code %d", err, tc.code)
			}
			if err != nil {
				var e *mongoerr.Error
				if errors.As(err, &e); e.Code.String() != "QueryExceededMemoryLimitNoDiskUseAllowed" {
					t.Fatalf("code name = %q", e.Code.String())
				}
			}
		})
	}
}

func TestPipelineLazy(t *testing.T) {
	t.Parallel()
	p, err := CompilePipeline(aggTestDocs(t, `[{"$match": {"a": {"$gte": 0}}}, {"$limit": 2}]`))
	if err != nil {
		t.Fatal(err)
	}
	pulled := 0
	src := func(yield func(bson.D, error) bool) {
		for i := range 1_000_000 {
			pulled++
			if !yield(bson.D{{Key: "a", Value: int32(i)}}, nil) {
				return
			}
		}
	}
	n := 0
	for _, err := range p.Run(src) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 || pulled != 2 {
		t.Fatalf("got %d documents after pulling %d, want 2 and 2", n, pulled)
	}
}

func TestPipelineSourceError(t *testing.T) {
	t.Parallel()
	p, err := CompilePipeline(aggTestDocs(t, `[{"$sort": {"a": 1}}]`))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	src := func(yield func(bson.D, error) bool) {
		if yield(bson.D{{Key: "a", Value: 1}}, nil) {
			yield(nil, boom)
		}
	}
	var got []error
	for _, err := range p.Run(src) {
		got = append(got, err)
	}
	if len(got) != 1 || !errors.Is(got[0], boom) {
		t.Fatalf("errors = %v, want exactly [boom]", got)
	}
}
