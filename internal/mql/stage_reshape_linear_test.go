package mql

import (
	"errors"
	"fmt"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestAddFieldsConflictingPaths checks which paths of an $addFields / $set
// specification conflict (one equal to or a prefix of another, in dotted or
// nested form) and the error MongoDB reports, naming both.
func TestAddFieldsConflictingPaths(t *testing.T) {
	tests := []struct {
		name, spec string
		want       string // "" when the specification is valid
	}{
		{"disjoint", `{"a.b": 1, "a.c": 1, "b": 1}`, ""},
		{"string prefix is not a path prefix", `{"ab": 1, "a.c": 1, "a.bc": 1, "a.b": 1}`, ""},
		{"same field", `{"a": 1, "a": 2}`, "Cannot specify both 'a' and 'a'"},
		{"parent after child", `{"a.b": 1, "a": 1}`, "Cannot specify both 'a.b' and 'a'"},
		{"child after parent", `{"a": 1, "a.b": 1}`, "Cannot specify both 'a' and 'a.b'"},
		{"grandchild after parent", `{"a.b": 1, "a.b.c.d": 1}`, "Cannot specify both 'a.b' and 'a.b.c.d'"},
		{"nested and dotted", `{"a": {"b": 1}, "a.b": 2}`, "Cannot specify both 'a.b' and 'a.b'"},
		{"nested under dotted", `{"a.b": {"c": 1}, "a": {"b": {"c": {"$literal": 2}}}}`, "Cannot specify both 'a.b.c' and 'a.b.c'"},
		{"parent after children names the first", `{"a.b": 1, "a.c": 1, "a": 1}`, "Cannot specify both 'a.b' and 'a'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := aggTestDoc(t, tc.spec)
			_, err := CompilePipeline([]bson.D{{{Key: "$set", Value: spec}}})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CompilePipeline: %v", err)
				}
				return
			}
			var e *mongoerr.Error
			if !errors.As(err, &e) || e.Code != mongoerr.ConflictingPaths {
				t.Fatalf("err = %v, want code %d", err, mongoerr.ConflictingPaths)
			}
			if want := "specification contains two conflicting paths. " + tc.want; e.Message != want {
				t.Fatalf("message = %q, want %q", e.Message, want)
			}
		})
	}
}

// TestAddFieldsConflictCheckLinear compiles an $addFields of many fields
// and checks that the conflict check takes a bounded number of steps per
// path (it compared each path with every earlier one).
func TestAddFieldsConflictCheckLinear(t *testing.T) {
	const n = 20000
	spec := make(bson.D, n)
	for i := range n {
		spec[i] = bson.E{Key: fmt.Sprintf("g%d.f%d", i%3, i), Value: int32(i)}
	}
	steps := countSteps(t, func() {
		if _, err := CompilePipeline([]bson.D{{{Key: "$addFields", Value: spec}}}); err != nil {
			t.Fatal(err)
		}
	})
	if limit := 8 * n; steps > limit {
		t.Errorf("%d paths took %d conflict-check steps, want at most %d", n, steps, limit)
	}
}
