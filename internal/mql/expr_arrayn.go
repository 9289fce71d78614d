package mql

import (
	"math"
	"sort"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// nArrayOperators is the table of the array operators that pick or order
// elements (the expression forms of $firstN $lastN $maxN $minN, and
// $sortArray and $zip) and the expression forms of $stdDevPop and
// $stdDevSamp.
func nArrayOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$firstN":     compileNArray,
		"$lastN":      compileNArray,
		"$maxN":       compileNArray,
		"$minN":       compileNArray,
		"$sortArray":  argOnly(compileSortArray),
		"$zip":        argOnly(compileZip),
		"$stdDevPop":  compileExprStdDev,
		"$stdDevSamp": compileExprStdDev,
	}
}

// nArrayNode is {$firstN|$lastN|$maxN|$minN: {n, input}} over an array.
type nArrayNode struct {
	name     string
	n, input exprNode
}

func compileNArray(name string, arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, aggNSpecNotObject(name, arg)
	}
	n := &nArrayNode{name: name}
	err := aggCompileNamedArgs(d, func(key string) error {
		return mongoerr.Errorf(mongoerr.NArrayUnknownField, "Unknown argument for 'n' operator: %s", key)
	}, aggArg{"n", &n.n}, aggArg{"input", &n.input})
	if err != nil {
		return nil, err
	}
	if n.n == nil {
		return nil, mongoerr.Errorf(mongoerr.NArrayMissingN, "Missing value for 'n'")
	}
	if n.input == nil {
		return nil, mongoerr.Errorf(mongoerr.NArrayMissingInput, "Missing value for 'input'")
	}
	return n, nil
}

// aggNSpecNotObject is the error for an argument of $firstN $lastN $maxN
// $minN that is not an object (MongoDB has one code for the first two and
// another for the last two).
func aggNSpecNotObject(name string, arg any) error {
	code := mongoerr.NArrayNotObject
	if name == "$maxN" || name == "$minN" {
		code = mongoerr.MinMaxNNotObject
	}
	return mongoerr.Errorf(code, "specification must be an object; found %s: %s", name, aggFmt(arg))
}

// aggPositiveN validates the n of an n-element operator: a number with an
// integral value greater than zero.
func aggPositiveN(v any) (int64, error) {
	if aggNumKind(v) == aggKNone {
		return 0, mongoerr.Errorf(mongoerr.NArrayNNotInteger, "Value for 'n' must be of integral type, but found %s", aggFmt(v))
	}
	n, ok := aggToInt64Exact(v)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.NArrayNNotIntegral, "Value for 'n' must be of integral type, but found %s", aggFmt(v))
	}
	if n <= 0 {
		return 0, mongoerr.Errorf(mongoerr.NArrayNNotPositive, "'n' must be greater than 0, found %d", n)
	}
	return n, nil
}

// eval returns the first or last n elements in array order, or the n
// largest (descending) or smallest (ascending) values, which skip null,
// undefined and missing elements. The input must be an array.
func (n *nArrayNode) eval(c *evalCtx) (any, error) {
	nv, err := n.n.eval(c)
	if err != nil {
		return nil, err
	}
	iv, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	k, err := aggPositiveN(nv)
	if err != nil {
		return nil, err
	}
	a, ok := iv.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.NArrayInputNotArray, "Input must be an array")
	}
	count := int(min(k, int64(math.MaxInt32)))
	switch n.name {
	case "$firstN":
		return append(bson.A{}, a[:min(count, len(a))]...), nil
	case "$lastN":
		return append(bson.A{}, a[len(a)-min(count, len(a)):]...), nil
	}
	vals := make(bson.A, 0, len(a))
	for _, e := range a {
		if !aggNullish(e) {
			vals = append(vals, e)
		}
	}
	desc := n.name == "$maxN"
	sort.SliceStable(vals, func(i, j int) bool {
		r := compareValues(vals[i], vals[j], c.coll)
		if desc {
			return r > 0
		}
		return r < 0
	})
	return vals[:min(count, len(vals))], nil
}

// sortArrayNode is $sortArray: whole values by a direction, or documents
// by a sort specification.
type sortArrayNode struct {
	input exprNode
	desc  bool
	spec  *Sort
}

func compileSortArray(arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SortArrayNotObject, "$sortArray requires an object as an argument, found: %s", TypeName(arg))
	}
	n := &sortArrayNode{}
	var sortBy any
	hasSortBy := false
	for _, e := range d {
		switch e.Key {
		case "input":
			in, err := compileNode(e.Value)
			if err != nil {
				return nil, err
			}
			n.input = in
		case "sortBy":
			sortBy, hasSortBy = e.Value, true
		default:
			return nil, mongoerr.Errorf(mongoerr.SortArrayUnknownField, "$sortArray found an unknown argument: %s", e.Key)
		}
	}
	if n.input == nil {
		return nil, mongoerr.Errorf(mongoerr.SortArrayMissingInput, "$sortArray requires 'input' to be specified")
	}
	if !hasSortBy {
		return nil, mongoerr.Errorf(mongoerr.SortArrayMissingSortBy, "$sortArray requires 'sortBy' to be specified")
	}
	badSortBy := mongoerr.Errorf(mongoerr.SortArrayBadSortBy, "$sortArray sortBy must be 1 or -1 or an object of sort keys, found %s", aggFmt(sortBy))
	if spec, ok := sortBy.(bson.D); ok {
		if len(spec) == 0 {
			return nil, badSortBy
		}
		s, err := CompileSort(spec)
		if err != nil {
			return nil, err
		}
		n.spec = s
		return n, nil
	}
	f, ok := ToFloat64(sortBy)
	if !ok || (f != 1 && f != -1) {
		return nil, badSortBy
	}
	n.desc = f < 0
	return n, nil
}

// eval sorts a copy of the input stably; null or missing input is null.
// With a sort specification, an element that is not a document sorts as
// one whose every key is missing.
func (n *sortArrayNode) eval(c *evalCtx) (any, error) {
	v, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	if aggNullish(v) {
		return nil, nil
	}
	a, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SortArrayInputNotArray, "The input argument to $sortArray must be an array, but was of type: %s", TypeName(v))
	}
	if err := c.step(len(a)); err != nil {
		return nil, err
	}
	out := append(bson.A{}, a...)
	if n.spec != nil {
		s := n.spec.WithCollation(c.coll)
		asDoc := func(v any) bson.D {
			if d, ok := v.(bson.D); ok {
				return d
			}
			return bson.D{}
		}
		sort.SliceStable(out, func(i, j int) bool { return s.Compare(asDoc(out[i]), asDoc(out[j])) < 0 })
		return out, nil
	}
	sort.SliceStable(out, func(i, j int) bool {
		r := compareValues(out[i], out[j], c.coll)
		if n.desc {
			return r > 0
		}
		return r < 0
	})
	return out, nil
}

// zipNode is $zip: it transposes its input arrays into an array of
// arrays, stopping at the shortest input or, with useLongestLength,
// padding to the longest with defaults (null when absent).
type zipNode struct {
	inputs   []exprNode
	longest  bool
	defaults []exprNode
}

func compileZip(arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.ZipNotObject, "$zip only supports an object as an argument, found %s", TypeName(arg))
	}
	n := &zipNode{}
	hasInputs, hasDefaults := false, false
	for _, e := range d {
		switch e.Key {
		case "inputs":
			a, ok := e.Value.(bson.A)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.ZipInputsNotArray, "inputs must be an array of expressions, found %s", TypeName(e.Value))
			}
			nodes, err := compileNodes(a)
			if err != nil {
				return nil, err
			}
			n.inputs, hasInputs = nodes, true
		case "defaults":
			a, ok := e.Value.(bson.A)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.ZipDefaultsNotArray, "defaults must be an array of expressions, found %s", TypeName(e.Value))
			}
			nodes, err := compileNodes(a)
			if err != nil {
				return nil, err
			}
			n.defaults, hasDefaults = nodes, true
		case "useLongestLength":
			b, ok := e.Value.(bool)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.ZipLongestNotBool, "useLongestLength must be a bool, found %s", TypeName(e.Value))
			}
			n.longest = b
		default:
			return nil, mongoerr.Errorf(mongoerr.ZipUnknownField, "$zip found an unknown argument: %s", e.Key)
		}
	}
	if !hasInputs || len(n.inputs) == 0 {
		return nil, mongoerr.Errorf(mongoerr.ZipMissingInputs, "$zip requires at least one input array")
	}
	if hasDefaults && !n.longest {
		return nil, mongoerr.Errorf(mongoerr.ZipDefaultsNeedLongest, "cannot specify defaults unless useLongestLength is true")
	}
	if hasDefaults && len(n.defaults) != len(n.inputs) {
		return nil, mongoerr.Errorf(mongoerr.ZipDefaultsLength, "defaults and inputs must have the same length")
	}
	return n, nil
}

// eval is null when any input is null or missing.
func (n *zipNode) eval(c *evalCtx) (any, error) {
	arrays := make([]bson.A, len(n.inputs))
	null := false
	for i, in := range n.inputs {
		v, err := in.eval(c)
		if err != nil {
			return nil, err
		}
		if aggNullish(v) {
			null = true
			continue
		}
		a, ok := v.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.ZipInputNotArray, "$zip found a non-array expression in input: %s", aggFmt(v))
		}
		arrays[i] = a
	}
	if null {
		return nil, nil
	}
	defaults := make([]any, len(n.inputs))
	for i, dn := range n.defaults {
		v, err := dn.eval(c)
		if err != nil {
			return nil, err
		}
		if v == Missing {
			v = nil
		}
		defaults[i] = v
	}
	length := len(arrays[0])
	for _, a := range arrays[1:] {
		if n.longest {
			length = max(length, len(a))
		} else {
			length = min(length, len(a))
		}
	}
	if err := c.step(length * len(arrays)); err != nil {
		return nil, err
	}
	out := make(bson.A, length)
	for i := range out {
		row := make(bson.A, len(arrays))
		for j, a := range arrays {
			if i < len(a) {
				row[j] = a[i]
			} else {
				row[j] = defaults[j]
			}
		}
		out[i] = row
	}
	return out, nil
}

// compileExprStdDev compiles the expression forms of $stdDevPop and
// $stdDevSamp, which take their values the way $sum and $avg do: the
// elements of one array argument, or the arguments themselves. Non-numbers
// are ignored; with no numbers (or one, for $stdDevSamp) the result is
// null.
func compileExprStdDev(name string, arg any) (exprNode, error) {
	nodes, err := compileArgs(name, arg, 0, -1)
	if err != nil {
		return nil, err
	}
	return &funcNode{args: nodes, fn: func(_ *evalCtx, vals []any) (any, error) {
		items := vals
		if len(vals) == 1 {
			if a, ok := vals[0].(bson.A); ok {
				items = a
			}
		}
		acc := &stdDevAcc{sample: name == "$stdDevSamp"}
		for _, v := range items {
			acc.add(v)
		}
		return acc.result(), nil
	}}, nil
}
