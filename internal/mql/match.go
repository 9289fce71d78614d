package mql

import (
	"fmt"
	"math"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Filter is a compiled query filter. It is immutable after CompileFilter
// and safe for concurrent use by multiple goroutines.
type Filter struct {
	root matchNode
}

// matchNode is one compiled match expression.
type matchNode interface {
	// match reports whether doc matches; when st is non-nil it records the
	// array position used by the positional $ operator and any evaluation
	// error.
	match(doc bson.D, st *matchState) bool
}

// matchState carries per-evaluation details through a match.
type matchState struct {
	// pos is the array index for the positional $ operator, -1 when none.
	pos int
	// err is the first evaluation error ($expr).
	err error
}

// CompileFilter compiles a query filter document as find, count, delete,
// update and $match accept it. It returns a *mongoerr.Error naming the offending
// operator for an invalid filter: "unknown top level operator: $foo" and
// "unknown operator: $foo" (BadValue, code 2), and NotImplemented (238) or
// the error MongoDB reports without the needed index for $where, $text,
// $jsonSchema and geospatial operators. A nil or empty filter matches
// every document.
func CompileFilter(filter bson.D) (*Filter, error) {
	n, err := compileMatchAnd(filter, 0)
	if err != nil {
		return nil, err
	}
	return &Filter{root: n}, nil
}

// Match reports whether doc matches the filter. An $expr evaluation error
// makes the document not match; use MatchErr to see the error.
func (f *Filter) Match(doc bson.D) bool {
	return f.root.match(doc, nil)
}

// MatchErr is Match that also returns the first $expr evaluation error (a
// *mongoerr.Error), as MongoDB fails the query in that case. When err is non-nil,
// matched is false.
func (f *Filter) MatchErr(doc bson.D) (matched bool, err error) {
	st := matchState{pos: -1}
	ok := f.root.match(doc, &st)
	if st.err != nil {
		return false, st.err
	}
	return ok, nil
}

// MatchPositional reports whether doc matches and, when it does, the index
// of the array element the positional $ operator (update "a.$" or
// projection "a.$") refers to: the position in the outermost array the
// filter traversed for the last predicate that went through an array, or
// -1 when no predicate went through an array.
func (f *Filter) MatchPositional(doc bson.D) (matched bool, index int) {
	st := matchState{pos: -1}
	if !f.root.match(doc, &st) || st.err != nil {
		return false, -1
	}
	return true, st.pos
}

// maxFilterDepth bounds the nesting of $and/$or/$nor/$not/$elemMatch, as
// MongoDB bounds it (100), so hostile filters cannot exhaust the stack.
const maxFilterDepth = 100

// compileMatchAnd compiles a filter document: the implicit AND of its fields.
func compileMatchAnd(filter bson.D, depth int) (matchNode, error) {
	if depth > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing match expression", maxFilterDepth)
	}
	nodes := make([]matchNode, 0, len(filter))
	for _, e := range filter {
		n, err := compileMatchTopLevel(e, depth)
		if err != nil {
			return nil, err
		}
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	return matchAllOf(nodes), nil
}

// compileMatchTopLevel compiles one field of a filter document.
func compileMatchTopLevel(e bson.E, depth int) (matchNode, error) {
	if !strings.HasPrefix(e.Key, "$") {
		return compileMatchPathValue(e.Key, e.Value, depth)
	}
	switch e.Key {
	case "$and", "$or", "$nor":
		children, err := compileMatchClauses(e.Key, e.Value, depth)
		if err != nil {
			return nil, err
		}
		switch e.Key {
		case "$and":
			return matchAnd(children), nil
		case "$or":
			return matchOr(children), nil
		}
		return matchNot{matchOr(children)}, nil
	case "$comment":
		return nil, nil
	case "$alwaysTrue", "$alwaysFalse":
		if n, ok := ToFloat64(e.Value); !ok || n != 1 {
			return nil, badValue("%s must be an integer value of 1", e.Key)
		}
		return matchConst(e.Key == "$alwaysTrue"), nil
	case "$expr":
		x, err := CompileExpr(e.Value)
		if err != nil {
			return nil, err
		}
		return matchExprNode{x}, nil
	case "$where":
		return nil, mongoerr.Errorf(mongoerr.NotImplemented, "$where is not supported by devdb")
	case "$text":
		return nil, mongoerr.Errorf(mongoerr.IndexNotFound, "text index required for $text query")
	case "$jsonSchema":
		return nil, mongoerr.Errorf(mongoerr.NotImplemented, "$jsonSchema is not supported by devdb")
	case "$sampleRate":
		return nil, mongoerr.Errorf(mongoerr.NotImplemented, "$sampleRate is not supported by devdb")
	}
	return nil, badValue("unknown top level operator: %s. If you are trying to match a field name starting with '$', use $getField or $expr", e.Key)
}

// compileMatchClauses compiles the array argument of $and, $or and $nor.
func compileMatchClauses(op string, v any, depth int) ([]matchNode, error) {
	arr, ok := AsArray(v)
	if !ok || len(arr) == 0 {
		return nil, badValue("%s must be a nonempty array", op)
	}
	out := make([]matchNode, 0, len(arr))
	for _, c := range arr {
		d, ok := AsDocument(c)
		if !ok {
			return nil, badValue("%s argument's entries must be objects", op)
		}
		n, err := compileMatchAnd(d, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// isOperatorDoc reports whether v is a document whose first field starts
// with '$' (an operator document such as {$gt: 1}). A DBRef ({$ref, $id,
// $db}) is a value, not an operator document.
func isOperatorDoc(v any) (bson.D, bool) {
	d, ok := AsDocument(v)
	if !ok || len(d) == 0 || !strings.HasPrefix(d[0].Key, "$") {
		return nil, false
	}
	switch d[0].Key {
	case "$ref", "$id", "$db":
		return nil, false
	}
	return d, true
}

// compileMatchPathValue compiles {path: value}: an operator document, a regex,
// or an equality.
func compileMatchPathValue(path string, v any, depth int) (matchNode, error) {
	parts := splitPath(path)
	if ops, ok := isOperatorDoc(v); ok {
		return compileQueryOperators(parts, ops, depth)
	}
	if re, ok := v.(bson.Regex); ok {
		p, err := newRegexMatch(re.Pattern, re.Options)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, true), nil
	}
	p, err := newCmpMatch(mEQ, v, "$eq")
	if err != nil {
		return nil, err
	}
	return newMatchPath(parts, p, true), nil
}

// compileQueryOperators compiles an operator document {$gt: 1, $lt: 5} on a
// path: the AND of its operators.
func compileQueryOperators(parts []string, ops bson.D, depth int) (matchNode, error) {
	if depth > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing match expression", maxFilterDepth)
	}
	var nodes []matchNode
	regexSeen := false
	for _, op := range ops {
		switch op.Key {
		case "$regex", "$options":
			if regexSeen {
				continue
			}
			regexSeen = true
			p, err := compileRegexOperator(ops)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, newMatchPath(parts, p, true))
			continue
		}
		n, err := compileQueryOperator(parts, op, depth)
		if err != nil {
			return nil, err
		}
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	return matchAllOf(nodes), nil
}

// compileQueryOperator compiles one query operator applied to a path.
func compileQueryOperator(parts []string, op bson.E, depth int) (matchNode, error) {
	switch op.Key {
	case "$eq", "$ne", "$gt", "$gte", "$lt", "$lte":
		kind := map[string]matchOp{"$eq": mEQ, "$ne": mEQ, "$gt": mGT, "$gte": mGTE, "$lt": mLT, "$lte": mLTE}[op.Key]
		p, err := newCmpMatch(kind, op.Value, op.Key)
		if err != nil {
			return nil, err
		}
		n := newMatchPath(parts, p, true)
		if op.Key == "$ne" {
			return matchNot{n}, nil
		}
		return n, nil
	case "$in", "$nin":
		p, err := newInMatch(op.Key, op.Value)
		if err != nil {
			return nil, err
		}
		n := newMatchPath(parts, p, true)
		if op.Key == "$nin" {
			return matchNot{n}, nil
		}
		return n, nil
	case "$exists":
		n := newMatchPath(parts, existsMatch{}, true)
		if Truthy(op.Value) {
			return n, nil
		}
		return matchNot{n}, nil
	case "$type":
		p, err := newTypeMatch(op.Value)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, true), nil
	case "$mod":
		p, err := newModMatch(op.Value)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, true), nil
	case "$size":
		p, err := newSizeMatch(op.Value)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, false), nil
	case "$all":
		return compileMatchAll(parts, op.Value, depth)
	case "$elemMatch":
		p, err := newElemMatchMatch(op.Value, depth)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, false), nil
	case "$not":
		return compileMatchNot(parts, op.Value, depth)
	case "$bitsAllSet", "$bitsAnySet", "$bitsAllClear", "$bitsAnyClear":
		p, err := newBitsMatch(op.Key, op.Value)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, true), nil
	case "$comment":
		return nil, nil
	case "$near", "$nearSphere":
		return nil, mongoerr.Errorf(mongoerr.NoQueryExecutionPlans, "error processing query: planner returned error :: caused by :: unable to find index for $geoNear query")
	case "$geoWithin", "$geoIntersects", "$within", "$maxDistance", "$minDistance":
		return nil, mongoerr.Errorf(mongoerr.NotImplemented, "%s is not supported by devdb", op.Key)
	case "$where", "$text", "$expr", "$and", "$or", "$nor", "$jsonSchema":
		return nil, badValue("unknown operator: %s", op.Key)
	}
	return nil, badValue("unknown operator: %s", op.Key)
}

// compileMatchNot compiles {$not: {...}} or {$not: /re/}.
func compileMatchNot(parts []string, v any, depth int) (matchNode, error) {
	if re, ok := v.(bson.Regex); ok {
		p, err := newRegexMatch(re.Pattern, re.Options)
		if err != nil {
			return nil, err
		}
		return matchNot{newMatchPath(parts, p, true)}, nil
	}
	d, ok := AsDocument(v)
	if !ok {
		return nil, badValue("$not needs a regex or a document")
	}
	if len(d) == 0 {
		return nil, badValue("$not cannot be empty")
	}
	for _, e := range d {
		if !strings.HasPrefix(e.Key, "$") {
			return nil, badValue("unknown operator: %s", e.Key)
		}
	}
	inner, err := compileQueryOperators(parts, d, depth+1)
	if err != nil {
		return nil, err
	}
	return matchNot{inner}, nil
}

// compileMatchAll compiles {$all: [...]}: the AND of equalities (or of
// $elemMatch clauses); an empty $all matches nothing.
func compileMatchAll(parts []string, v any, depth int) (matchNode, error) {
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
			p, err := newElemMatchMatch(d[0].Value, depth)
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
			p, err = newCmpMatch(mEQ, x, "$all")
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

// compileRegexOperator compiles the $regex / $options pair of an operator
// document.
func compileRegexOperator(ops bson.D) (matchPred, error) {
	var pattern, options string
	var havePattern, haveOptions, patternIsRegex bool
	for _, op := range ops {
		switch op.Key {
		case "$regex":
			havePattern = true
			switch x := op.Value.(type) {
			case string:
				pattern = x
			case bson.Regex:
				pattern, patternIsRegex = x.Pattern, true
				if x.Options != "" {
					if haveOptions && options != "" {
						return nil, badValue("options set in both $regex and $options")
					}
					options = x.Options
				}
			default:
				return nil, badValue("$regex has to be a string")
			}
		case "$options":
			s, ok := op.Value.(string)
			if !ok {
				return nil, badValue("$options has to be a string")
			}
			if patternIsRegex && options != "" && s != "" {
				return nil, badValue("options set in both $regex and $options")
			}
			haveOptions = true
			if s != "" {
				options = s
			}
		}
	}
	if !havePattern {
		return nil, badValue("$options needs a $regex")
	}
	return newRegexMatch(pattern, options)
}

// matchAllOf returns the conjunction of nodes: the node itself when there
// is one, else a matchAnd (which matches everything when nodes is empty).
func matchAllOf(nodes []matchNode) matchNode {
	if len(nodes) == 1 {
		return nodes[0]
	}
	return matchAnd(nodes)
}

// matchAnd matches when every child matches.
type matchAnd []matchNode

func (n matchAnd) match(doc bson.D, st *matchState) bool {
	for _, c := range n {
		if !c.match(doc, st) {
			return false
		}
	}
	return true
}

// matchOr matches when any child matches.
type matchOr []matchNode

func (n matchOr) match(doc bson.D, st *matchState) bool {
	for _, c := range n {
		if c.match(doc, st) {
			return true
		}
	}
	return false
}

// matchNot negates its child; positions recorded inside a negation are not
// kept (MongoDB records none for a negated predicate).
type matchNot struct{ n matchNode }

func (n matchNot) match(doc bson.D, st *matchState) bool {
	if st == nil {
		return !n.n.match(doc, nil)
	}
	inner := matchState{pos: -1}
	ok := n.n.match(doc, &inner)
	if inner.err != nil && st.err == nil {
		st.err = inner.err
	}
	return !ok
}

// matchConst always or never matches ($alwaysTrue, $alwaysFalse, $all: []).
type matchConst bool

func (n matchConst) match(bson.D, *matchState) bool { return bool(n) }

// matchExprNode evaluates an aggregation expression ($expr) for truthiness.
type matchExprNode struct{ x *Expr }

func (n matchExprNode) match(doc bson.D, st *matchState) bool {
	v, err := n.x.Eval(doc)
	if err != nil {
		if st != nil && st.err == nil {
			st.err = err
		}
		return false
	}
	return Truthy(v)
}

// matchPred tests one candidate value reached through a path.
type matchPred interface {
	// test reports whether v matches.
	test(v any) bool
}

// elemPred is a matchPred that looks inside the leaf array itself
// ($elemMatch) and reports the index of the matching element.
type elemPred interface {
	testElem(v any) (matched bool, index int)
}

// matchPath applies a predicate to the values a dotted path reaches with
// MongoDB's implicit array traversal: through an array, a non-numeric
// component applies to every element that is a document; a numeric
// component selects the element at that index (and the field of that name
// in element documents); at the end of the path an array is tested as a
// whole and, when expand is set, element by element.
type matchPath struct {
	parts  []string
	p      matchPred
	expand bool
	// index[i] is the parsed array index of parts[i], or -1.
	index []int
}

func newMatchPath(parts []string, p matchPred, expand bool) *matchPath {
	idx := make([]int, len(parts))
	for i, part := range parts {
		idx[i] = -1
		if n, ok := arrayIndex(part); ok {
			idx[i] = n
		}
	}
	return &matchPath{parts: parts, p: p, expand: expand, index: idx}
}

func (n *matchPath) match(doc bson.D, st *matchState) bool {
	// The root is always a document: start at its first field directly,
	// which keeps the hot path free of interface conversions.
	return n.walk(docField(doc, n.parts[0]), 1, -1, st)
}

// walk descends from v at path component i; outer is the index in the
// outermost array traversed so far (-1 when none).
func (n *matchPath) walk(v any, i, outer int, st *matchState) bool {
	if i == len(n.parts) {
		return n.leaf(v, outer, st)
	}
	switch x := v.(type) {
	case bson.D:
		return n.walk(docField(x, n.parts[i]), i+1, outer, st)
	case bson.A:
		return n.walkArray(x, i, outer, st)
	case []any:
		return n.walkArray(bson.A(x), i, outer, st)
	case bson.M, map[string]any:
		d, _ := AsDocument(x)
		return n.walk(docField(d, n.parts[i]), i+1, outer, st)
	}
	// A scalar or Missing with path left: the path does not exist.
	return n.leaf(Missing, outer, st)
}

func (n *matchPath) walkArray(arr bson.A, i, outer int, st *matchState) bool {
	part := n.parts[i]
	if idx := n.index[i]; idx >= 0 {
		if idx < len(arr) && n.walk(arr[idx], i+1, outer, st) {
			return true
		}
		// Element documents may also have a field named like the index.
		for j, e := range arr {
			d, ok := AsDocument(e)
			if !ok {
				continue
			}
			if v := docField(d, part); !IsMissing(v) && n.walk(v, i+1, outerIndex(outer, j), st) {
				return true
			}
		}
		return false
	}
	for j, e := range arr {
		d, ok := AsDocument(e)
		if !ok {
			// Scalars and nested arrays yield nothing for a field name.
			continue
		}
		if n.walk(docField(d, part), i+1, outerIndex(outer, j), st) {
			return true
		}
	}
	return false
}

func outerIndex(outer, j int) int {
	if outer >= 0 {
		return outer
	}
	return j
}

// leaf tests the value at the end of the path.
func (n *matchPath) leaf(v any, outer int, st *matchState) bool {
	if n.expand {
		if arr, ok := AsArray(v); ok {
			for j, e := range arr {
				if n.p.test(e) {
					if st != nil {
						st.pos = outerIndex(outer, j)
					}
					return true
				}
			}
		}
	}
	elem := -1
	if ep, ok := n.p.(elemPred); ok {
		var matched bool
		if matched, elem = ep.testElem(v); !matched {
			return false
		}
	} else if !n.p.test(v) {
		return false
	}
	if st != nil {
		switch {
		case outer >= 0:
			st.pos = outer
		case elem >= 0:
			st.pos = elem
		}
	}
	return true
}

// matchOp is a comparison operator.
type matchOp uint8

const (
	mEQ matchOp = iota
	mGT
	mGTE
	mLT
	mLTE
)

// cmpMatch implements $eq, $gt, $gte, $lt and $lte with MongoDB's type
// bracketing: values of different canonical types never compare, except
// that null equals missing (and undefined) and MinKey/MaxKey operands
// bound everything.
type cmpMatch struct {
	op  matchOp
	rhs any
}

func newCmpMatch(op matchOp, rhs any, name string) (*cmpMatch, error) {
	rhs = Normalize(rhs)
	if _, ok := rhs.(bson.Undefined); ok {
		return nil, badValue("cannot compare to undefined")
	}
	if TypeNumber(rhs) == typeNumberMissing && !IsMissing(rhs) {
		return nil, badValue("%s: unsupported value of Go type %T", name, rhs)
	}
	return &cmpMatch{op: op, rhs: rhs}, nil
}

// matchRank is canonicalRank except that Missing ranks as undefined (BSON
// EOO), as it does in the server's matcher.
func matchRank(v any) int {
	if IsMissing(v) {
		return rankUndefined
	}
	return canonicalRank(v)
}

func (p *cmpMatch) test(v any) bool {
	return compareMatches(p.op, v, p.rhs)
}

// compareMatches evaluates "v op rhs" as a query comparison.
func compareMatches(op matchOp, v, rhs any) bool {
	rv, rr := matchRank(v), matchRank(rhs)
	if rv != rr {
		// null and missing/undefined are equal for matching.
		if rv+rr == rankUndefined+rankNull {
			return op == mEQ || op == mGTE || op == mLTE
		}
		switch rhs.(type) {
		case bson.MaxKey:
			return op == mLT || op == mLTE
		case bson.MinKey:
			return op == mGT || op == mGTE
		}
		return false
	}
	if rv == rankNumber {
		vn, rn := isNaNValue(v), isNaNValue(rhs)
		if vn || rn {
			return vn && rn && (op == mEQ || op == mGTE || op == mLTE)
		}
	}
	c := Compare(v, rhs)
	switch op {
	case mEQ:
		return c == 0
	case mGT:
		return c > 0
	case mGTE:
		return c >= 0
	case mLT:
		return c < 0
	}
	return c <= 0
}

// isNaNValue reports whether a number is NaN (double or decimal).
func isNaNValue(v any) bool {
	switch x := v.(type) {
	case float64:
		return math.IsNaN(x)
	case bson.Decimal128:
		return x.IsNaN()
	case float32:
		return math.IsNaN(float64(x))
	}
	return false
}

// inMatch implements $in: equality with any listed value, or a match of any
// listed regex.
type inMatch struct {
	eq      []any
	regexes []*regexMatch
}

func newInMatch(op string, v any) (*inMatch, error) {
	arr, ok := AsArray(v)
	if !ok {
		return nil, badValue("%s needs an array", op)
	}
	p := &inMatch{}
	for _, x := range arr {
		if re, ok := x.(bson.Regex); ok {
			rp, err := newRegexMatch(re.Pattern, re.Options)
			if err != nil {
				return nil, err
			}
			p.regexes = append(p.regexes, rp)
			continue
		}
		if _, ok := isOperatorDoc(x); ok {
			return nil, badValue("cannot nest $ under %s", op)
		}
		x = Normalize(x)
		if _, ok := x.(bson.Undefined); ok {
			return nil, badValue("InMatchExpression equality cannot be undefined")
		}
		p.eq = append(p.eq, x)
	}
	return p, nil
}

func (p *inMatch) test(v any) bool {
	for _, x := range p.eq {
		if compareMatches(mEQ, v, x) {
			return true
		}
	}
	for _, r := range p.regexes {
		if r.test(v) {
			return true
		}
	}
	return false
}

// existsMatch implements $exists: true (the path reaches a value).
type existsMatch struct{}

func (existsMatch) test(v any) bool { return !IsMissing(v) }

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

// modMatch implements $mod: [divisor, remainder] on numbers, truncating
// both the value and the operands to integers as MongoDB does.
type modMatch struct{ div, rem int64 }

func newModMatch(v any) (*modMatch, error) {
	arr, ok := AsArray(v)
	if !ok {
		return nil, badValue("malformed mod, needs to be an array")
	}
	if len(arr) < 2 {
		return nil, badValue("malformed mod, not enough elements")
	}
	if len(arr) > 2 {
		return nil, badValue("malformed mod, too many elements")
	}
	div, err := modOperandValue(arr[0], "divisor")
	if err != nil {
		return nil, err
	}
	rem, err := modOperandValue(arr[1], "remainder")
	if err != nil {
		return nil, err
	}
	if div == 0 {
		return nil, badValue("divisor cannot be 0")
	}
	return &modMatch{div: div, rem: rem}, nil
}

func modOperandValue(v any, what string) (int64, error) {
	if !IsNumber(v) {
		return 0, badValue("malformed mod, %s not a number", what)
	}
	f, _ := ToFloat64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, badValue("malformed mod, %s value is invalid :: caused by :: Unable to coerce NaN/Inf to integral type", what)
	}
	return truncNumberToInt64(v), nil
}

// truncNumberToInt64 truncates a number toward zero, saturating at the int64
// range.
func truncNumberToInt64(v any) int64 {
	if i, ok := ToInt64(v); ok {
		return i
	}
	f, _ := ToFloat64(v)
	switch {
	case math.IsNaN(f):
		return 0
	case f >= 1<<63:
		return math.MaxInt64
	case f < -(1 << 63):
		return math.MinInt64
	}
	return int64(math.Trunc(f))
}

func (p *modMatch) test(v any) bool {
	if !IsNumber(v) {
		return false
	}
	if f, _ := ToFloat64(v); math.IsNaN(f) || math.IsInf(f, 0) {
		return false
	}
	x := truncNumberToInt64(v)
	if p.div == -1 {
		// Avoid the MinInt64 % -1 overflow; the remainder is always 0.
		return p.rem == 0
	}
	return x%p.div == p.rem
}

// typeMatch implements $type with type numbers and aliases ("number" means
// any numeric type).
type typeMatch struct {
	types  []int
	number bool
}

func newTypeMatch(v any) (*typeMatch, error) {
	p := &typeMatch{}
	add := func(x any) error {
		switch t := x.(type) {
		case string:
			if t == "number" {
				p.number = true
				return nil
			}
			n, ok := typeAliasNumber(t)
			if !ok {
				return badValue("Unknown type name alias: %s", t)
			}
			p.types = append(p.types, n)
			return nil
		}
		if !IsNumber(x) {
			return mongoerr.Errorf(mongoerr.TypeMismatch, "type must be represented as a number or a string")
		}
		n, ok := ToInt64(x)
		if !ok || !validTypeNumber(n) {
			return badValue("Invalid numerical type code: %s", formatTypeCode(x))
		}
		p.types = append(p.types, int(n))
		return nil
	}
	if arr, ok := AsArray(v); ok {
		for _, x := range arr {
			if err := add(x); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	if err := add(v); err != nil {
		return nil, err
	}
	return p, nil
}

func formatTypeCode(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprint(f)
	}
	return fmt.Sprint(v)
}

func validTypeNumber(n int64) bool {
	return (n >= 1 && n <= 19) || n == -1 || n == 127
}

// typeAliasNumber maps a $type alias to its BSON type number.
func typeAliasNumber(s string) (int, bool) {
	for n := -1; n <= 127; n++ {
		if !validTypeNumber(int64(n)) {
			continue
		}
		if typeNameOfNumber(n) == s {
			return n, true
		}
	}
	return 0, false
}

func (p *typeMatch) test(v any) bool {
	if IsMissing(v) {
		return false
	}
	if p.number && IsNumber(v) {
		return true
	}
	t := TypeNumber(v)
	for _, x := range p.types {
		if x == t {
			return true
		}
	}
	return false
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

func newElemMatchMatch(v any, depth int) (*elemMatchMatch, error) {
	d, ok := AsDocument(v)
	if !ok {
		return nil, badValue("$elemMatch needs an Object")
	}
	if depth+1 > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing match expression", maxFilterDepth)
	}
	if len(d) > 0 && strings.HasPrefix(d[0].Key, "$") && !isTopLevelOperator(d[0].Key) {
		n, err := compileElemMatchValue(d, depth+1)
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
	n, err := compileMatchAnd(d, depth+1)
	if err != nil {
		return nil, err
	}
	return &elemMatchMatch{doc: n}, nil
}

// compileElemMatchValue compiles the operator form: operators applied to
// the element itself, without expanding an element that is an array.
func compileElemMatchValue(ops bson.D, depth int) (matchNode, error) {
	for _, op := range ops {
		if !strings.HasPrefix(op.Key, "$") {
			return nil, badValue("unknown operator: %s", op.Key)
		}
	}
	n, err := compileQueryOperators([]string{elemMatchValueKey}, ops, depth)
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

func isTopLevelOperator(s string) bool {
	switch s {
	case "$and", "$or", "$nor", "$expr", "$where", "$text", "$comment", "$jsonSchema", "$alwaysTrue", "$alwaysFalse", "$sampleRate":
		return true
	}
	return false
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
