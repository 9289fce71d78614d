package mql

import (
	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// controlOperators is the table of literals, variables, control flow,
// boolean and comparison operators.
func controlOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$literal": func(_ string, arg any) (exprNode, error) { return constNode{arg}, nil },
		"$let":     argOnly(compileLet),
		"$cond":    argOnly(compileCond),
		"$ifNull":  argOnly(compileIfNull),
		"$switch":  argOnly(compileSwitch),
		"$and":     compileAndOr,
		"$or":      compileAndOr,
		"$not":     fixedOp(1, 1, func(_ *evalCtx, v []any) (any, error) { return !Truthy(v[0]), nil }),
		"$eq":      compileCmp,
		"$ne":      compileCmp,
		"$gt":      compileCmp,
		"$gte":     compileCmp,
		"$lt":      compileCmp,
		"$lte":     compileCmp,
		"$cmp":     compileCmp,
	}
}

// letNode is $let.
type letNode struct {
	names []string
	vals  []exprNode
	in    exprNode
}

func compileLet(arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.LetNotObject, "$let only supports an object as its argument")
	}
	var varsSpec, inSpec any
	hasVars, hasIn := false, false
	for _, e := range d {
		switch e.Key {
		case "vars":
			varsSpec, hasVars = e.Value, true
		case "in":
			inSpec, hasIn = e.Value, true
		default:
			return nil, mongoerr.Errorf(mongoerr.LetUnknownParameter, "Unrecognized parameter to $let: %s", e.Key)
		}
	}
	if !hasVars {
		return nil, mongoerr.Errorf(mongoerr.LetMissingVars, "Missing 'vars' parameter to $let")
	}
	if !hasIn {
		return nil, mongoerr.Errorf(mongoerr.LetMissingIn, "Missing 'in' parameter to $let")
	}
	vd, ok := varsSpec.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "invalid parameter: expected an object (vars)")
	}
	n := &letNode{}
	for _, e := range vd {
		if e.Key != "CURRENT" {
			if err := aggCheckVarDef(e.Key); err != nil {
				return nil, err
			}
		}
		v, err := compileNode(e.Value)
		if err != nil {
			return nil, err
		}
		n.names = append(n.names, e.Key)
		n.vals = append(n.vals, v)
	}
	in, err := compileNode(inSpec)
	if err != nil {
		return nil, err
	}
	n.in = in
	return n, nil
}

func (n *letNode) eval(c *evalCtx) (any, error) {
	// Variables are evaluated in the outer scope, then bound together.
	vals := make([]any, len(n.vals))
	for i, v := range n.vals {
		r, err := v.eval(c)
		if err != nil {
			return nil, err
		}
		vals[i] = r
	}
	saved := c.scope
	for i, name := range n.names {
		c.bind(name, vals[i])
	}
	r, err := n.in.eval(c)
	c.scope = saved
	return r, err
}

// condNode is $cond.
type condNode struct{ ifN, thenN, elseN exprNode }

func compileCond(arg any) (exprNode, error) {
	if d, ok := arg.(bson.D); ok {
		var n condNode
		err := aggCompileNamedArgs(d, func(key string) error {
			return mongoerr.Errorf(mongoerr.CondUnknownParameter, "Unrecognized parameter to $cond: %s", key)
		}, aggArg{"if", &n.ifN}, aggArg{"then", &n.thenN}, aggArg{"else", &n.elseN})
		if err != nil {
			return nil, err
		}
		switch {
		case n.ifN == nil:
			return nil, mongoerr.Errorf(mongoerr.CondMissingIf, "Missing 'if' parameter to $cond")
		case n.thenN == nil:
			return nil, mongoerr.Errorf(mongoerr.CondMissingThen, "Missing 'then' parameter to $cond")
		case n.elseN == nil:
			return nil, mongoerr.Errorf(mongoerr.CondMissingElse, "Missing 'else' parameter to $cond")
		}
		return &n, nil
	}
	nodes, err := compileArgs("$cond", arg, 3, 3)
	if err != nil {
		return nil, err
	}
	return &condNode{nodes[0], nodes[1], nodes[2]}, nil
}

func (n *condNode) eval(c *evalCtx) (any, error) {
	v, err := n.ifN.eval(c)
	if err != nil {
		return nil, err
	}
	if Truthy(v) {
		return n.thenN.eval(c)
	}
	return n.elseN.eval(c)
}

// ifNullNode is the n-ary $ifNull: the first non-null, non-missing argument
// of all but the last, else the last.
type ifNullNode struct{ args []exprNode }

func compileIfNull(arg any) (exprNode, error) {
	nodes, err := compileArgs("$ifNull", arg, 2, -1)
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.IfNullTooFewArguments, "$ifNull needs at least two arguments, had: %d", len(aggArgs(arg)))
	}
	return &ifNullNode{nodes}, nil
}

func (n *ifNullNode) eval(c *evalCtx) (any, error) {
	for i, a := range n.args {
		v, err := a.eval(c)
		if err != nil {
			return nil, err
		}
		if i == len(n.args)-1 || !aggNullish(v) {
			return v, nil
		}
	}
	return nil, nil
}

// switchNode is $switch.
type switchNode struct {
	cases, thens []exprNode
	def          exprNode
}

func compileSwitch(arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SwitchNotObject, "$switch requires an object as an argument, found: %s", TypeName(arg))
	}
	n := &switchNode{}
	for _, e := range d {
		switch e.Key {
		case "branches":
			branches, ok := e.Value.(bson.A)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.SwitchBranchesNotArray, "$switch expected an array for 'branches', found: %s", TypeName(e.Value))
			}
			for _, b := range branches {
				bd, ok := b.(bson.D)
				if !ok {
					return nil, mongoerr.Errorf(mongoerr.SwitchBranchNotObject, "$switch expected each branch to be an object, found: %s", TypeName(b))
				}
				var cs, th exprNode
				err := aggCompileNamedArgs(bd, func(key string) error {
					return mongoerr.Errorf(mongoerr.SwitchUnknownBranchArgument, "$switch found an unknown argument to a branch: %s", key)
				}, aggArg{"case", &cs}, aggArg{"then", &th})
				if err != nil {
					return nil, err
				}
				if cs == nil {
					return nil, mongoerr.Errorf(mongoerr.SwitchBranchMissingCase, "$switch requires each branch have a 'case' expression")
				}
				if th == nil {
					return nil, mongoerr.Errorf(mongoerr.SwitchBranchMissingThen, "$switch requires each branch have a 'then' expression.")
				}
				n.cases = append(n.cases, cs)
				n.thens = append(n.thens, th)
			}
		case "default":
			sub, err := compileNode(e.Value)
			if err != nil {
				return nil, err
			}
			n.def = sub
		default:
			return nil, mongoerr.Errorf(mongoerr.SwitchUnknownArgument, "$switch found an unknown argument: %s", e.Key)
		}
	}
	if len(n.cases) == 0 {
		return nil, mongoerr.Errorf(mongoerr.SwitchNoBranches, "$switch requires at least one branch.")
	}
	return n, nil
}

func (n *switchNode) eval(c *evalCtx) (any, error) {
	for i, cs := range n.cases {
		v, err := cs.eval(c)
		if err != nil {
			return nil, err
		}
		if Truthy(v) {
			return n.thens[i].eval(c)
		}
	}
	if n.def == nil {
		return nil, mongoerr.Errorf(mongoerr.SwitchNoMatchingBranch, "$switch could not find a matching branch for an input, and no default was specified.")
	}
	return n.def.eval(c)
}

// andOrNode is $and / $or with short-circuit evaluation.
type andOrNode struct {
	or   bool
	args []exprNode
}

func compileAndOr(name string, arg any) (exprNode, error) {
	nodes, err := compileArgs(name, arg, 0, -1)
	if err != nil {
		return nil, err
	}
	return &andOrNode{or: name == "$or", args: nodes}, nil
}

func (n *andOrNode) eval(c *evalCtx) (any, error) {
	for _, a := range n.args {
		v, err := a.eval(c)
		if err != nil {
			return nil, err
		}
		if Truthy(v) == n.or {
			return n.or, nil
		}
	}
	return !n.or, nil
}

// compileCmp compiles the comparison operators.
func compileCmp(name string, arg any) (exprNode, error) {
	return fixed(name, arg, 2, 2, func(c *evalCtx, v []any) (any, error) {
		r := aggCompare(v[0], v[1], c.coll)
		switch name {
		case "$eq":
			return r == 0, nil
		case "$ne":
			return r != 0, nil
		case "$gt":
			return r > 0, nil
		case "$gte":
			return r >= 0, nil
		case "$lt":
			return r < 0, nil
		case "$lte":
			return r <= 0, nil
		}
		return int32(r), nil
	})
}
