package mql

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// logicalTopLevel is the table of top-level logical operators and the
// constant filters.
func logicalTopLevel() map[string]topLevelCompiler {
	logical := func(key string, v any, cx compileCx) (matchNode, error) {
		children, err := compileMatchClauses(key, v, cx)
		if err != nil {
			return nil, err
		}
		switch key {
		case "$and":
			return matchAnd(children), nil
		case "$or":
			return matchOr(children), nil
		}
		return matchNot{matchOr(children)}, nil
	}
	constant := func(key string, v any, _ compileCx) (matchNode, error) {
		if n, ok := ToFloat64(v); !ok || n != 1 {
			return nil, badValue("%s must be an integer value of 1", key)
		}
		return matchConst(key == "$alwaysTrue"), nil
	}
	return map[string]topLevelCompiler{
		"$and":         logical,
		"$or":          logical,
		"$nor":         logical,
		"$comment":     func(string, any, compileCx) (matchNode, error) { return nil, nil },
		"$alwaysTrue":  constant,
		"$alwaysFalse": constant,
	}
}

// logicalQuery is the table of logical query operators ($not) and the
// path-level $comment.
func logicalQuery() map[string]queryCompiler {
	return map[string]queryCompiler{
		"$not": func(parts []string, op bson.E, cx compileCx) (matchNode, error) {
			return compileMatchNot(parts, op.Value, cx)
		},
		"$comment": func([]string, bson.E, compileCx) (matchNode, error) { return nil, nil },
	}
}

// compileMatchClauses compiles the array argument of $and, $or and $nor.
func compileMatchClauses(op string, v any, cx compileCx) ([]matchNode, error) {
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
		n, err := compileMatchAnd(d, cx.deeper())
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// compileMatchNot compiles {$not: {...}} or {$not: /re/}.
func compileMatchNot(parts []string, v any, cx compileCx) (matchNode, error) {
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
	inner, err := compileQueryOperators(parts, d, cx.deeper())
	if err != nil {
		return nil, err
	}
	return matchNot{inner}, nil
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
	inner := matchState{pos: -1, vars: st.vars}
	ok := n.n.match(doc, &inner)
	if inner.err != nil && st.err == nil {
		st.err = inner.err
	}
	return !ok
}

// matchConst always or never matches ($alwaysTrue, $alwaysFalse, $all: []).
type matchConst bool

func (n matchConst) match(bson.D, *matchState) bool { return bool(n) }
