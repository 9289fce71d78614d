package mql

import "go.mongodb.org/mongo-driver/v2/bson"

// MongoDB optimizes every expression it parses (Expression::optimize) before
// running anything: an operator whose operands are all constants is
// evaluated once, then, and replaced by its value. An error in such an
// evaluation is therefore an error of the command's parsing — it fails even
// on an empty collection, and no executor context ("PlanExecutor error during
// aggregation :: caused by :: ...") is added to it — while the same operator
// over a field path fails only when a document reaches it. foldErr reproduces
// the parse-time half: it reports the first error a constant sub-expression
// raises, in the order MongoDB folds them (operands before their operator,
// left to right). The tree itself is left as compiled.

// foldErr returns the error of the first constant sub-expression of n that
// fails to evaluate, or nil.
func foldErr(n exprNode) error {
	_, err := foldConst(n)
	return err
}

// foldConst reports whether n is constant after folding, and the error of
// the first constant sub-expression that fails to evaluate.
func foldConst(n exprNode) (bool, error) {
	if _, ok := n.(constNode); ok {
		return true, nil
	}
	operands, whole := foldOperands(n)
	allConst := true
	for _, op := range operands {
		if op == nil {
			continue // an absent optional argument
		}
		c, err := foldConst(op)
		if err != nil {
			return false, err
		}
		allConst = allConst && c
	}
	if !whole || !allConst {
		return false, nil
	}
	if _, err := n.eval(&evalCtx{root: bson.D{}, current: bson.D{}}); err != nil {
		return false, err
	}
	return true, nil
}

// foldOperands returns n's sub-expressions and whether n itself folds into
// a constant when they all are constant. Only operators MongoDB folds whole
// report whole: its n-ary operators (arithmetic, strings, arrays, sets,
// comparisons, $cond, $ifNull, $and, $or), object and array literals,
// $convert and the $toX shorthands, and the date and trim operators that
// fold when all their arguments are constant. Operators that bind
// variables ($let, $map, $filter, $reduce), $switch, $getField, $setField,
// the regex and replace operators only have their operands folded; field
// paths, variables and $rand are never constant.
func foldOperands(n exprNode) (operands []exprNode, whole bool) {
	switch t := n.(type) {
	case *funcNode:
		return t.args, true
	case *docNode:
		return t.nodes, true
	case *arrayNode:
		return t.nodes, true
	case *condNode:
		return []exprNode{t.ifN, t.thenN, t.elseN}, true
	case *ifNullNode:
		return t.args, true
	case *andOrNode:
		return t.args, true
	case *convertNode:
		return []exprNode{t.input, t.to, t.onError, t.onNull}, true
	case *dateToStringNode:
		return []exprNode{t.date, t.format, t.timezone, t.onNull}, true
	case *datePartNode:
		return []exprNode{t.date, t.tz}, true
	case *dateFromStringNode:
		return []exprNode{t.dateString, t.format, t.timezone, t.onError, t.onNull}, true
	case *trimNode:
		return []exprNode{t.input, t.chars}, true
	case *nArrayNode:
		return []exprNode{t.n, t.input}, true
	case *sortArrayNode:
		return []exprNode{t.input}, true
	case *zipNode:
		return append(append([]exprNode(nil), t.inputs...), t.defaults...), true
	case *dateAddNode:
		return []exprNode{t.start, t.unit, t.amount, t.tz}, true
	case *dateDiffNode:
		return []exprNode{t.start, t.end, t.unit, t.tz, t.startOfWeek}, true
	case *dateTruncNode:
		return []exprNode{t.date, t.unit, t.binSize, t.tz, t.startOfWeek}, true
	case *dateFromPartsNode:
		return append(t.parts[:], t.tz), true
	case *dateToPartsNode:
		return []exprNode{t.date, t.tz, t.iso}, true
	case *letNode:
		return append(append([]exprNode(nil), t.vals...), t.in), false
	case *iterNode:
		return []exprNode{t.input, t.body, t.limit}, false
	case *reduceNode:
		return []exprNode{t.input, t.initial, t.in}, false
	case *switchNode:
		ops := make([]exprNode, 0, 2*len(t.cases)+1)
		for i := range t.cases {
			ops = append(ops, t.cases[i], t.thens[i])
		}
		return append(ops, t.def), false
	case *getFieldNode:
		return []exprNode{t.input}, false
	case *setFieldNode:
		return []exprNode{t.input, t.value}, false
	case *regexNode:
		return []exprNode{t.input, t.regex, t.options}, false
	case *replaceNode:
		return []exprNode{t.input, t.find, t.replacement}, false
	}
	return nil, false
}
