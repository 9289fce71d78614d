package mql

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// randSetValue returns a random value for randSetDoc: scalars, documents
// (with duplicate keys at times) and arrays of both.
func randSetValue(r *rand.Rand, depth int) any {
	switch r.IntN(5) {
	case 0, 1:
		if depth < 3 {
			return randSetDoc(r, depth+1)
		}
	case 2:
		if depth < 3 {
			return bson.A{randSetDoc(r, depth+1), int32(r.IntN(3)), bson.A{randSetDoc(r, depth+1)}}
		}
	}
	return int32(r.IntN(3))
}

func randSetDoc(r *rand.Rand, depth int) bson.D {
	var d bson.D
	for range r.IntN(6) {
		d = append(d, bson.E{Key: string(rune('a' + r.IntN(4))), Value: randSetValue(r, depth)})
	}
	return d
}

// TestAggSetPathsMatchesAggSetPath compares setting random paths (valid
// $addFields specifications or not) in random documents in one pass with
// setting them one by one with aggSetPath, with setDocs indexed and not.
func TestAggSetPathsMatchesAggSetPath(t *testing.T) {
	saved := setDocIndexMin
	t.Cleanup(func() { setDocIndexMin = saved })
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		doc := randSetDoc(r, 0)
		var paths [][]string
		var vals []any
		for range 1 + r.IntN(6) {
			var p []string
			for len(p) == 0 || r.IntN(2) == 0 && len(p) < 4 {
				p = append(p, string(rune('a'+r.IntN(4))))
			}
			paths = append(paths, p)
			var v any = Missing
			if r.IntN(4) != 0 {
				v = randSetValue(r, 2)
			}
			vals = append(vals, v)
		}
		want := doc
		for j, p := range paths {
			want = aggSetPath(want, p, vals[j])
		}
		render := func(d bson.D) string { return coreExtJSON(t, bson.D{{Key: "d", Value: d}}) }
		before := render(doc)
		for _, indexMin := range []int{1, 1 << 30} {
			setDocIndexMin = indexMin
			got := aggSetPaths(doc, paths, vals)
			if render(got) != render(want) {
				t.Fatalf("case %d (index from %d): setting %v to %v in %s:\ngot  %s\nwant %s", i, indexMin, paths, vals, before, render(got), render(want))
			}
			if render(doc) != before {
				t.Fatalf("case %d: aggSetPaths modified its input", i)
			}
		}
	}
}

// TestAddFieldsApplyLinear applies an $addFields of many fields to a
// document of as many and checks that the steps of setting them are
// bounded per field (each field copied the whole document).
func TestAddFieldsApplyLinear(t *testing.T) {
	const n = 20000
	spec := make(bson.D, n)
	doc := make(bson.D, n)
	for i := range n {
		spec[i] = bson.E{Key: fmt.Sprintf("f%d", 2*i), Value: int32(i)}
		doc[i] = bson.E{Key: fmt.Sprintf("f%d", i), Value: int32(i)}
	}
	p, err := CompilePipeline([]bson.D{{{Key: "$addFields", Value: spec}}})
	if err != nil {
		t.Fatal(err)
	}
	var out bson.D
	steps := countSteps(t, func() {
		if out, _, err = p.ApplyOne(doc); err != nil {
			t.Fatal(err)
		}
	})
	if len(out) != n+n/2 {
		t.Fatalf("output has %d fields, want %d", len(out), n+n/2)
	}
	if limit := 4 * n; steps > limit {
		t.Errorf("setting %d fields took %d steps, want at most %d", n, steps, limit)
	}
}

// TestUnsetTreeMatchesAggUnsetPath compares removing random paths (some
// overlapping, some repeated) from random documents in one pass with
// removing them one by one with aggUnsetPath.
func TestUnsetTreeMatchesAggUnsetPath(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	render := func(d bson.D) string { return coreExtJSON(t, bson.D{{Key: "d", Value: d}}) }
	for i := range 5000 {
		doc := randSetDoc(r, 0)
		tree := &unsetNode{}
		var paths [][]string
		for range 1 + r.IntN(6) {
			var p []string
			for len(p) == 0 || r.IntN(2) == 0 && len(p) < 4 {
				p = append(p, string(rune('a'+r.IntN(4))))
			}
			paths = append(paths, p)
			tree.add(p)
		}
		want := doc
		for _, p := range paths {
			want = aggUnsetPath(want, p)
		}
		before := render(doc)
		if got := unsetTreeDoc(doc, tree); render(got) != render(want) {
			t.Fatalf("case %d: removing %v from %s:\ngot  %s\nwant %s", i, paths, before, render(got), render(want))
		}
		if render(doc) != before {
			t.Fatalf("case %d: unsetTreeDoc modified its input", i)
		}
	}
}

// TestUnsetApplyLinear applies an $unset of many fields to a document of
// as many and checks that it visits each field of the document a bounded
// number of times (each path copied the whole document).
func TestUnsetApplyLinear(t *testing.T) {
	const n = 20000
	fields := make(bson.A, n)
	doc := make(bson.D, n)
	for i := range n {
		fields[i] = fmt.Sprintf("f%d", 2*i)
		doc[i] = bson.E{Key: fmt.Sprintf("f%d", i), Value: int32(i)}
	}
	p, err := CompilePipeline([]bson.D{{{Key: "$unset", Value: fields}}})
	if err != nil {
		t.Fatal(err)
	}
	var out bson.D
	steps := countSteps(t, func() {
		if out, _, err = p.ApplyOne(doc); err != nil {
			t.Fatal(err)
		}
	})
	if len(out) != n/2 {
		t.Fatalf("output has %d fields, want %d", len(out), n/2)
	}
	if limit := 4 * n; steps > limit {
		t.Errorf("removing %d fields took %d steps, want at most %d", n, steps, limit)
	}
}
