package mql

import (
	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// compileOperator compiles {name: arg}. The operator table is a switch so
// that the package holds no mutable state.
func compileOperator(name string, arg any) (exprNode, error) {
	switch name {
	// Literals, variables and control flow.
	case "$literal":
		return constNode{arg}, nil
	case "$let":
		return compileLet(arg)
	case "$cond":
		return compileCond(arg)
	case "$ifNull":
		return compileIfNull(arg)
	case "$switch":
		return compileSwitch(arg)
	case "$and", "$or":
		return compileAndOr(name, arg)
	case "$not":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return !Truthy(v[0]), nil })

	// Comparison.
	case "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$cmp":
		return compileCmp(name, arg)

	// Arithmetic.
	case "$add":
		return fixed(name, arg, 0, -1, evalAdd)
	case "$subtract":
		return fixed(name, arg, 2, 2, evalSubtract)
	case "$multiply":
		return fixed(name, arg, 0, -1, evalMultiply)
	case "$divide":
		return fixed(name, arg, 2, 2, evalDivide)
	case "$mod":
		return fixed(name, arg, 2, 2, evalMod)
	case "$abs", "$ceil", "$floor", "$sqrt", "$exp", "$ln", "$log10":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return evalUnaryMath(name, v[0]) })
	case "$pow":
		return fixed(name, arg, 2, 2, evalPow)
	case "$round", "$trunc":
		return fixed(name, arg, 1, 2, func(_ *evalCtx, v []any) (any, error) { return evalRound(name, v) })
	case "$sum", "$avg", "$min", "$max":
		return compileExprAccum(name, arg)

	// Strings.
	case "$concat":
		return fixed(name, arg, 0, -1, evalConcat)
	case "$toUpper", "$toLower":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return evalCase(name, v[0]) })
	case "$substr", "$substrBytes":
		return fixed(name, arg, 3, 3, func(_ *evalCtx, v []any) (any, error) { return evalSubstrBytes(name, v) })
	case "$substrCP":
		return fixed(name, arg, 3, 3, evalSubstrCP)
	case "$strLenBytes", "$strLenCP":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return evalStrLen(name, v[0]) })
	case "$split":
		return fixed(name, arg, 2, 2, evalSplit)
	case "$trim", "$ltrim", "$rtrim":
		return compileTrim(name, arg)
	case "$indexOfBytes", "$indexOfCP":
		return fixed(name, arg, 2, 4, func(_ *evalCtx, v []any) (any, error) { return evalIndexOf(name, v) })
	case "$strcasecmp":
		return fixed(name, arg, 2, 2, evalStrcasecmp)
	case "$regexMatch", "$regexFind", "$regexFindAll":
		return compileRegex(name, arg)
	case "$replaceOne", "$replaceAll":
		return compileReplace(name, arg)

	// Arrays.
	case "$size":
		return fixed(name, arg, 1, 1, evalSize)
	case "$arrayElemAt":
		return fixed(name, arg, 2, 2, evalArrayElemAt)
	case "$first", "$last":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return evalFirstLast(name, v[0]) })
	case "$in":
		return fixed(name, arg, 2, 2, evalIn)
	case "$concatArrays":
		return fixed(name, arg, 0, -1, evalConcatArrays)
	case "$isArray":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { _, ok := v[0].(bson.A); return ok, nil })
	case "$filter":
		return compileFilterExpr(arg)
	case "$map":
		return compileMap(arg)
	case "$reduce":
		return compileReduce(arg)
	case "$slice":
		return fixed(name, arg, 2, 3, evalSlice)
	case "$reverseArray":
		return fixed(name, arg, 1, 1, evalReverseArray)
	case "$range":
		return fixed(name, arg, 2, 3, evalRange)
	case "$indexOfArray":
		return fixed(name, arg, 2, 4, evalIndexOfArray)
	case "$mergeObjects":
		return fixed(name, arg, 0, -1, evalMergeObjects)
	case "$objectToArray":
		return fixed(name, arg, 1, 1, evalObjectToArray)
	case "$arrayToObject":
		return fixed(name, arg, 1, 1, evalArrayToObject)
	case "$getField":
		return compileGetField(arg)
	case "$setField", "$unsetField":
		return compileSetField(name, arg)

	// Types and conversion.
	case "$type":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return TypeName(v[0]), nil })
	case "$isNumber":
		return fixed(name, arg, 1, 1, func(_ *evalCtx, v []any) (any, error) { return aggNumKind(v[0]) != 0, nil })
	case "$toString", "$toInt", "$toLong", "$toDouble", "$toDecimal", "$toBool", "$toDate", "$toObjectId":
		return compileToX(name, arg)
	case "$convert":
		return compileConvert(arg)

	// Dates.
	case "$dateToString":
		return compileDateToString(arg)
	case "$year", "$month", "$dayOfMonth", "$hour", "$minute", "$second", "$millisecond",
		"$dayOfYear", "$dayOfWeek", "$week", "$isoWeek", "$isoWeekYear", "$isoDayOfWeek":
		return compileDatePart(name, arg)
	case "$dateFromString":
		return compileDateFromString(arg)
	}
	return nil, mongoerr.Errorf(mongoerr.InvalidPipelineOperator, "Unrecognized expression '%s'", name)
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
	return fixed(name, arg, 2, 2, func(_ *evalCtx, v []any) (any, error) {
		r := aggCompare(v[0], v[1])
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

// parseIterArgs parses the {input, as, cond|in, ...} document of $filter
// and $map.
func parseIterArgs(name string, arg any, body string, extra ...string) (input exprNode, as string, bodyN exprNode, extras map[string]exprNode, err error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, "", nil, nil, mongoerr.Errorf(mongoerr.MapFilterNotObject, "%s only supports an object as its argument", name)
	}
	as = "this"
	extras = map[string]exprNode{}
	var bodySpec any
	hasBody := false
	for _, e := range d {
		switch {
		case e.Key == "input":
			if input, err = compileNode(e.Value); err != nil {
				return
			}
		case e.Key == "as":
			s, ok := e.Value.(string)
			if !ok {
				return nil, "", nil, nil, mongoerr.Errorf(mongoerr.FailedToParse, "%s 'as' must be a string", name)
			}
			if err = aggCheckVarDef(s); err != nil {
				return
			}
			as = s
		case e.Key == body:
			bodySpec, hasBody = e.Value, true
		default:
			known := false
			for _, x := range extra {
				if x == e.Key {
					known = true
					var n exprNode
					if n, err = compileNode(e.Value); err != nil {
						return
					}
					extras[x] = n
				}
			}
			if !known {
				return nil, "", nil, nil, mongoerr.Errorf(mongoerr.MapFilterUnknownParameter, "Unrecognized parameter to %s: %s", name, e.Key)
			}
		}
	}
	if input == nil {
		return nil, "", nil, nil, mongoerr.Errorf(mongoerr.MapFilterMissingInput, "Missing 'input' parameter to %s", name)
	}
	if !hasBody {
		return nil, "", nil, nil, mongoerr.Errorf(mongoerr.MapFilterMissingParameter, "Missing '%s' parameter to %s", body, name)
	}
	bodyN, err = compileNode(bodySpec)
	return
}

// iterNode is $filter (filter=true) or $map.
type iterNode struct {
	filter bool
	input  exprNode
	as     string
	body   exprNode
	limit  exprNode
}

func compileFilterExpr(arg any) (exprNode, error) {
	in, as, body, extras, err := parseIterArgs("$filter", arg, "cond", "limit")
	if err != nil {
		return nil, err
	}
	return &iterNode{filter: true, input: in, as: as, body: body, limit: extras["limit"]}, nil
}

func compileMap(arg any) (exprNode, error) {
	in, as, body, _, err := parseIterArgs("$map", arg, "in")
	if err != nil {
		return nil, err
	}
	return &iterNode{input: in, as: as, body: body}, nil
}

func (n *iterNode) eval(c *evalCtx) (any, error) {
	v, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	if aggNullish(v) {
		return nil, nil
	}
	arr, ok := v.(bson.A)
	if !ok {
		if n.filter {
			return nil, mongoerr.Errorf(mongoerr.FilterInputNotArray, "input to $filter must be an array not %s", TypeName(v))
		}
		return nil, mongoerr.Errorf(mongoerr.MapInputNotArray, "input to $map must be an array not %s", TypeName(v))
	}
	limit := -1
	if n.limit != nil {
		lv, err := n.limit.eval(c)
		if err != nil {
			return nil, err
		}
		if !aggNullish(lv) {
			l, ok := aggToInt64Exact(lv)
			if !ok || l <= 0 || l > 1<<31-1 {
				return nil, mongoerr.Errorf(mongoerr.FilterLimitNotPositive, "$filter: limit must be a positive 32-bit integer, got %s", aggFmt(lv))
			}
			limit = int(l)
		}
	}
	if err := c.step(len(arr)); err != nil {
		return nil, err
	}
	out := make(bson.A, 0, len(arr))
	saved := c.scope
	defer func() { c.scope = saved }()
	for _, el := range arr {
		c.scope = &varScope{name: n.as, val: el, parent: saved}
		r, err := n.body.eval(c)
		if err != nil {
			return nil, err
		}
		if n.filter {
			if Truthy(r) {
				out = append(out, el)
				if limit > 0 && len(out) >= limit {
					break
				}
			}
			continue
		}
		if r == Missing {
			r = nil
		}
		out = append(out, r)
	}
	return out, nil
}

// reduceNode is $reduce.
type reduceNode struct{ input, initial, in exprNode }

func compileReduce(arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ReduceNotObject, "$reduce requires an object as an argument, found: %s", TypeName(arg))
	}
	n := &reduceNode{}
	err := aggCompileNamedArgs(d, func(key string) error {
		return mongoerr.Errorf(mongoerr.ReduceUnknownArgument, "$reduce found an unknown argument: %s", key)
	}, aggArg{"input", &n.input}, aggArg{"initialValue", &n.initial}, aggArg{"in", &n.in})
	if err != nil {
		return nil, err
	}
	switch {
	case n.input == nil:
		return nil, mongoerr.Errorf(mongoerr.ReduceMissingInput, "$reduce requires 'input' to be specified")
	case n.initial == nil:
		return nil, mongoerr.Errorf(mongoerr.ReduceMissingInitialValue, "$reduce requires 'initialValue' to be specified")
	case n.in == nil:
		return nil, mongoerr.Errorf(mongoerr.ReduceMissingIn, "$reduce requires 'in' to be specified")
	}
	return n, nil
}

func (n *reduceNode) eval(c *evalCtx) (any, error) {
	v, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	if aggNullish(v) {
		return nil, nil
	}
	arr, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ReduceInputNotArray, "$reduce requires that 'input' be an array, found: %s", aggFmt(v))
	}
	acc, err := n.initial.eval(c)
	if err != nil {
		return nil, err
	}
	if err := c.step(len(arr)); err != nil {
		return nil, err
	}
	saved := c.scope
	defer func() { c.scope = saved }()
	for _, el := range arr {
		c.scope = &varScope{name: "this", val: el, parent: &varScope{name: "value", val: acc, parent: saved}}
		acc, err = n.in.eval(c)
		if err != nil {
			return nil, err
		}
	}
	return acc, nil
}
