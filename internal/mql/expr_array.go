package mql

import (
	"math"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// arrayOperators is the table of array and object operators, including
// the iterating $filter, $map and $reduce.
func arrayOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$size":          fixedOp(1, 1, evalSize),
		"$arrayElemAt":   fixedOp(2, 2, evalArrayElemAt),
		"$first":         unaryOp(evalFirstLast),
		"$last":          unaryOp(evalFirstLast),
		"$in":            fixedOp(2, 2, evalIn),
		"$concatArrays":  fixedOp(0, -1, evalConcatArrays),
		"$isArray":       fixedOp(1, 1, func(_ *evalCtx, v []any) (any, error) { _, ok := v[0].(bson.A); return ok, nil }),
		"$filter":        argOnly(compileFilterExpr),
		"$map":           argOnly(compileMap),
		"$reduce":        argOnly(compileReduce),
		"$slice":         fixedOp(2, 3, evalSlice),
		"$reverseArray":  fixedOp(1, 1, evalReverseArray),
		"$range":         fixedOp(2, 3, evalRange),
		"$indexOfArray":  fixedOp(2, 4, evalIndexOfArray),
		"$mergeObjects":  fixedOp(0, -1, evalMergeObjects),
		"$objectToArray": fixedOp(1, 1, evalObjectToArray),
		"$arrayToObject": fixedOp(1, 1, evalArrayToObject),
		"$getField":      argOnly(compileGetField),
		"$setField":      compileSetField,
		"$unsetField":    compileSetField,
	}
}

// evalSize implements $size.
func evalSize(_ *evalCtx, vals []any) (any, error) {
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SizeNotArray, "The argument to $size must be an array. Type of argument: %s", TypeName(vals[0]))
	}
	return int32(len(a)), nil
}

// arrayElemAtIndex returns v, the index of $arrayElemAt, or the error when
// it is not a number representable as a 32-bit integer.
func arrayElemAtIndex(v any) (int64, error) {
	if aggNumKind(v) == aggKNone {
		return 0, mongoerr.Errorf(mongoerr.ArrayElemAtIndexNotNumeric, "$arrayElemAt's second argument must be a numeric value, but is %s", TypeName(v))
	}
	i, ok := aggToInt64Exact(v)
	if !ok || i > math.MaxInt32 || i < math.MinInt32 {
		return 0, mongoerr.Errorf(mongoerr.ArrayElemAtIndexNotInt32, "$arrayElemAt's second argument must be representable as a 32-bit integer: %s", aggFmt(v))
	}
	return i, nil
}

// evalArrayElemAt implements $arrayElemAt (negative indexes count from the
// end; out of range yields Missing).
func evalArrayElemAt(_ *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) || aggNullish(vals[1]) {
		return nil, nil
	}
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ArrayElemAtNotArray, "$arrayElemAt's first argument must be an array, but is %s", TypeName(vals[0]))
	}
	i, err := arrayElemAtIndex(vals[1])
	if err != nil {
		return nil, err
	}
	if i < 0 {
		i += int64(len(a))
	}
	if i < 0 || i >= int64(len(a)) {
		return Missing, nil
	}
	return a[i], nil
}

// evalFirstLast implements the expression forms of $first and $last.
func evalFirstLast(name string, v any) (any, error) {
	if aggNullish(v) {
		return nil, nil
	}
	a, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ArrayElemAtNotArray, "%s's argument must be an array, but is %s", name, TypeName(v))
	}
	if len(a) == 0 {
		return Missing, nil
	}
	if name == "$first" {
		return a[0], nil
	}
	return a[len(a)-1], nil
}

// evalIn implements $in.
func evalIn(c *evalCtx, vals []any) (any, error) {
	a, ok := vals[1].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.InNotArray, "$in requires an array as a second argument, found: %s", TypeName(vals[1]))
	}
	for _, el := range a {
		if aggCompare(vals[0], el, c.coll) == 0 {
			return true, nil
		}
	}
	return false, nil
}

// evalConcatArrays implements $concatArrays; every copied element counts
// against the evaluation step budget.
func evalConcatArrays(c *evalCtx, vals []any) (any, error) {
	n := 0
	for _, v := range vals {
		if aggNullish(v) {
			return nil, nil
		}
		a, ok := v.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.ConcatArraysNotArray, "$concatArrays only supports arrays, not %s", TypeName(v))
		}
		n += len(a)
	}
	if err := c.step(n); err != nil {
		return nil, err
	}
	if n > aggMaxValueBytes/8 {
		return nil, aggTooLarge("$concatArrays")
	}
	out := make(bson.A, 0, n)
	for _, v := range vals {
		out = append(out, v.(bson.A)...)
	}
	return out, nil
}

// sliceArg returns v, argument i (1 or 2) of $slice, or the error when it
// is not a number representable as a 32-bit integer, or, as the third
// argument (the count of [array, position, n]), not positive.
func sliceArg(i int, v any) (int64, error) {
	code, what := mongoerr.SliceSecondNotInt32, "Second"
	if i == 2 {
		code, what = mongoerr.SliceThirdNotInt32, "Third"
	}
	n, ok := aggToInt64Exact(v)
	if aggNumKind(v) == aggKNone || !ok || n > math.MaxInt32 || n < math.MinInt32 {
		return 0, mongoerr.Errorf(code, "%s argument to $slice must be numeric and a 32-bit integer, but is of type: %s", what, TypeName(v))
	}
	if i == 2 && n <= 0 {
		return 0, mongoerr.Errorf(mongoerr.SliceCountNotPositive, "Third argument to $slice must be positive: %d", n)
	}
	return n, nil
}

// evalSlice implements $slice: [array, n] or [array, position, n].
func evalSlice(_ *evalCtx, vals []any) (any, error) {
	for _, v := range vals {
		if aggNullish(v) {
			return nil, nil
		}
	}
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SliceInvalid, "First argument to $slice must be an array, but is of type: %s", TypeName(vals[0]))
	}
	l := int64(len(a))
	if len(vals) == 2 {
		n, err := sliceArg(1, vals[1])
		if err != nil {
			return nil, err
		}
		if n >= 0 {
			return append(bson.A{}, a[:min(n, l)]...), nil
		}
		return append(bson.A{}, a[max(0, l+n):]...), nil
	}
	pos, err := sliceArg(1, vals[1])
	if err != nil {
		return nil, err
	}
	n, err := sliceArg(2, vals[2])
	if err != nil {
		return nil, err
	}
	if pos < 0 {
		pos = max(0, l+pos)
	}
	if pos >= l {
		return bson.A{}, nil
	}
	return append(bson.A{}, a[pos:min(l, pos+n)]...), nil
}

// evalReverseArray implements $reverseArray.
func evalReverseArray(_ *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) {
		return nil, nil
	}
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ReverseArrayNotArray, "The argument to $reverseArray must be an array, but was of type: %s", TypeName(vals[0]))
	}
	out := make(bson.A, len(a))
	for i, v := range a {
		out[len(a)-1-i] = v
	}
	return out, nil
}

// rangeArg returns v, argument i of $range (0 the start, 1 the end, 2 the
// step), or the error when it is not a number representable as a 32-bit
// integer, or, as the step, zero.
func rangeArg(i int, v any) (int64, error) {
	names := [...]string{"starting value", "ending value", "step value"}
	notNumeric := [...]mongoerr.Code{mongoerr.RangeStartNotNumeric, mongoerr.RangeEndNotNumeric, mongoerr.RangeStepNotNumeric}
	notInt32 := [...]mongoerr.Code{mongoerr.RangeStartNotInt32, mongoerr.RangeEndNotInt32, mongoerr.RangeStepNotInt32}
	if aggNumKind(v) == aggKNone {
		return 0, mongoerr.Errorf(notNumeric[i], "$range requires a numeric %s, found value of type: %s", names[i], TypeName(v))
	}
	n, ok := aggToInt64Exact(v)
	if !ok || n > math.MaxInt32 || n < math.MinInt32 {
		return 0, mongoerr.Errorf(notInt32[i], "$range requires a %s that can be represented as a 32-bit integer, found value: %s", names[i], aggFmt(v))
	}
	if i == 2 && n == 0 {
		return 0, mongoerr.Errorf(mongoerr.RangeZeroStep, "$range requires a non-zero step value")
	}
	return n, nil
}

// evalRange implements $range (bounded by the evaluation step budget).
func evalRange(c *evalCtx, vals []any) (any, error) {
	nums := []int64{0, 0, 1}
	for i, v := range vals {
		n, err := rangeArg(i, v)
		if err != nil {
			return nil, err
		}
		nums[i] = n
	}
	start, end, step := nums[0], nums[1], nums[2]
	count := int64(0)
	if step > 0 && end > start {
		count = (end - start + step - 1) / step
	} else if step < 0 && end < start {
		count = (start - end - step - 1) / -step
	}
	if err := c.step(int(count)); err != nil {
		return nil, err
	}
	if count > aggMaxValueBytes/8 {
		return nil, aggTooLarge("$range")
	}
	out := make(bson.A, 0, count)
	for i := start; (step > 0 && i < end) || (step < 0 && i > end); i += step {
		out = append(out, int32(i))
	}
	return out, nil
}

// evalIndexOfArray implements $indexOfArray.
func evalIndexOfArray(c *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) {
		return nil, nil
	}
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IndexOfArrayNotArray, "$indexOfArray requires an array as a first argument, found: %s", TypeName(vals[0]))
	}
	start, end := int64(0), int64(len(a))
	for i := 2; i < len(vals); i++ {
		n, err := indexOfBound("$indexOfArray", vals[i])
		if err != nil {
			return nil, err
		}
		if i == 2 {
			start = n
		} else {
			end = min(n, end)
		}
	}
	for i := start; i < end && i < int64(len(a)); i++ {
		if aggCompare(a[i], vals[1], c.coll) == 0 {
			return int32(i), nil
		}
	}
	return int32(-1), nil
}

// docMergerIndexMin is the length from which a docMerger indexes its
// document; shorter ones are scanned.
var docMergerIndexMin = 16

// docMerger builds a document by merging fields into it: a field whose
// name is already there replaces the earlier value in its place, others
// are appended. Its cost is linear in the number of fields merged.
type docMerger struct {
	out bson.D
	// index maps the names in out to their positions (nil while short).
	index map[string]int
}

// merge merges the fields of src, in order, into m.out (which it may
// modify in place).
func (m *docMerger) merge(src bson.D) {
	for _, e := range src {
		m.set(e.Key, e.Value)
	}
}

// set merges the field k: v.
func (m *docMerger) set(k string, v any) {
	if m.index != nil {
		if i, ok := m.index[k]; ok {
			m.out[i].Value = v
			return
		}
	} else {
		for i := range m.out {
			countStep()
			if m.out[i].Key == k {
				m.out[i].Value = v
				return
			}
		}
	}
	m.out = append(m.out, bson.E{Key: k, Value: v})
	switch {
	case m.index != nil:
		m.index[k] = len(m.out) - 1
	case len(m.out) >= docMergerIndexMin:
		m.index = make(map[string]int, 2*len(m.out))
		for i, e := range m.out {
			m.index[e.Key] = i
		}
	}
}

// evalMergeObjects implements the expression form of $mergeObjects.
func evalMergeObjects(_ *evalCtx, vals []any) (any, error) {
	m := docMerger{out: bson.D{}}
	for _, v := range vals {
		if aggNullish(v) {
			continue
		}
		d, ok := v.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.MergeObjectsNotObject, "$mergeObjects requires object inputs, but input %s is of type %s", aggFmt(v), TypeName(v))
		}
		m.merge(d)
	}
	return m.out, nil
}

// evalObjectToArray implements $objectToArray.
func evalObjectToArray(_ *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) {
		return nil, nil
	}
	d, ok := vals[0].(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ObjectToArrayNotObject, "$objectToArray requires a document input, found: %s", TypeName(vals[0]))
	}
	out := make(bson.A, len(d))
	for i, e := range d {
		out[i] = bson.D{{Key: "k", Value: e.Key}, {Key: "v", Value: e.Value}}
	}
	return out, nil
}

// evalArrayToObject implements $arrayToObject for [[k, v], ...] and
// [{k, v}, ...] (the later duplicate wins).
func evalArrayToObject(_ *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) {
		return nil, nil
	}
	a, ok := vals[0].(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ArrayToObjectNotArray, "$arrayToObject requires an array input, found: %s", TypeName(vals[0]))
	}
	m := docMerger{out: bson.D{}}
	if len(a) == 0 {
		return m.out, nil
	}
	_, pairs := a[0].(bson.A)
	for _, el := range a {
		var k, v any
		if pairs {
			p, ok := el.(bson.A)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.ArrayToObjectMixedFormat, "$arrayToObject requires a consistent input format. Elements must all be arrays or all be objects. Array was detected, now found: %s", TypeName(el))
			}
			if len(p) != 2 {
				return nil, mongoerr.Errorf(mongoerr.ArrayToObjectPairSize, "$arrayToObject requires an array of size 2 arrays,found array of size: %d", len(p))
			}
			k, v = p[0], p[1]
		} else {
			d, ok := el.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.ArrayToObjectBadElement, "Unrecognised input type format for $arrayToObject: %s", TypeName(el))
			}
			if len(d) != 2 {
				return nil, mongoerr.Errorf(mongoerr.ArrayToObjectBadKeys, "$arrayToObject requires an object keys of 'k' and 'v'. Found incorrect number of keys:%d", len(d))
			}
			k, v = docField(d, "k"), docField(d, "v")
			if k == Missing || v == Missing {
				return nil, mongoerr.Errorf(mongoerr.ArrayToObjectMissingKey, "$arrayToObject requires an object with keys 'k' and 'v'. Missing either or both keys from: %s", aggFmt(d))
			}
		}
		ks, ok := k.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.ArrayToObjectKeyNotString, "$arrayToObject requires an object with keys 'k' and 'v', where the value of 'k' must be of type string. Found type: %s", TypeName(k))
		}
		if strings.ContainsRune(ks, 0) {
			return nil, mongoerr.Errorf(mongoerr.NullByteInKey, "Key field cannot contain an embedded null byte")
		}
		m.set(ks, v)
	}
	return m.out, nil
}

// getFieldNode is $getField.
type getFieldNode struct {
	field string
	input exprNode
}

func compileGetField(arg any) (exprNode, error) {
	var fieldSpec, inputSpec any = nil, "$$CURRENT"
	d, isDoc := arg.(bson.D)
	if isDoc && len(d) > 0 && !strings.HasPrefix(d[0].Key, "$") {
		hasField := false
		for _, e := range d {
			switch e.Key {
			case "field":
				fieldSpec, hasField = e.Value, true
			case "input":
				inputSpec = e.Value
			default:
				return nil, mongoerr.Errorf(mongoerr.GetFieldUnknownArgument, "$getField found an unknown argument: %s", e.Key)
			}
		}
		if !hasField {
			return nil, mongoerr.Errorf(mongoerr.GetFieldMissingField, "$getField requires 'field' to be specified")
		}
	} else {
		fieldSpec = arg
	}
	field, err := aggConstFieldName("$getField", fieldSpec)
	if err != nil {
		return nil, err
	}
	in, err := compileNode(inputSpec)
	if err != nil {
		return nil, err
	}
	return &getFieldNode{field: field, input: in}, nil
}

// aggConstFieldName extracts the constant field name of $getField /
// $setField (a string or {$literal: string}).
func aggConstFieldName(name string, spec any) (string, error) {
	literal := false
	if d, ok := spec.(bson.D); ok && len(d) == 1 && d[0].Key == "$literal" {
		spec, literal = d[0].Value, true
	}
	s, ok := spec.(string)
	if !ok {
		return "", mongoerr.Errorf(mongoerr.FieldNotConstant, "%s requires 'field' to evaluate to a constant, but got a non-constant argument", name)
	}
	if strings.HasPrefix(s, "$") && !literal {
		return "", mongoerr.Errorf(mongoerr.InvalidFieldNameForOperator, "A string that starts with '$' is not a valid field name for %s; use {$literal: %q}", name, s)
	}
	return s, nil
}

func (n *getFieldNode) eval(c *evalCtx) (any, error) {
	v, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	if aggNullish(v) {
		if v == Missing {
			return Missing, nil
		}
		return nil, nil
	}
	d, ok := v.(bson.D)
	if !ok {
		return Missing, nil
	}
	return docField(d, n.field), nil
}

// setFieldNode is $setField / $unsetField.
type setFieldNode struct {
	unset bool
	field string
	input exprNode
	value exprNode
}

func compileSetField(name string, arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SetFieldNotObject, "%s only supports an object as its argument", name)
	}
	var fieldSpec, inputSpec, valueSpec any
	hasField, hasInput, hasValue := false, false, false
	for _, e := range d {
		switch {
		case e.Key == "field":
			fieldSpec, hasField = e.Value, true
		case e.Key == "input":
			inputSpec, hasInput = e.Value, true
		case e.Key == "value" && name == "$setField":
			valueSpec, hasValue = e.Value, true
		default:
			return nil, mongoerr.Errorf(mongoerr.SetFieldUnknownArgument, "%s found an unknown argument: %s", name, e.Key)
		}
	}
	if !hasField || !hasInput || name == "$setField" && !hasValue {
		return nil, mongoerr.Errorf(mongoerr.SetFieldMissingArgument, "%s requires 'field', 'input'%s to be specified", name, map[bool]string{true: " and 'value'", false: ""}[name == "$setField"])
	}
	field, err := aggConstFieldName(name, fieldSpec)
	if err != nil {
		return nil, err
	}
	n := &setFieldNode{unset: name == "$unsetField", field: field}
	if n.input, err = compileNode(inputSpec); err != nil {
		return nil, err
	}
	if hasValue {
		if n.value, err = compileNode(valueSpec); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *setFieldNode) eval(c *evalCtx) (any, error) {
	v, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	if aggNullish(v) {
		return nil, nil
	}
	d, ok := v.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SetFieldInputNotObject, "$setField requires 'input' to evaluate to type Object")
	}
	var val any = Missing
	if !n.unset {
		if val, err = n.value.eval(c); err != nil {
			return nil, err
		}
	}
	out := make(bson.D, 0, len(d)+1)
	found := false
	for _, e := range d {
		if e.Key == n.field {
			found = true
			if val != Missing {
				out = append(out, bson.E{Key: e.Key, Value: val})
			}
			continue
		}
		out = append(out, e)
	}
	if !found && val != Missing {
		out = append(out, bson.E{Key: n.field, Value: val})
	}
	return out, nil
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

// filterLimit returns lv, a non-null limit of $filter, or the error when
// it is not a positive integral number representable as a 32-bit integer.
func filterLimit(lv any) (int64, error) {
	l, ok := aggToInt64Exact(lv)
	if !ok || l <= 0 || l > 1<<31-1 {
		return 0, mongoerr.Errorf(mongoerr.FilterLimitNotPositive, "$filter: limit must be a positive 32-bit integer, got %s", aggFmt(lv))
	}
	return l, nil
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
			l, err := filterLimit(lv)
			if err != nil {
				return nil, err
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
