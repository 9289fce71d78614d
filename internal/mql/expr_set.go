package mql

import (
	"slices"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// setOperators is the table of the set operators, which treat arrays as
// sets: duplicates are ignored and values compare as $eq does (1 and 1.0
// are one element; strings under the command's collation).
func setOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$setUnion":        fixedOp(0, -1, evalSetUnion),
		"$setIntersection": fixedOp(0, -1, evalSetIntersection),
		"$setDifference":   fixedOp(2, 2, evalSetDifference),
		"$setEquals":       compileSetEquals,
		"$setIsSubset":     fixedOp(2, 2, evalSetIsSubset),
		"$allElementsTrue": namedOp(1, 1, evalAllAnyElementsTrue),
		"$anyElementTrue":  namedOp(1, 1, evalAllAnyElementsTrue),
	}
}

// aggValueSet is a set of values keyed like $addToSet's, remembering the
// order in which values were first added ($setDifference keeps it).
type aggValueSet struct {
	coll *Collation
	keys map[string]bool
	out  bson.A
}

func newAggValueSet(coll *Collation) *aggValueSet {
	return &aggValueSet{coll: coll, keys: map[string]bool{}, out: bson.A{}}
}

func (s *aggValueSet) key(v any) string { return string(aggKey(nil, v, s.coll)) }

func (s *aggValueSet) has(v any) bool { return s.keys[s.key(v)] }

// sorted returns the set's values in ascending BSON order (of values that
// are one element, the first added).
func (s *aggValueSet) sorted() bson.A {
	slices.SortStableFunc(s.out, func(a, b any) int { return compareValues(a, b, s.coll) })
	return s.out
}

func (s *aggValueSet) add(v any) {
	k := s.key(v)
	if !s.keys[k] {
		s.keys[k] = true
		s.out = append(s.out, v)
	}
}

// setOperands checks the operands of $setUnion or $setIntersection (op,
// whose code for an operand that is not an array is code): null reports
// an operand that is null or missing, which makes the result null, once
// every other operand is an array.
func setOperands(vals []any, code mongoerr.Code, op string) (null bool, err error) {
	for _, v := range vals {
		if aggNullish(v) {
			null = true
			continue
		}
		if _, ok := v.(bson.A); !ok {
			return false, mongoerr.Errorf(code, "All operands of %s must be arrays. One argument is of type: %s", op, TypeName(v))
		}
	}
	return null, nil
}

// evalSetUnion implements $setUnion: null if any argument is null or
// missing, else the distinct elements of all arguments. MongoDB's manual
// leaves the order unspecified; its server returns them sorted, and so
// does this.
func evalSetUnion(c *evalCtx, vals []any) (any, error) {
	if null, err := setOperands(vals, mongoerr.SetUnionNotArray, "$setUnion"); err != nil || null {
		return nil, err
	}
	s := newAggValueSet(c.coll)
	for _, v := range vals {
		for _, e := range v.(bson.A) {
			s.add(e)
		}
	}
	return s.sorted(), nil
}

// evalSetIntersection implements $setIntersection: null if any argument
// is null or missing, else the distinct elements found in every argument,
// sorted like $setUnion's (an empty array for no arguments).
func evalSetIntersection(c *evalCtx, vals []any) (any, error) {
	if null, err := setOperands(vals, mongoerr.SetIntersectionNotArray, "$setIntersection"); err != nil || null {
		return nil, err
	}
	if len(vals) == 0 {
		return bson.A{}, nil
	}
	cur := newAggValueSet(c.coll)
	for _, e := range vals[0].(bson.A) {
		cur.add(e)
	}
	for _, v := range vals[1:] {
		other := newAggValueSet(c.coll)
		for _, e := range v.(bson.A) {
			other.add(e)
		}
		next := newAggValueSet(c.coll)
		for _, e := range cur.out {
			if other.has(e) {
				next.add(e)
			}
		}
		cur = next
	}
	return cur.sorted(), nil
}

// evalSetDifference implements $setDifference: the distinct elements of
// the first array not in the second; null if either is null or missing.
func evalSetDifference(c *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) || aggNullish(vals[1]) {
		return nil, nil
	}
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SetDifferenceFirstNotArray, "both operands of $setDifference must be arrays. First argument is of type: %s", TypeName(vals[0]))
	}
	b, ok := vals[1].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SetDifferenceSecondNotArray, "both operands of $setDifference must be arrays. Second argument is of type: %s", TypeName(vals[1]))
	}
	exclude := newAggValueSet(c.coll)
	for _, e := range b {
		exclude.add(e)
	}
	out := newAggValueSet(c.coll)
	for _, e := range a {
		if !exclude.has(e) {
			out.add(e)
		}
	}
	return out.out, nil
}

// compileSetEquals compiles $setEquals, which takes at least two arrays
// (MongoDB's own message for fewer, code 17045).
func compileSetEquals(name string, arg any) (exprNode, error) {
	if args := aggArgs(arg); len(args) < 2 {
		return nil, mongoerr.Errorf(mongoerr.SetEqualsArgCount, "$setEquals needs at least two arguments had: %d", len(args))
	}
	return fixed(name, arg, 2, -1, evalSetEquals)
}

// evalSetEquals implements $setEquals: whether every argument has the
// same distinct elements. Every argument must be an array (null too).
func evalSetEquals(c *evalCtx, vals []any) (any, error) {
	sets := make([]*aggValueSet, len(vals))
	for i, v := range vals {
		a, ok := v.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.SetEqualsNotArray, "All operands of $setEquals must be arrays. %d-th argument is of type: %s", i+1, TypeName(v))
		}
		sets[i] = newAggValueSet(c.coll)
		for _, e := range a {
			sets[i].add(e)
		}
	}
	for _, s := range sets[1:] {
		if len(s.out) != len(sets[0].out) {
			return false, nil
		}
		for _, e := range s.out {
			if !sets[0].has(e) {
				return false, nil
			}
		}
	}
	return true, nil
}

// evalSetIsSubset implements $setIsSubset: whether every element of the
// first array is in the second. Both must be arrays (null too).
func evalSetIsSubset(c *evalCtx, vals []any) (any, error) {
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SetIsSubsetFirstNotArray, "both operands of $setIsSubset must be arrays. First argument is of type: %s", TypeName(vals[0]))
	}
	b, ok := vals[1].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SetIsSubsetSecondNotArray, "both operands of $setIsSubset must be arrays. Second argument is of type: %s", TypeName(vals[1]))
	}
	super := newAggValueSet(c.coll)
	for _, e := range b {
		super.add(e)
	}
	for _, e := range a {
		if !super.has(e) {
			return false, nil
		}
	}
	return true, nil
}

// evalAllAnyElementsTrue implements $allElementsTrue and $anyElementTrue
// with aggregation truthiness; the argument must be an array (null too).
func evalAllAnyElementsTrue(name string, vals []any) (any, error) {
	a, ok := vals[0].(bson.A)
	if !ok {
		code := mongoerr.AllElementsTrueNotArray
		if name == "$anyElementTrue" {
			code = mongoerr.AnyElementTrueNotArray
		}
		return nil, mongoerr.Errorf(code, "%s's argument must be an array, but is %s", name, TypeName(vals[0]))
	}
	all := name == "$allElementsTrue"
	for _, e := range a {
		if Truthy(e) != all {
			return !all, nil
		}
	}
	return all, nil
}
