package mql

import (
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// MongoDB resolves every variable an expression reads when it parses the
// expression, not when it evaluates it: "$$nosuch" fails the command with
// Location17276 "Use of undefined variable: nosuch" before any document is
// read. The compiler reproduces this with a walk over the expression's
// BSON form that knows which operators bind variables and where their
// bindings are visible; it runs at compile time only, so evaluation still
// resolves variables through evalCtx.lookupVar alone.

// systemVars are the variables every expression may read without binding
// them: MongoDB's system variables ("Variables in Aggregation
// Expressions") that evalCtx.lookupVar implements. The manual's
// SEARCH_META and USER_ROLES are not among them: the engine has no value
// for them, and an expression reading them would fail on every document.
var systemVars = map[string]bool{
	"ROOT": true, "CURRENT": true, "NOW": true, "CLUSTER_TIME": true,
	"REMOVE": true, "DESCEND": true, "PRUNE": true, "KEEP": true,
}

// boundVars is one level of variables visible to a sub-expression: those
// an enclosing $let, $map, $filter or $reduce binds, linked to the
// enclosing level; the outermost level (parent nil) holds the caller's.
type boundVars struct {
	names  []string
	caller map[string]any
	parent *boundVars
}

func (b *boundVars) has(name string) bool {
	for s := b; s != nil; s = s.parent {
		for _, n := range s.names {
			if n == name {
				return true
			}
		}
		if _, ok := s.caller[name]; ok {
			return true
		}
	}
	return systemVars[name]
}

func (b *boundVars) with(names ...string) *boundVars {
	return &boundVars{names: names, parent: b}
}

// undefinedVarError is MongoDB's error for reading a variable that is not
// in scope.
func undefinedVarError(name string) error {
	return mongoerr.Errorf(mongoerr.UndefinedVariable, "Use of undefined variable: %s", name)
}

// walkUndefinedVars calls found with the path and error of each variable
// spec reads that is neither bound where it is read, nor one of vars' keys
// (the caller's variables), nor a system variable, in document order,
// until found returns false. It expects spec to compile (CompileExpr runs
// it after a successful compile; CheckExpr reports compile errors
// itself): it does not look inside a malformed operator, whose bindings
// are unknown, nor report a malformed variable name.
func walkUndefinedVars(spec any, vars map[string]any, found func(path []PathStep, err error) bool) {
	w := varWalker{found: found}
	w.node(spec, make([]PathStep, 0, 32), &boundVars{caller: vars}, 0)
}

// push returns path with s appended. The result may share path's storage
// with its siblings': the walks that use it copy a path they keep.
func push(path []PathStep, s PathStep) []PathStep { return append(path, s) }

type varWalker struct {
	found func([]PathStep, error) bool
	stop  bool
}

func (w *varWalker) report(path []PathStep, name string) {
	if !w.stop && !w.found(slices.Clone(path), undefinedVarError(name)) {
		w.stop = true
	}
}

func (w *varWalker) node(v any, path []PathStep, scope *boundVars, depth int) {
	if w.stop || depth > aggMaxNesting {
		return
	}
	switch x := v.(type) {
	case string:
		if !strings.HasPrefix(x, "$$") {
			return
		}
		name, _, _ := strings.Cut(x[2:], ".")
		if aggCheckVarRef(name) == nil && !scope.has(name) {
			w.report(path, name)
		}
	case []any:
		w.node(bson.A(x), path, scope, depth)
	case bson.A:
		for i, e := range x {
			w.node(e, push(path, PathStep{Index: i, IsIndex: true}), scope, depth+1)
		}
	case bson.D:
		if len(x) > 0 && strings.HasPrefix(x[0].Key, "$") {
			if len(x) == 1 {
				w.operator(x[0].Key, x[0].Value, push(path, PathStep{Key: x[0].Key}), scope, depth+1)
			}
			return
		}
		for _, e := range x {
			w.node(e.Value, push(path, PathStep{Key: e.Key}), scope, depth+1)
		}
	}
}

// operator walks the argument of the operator name, at path (which ends
// with the operator's key).
func (w *varWalker) operator(name string, arg any, path []PathStep, scope *boundVars, depth int) {
	if _, known := exprOperators[name]; !known {
		return
	}
	d, isDoc := arg.(bson.D)
	at := func(key string) []PathStep { return push(path, PathStep{Key: key}) }
	switch name {
	case "$literal":
	case "$let":
		// The variables' expressions see the enclosing scope only, not
		// each other; "in" sees them all.
		if !isDoc {
			return
		}
		var vars bson.D
		for _, e := range d {
			if e.Key == "vars" {
				if vars, isDoc = e.Value.(bson.D); !isDoc {
					return
				}
			}
		}
		names := make([]string, 0, len(vars))
		for _, e := range vars {
			w.node(e.Value, push(at("vars"), PathStep{Key: e.Key}), scope, depth+2)
			names = append(names, e.Key)
		}
		for _, e := range d {
			if e.Key == "in" {
				w.node(e.Value, at("in"), scope.with(names...), depth+1)
			}
		}
	case "$map", "$filter":
		if !isDoc {
			return
		}
		as := "this"
		for _, e := range d {
			if e.Key == "as" {
				as, _ = e.Value.(string)
			}
		}
		body := map[string]string{"$map": "in", "$filter": "cond"}[name]
		for _, e := range d {
			s := scope
			if e.Key == body {
				s = scope.with(as)
			}
			if e.Key != "as" {
				w.node(e.Value, at(e.Key), s, depth+1)
			}
		}
	case "$reduce":
		if !isDoc {
			return
		}
		for _, e := range d {
			s := scope
			if e.Key == "in" {
				s = scope.with("this", "value")
			}
			w.node(e.Value, at(e.Key), s, depth+1)
		}
	case "$getField", "$setField", "$unsetField":
		// 'field' is a constant name, never read as a variable; the short
		// form of $getField is only a field.
		if !isDoc || len(d) == 0 || strings.HasPrefix(d[0].Key, "$") {
			return
		}
		for _, e := range d {
			if e.Key != "field" {
				w.node(e.Value, at(e.Key), scope, depth+1)
			}
		}
	default:
		w.node(arg, path, scope, depth)
	}
}
