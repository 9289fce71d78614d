package mql

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// countSteps runs f with stepHook counting and returns the count. Tests
// using it must not be parallel.
func countSteps(t *testing.T, f func()) int {
	t.Helper()
	n := 0
	stepHook = func() { n++ }
	t.Cleanup(func() { stepHook = nil })
	f()
	stepHook = nil
	return n
}

// TestProjectionLinear compiles and applies projections of many fields,
// top-level and under a few parents, and checks that the name lookups take
// a bounded number of steps per field (they were a scan of every field
// inserted so far, quadratic in the number of fields).
func TestProjectionLinear(t *testing.T) {
	const n = 20000
	flat := make(bson.D, n)
	nested := make(bson.D, n)
	doc := make(bson.D, n)
	for i := range n {
		flat[i] = bson.E{Key: fmt.Sprintf("f%d", i), Value: 1}
		nested[i] = bson.E{Key: fmt.Sprintf("g%d.f%d", i%3, i), Value: 0}
		doc[i] = bson.E{Key: fmt.Sprintf("f%d", i), Value: int32(i)}
	}
	for _, tc := range []struct {
		name string
		spec bson.D
		want int // fields in the output
	}{
		{"inclusion", flat, n + 0},
		{"nested exclusion", nested, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bson.D
			steps := countSteps(t, func() {
				p, err := CompileProjectStage(tc.spec)
				if err != nil {
					t.Fatal(err)
				}
				if out, err = p.Apply(doc); err != nil {
					t.Fatal(err)
				}
			})
			if len(out) != tc.want {
				t.Fatalf("output has %d fields, want %d", len(out), tc.want)
			}
			if limit := 4 * projIndexMin * n; steps > limit {
				t.Errorf("%d fields took %d lookup steps, want at most %d", n, steps, limit)
			}
		})
	}
}

// randProjection returns a random projection over a small set of names, so
// that collisions, nesting, _id and mixed modes are frequent.
func randProjection(r *rand.Rand) bson.D {
	names := []string{"_id", "a", "b", "c"}
	var spec bson.D
	for range 1 + r.IntN(8) {
		path := names[r.IntN(len(names))]
		for r.IntN(3) == 0 {
			path += "." + names[1+r.IntN(len(names)-1)]
		}
		var v any
		switch r.IntN(8) {
		case 0, 1:
			v = 1
		case 2:
			v = false
		case 3:
			v = "$" + names[1+r.IntN(len(names)-1)]
		case 4:
			v = bson.D{{Key: "$slice", Value: 1}}
		case 5:
			v = bson.D{{Key: names[1+r.IntN(3)], Value: r.IntN(2)}}
		case 6:
			v = bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "a", Value: 1}}}}
		default:
			v = 0
		}
		spec = append(spec, bson.E{Key: path, Value: v})
	}
	return spec
}

// randProjDoc returns a random document over the names of randProjection.
func randProjDoc(r *rand.Rand, depth int) bson.D {
	var d bson.D
	for _, k := range []string{"_id", "a", "b", "c"} {
		switch r.IntN(5) {
		case 0:
			continue
		case 1:
			if depth < 3 {
				d = append(d, bson.E{Key: k, Value: randProjDoc(r, depth+1)})
				continue
			}
		case 2:
			if depth < 3 {
				d = append(d, bson.E{Key: k, Value: bson.A{randProjDoc(r, depth+1), int32(1)}})
				continue
			}
		}
		d = append(d, bson.E{Key: k, Value: int32(r.IntN(3))})
	}
	r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	return d
}

// TestProjectionIndexDifferential compiles and applies random projections
// with every field list indexed and with none indexed (the scans the
// compiler always did before lists got indexes) and requires the same
// errors, outputs and Keeps/Includes answers.
func TestProjectionIndexDifferential(t *testing.T) {
	saved := projIndexMin
	t.Cleanup(func() { projIndexMin = saved })
	type result struct {
		err  string
		out  []string
		keep []bool
	}
	paths := []string{"_id", "a", "b", "c", "a.b", "a.c", "b.a.c", "c.c"}
	run := func(spec bson.D, docs []bson.D, find bool, indexMin int) result {
		projIndexMin = indexMin
		var p *Projection
		var err error
		if find {
			p, err = CompileProjection(spec)
		} else {
			p, err = CompileProjectStage(spec)
		}
		if err != nil {
			return result{err: err.Error()}
		}
		var res result
		for _, d := range docs {
			out, err := p.Apply(d)
			if err != nil {
				res.out = append(res.out, "error: "+err.Error())
				continue
			}
			res.out = append(res.out, coreExtJSON(t, out))
		}
		for _, path := range paths {
			res.keep = append(res.keep, p.Keeps(path), p.Includes(path))
		}
		return res
	}
	r := rand.New(rand.NewPCG(1, 2))
	compiled := 0
	for i := range 3000 {
		spec := randProjection(r)
		docs := []bson.D{randProjDoc(r, 0), randProjDoc(r, 0), randProjDoc(r, 0)}
		find := i%2 == 0
		scan := run(spec, docs, find, 1<<30)
		indexed := run(spec, docs, find, 1)
		if fmt.Sprint(scan) != fmt.Sprint(indexed) {
			t.Fatalf("projection %v (find %v):\nscanned %v\nindexed %v", spec, find, scan, indexed)
		}
		if scan.err == "" {
			compiled++
		}
	}
	if compiled < 300 {
		t.Fatalf("only %d of the random projections compiled", compiled)
	}
}
