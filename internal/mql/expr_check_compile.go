package mql

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// The compiler stops at an expression's first error. CheckExpr reports
// them all: it compiles each operator expression on its own, innermost
// first, and compiles an operator with each of its operator arguments
// that failed replaced by checkPlaceholder (a field path, which is never
// constant and so never folded), so that its own mistakes (an argument
// count, an unknown parameter, a constant that fails to evaluate) are
// found apart from its arguments'. Compilation is context-free, so when an
// expression fails to compile, one of these parts does. (An operator that
// requires a constant where a failed argument stood may report that too.)

// checkPlaceholder stands for an operator argument already reported.
const checkPlaceholder = "$checkPlaceholder"

// compileChecker collects the compile errors of the parts of an
// expression. static holds CheckExpr's own problems: an operator one of
// them concerns has its compile error left out, since it is the same
// mistake told more helpfully.
type compileChecker struct {
	static []Problem
	owners map[string]bool // paths of the operators static concerns
	found  []Problem
}

func (c *compileChecker) add(path []PathStep, err error) {
	c.found = append(c.found, problemOf(path, err))
}

func problemOf(path []PathStep, err error) Problem {
	msg := err.Error()
	var me *mongoerr.Error
	if errors.As(err, &me) {
		msg = me.Message
	}
	return Problem{Path: slices.Clone(path), Message: msg}
}

// problems returns the problems found, in the order of the nodes they
// concern.
func (c *compileChecker) problems() []Problem {
	out := c.found[:0]
	for _, p := range c.found {
		if p.Message != "" {
			out = append(out, p)
		}
	}
	return out
}

// check reports the compile errors of v, an expression at path, and of its
// parts, and returns whether v fails to compile.
func (c *compileChecker) check(v any, path []PathStep, depth int) bool {
	if depth > aggMaxNesting {
		return false
	}
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "$") {
			if _, err := compilePath(x); err != nil {
				c.add(path, err)
				return true
			}
		}
		return false
	case []any:
		return c.check(bson.A(x), path, depth)
	case bson.A:
		failed := false
		for i, e := range x {
			failed = c.check(e, push(path, PathStep{Index: i, IsIndex: true}), depth+1) || failed
		}
		return failed
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") {
			return c.operator(x, path, depth)
		}
		failed := false
		seen := make(map[string]bool, len(x))
		for _, e := range x {
			p := push(path, PathStep{Key: e.Key})
			if err := literalKeyErr(x, e.Key, seen); err != nil {
				c.add(p, err)
				failed = true
			}
			failed = c.check(e.Value, p, depth+1) || failed
		}
		return failed
	}
	if _, err := compileNode(v); err != nil {
		c.add(path, err)
		return true
	}
	return false
}

// operator checks d, an operator expression at path.
func (c *compileChecker) operator(d bson.D, path []PathStep, depth int) bool {
	name := d[0].Key
	opPath := push(path, PathStep{Key: name})
	if _, known := exprOperators[name]; len(d) != 1 || !known {
		// Neither its shape nor its arguments are known: its arguments
		// are not looked into.
		if !c.hasStatic(path) {
			_, err := compileDoc(d)
			c.add(opPath, err)
		}
		return true
	}
	// The operator's own problem comes before its arguments'.
	slot := len(c.found)
	c.found = append(c.found, Problem{})
	arg, failed := d[0].Value, false
	switch a, isDoc := arg.(bson.D); {
	case name == "$literal":
	case (name == "$getField" || name == "$setField" || name == "$unsetField") && isDoc && len(a) > 0 && !strings.HasPrefix(a[0].Key, "$"):
		// 'field' is a constant name, not an expression.
		arg, failed = c.replaceInDoc(a, opPath, depth, "field")
	case (name == "$map" || name == "$filter") && isDoc:
		// 'as' is a variable name, not an expression.
		arg, failed = c.replaceInDoc(a, opPath, depth, "as")
	case name == "$getField" || name == "$setField" || name == "$unsetField":
	default:
		arg, failed = c.replaceFailed(arg, opPath, depth+1)
	}
	if c.hasStatic(path) {
		// Reported already; its parent is compiled without it.
		return true
	}
	n, err := compileNode(bson.D{{Key: name, Value: arg}})
	if err == nil {
		err = foldErr(n)
	}
	if err != nil {
		c.found[slot] = problemOf(opPath, err)
		return true
	}
	return failed
}

// replaceFailed checks v, part of an operator's argument at path, and
// returns it with each operator expression and field path in it that
// fails to compile replaced by checkPlaceholder, and whether it replaced
// any (v itself is left as it is).
func (c *compileChecker) replaceFailed(v any, path []PathStep, depth int) (any, bool) {
	if depth > aggMaxNesting {
		return v, false
	}
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "$") && c.check(x, path, depth) {
			return checkPlaceholder, true
		}
	case []any:
		return c.replaceFailed(bson.A(x), path, depth)
	case bson.A:
		var out bson.A
		for i, e := range x {
			r, failed := c.replaceFailed(e, push(path, PathStep{Index: i, IsIndex: true}), depth+1)
			if failed && out == nil {
				out = slices.Clone(x)
			}
			if failed {
				out[i] = r
			}
		}
		if out == nil {
			return v, false
		}
		return out, true
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") {
			if c.operator(x, path, depth) {
				return checkPlaceholder, true
			}
			return v, false
		}
		return c.replaceInDoc(x, path, depth, "")
	}
	return v, false
}

// replaceInDoc is replaceFailed for each value of d but skip's.
func (c *compileChecker) replaceInDoc(d bson.D, path []PathStep, depth int, skip string) (bson.D, bool) {
	var out bson.D
	for i, e := range d {
		if e.Key == skip {
			continue
		}
		r, failed := c.replaceFailed(e.Value, push(path, PathStep{Key: e.Key}), depth+1)
		if failed && out == nil {
			out = slices.Clone(d)
		}
		if failed {
			out[i].Value = r
		}
	}
	if out == nil {
		return d, false
	}
	return out, true
}

// hasStatic reports whether one of CheckExpr's own problems concerns the
// operator expression at path itself rather than an operator inside it.
func (c *compileChecker) hasStatic(path []PathStep) bool {
	if len(c.static) == 0 {
		return false
	}
	if c.owners == nil {
		c.owners = make(map[string]bool, len(c.static))
		for _, p := range c.static {
			// The operator a problem concerns is the innermost one on
			// its path (whose key is the last "$" step) other than a
			// problem of an argument that is itself an operator.
			for i := len(p.Path) - 1; i >= 0; i-- {
				if s := p.Path[i]; !s.IsIndex && strings.HasPrefix(s.Key, "$") {
					c.owners[pathID(p.Path[:i])] = true
					break
				}
			}
		}
	}
	return c.owners[pathID(path)]
}

// pathID encodes path unambiguously.
func pathID(path []PathStep) string {
	if len(path) == 1 {
		return pathKey(path[0])
	}
	var b strings.Builder
	for _, s := range path {
		b.WriteString(pathKey(s))
	}
	return b.String()
}

// orderProblems merges CheckExpr's lists of problems of spec (its own,
// the compile errors and the undefined variables), each in the order of
// the nodes of spec they concern, into one in that order (a node before
// the nodes inside it; a problem whose path is not a node of spec last),
// without a problem told twice at one node.
func orderProblems(spec any, static, compiled, undefined []Problem) []Problem {
	var all []Problem
	lists := 0
	for _, l := range [][]Problem{static, compiled, undefined} {
		if len(l) > 0 {
			lists++
			all = append(all, l...)
		}
	}
	switch {
	case lists == 1 && len(compiled) == 0:
		return all // neither list tells a problem twice
	case lists > 1:
		sortByNode(spec, all)
	}
	seen := make(map[string]bool, len(all))
	out := all[:0]
	for _, p := range all {
		if key := pathID(p.Path) + "\x00" + p.Message; !seen[key] {
			seen[key] = true
			out = append(out, p)
		}
	}
	return out
}

// sortByNode sorts probs into the order of the nodes of spec they concern.
func sortByNode(spec any, probs []Problem) {
	index := map[string]int{}
	var walk func(v any, key string, depth int)
	walk = func(v any, key string, depth int) {
		if _, ok := index[key]; !ok {
			index[key] = len(index)
		}
		if depth > aggMaxNesting {
			return
		}
		switch x := v.(type) {
		case []any:
			walk(bson.A(x), key, depth)
		case bson.A:
			for i, e := range x {
				walk(e, key+pathKey(PathStep{Index: i, IsIndex: true}), depth+1)
			}
		case bson.D:
			for _, e := range x {
				walk(e.Value, key+pathKey(PathStep{Key: e.Key}), depth+1)
			}
		}
	}
	walk(spec, "", 0)
	rank := func(p Problem) int {
		if at, ok := index[pathID(p.Path)]; ok {
			return at
		}
		return len(index)
	}
	slices.SortStableFunc(probs, func(a, b Problem) int { return rank(a) - rank(b) })
}

// pathKey encodes one path step unambiguously.
func pathKey(s PathStep) string {
	if s.IsIndex {
		return "[" + strconv.Itoa(s.Index) + "]"
	}
	return "." + strconv.Itoa(len(s.Key)) + ":" + s.Key
}
