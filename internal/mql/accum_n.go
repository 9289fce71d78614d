package mql

import (
	"sort"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// nAccumulators are the $group accumulators that keep several values or
// pick by a sort order: $firstN $lastN $maxN $minN ({input, n}) and $top
// $bottom $topN $bottomN ({sortBy, output}, n for the N forms). Their
// argument node evaluates, per document, to an *nAccItem that carries n,
// the sort key and the output value to the accumulator.
var nAccumulators = map[string]bool{
	"$firstN": true, "$lastN": true, "$maxN": true, "$minN": true,
	"$top": true, "$bottom": true, "$topN": true, "$bottomN": true,
}

// nAccItem is one document's contribution to an n-accumulator.
type nAccItem struct {
	n   int64
	key []any
	out any
}

// nAccArg is the argument node of an n-accumulator.
type nAccArg struct {
	n, out exprNode // n is nil for $top and $bottom
	sortBy *Sort    // nil for $firstN $lastN $maxN $minN
}

func (a *nAccArg) eval(c *evalCtx) (any, error) {
	it := &nAccItem{n: 1}
	if a.n != nil {
		nv, err := a.n.eval(c)
		if err != nil {
			return nil, err
		}
		if it.n, err = aggPositiveN(nv); err != nil {
			return nil, err
		}
	}
	out, err := a.out.eval(c)
	if err != nil {
		return nil, err
	}
	it.out = out
	if a.sortBy != nil {
		cur, _ := c.current.(bson.D)
		it.key = a.sortBy.WithCollation(c.coll).KeyValues(cur)
	}
	return it, nil
}

// compileNAccumulator compiles {op: {...}} for one of nAccumulators.
func compileNAccumulator(field, op string, arg any) (accumSpec, error) {
	d, ok := arg.(bson.D)
	sorted := op == "$top" || op == "$bottom" || op == "$topN" || op == "$bottomN"
	withN := op != "$top" && op != "$bottom"
	if !ok {
		if sorted {
			return accumSpec{}, mongoerr.Errorf(mongoerr.TopNotObject, "specification must be an object; found %s: %s", op, aggFmt(arg))
		}
		return accumSpec{}, aggNSpecNotObject(op, arg)
	}
	a := &nAccArg{}
	outName := "input"
	if sorted {
		outName = "output"
	}
	var sortBy any
	hasSortBy := false
	for _, e := range d {
		switch {
		case e.Key == "n" && withN:
			n, err := compileNode(e.Value)
			if err != nil {
				return accumSpec{}, err
			}
			a.n = n
		case e.Key == outName:
			n, err := compileNode(e.Value)
			if err != nil {
				return accumSpec{}, err
			}
			a.out = n
		case e.Key == "sortBy" && sorted:
			sortBy, hasSortBy = e.Value, true
		case sorted:
			return accumSpec{}, mongoerr.Errorf(mongoerr.TopUnknownField, "Unknown argument to %s '%s'", op, e.Key)
		default:
			return accumSpec{}, mongoerr.Errorf(mongoerr.NArrayUnknownField, "Unknown argument for 'n' operator: %s", e.Key)
		}
	}
	switch {
	case withN && a.n == nil && sorted:
		return accumSpec{}, mongoerr.Errorf(mongoerr.TopMissingN, "Missing value for 'n'")
	case withN && a.n == nil:
		return accumSpec{}, mongoerr.Errorf(mongoerr.NArrayMissingN, "Missing value for 'n'")
	case a.out == nil && sorted:
		return accumSpec{}, mongoerr.Errorf(mongoerr.TopMissingOutput, "Missing value for 'output'")
	case a.out == nil:
		return accumSpec{}, mongoerr.Errorf(mongoerr.NArrayMissingInput, "Missing value for 'input'")
	case sorted && !hasSortBy:
		return accumSpec{}, mongoerr.Errorf(mongoerr.TopMissingSortBy, "Missing value for 'sortBy'")
	}
	if sorted {
		spec, ok := sortBy.(bson.D)
		if !ok {
			return accumSpec{}, mongoerr.Errorf(mongoerr.TypeMismatch, "expected 'sortBy' to be an object, found %s", TypeName(sortBy))
		}
		s, err := CompileSort(spec)
		if err != nil {
			return accumSpec{}, err
		}
		if s.Len() == 0 {
			return accumSpec{}, mongoerr.Errorf(mongoerr.TopMissingSortBy, "%s requires a non-empty 'sortBy'", op)
		}
		a.sortBy = s
	}
	for _, n := range []exprNode{a.n, a.out} {
		if n == nil {
			continue
		}
		if err := foldErr(n); err != nil {
			return accumSpec{}, err
		}
	}
	sortBy2 := a.sortBy
	return accumSpec{field: field, arg: a, newAcc: func() accumulator { return &nAcc{op: op, sortBy: sortBy2} }}, nil
}

// nAcc is the per-group state of an n-accumulator: the kept items, in
// result order. n is the first document's (MongoDB requires it to be a
// constant or to depend only on the group key, so every document of a
// group agrees).
type nAcc struct {
	op     string
	sortBy *Sort
	coll   *Collation
	n      int64
	items  []*nAccItem
}

func (a *nAcc) setCollation(c *Collation) {
	a.coll = c
	if a.sortBy != nil {
		a.sortBy = a.sortBy.WithCollation(c)
	}
}

// cmp orders two items in result order for the ordered accumulators.
func (a *nAcc) cmp(x, y *nAccItem) int {
	switch a.op {
	case "$maxN":
		return -compareValues(x.out, y.out, a.coll)
	case "$minN":
		return compareValues(x.out, y.out, a.coll)
	}
	return a.sortBy.CompareKeys(x.key, y.key)
}

func (a *nAcc) add(v any) int {
	it, ok := v.(*nAccItem)
	if !ok {
		return 0
	}
	if a.n == 0 {
		a.n = it.n
	}
	switch a.op {
	case "$firstN":
		if int64(len(a.items)) >= a.n {
			return 0
		}
		a.items = append(a.items, it)
		return aggSize(it.out)
	case "$lastN":
		a.items = append(a.items, it)
		if int64(len(a.items)) > a.n {
			a.items = append(a.items[:0:0], a.items[1:]...)
		}
		return aggSize(it.out)
	case "$maxN", "$minN":
		if aggNullish(it.out) {
			return 0
		}
	}
	// Insert after every item that does not sort after it, so that ties
	// keep their arrival order.
	i := sort.Search(len(a.items), func(i int) bool { return a.cmp(a.items[i], it) > 0 })
	bottom := a.op == "$bottom" || a.op == "$bottomN"
	if !bottom && int64(i) >= a.n {
		return 0
	}
	a.items = append(a.items, nil)
	copy(a.items[i+1:], a.items[i:])
	a.items[i] = it
	if int64(len(a.items)) > a.n {
		if bottom {
			a.items = a.items[1:]
		} else {
			a.items = a.items[:a.n]
		}
	}
	return aggSize(it.out) + 16*len(it.key)
}

func (a *nAcc) result() any {
	single := a.op == "$top" || a.op == "$bottom"
	if single {
		if len(a.items) == 0 || a.items[0].out == Missing {
			return nil
		}
		return a.items[0].out
	}
	out := make(bson.A, len(a.items))
	for i, it := range a.items {
		v := it.out
		if v == Missing {
			v = nil
		}
		out[i] = v
	}
	return out
}
