package mql

import (
	"maps"
	"slices"
)

// TopLevelOperatorNames returns, sorted, the operators a filter accepts in
// place of a field name ($and, $or, $nor, $expr, ...).
func TopLevelOperatorNames() []string {
	return slices.Sorted(maps.Keys(topLevelOperators))
}

// QueryOperatorNames returns, sorted, the operators a filter accepts in a
// field's operator document ({field: {$gt: 1}}), $regex and $options
// included.
func QueryOperatorNames() []string {
	names := slices.AppendSeq([]string{"$regex", "$options"}, maps.Keys(queryOperators))
	slices.Sort(names)
	return slices.Compact(names)
}

// ExpressionOperatorNames returns, sorted, the aggregation expression
// operators CompileExpr accepts ({$concat: [...]}, {$gt: [...]}, ...).
func ExpressionOperatorNames() []string {
	return slices.Sorted(maps.Keys(exprOperators))
}
