package mql

import (
	"fmt"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Expr is a compiled aggregation expression. It is immutable after
// CompileExpr and safe for concurrent use by multiple goroutines.
type Expr struct {
	n exprNode
}

// exprNode is one node of a compiled expression tree.
type exprNode interface {
	eval(c *evalCtx) (any, error)
}

// varScope is one variable binding of $let, $map, $filter or $reduce,
// linked to the enclosing scope.
type varScope struct {
	name   string
	val    any
	parent *varScope
}

// evalCtx is the per-evaluation state: the root document, $$CURRENT, the
// caller's variables, bound user variables and $$NOW.
type evalCtx struct {
	root    bson.D
	current any
	vars    map[string]any
	scope   *varScope
	now     bson.DateTime
	nowSet  bool
	steps   int
	maxStep int
	// coll is the collation string comparisons use (nil: binary).
	coll *Collation
}

// aggMaxValueBytes bounds strings and arrays built by one expression
// (MongoDB's 16 MB BSON limit), so that doubling tricks with $reduce cannot
// exhaust memory.
const aggMaxValueBytes = 16 * 1024 * 1024

// aggTooLarge is the error for a value over aggMaxValueBytes.
func aggTooLarge(op string) error {
	return mongoerr.Errorf(mongoerr.BSONObjectTooLarge, "%s: result exceeds the maximum BSON size of %d bytes", op, aggMaxValueBytes)
}

// aggMaxEvalSteps bounds the work one evaluation may do (nested $map,
// $reduce and $range loops), so that a hostile expression cannot pin a CPU.
const aggMaxEvalSteps = 10_000_000

// lookupVar resolves a variable: bound user variables first, then the
// caller's variables, then the system variables.
func (c *evalCtx) lookupVar(name string) (any, error) {
	if name == "CURRENT" {
		for s := c.scope; s != nil; s = s.parent {
			if s.name == name {
				return s.val, nil
			}
		}
		return c.current, nil
	}
	for s := c.scope; s != nil; s = s.parent {
		if s.name == name {
			return s.val, nil
		}
	}
	if v, ok := c.vars[name]; ok {
		return v, nil
	}
	switch name {
	case "ROOT":
		return c.root, nil
	case "NOW":
		if !c.nowSet {
			c.now = bson.NewDateTimeFromTime(time.Now())
			c.nowSet = true
		}
		return c.now, nil
	case "CLUSTER_TIME":
		return bson.Timestamp{T: uint32(time.Now().Unix()), I: 1}, nil
	case "REMOVE":
		return Missing, nil
	case "KEEP", "PRUNE", "DESCEND":
		return "$$" + name, nil
	}
	return nil, mongoerr.Errorf(mongoerr.UndefinedVariable, "Use of undefined variable: %s", name)
}

// bind returns a child scope binding name to val.
func (c *evalCtx) bind(name string, val any) {
	c.scope = &varScope{name: name, val: val, parent: c.scope}
}

// step counts one unit of loop work and fails once the budget is spent.
func (c *evalCtx) step(n int) error {
	c.steps += n
	limit := c.maxStep
	if limit == 0 {
		limit = aggMaxEvalSteps
	}
	if c.steps > limit {
		return mongoerr.Errorf(mongoerr.BadValue, "expression evaluation exceeded %d steps", limit)
	}
	return nil
}

// CompileExpr compiles an aggregation expression given in its BSON form:
// a literal, a field path ("$a.b"), a variable ("$$ROOT", "$$x.y"), an
// operator document ({$concat: [...]}), a literal document whose fields are
// expressions, or an array of expressions. It returns a *mongoerr.Error with
// MongoDB's code for an invalid expression (for example 168
// InvalidPipelineOperator for an unknown operator), and the error of a
// constant sub-expression that fails to evaluate ({$divide: [1, 0]}), which
// MongoDB reports while parsing. A variable read where nothing binds it
// and that is not a system variable ($$ROOT, $$CURRENT, $$NOW,
// $$CLUSTER_TIME, $$REMOVE, $$DESCEND, $$PRUNE, $$KEEP) is refused as
// MongoDB refuses it, with 17276 UndefinedVariable; use CompileExprVars
// for an expression that reads variables its caller supplies.
func CompileExpr(spec any) (*Expr, error) {
	return CompileExprVars(spec, nil)
}

// CompileExprVars is CompileExpr for an expression evaluated with EvalVars
// and vars: the keys of vars (a command's let variables, for example) are
// in scope as well. Only the keys are read.
func CompileExprVars(spec any, vars map[string]any) (*Expr, error) {
	x, err := compileExprOpen(spec)
	if err != nil {
		return nil, err
	}
	walkUndefinedVars(spec, vars, func(_ []PathStep, e error) bool {
		err = e
		return false
	})
	if err != nil {
		return nil, err
	}
	return x, nil
}

// compileExprOpen is CompileExpr without the check of the variables the
// expression reads, for the expressions of filters, projections and
// pipelines, whose caller variables (WithVars) are given after they are
// compiled; a variable nothing supplies fails when it is evaluated.
func compileExprOpen(spec any) (*Expr, error) {
	if aggNestingDepth(spec, aggMaxNesting) > aggMaxNesting {
		return nil, aggNestingErr()
	}
	n, err := compileNode(spec)
	if err != nil {
		return nil, err
	}
	if err := foldErr(n); err != nil {
		return nil, err
	}
	return &Expr{n: n}, nil
}

// Eval evaluates the expression against root, which is both $$ROOT and
// $$CURRENT. A field path to an absent field yields Missing; callers that
// store the result must drop Missing (MongoDB omits such fields).
func (e *Expr) Eval(root bson.D) (any, error) {
	return e.EvalVars(root, nil)
}

// EvalVars is Eval with additional variables visible to the expression as
// $$name ("NOW" fixes $$NOW). An expression that reads a variable of vars
// other than a system variable must have been compiled with
// CompileExprVars and vars' names. vars is only read.
func (e *Expr) EvalVars(root bson.D, vars map[string]any) (any, error) {
	c := &evalCtx{root: root, current: root, vars: vars}
	if now, ok := vars["NOW"].(bson.DateTime); ok {
		c.now, c.nowSet = now, true
	}
	return e.evalCtx(c)
}

// evalColl is EvalVars with string comparisons made under coll.
func (e *Expr) evalColl(root bson.D, vars map[string]any, coll *Collation) (any, error) {
	c := &evalCtx{root: root, current: root, vars: vars, coll: coll}
	if now, ok := vars["NOW"].(bson.DateTime); ok {
		c.now, c.nowSet = now, true
	}
	return e.evalCtx(c)
}

// evalCtx evaluates e with an existing context (used by pipeline stages that
// share $$NOW across documents).
func (e *Expr) evalCtx(c *evalCtx) (any, error) {
	if e == nil || e.n == nil {
		return Missing, nil
	}
	return e.n.eval(c)
}

// Truthy reports aggregation truthiness: false, null, Missing, undefined and
// zero of any numeric type are false; every other value (including empty
// strings, arrays and documents) is true.
func Truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case bson.Undefined:
		return false
	case int32:
		return t != 0
	case int64:
		return t != 0
	case float64:
		return t != 0
	case bson.Decimal128:
		return !aggDecIsZero(t)
	}
	return v != Missing
}

// aggMaxNesting bounds how deeply an expression or stage may nest
// documents and arrays, keeping compilation's recursion bounded (MongoDB
// refuses BSON nested deeper than 180 levels in commands).
const aggMaxNesting = 180

func aggNestingErr() error {
	return mongoerr.Errorf(mongoerr.Overflow, "expression or stage nests more than %d levels of documents and arrays", aggMaxNesting)
}

// aggNestingDepth returns the nesting depth of v, stopping early once it
// exceeds limit.
func aggNestingDepth(v any, limit int) int {
	if limit < 0 {
		return 1
	}
	best := 0
	switch t := v.(type) {
	case bson.D:
		for _, e := range t {
			best = max(best, aggNestingDepth(e.Value, limit-1))
			if best > limit {
				break
			}
		}
		return best + 1
	case bson.A:
		for _, e := range t {
			best = max(best, aggNestingDepth(e, limit-1))
			if best > limit {
				break
			}
		}
		return best + 1
	}
	return 0
}

// constNode is a constant value.
type constNode struct{ v any }

func (n constNode) eval(*evalCtx) (any, error) { return n.v, nil }

// pathNode is a field path ("$a.b" = "$$CURRENT.a.b") or a variable with an
// optional path ("$$x.a").
type pathNode struct {
	variable string
	path     []string
}

func (n *pathNode) eval(c *evalCtx) (any, error) {
	var base any
	if n.variable == "" {
		base = c.current
		if c.scope != nil {
			v, err := c.lookupVar("CURRENT")
			if err != nil {
				return nil, err
			}
			base = v
		}
	} else {
		v, err := c.lookupVar(n.variable)
		if err != nil {
			return nil, err
		}
		base = v
	}
	return aggWalkPath(base, n.path), nil
}

// aggWalkPath follows path through v the way aggregation field paths do:
// documents by field name, arrays element-wise (collecting results into an
// array and skipping elements where the path is absent). Numeric path
// components are field names, never array indexes.
func aggWalkPath(v any, path []string) any {
	for i, p := range path {
		switch t := v.(type) {
		case bson.D:
			v = docField(t, p)
		case bson.A:
			return aggWalkArray(t, path[i:])
		default:
			return Missing
		}
	}
	return v
}

func aggWalkArray(a bson.A, path []string) bson.A {
	out := make(bson.A, 0, len(a))
	for _, el := range a {
		switch t := el.(type) {
		case bson.D:
			if r := aggWalkPath(t, path); r != Missing {
				out = append(out, r)
			}
		case bson.A:
			out = append(out, aggWalkArray(t, path))
		}
	}
	return out
}

// docNode is a literal document whose fields are expressions; fields that
// evaluate to Missing are omitted.
type docNode struct {
	keys  []string
	nodes []exprNode
}

func (n *docNode) eval(c *evalCtx) (any, error) {
	out := make(bson.D, 0, len(n.keys))
	for i, k := range n.keys {
		v, err := n.nodes[i].eval(c)
		if err != nil {
			return nil, err
		}
		if v == Missing {
			continue
		}
		out = append(out, bson.E{Key: k, Value: v})
	}
	return out, nil
}

// arrayNode is an array of expressions; Missing elements become null.
type arrayNode struct{ nodes []exprNode }

func (n *arrayNode) eval(c *evalCtx) (any, error) {
	out := make(bson.A, len(n.nodes))
	for i, e := range n.nodes {
		v, err := e.eval(c)
		if err != nil {
			return nil, err
		}
		if v == Missing {
			v = nil
		}
		out[i] = v
	}
	return out, nil
}

// compileNode compiles one expression in BSON form.
func compileNode(spec any) (exprNode, error) {
	switch t := spec.(type) {
	case string:
		if strings.HasPrefix(t, "$") {
			return compilePath(t)
		}
		return constNode{t}, nil
	case bson.D:
		return compileDoc(t)
	case bson.M:
		return nil, mongoerr.Errorf(mongoerr.BadValue, "expression documents must be ordered (bson.D), got bson.M")
	case bson.A:
		nodes, err := compileNodes(t)
		if err != nil {
			return nil, err
		}
		return &arrayNode{nodes: nodes}, nil
	case []any:
		return compileNode(bson.A(t))
	}
	return constNode{spec}, nil
}

// compilePath compiles "$a.b" or "$$var.a.b".
func compilePath(s string) (exprNode, error) {
	if strings.HasPrefix(s, "$$") {
		body := s[2:]
		name, rest, hasRest := strings.Cut(body, ".")
		if err := aggCheckVarRef(name); err != nil {
			return nil, err
		}
		n := &pathNode{variable: name}
		if hasRest {
			p, err := aggSplitFieldPath(rest)
			if err != nil {
				return nil, err
			}
			n.path = p
		}
		return n, nil
	}
	if s == "$" {
		return nil, mongoerr.Errorf(mongoerr.FieldPathDollarOnly, "'$' by itself is not a valid FieldPath")
	}
	p, err := aggSplitFieldPath(s[1:])
	if err != nil {
		return nil, err
	}
	return &pathNode{path: p}, nil
}

// aggSplitFieldPath splits and validates the dotted part of a field path.
func aggSplitFieldPath(s string) ([]string, error) {
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if p == "" {
			return nil, mongoerr.Errorf(mongoerr.FieldPathEmptyComponent, "FieldPath field names may not be empty strings.")
		}
		if strings.HasPrefix(p, "$") {
			return nil, mongoerr.Errorf(mongoerr.FieldPathDollarPrefix, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
		if strings.ContainsRune(p, 0) {
			return nil, mongoerr.Errorf(mongoerr.FieldPathNullByte, "FieldPath field names may not contain '\\0'.")
		}
	}
	return parts, nil
}

// aggCheckVarRef validates a referenced variable name.
func aggCheckVarRef(name string) error {
	if name == "" {
		return mongoerr.Errorf(mongoerr.FailedToParse, "empty variable names are not allowed")
	}
	for i, r := range name {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 127 || i > 0 && r >= '0' && r <= '9'
		if !ok {
			return mongoerr.Errorf(mongoerr.VariableNameBadCharInLet, "'%s' contains an invalid character for a variable name: '%c'", name, r)
		}
	}
	return nil
}

// aggCheckVarDef validates a user variable name being defined ($let vars,
// $map/$filter "as").
func aggCheckVarDef(name string) error {
	if name == "" {
		return mongoerr.Errorf(mongoerr.VariableNameEmpty, "empty variable names are not allowed")
	}
	for i, r := range name {
		if i == 0 {
			if !(r >= 'a' && r <= 'z' || r > 127) {
				return mongoerr.Errorf(mongoerr.VariableNameBadStart, "'%s' starts with an invalid character for a user variable name", name)
			}
			continue
		}
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r > 127) {
			return mongoerr.Errorf(mongoerr.VariableNameBadChar, "'%s' contains an invalid character for a variable name: '%c'", name, r)
		}
	}
	return nil
}

// compileDoc compiles an operator document or a literal document.
func compileDoc(d bson.D) (exprNode, error) {
	if len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
		if len(d) != 1 {
			return nil, mongoerr.Errorf(mongoerr.ExpressionNotOneField, "an expression specification must contain exactly one field, the name of the expression. Found %d fields in %s", len(d), aggFmt(d))
		}
		return compileOperator(d[0].Key, d[0].Value)
	}
	n := &docNode{keys: make([]string, 0, len(d)), nodes: make([]exprNode, 0, len(d))}
	seen := make(map[string]bool, len(d))
	for _, e := range d {
		if err := literalKeyErr(d, e.Key, seen); err != nil {
			return nil, err
		}
		sub, err := compileNode(e.Value)
		if err != nil {
			return nil, err
		}
		n.keys = append(n.keys, e.Key)
		n.nodes = append(n.nodes, sub)
	}
	return n, nil
}

// literalKeyErr checks key, a field name of the literal document d, and
// records it in seen (the names before it).
func literalKeyErr(d bson.D, key string, seen map[string]bool) error {
	if strings.HasPrefix(key, "$") {
		return mongoerr.Errorf(mongoerr.NestedDollarField, "a nested object must not contain a field beginning with '$' ('%s'); use $getField/$setField or $literal", key)
	}
	if strings.Contains(key, ".") {
		return mongoerr.Errorf(mongoerr.FieldPathDot, "FieldPath field names may not contain '.'. Consider using $getField or $setField.")
	}
	if key == "" {
		return mongoerr.Errorf(mongoerr.FieldPathDollarPrefix, "FieldPath field names may not be empty strings.")
	}
	if seen[key] {
		return mongoerr.Errorf(mongoerr.DuplicateFieldName, "duplicate field name specified in object literal: %s", aggFmt(d))
	}
	seen[key] = true
	return nil
}

// aggFmt renders a value for an error message in a compact extended-JSON
// like form. It follows the server's Value printing used by aggregation
// messages ("{a: 1}", "[1, 2]"), which differs on purpose from the
// BSONObj printing of update and query messages (FormatValue: "{ a: 1 }").
func aggFmt(v any) string {
	switch t := v.(type) {
	case bson.D:
		var b strings.Builder
		b.WriteString("{")
		for i, e := range t {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.Key)
			b.WriteString(": ")
			b.WriteString(aggFmt(e.Value))
		}
		b.WriteString("}")
		return b.String()
	case bson.A:
		var b strings.Builder
		b.WriteString("[")
		for i, e := range t {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(aggFmt(e))
		}
		b.WriteString("]")
		return b.String()
	case string:
		return fmt.Sprintf("%q", t)
	case nil:
		return "null"
	case bson.DateTime:
		return aggISODate(t)
	case bson.ObjectID:
		return "ObjectId('" + t.Hex() + "')"
	case float64, int32, int64, bool, bson.Decimal128:
		return fmt.Sprint(t)
	}
	if v == Missing {
		return "missing"
	}
	return fmt.Sprint(v)
}

// aggArgs returns an operator's argument list: the elements of an array, or
// the single argument itself.
func aggArgs(arg any) []any {
	switch t := arg.(type) {
	case bson.A:
		return t
	case []any:
		return t
	}
	return []any{arg}
}

// aggArg is one named argument of an operator's object form: the argument
// name and the node it compiles into.
type aggArg struct {
	name string
	dst  *exprNode
}

// aggCompileNamedArgs compiles the object-form arguments d of an operator
// ({input: ..., to: ...}) into the slots of args, in document order. Each
// value is compiled before its name is checked, so an invalid expression
// under an unknown name reports the expression's error, as MongoDB does. A
// name with no slot is reported with unknown's error. Required arguments are
// the caller's to check (their slots stay nil).
func aggCompileNamedArgs(d bson.D, unknown func(key string) error, args ...aggArg) error {
	for _, e := range d {
		sub, err := compileNode(e.Value)
		if err != nil {
			return err
		}
		found := false
		for _, a := range args {
			if a.name == e.Key {
				*a.dst = sub
				found = true
				break
			}
		}
		if !found {
			return unknown(e.Key)
		}
	}
	return nil
}

// compileArgs compiles an operator's argument list, checking its arity
// (max < 0 means unbounded).
func compileArgs(name string, arg any, lo, hi int) ([]exprNode, error) {
	args := aggArgs(arg)
	if err := arityError(name, lo, hi, len(args)); err != nil {
		return nil, err
	}
	return compileNodes(args)
}

// arityError is MongoDB's error for n arguments passed to name, which
// takes lo..hi (hi < 0: no upper bound); nil when n is within bounds.
func arityError(name string, lo, hi, n int) error {
	if n >= lo && (hi < 0 || n <= hi) {
		return nil
	}
	switch {
	case lo == hi:
		return mongoerr.Errorf(mongoerr.ExpressionArgCountExact, "Expression %s takes exactly %d arguments. %d were passed in.", name, lo, n)
	case hi < 0 || n < lo:
		return mongoerr.Errorf(mongoerr.ExpressionArgCountRange, "Expression %s takes at least %d arguments, but %d were passed in.", name, lo, n)
	default:
		return mongoerr.Errorf(mongoerr.ExpressionArgCountRange, "Expression %s takes at most %d arguments, but %d were passed in.", name, hi, n)
	}
}

// compileNodes compiles each of specs, stopping at the first error.
func compileNodes(specs []any) ([]exprNode, error) {
	nodes := make([]exprNode, len(specs))
	for i, spec := range specs {
		n, err := compileNode(spec)
		if err != nil {
			return nil, err
		}
		nodes[i] = n
	}
	return nodes, nil
}

// funcNode evaluates all its arguments eagerly and applies fn.
type funcNode struct {
	args []exprNode
	fn   func(c *evalCtx, vals []any) (any, error)
}

func (n *funcNode) eval(c *evalCtx) (any, error) {
	var buf [4]any
	vals := buf[:0]
	if len(n.args) > len(buf) {
		vals = make([]any, 0, len(n.args))
	}
	for _, a := range n.args {
		v, err := a.eval(c)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	return n.fn(c, vals)
}

// fixed compiles an operator with exactly lo..hi positional arguments.
func fixed(name string, arg any, lo, hi int, fn func(c *evalCtx, vals []any) (any, error)) (exprNode, error) {
	nodes, err := compileArgs(name, arg, lo, hi)
	if err != nil {
		return nil, err
	}
	return &funcNode{args: nodes, fn: fn}, nil
}

// aggNamedArgs parses the named-argument document of an operator like
// $dateToString, checking for unknown and missing required arguments. It
// returns the compiled nodes by name (absent optional arguments are nil).
func aggNamedArgs(name string, arg any, required []string, optional []string) (map[string]exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "%s expects an object of named arguments but found: %s", name, TypeName(arg))
	}
	out := make(map[string]exprNode, len(d))
	for _, e := range d {
		known := false
		for _, k := range required {
			known = known || k == e.Key
		}
		for _, k := range optional {
			known = known || k == e.Key
		}
		if !known {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "%s found an unknown argument: %s", name, e.Key)
		}
		n, err := compileNode(e.Value)
		if err != nil {
			return nil, err
		}
		out[e.Key] = n
	}
	for _, k := range required {
		if out[k] == nil {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Missing '%s' parameter to %s", k, name)
		}
	}
	return out, nil
}

// evalOpt evaluates an optional node; an absent node yields Missing.
func evalOpt(c *evalCtx, n exprNode) (any, error) {
	if n == nil {
		return Missing, nil
	}
	return n.eval(c)
}

// aggNullish reports whether v is null, undefined or Missing.
func aggNullish(v any) bool {
	if v == nil || v == Missing {
		return true
	}
	_, ok := v.(bson.Undefined)
	return ok
}

// aggCompare compares two values in BSON order, with Missing sorting before
// every other value (as MongoDB's expression comparisons do).
func aggCompare(a, b any, coll *Collation) int {
	am, bm := a == Missing, b == Missing
	switch {
	case am && bm:
		return 0
	case am:
		return -1
	case bm:
		return 1
	}
	return compareValues(a, b, coll)
}
