package mql

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// mergeIntoByScan is the merge $mergeObjects and $arrayToObject did before
// docMerger: a scan of dst for every field of src.
func mergeIntoByScan(dst bson.D, src bson.D) bson.D {
	for _, e := range src {
		found := false
		for i := range dst {
			if dst[i].Key == e.Key {
				dst[i].Value = e.Value
				found = true
				break
			}
		}
		if !found {
			dst = append(dst, e)
		}
	}
	return dst
}

// TestDocMergerMatchesScan merges random documents (with repeated keys)
// with docMerger, indexed from the start and never, and by scanning.
func TestDocMergerMatchesScan(t *testing.T) {
	saved := docMergerIndexMin
	t.Cleanup(func() { docMergerIndexMin = saved })
	r := rand.New(rand.NewPCG(7, 8))
	render := func(d bson.D) string { return coreExtJSON(t, bson.D{{Key: "d", Value: d}}) }
	for i := range 3000 {
		var srcs []bson.D
		for range 1 + r.IntN(5) {
			var d bson.D
			for range r.IntN(30) {
				d = append(d, bson.E{Key: fmt.Sprintf("k%d", r.IntN(25)), Value: int32(r.IntN(100))})
			}
			srcs = append(srcs, d)
		}
		want := bson.D{}
		for _, d := range srcs {
			want = mergeIntoByScan(want, d)
		}
		for _, indexMin := range []int{1, 1 << 30} {
			docMergerIndexMin = indexMin
			m := docMerger{out: bson.D{}}
			for _, d := range srcs {
				m.merge(d)
			}
			if render(m.out) != render(want) {
				t.Fatalf("case %d (index from %d): merging %v:\ngot  %s\nwant %s", i, indexMin, srcs, render(m.out), render(want))
			}
		}
	}
}

// TestMergeLinear builds documents of many fields with $arrayToObject,
// $mergeObjects and the $mergeObjects accumulator and checks that the
// merges take a bounded number of steps per field (each field scanned the
// fields merged so far).
func TestMergeLinear(t *testing.T) {
	const n = 20000
	pairs := make(bson.A, n)
	doc := make(bson.D, n)
	for i := range n {
		pairs[i] = bson.A{fmt.Sprintf("k%d", i), int32(i)}
		doc[i] = bson.E{Key: fmt.Sprintf("k%d", i), Value: int32(i)}
	}
	for _, tc := range []struct {
		name  string
		stage bson.D
	}{
		{"$arrayToObject", bson.D{{Key: "$project", Value: bson.D{{Key: "o", Value: bson.D{{Key: "$arrayToObject", Value: bson.A{bson.D{{Key: "$literal", Value: pairs}}}}}}}}}},
		{"$mergeObjects", bson.D{{Key: "$project", Value: bson.D{{Key: "o", Value: bson.D{{Key: "$mergeObjects", Value: bson.A{"$d", "$d"}}}}}}}},
		{"$mergeObjects accumulator", bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "o", Value: bson.D{{Key: "$mergeObjects", Value: "$d"}}}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompilePipeline([]bson.D{tc.stage})
			if err != nil {
				t.Fatal(err)
			}
			docs := []bson.D{{{Key: "d", Value: doc}}, {{Key: "d", Value: doc}}}
			var got bson.D
			steps := countSteps(t, func() {
				for d, err := range p.Run(aggTestSource(docs)) {
					if err != nil {
						t.Fatal(err)
					}
					got = d
				}
			})
			o, _ := docField(got, "o").(bson.D)
			if len(o) != n {
				t.Fatalf("result has %d fields, want %d", len(o), n)
			}
			if limit := 4 * n; steps > limit {
				t.Errorf("merging %d fields took %d steps, want at most %d", n, steps, limit)
			}
		})
	}
}
