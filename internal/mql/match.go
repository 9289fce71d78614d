package mql

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Filter is a compiled query filter. It is immutable after CompileFilter
// and safe for concurrent use by multiple goroutines.
type Filter struct {
	root matchNode
	// vars are the command's let variables, visible to $expr.
	vars map[string]any
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
	// vars are the variables $expr sees besides the system ones.
	vars map[string]any
}

// CompileFilter compiles a query filter document as find, count, delete,
// update and $match accept it. It returns a *mongoerr.Error naming the offending
// operator for an invalid filter: "unknown top level operator: $foo" and
// "unknown operator: $foo" (BadValue, code 2), and NotImplemented (238) or
// the error MongoDB reports without the needed index for $where, $text,
// $jsonSchema and geospatial operators. A nil or empty filter matches
// every document.
func CompileFilter(filter bson.D) (*Filter, error) {
	return CompileFilterCollation(filter, nil)
}

// CompileFilterCollation is CompileFilter with string comparisons ($eq,
// $ne, $gt, $gte, $lt, $lte, $in, $nin, $all, equality, $elemMatch and the
// comparisons of $expr) made under the collation c; $regex, $type, $size
// and field names are not affected, as in MongoDB. A nil c is CompileFilter.
func CompileFilterCollation(filter bson.D, c *Collation) (*Filter, error) {
	n, err := compileMatchAnd(filter, compileCx{coll: c})
	if err != nil {
		return nil, err
	}
	return &Filter{root: n}, nil
}

// compileCx is the compilation context of a filter: the nesting depth of
// the part being compiled and the collation its comparisons use.
type compileCx struct {
	depth int
	coll  *Collation
}

// deeper returns the context one nesting level down.
func (cx compileCx) deeper() compileCx {
	cx.depth++
	return cx
}

// Match reports whether doc matches the filter. An $expr evaluation error
// makes the document not match; use MatchErr to see the error.
func (f *Filter) Match(doc bson.D) bool {
	if f.vars != nil {
		st := matchState{pos: -1, vars: f.vars}
		return f.root.match(doc, &st) && st.err == nil
	}
	return f.root.match(doc, nil)
}

// WithVars returns a copy of f in which vars (a command's let variables,
// from CompileLet) are visible to $expr as $$name. vars is only read.
func (f *Filter) WithVars(vars map[string]any) *Filter {
	g := *f
	g.vars = vars
	return &g
}

// MatchErr is Match that also returns the first $expr evaluation error (a
// *mongoerr.Error), as MongoDB fails the query in that case. When err is non-nil,
// matched is false.
func (f *Filter) MatchErr(doc bson.D) (matched bool, err error) {
	return f.matchErrVars(doc, f.vars)
}

// matchErrVars is MatchErr with vars visible to $expr (a pipeline's
// variables for $match).
func (f *Filter) matchErrVars(doc bson.D, vars map[string]any) (matched bool, err error) {
	if vars == nil {
		vars = f.vars
	}
	st := matchState{pos: -1, vars: vars}
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
	st := matchState{pos: -1, vars: f.vars}
	if !f.root.match(doc, &st) || st.err != nil {
		return false, -1
	}
	return true, st.pos
}

// maxFilterDepth bounds the nesting of $and/$or/$nor/$not/$elemMatch, as
// MongoDB bounds it (100), so hostile filters cannot exhaust the stack.
const maxFilterDepth = 100

// compileMatchAnd compiles a filter document: the implicit AND of its fields.
func compileMatchAnd(filter bson.D, cx compileCx) (matchNode, error) {
	if cx.depth > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing match expression", maxFilterDepth)
	}
	nodes := make([]matchNode, 0, len(filter))
	for _, e := range filter {
		n, err := compileMatchTopLevel(e, cx)
		if err != nil {
			return nil, err
		}
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	return matchAllOf(nodes), nil
}

// topLevelCompiler compiles the value v of the top-level filter operator
// key ($and, $expr, ...) at nesting depth.
type topLevelCompiler func(key string, v any, cx compileCx) (matchNode, error)

// queryCompiler compiles the query operator op ($gt, $in, ...) applied to
// the path parts at nesting depth. A nil node with a nil error means the
// operator constrains nothing ($comment).
type queryCompiler func(parts []string, op bson.E, cx compileCx) (matchNode, error)

// topLevelOperators and queryOperators map every filter operator name to
// its compiler. init assembles them from the per-family tables (logical in
// match_logical.go, comparison in match_compare.go, element in
// match_element.go, evaluation in match_eval.go, array in match_array.go,
// bitwise in match_bits.go, geospatial in match_geo.go); they are only read
// afterwards. $regex and $options are compiled together by
// compileQueryOperators, not through queryOperators.
var (
	topLevelOperators = map[string]topLevelCompiler{}
	queryOperators    = map[string]queryCompiler{}
)

func init() {
	for _, family := range []map[string]topLevelCompiler{logicalTopLevel(), evalTopLevel()} {
		for name, c := range family {
			if _, dup := topLevelOperators[name]; dup {
				panic(fmt.Sprintf("mql: top-level filter operator %s registered twice", name))
			}
			topLevelOperators[name] = c
		}
	}
	for _, family := range []map[string]queryCompiler{
		logicalQuery(), compareQuery(), elementQuery(), evalQuery(), arrayQuery(), bitsQuery(), geoQuery(),
	} {
		for name, c := range family {
			if _, dup := queryOperators[name]; dup {
				panic(fmt.Sprintf("mql: query operator %s registered twice", name))
			}
			queryOperators[name] = c
		}
	}
}

// isTopLevelOperator reports whether s is a top-level filter operator
// ($and, $expr, ...), as opposed to a query operator applied to a path.
func isTopLevelOperator(s string) bool {
	_, ok := topLevelOperators[s]
	return ok
}

// compileMatchTopLevel compiles one field of a filter document.
func compileMatchTopLevel(e bson.E, cx compileCx) (matchNode, error) {
	if !strings.HasPrefix(e.Key, "$") {
		return compileMatchPathValue(e.Key, e.Value, cx)
	}
	if c, ok := topLevelOperators[e.Key]; ok {
		return c(e.Key, e.Value, cx)
	}
	return nil, badValue("unknown top level operator: %s. If you are trying to match a field name starting with '$', use $getField or $expr", e.Key)
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
func compileMatchPathValue(path string, v any, cx compileCx) (matchNode, error) {
	parts := splitPath(path)
	if ops, ok := isOperatorDoc(v); ok {
		return compileQueryOperators(parts, ops, cx)
	}
	if re, ok := v.(bson.Regex); ok {
		p, err := newRegexMatch(re.Pattern, re.Options)
		if err != nil {
			return nil, err
		}
		return newMatchPath(parts, p, true), nil
	}
	p, err := newCmpMatch(mEQ, v, "$eq", cx.coll)
	if err != nil {
		return nil, err
	}
	return newMatchPath(parts, p, true), nil
}

// compileQueryOperators compiles an operator document {$gt: 1, $lt: 5} on a
// path: the AND of its operators.
func compileQueryOperators(parts []string, ops bson.D, cx compileCx) (matchNode, error) {
	if cx.depth > maxFilterDepth {
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
		n, err := compileQueryOperator(parts, op, cx)
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
func compileQueryOperator(parts []string, op bson.E, cx compileCx) (matchNode, error) {
	if c, ok := queryOperators[op.Key]; ok {
		return c(parts, op, cx)
	}
	return nil, badValue("unknown operator: %s", op.Key)
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
