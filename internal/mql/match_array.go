package mql

import (
	"fmt"
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// arrayQuery is the table of array query operators.
func arrayQuery() map[string]queryCompiler {
	return map[string]queryCompiler{
		"$all": func(parts []string, op bson.E, cx compileCx) (matchNode, error) {
			return compileMatchAll(parts, op.Value, cx)
		},
		"$elemMatch": func(parts []string, op bson.E, cx compileCx) (matchNode, error) {
			p, err := newElemMatchMatch(op.Value, cx)
			if err != nil {
				return nil, err
			}
			return newMatchPath(parts, p, false), nil
		},
		"$size": func(parts []string, op bson.E, _ compileCx) (matchNode, error) {
			p, err := newSizeMatch(op.Value)
			if err != nil {
				return nil, err
			}
			return newMatchPath(parts, p, false), nil
		},
	}
}

// sizeMatch implements $size: an array with exactly n elements.
type sizeMatch struct{ n int }

func newSizeMatch(v any) (*sizeMatch, error) {
	if !IsNumber(v) {
		return nil, badValue("$size needs a number")
	}
	f, _ := ToFloat64(v)
	if f < 0 {
		return nil, badValue("$size may not be negative")
	}
	n, ok := ToInt64(v)
	if !ok {
		return nil, badValue("$size must be a whole number")
	}
	if n > math.MaxInt32 {
		return nil, badValue("$size must be a whole number")
	}
	return &sizeMatch{n: int(n)}, nil
}

func (p *sizeMatch) test(v any) bool {
	arr, ok := AsArray(v)
	return ok && len(arr) == p.n
}

// elemMatchMatch implements $elemMatch on an array: with a query document
// ({$elemMatch: {b: 1}}) each element document (or array) is matched as a
// document; with operators ({$elemMatch: {$gt: 1}}) each element must
// satisfy all of them.
type elemMatchMatch struct {
	// doc is set for the query-document form.
	doc matchNode
	// value is set for the operator form; it is applied to each element
	// with the element as the root of an empty path.
	value matchNode
}

// elemMatchValueKey is the internal field name under which an element is
// wrapped to evaluate the operator form of $elemMatch.
const elemMatchValueKey = ""

func newElemMatchMatch(v any, cx compileCx) (*elemMatchMatch, error) {
	d, ok := AsDocument(v)
	if !ok {
		return nil, badValue("$elemMatch needs an Object")
	}
	if cx.depth+1 > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing match expression", maxFilterDepth)
	}
	if len(d) > 0 && strings.HasPrefix(d[0].Key, "$") && !isTopLevelOperator(d[0].Key) {
		n, err := compileElemMatchValue(d, cx.deeper())
		if err != nil {
			return nil, err
		}
		return &elemMatchMatch{value: n}, nil
	}
	for _, e := range d {
		switch e.Key {
		case "$expr", "$where", "$text":
			return nil, badValue("%s can only be applied to the top-level document", e.Key)
		}
	}
	n, err := compileMatchAnd(d, cx.deeper())
	if err != nil {
		return nil, err
	}
	return &elemMatchMatch{doc: n}, nil
}

// compileElemMatchValue compiles the operator form: operators applied to
// the element itself, without expanding an element that is an array.
func compileElemMatchValue(ops bson.D, cx compileCx) (matchNode, error) {
	for _, op := range ops {
		if !strings.HasPrefix(op.Key, "$") {
			return nil, badValue("unknown operator: %s", op.Key)
		}
	}
	n, err := compileQueryOperators([]string{elemMatchValueKey}, ops, cx)
	if err != nil {
		return nil, err
	}
	matchNoExpand(n)
	return n, nil
}

// matchNoExpand turns off leaf-array expansion in the path nodes of a compiled
// $elemMatch value form (the server applies those operators to the element
// as a single value).
func matchNoExpand(n matchNode) {
	switch x := n.(type) {
	case *matchPath:
		x.expand = false
	case matchAnd:
		for _, c := range x {
			matchNoExpand(c)
		}
	case matchOr:
		for _, c := range x {
			matchNoExpand(c)
		}
	case matchNot:
		matchNoExpand(x.n)
	}
}

func (p *elemMatchMatch) test(v any) bool {
	ok, _ := p.testElem(v)
	return ok
}

func (p *elemMatchMatch) testElem(v any) (bool, int) {
	arr, ok := AsArray(v)
	if !ok {
		return false, -1
	}
	for j, e := range arr {
		if p.matchElement(e) {
			return true, j
		}
	}
	return false, -1
}

func (p *elemMatchMatch) matchElement(e any) bool {
	if p.value != nil {
		return p.value.match(bson.D{{Key: elemMatchValueKey, Value: e}}, nil)
	}
	switch x := e.(type) {
	case bson.D:
		return p.doc.match(x, nil)
	case bson.M, map[string]any:
		d, _ := AsDocument(x)
		return p.doc.match(d, nil)
	}
	if arr, ok := AsArray(e); ok {
		// An array element is matched as a document with keys "0", "1", ...
		d := make(bson.D, len(arr))
		for i, x := range arr {
			d[i] = bson.E{Key: fmt.Sprint(i), Value: x}
		}
		return p.doc.match(d, nil)
	}
	return false
}

// compileMatchAll compiles {$all: [...]}: the AND of equalities (or of
// $elemMatch clauses); an empty $all matches nothing.
func compileMatchAll(parts []string, v any, cx compileCx) (matchNode, error) {
	arr, ok := AsArray(v)
	if !ok {
		return nil, badValue("$all needs an array")
	}
	if len(arr) == 0 {
		return matchConst(false), nil
	}
	nodes := make([]matchNode, 0, len(arr))
	elemMatch := 0
	for _, x := range arr {
		if d, ok := isOperatorDoc(x); ok && d[0].Key == "$elemMatch" {
			elemMatch++
			p, err := newElemMatchMatch(d[0].Value, cx)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, newMatchPath(parts, p, false))
			continue
		}
		if _, ok := isOperatorDoc(x); ok {
			return nil, badValue("no $ expressions in $all")
		}
		var p matchPred
		var err error
		if re, ok := x.(bson.Regex); ok {
			p, err = newRegexMatch(re.Pattern, re.Options)
		} else {
			p, err = newCmpMatch(mEQ, x, "$all", cx.coll)
		}
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, newMatchPath(parts, p, true))
	}
	if elemMatch != 0 && elemMatch != len(arr) {
		return nil, badValue("$all/$elemMatch has to be consistent")
	}
	return matchAnd(nodes), nil
}
