package mql

import (
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestOperatorNamesCompile checks that every listed name is one the
// compilers accept where the list says it is accepted, and that the lists
// hold the operators users reach for first.
func TestOperatorNamesCompile(t *testing.T) {
	for _, name := range TopLevelOperatorNames() {
		if _, err := CompileFilter(bson.D{{Key: name, Value: bson.A{}}}); err != nil && isUnknownOperator(err) {
			t.Errorf("top-level %s: %v", name, err)
		}
	}
	for _, name := range QueryOperatorNames() {
		if _, err := CompileFilter(bson.D{{Key: "a", Value: bson.D{{Key: name, Value: 1}}}}); err != nil && isUnknownOperator(err) {
			t.Errorf("query %s: %v", name, err)
		}
	}
	for _, name := range ExpressionOperatorNames() {
		if _, err := CompileExpr(bson.D{{Key: name, Value: bson.A{}}}); err != nil && isUnknownOperator(err) {
			t.Errorf("expression %s: %v", name, err)
		}
	}
	for list, want := range map[string][]string{
		"top-level":  {"$and", "$expr", "$nor", "$or"},
		"query":      {"$eq", "$exists", "$gt", "$gte", "$in", "$lt", "$lte", "$ne", "$nin", "$options", "$regex"},
		"expression": {"$concat", "$cond", "$eq", "$gt", "$toUpper"},
	} {
		got := map[string][]string{"top-level": TopLevelOperatorNames(), "query": QueryOperatorNames(), "expression": ExpressionOperatorNames()}[list]
		if !slices.IsSorted(got) {
			t.Errorf("%s names not sorted", list)
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s names lack %s", list, w)
			}
		}
	}
}

// isUnknownOperator reports whether err is the compilers' "no such
// operator" error rather than one about the operator's argument.
func isUnknownOperator(err error) bool {
	msg := err.Error()
	return slices.ContainsFunc([]string{"unknown operator", "unknown top level operator", "Unrecognized expression"}, func(s string) bool {
		return strings.Contains(msg, s)
	})
}
