package mql

import (
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// coreExtJSON renders a document as relaxed Extended JSON for comparisons
// that must also check field order.
func coreExtJSON(tb testing.TB, d bson.D) string {
	tb.Helper()
	b, err := bson.MarshalExtJSON(d, false, false)
	if err != nil {
		tb.Fatalf("MarshalExtJSON: %v", err)
	}
	return string(b)
}

// TestProjectionApply follows "Project Fields to Return from Query"
// (https://www.mongodb.com/docs/manual/tutorial/project-fields-from-query-results/)
// and the $slice / $elemMatch / $ projection operator pages.
func TestProjectionApply(t *testing.T) {
	t.Parallel()
	const inventory = `{"_id": 1, "item": "journal", "status": "A", "size": {"h": 14, "w": 21, "uom": "cm"}, "instock": [{"warehouse": "A", "qty": 5}, {"warehouse": "C", "qty": 15}]}`
	tests := []struct {
		name string
		spec string
		doc  string
		want string
	}{
		{"empty returns all", `{}`, inventory, inventory},
		{"inclusion keeps _id", `{"item": 1, "status": 1}`, inventory, `{"_id":1,"item":"journal","status":"A"}`},
		{"inclusion document order", `{"status": 1, "item": 1}`, inventory, `{"_id":1,"item":"journal","status":"A"}`},
		{"inclusion without _id", `{"item": 1, "_id": 0}`, inventory, `{"item":"journal"}`},
		{"exclusion", `{"status": 0, "instock": 0}`, inventory, `{"_id":1,"item":"journal","size":{"h":14,"w":21,"uom":"cm"}}`},
		{"exclude only _id", `{"_id": 0}`, `{"_id": 1, "a": 2}`, `{"a":2}`},
		{"include only _id", `{"_id": 1}`, `{"_id": 1, "a": 2}`, `{"_id":1}`},
		{"_id 1 with exclusion", `{"_id": 1, "a": 0}`, `{"_id": 1, "a": 2, "b": 3}`, `{"_id":1,"b":3}`},
		{"embedded field", `{"item": 1, "size.uom": 1}`, inventory, `{"_id":1,"item":"journal","size":{"uom":"cm"}}`},
		{"embedded nested form", `{"item": 1, "size": {"uom": 1}}`, inventory, `{"_id":1,"item":"journal","size":{"uom":"cm"}}`},
		{"exclude embedded", `{"size.uom": 0}`, `{"_id": 1, "size": {"h": 14, "uom": "cm"}}`, `{"_id":1,"size":{"h":14}}`},
		{"array of docs", `{"instock.qty": 1}`, inventory, `{"_id":1,"instock":[{"qty":5},{"qty":15}]}`},
		{"array of docs exclusion", `{"instock.qty": 0, "_id": 0}`, inventory, `{"item":"journal","status":"A","size":{"h":14,"w":21,"uom":"cm"},"instock":[{"warehouse":"A"},{"warehouse":"C"}]}`},
		{"subdoc without field kept empty", `{"a.b": 1}`, `{"_id": 1, "a": {"c": 1}}`, `{"_id":1,"a":{}}`},
		{"scalar under dotted inclusion dropped", `{"a.b": 1}`, `{"_id": 1, "a": 5}`, `{"_id":1}`},
		{"scalars in array dropped", `{"a.b": 1}`, `{"_id": 1, "a": [1, {"b": 2, "c": 3}, [{"b": 4}]]}`, `{"_id":1,"a":[{"b":2},[{"b":4}]]}`},
		{"exclusion keeps scalars in array", `{"a.b": 0}`, `{"_id": 1, "a": [1, {"b": 2, "c": 3}]}`, `{"_id":1,"a":[1,{"c":3}]}`},
		{"missing included field absent", `{"zz": 1}`, `{"_id": 1}`, `{"_id":1}`},
		{"slice first", `{"a": {"$slice": 2}}`, `{"_id": 1, "a": [1, 2, 3], "b": 1}`, `{"_id":1,"a":[1,2],"b":1}`},
		{"slice last", `{"a": {"$slice": -2}}`, `{"_id": 1, "a": [1, 2, 3]}`, `{"_id":1,"a":[2,3]}`},
		{"slice skip limit", `{"a": {"$slice": [1, 1]}}`, `{"_id": 1, "a": [1, 2, 3]}`, `{"_id":1,"a":[2]}`},
		{"slice negative skip", `{"a": {"$slice": [-2, 5]}}`, `{"_id": 1, "a": [1, 2, 3]}`, `{"_id":1,"a":[2,3]}`},
		{"slice skip past end", `{"a": {"$slice": [5, 1]}}`, `{"_id": 1, "a": [1, 2, 3]}`, `{"_id":1,"a":[]}`},
		{"slice more than length", `{"a": {"$slice": -10}}`, `{"_id": 1, "a": [1, 2]}`, `{"_id":1,"a":[1,2]}`},
		{"slice non-array unchanged", `{"a": {"$slice": 1}}`, `{"_id": 1, "a": "x"}`, `{"_id":1,"a":"x"}`},
		{"slice with inclusion", `{"a": {"$slice": 1}, "b": 1}`, `{"_id": 1, "a": [1, 2], "b": 2, "c": 3}`, `{"_id":1,"a":[1],"b":2}`},
		{"slice with exclusion", `{"a": {"$slice": 1}, "c": 0}`, `{"_id": 1, "a": [1, 2], "b": 2, "c": 3}`, `{"_id":1,"a":[1],"b":2}`},
		{"elemMatch", `{"students": {"$elemMatch": {"school": 102}}}`, `{"_id": 1, "zipcode": "63109", "students": [{"name": "john", "school": 102}, {"name": "jess", "school": 102}]}`, `{"_id":1,"students":[{"name":"john","school":102}]}`},
		{"elemMatch no match omits field", `{"students": {"$elemMatch": {"school": 9}}}`, `{"_id": 1, "students": [{"school": 102}]}`, `{"_id":1}`},
		{"computed field path", `{"x": "$item", "status": 1}`, inventory, `{"_id":1,"status":"A","x":"journal"}`},
		{"computed missing omitted", `{"x": "$nope", "_id": 0}`, inventory, `{}`},
		{"computed nested", `{"size.area": "$item", "_id": 0}`, inventory, `{"size":{"area":"journal"}}`},
		{"computed under absent parent", `{"p.q": "$item", "_id": 0}`, `{"item": "x"}`, `{"p":{"q":"x"}}`},
		{"computed replaces existing at end", `{"item": "$status", "status": 1}`, inventory, `{"_id":1,"status":"A","item":"A"}`},
		{"computed literal", `{"k": {"$literal": 1}, "_id": 0}`, `{}`, `{"k":1}`},
		{"computed _id", `{"_id": "$item"}`, inventory, `{"_id":"journal"}`},
		{"_id subfield only", `{"_id.x": 1}`, `{"_id": {"x": 1, "y": 2}, "a": 1}`, `{"_id":{"x":1}}`},
		{"true and false", `{"item": true, "_id": false}`, inventory, `{"item":"journal"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := CompileProjection(coreDoc(t, tc.spec))
			if err != nil {
				t.Fatalf("CompileProjection(%s): %v", tc.spec, err)
			}
			doc := coreDoc(t, tc.doc)
			before := coreExtJSON(t, doc)
			got, err := p.Apply(doc)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			want := coreExtJSON(t, coreDoc(t, tc.want))
			if g := coreExtJSON(t, got); g != want {
				t.Errorf("projection %s\n got %s\nwant %s", tc.spec, g, want)
			}
			if after := coreExtJSON(t, doc); after != before {
				t.Errorf("Apply modified its input: %s", after)
			}
		})
	}
}

func TestProjectionPositional(t *testing.T) {
	t.Parallel()
	// https://www.mongodb.com/docs/manual/reference/operator/projection/positional/
	f, err := CompileFilter(coreDoc(t, `{"semester": 1, "grades": {"$gte": 85}}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := CompileProjection(coreDoc(t, `{"grades.$": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasPositional() {
		t.Fatal("HasPositional = false")
	}
	doc := coreDoc(t, `{"_id": 1, "semester": 1, "grades": [70, 87, 90]}`)
	ok, idx := f.MatchPositional(doc)
	if !ok || idx != 1 {
		t.Fatalf("MatchPositional = %v, %d", ok, idx)
	}
	got, err := p.ApplyPositional(doc, idx)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := coreExtJSON(t, got), `{"_id":1,"grades":[87]}`; g != w {
		t.Errorf("got %s, want %s", g, w)
	}
	if _, err := p.ApplyPositional(doc, -1); coreErrCode(err) != mongoerr.ProjectionPositionalNoMatch {
		t.Errorf("no index: err = %v, want Location51246", err)
	}
	if _, err := p.Apply(doc); coreErrCode(err) != mongoerr.ProjectionPositionalNoMatch {
		t.Errorf("Apply on positional: err = %v, want Location51246", err)
	}
}

func TestProjectStage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		doc  string
		want string
	}{
		{"add fields", `{"total": {"$add": ["$a", "$b"]}, "a": 1}`, `{"_id": 7, "a": 1, "b": 2, "c": 3}`, `{"_id":7,"a":1,"total":3}`},
		{"exclusion", `{"c": 0}`, `{"_id": 7, "a": 1, "c": 3}`, `{"_id":7,"a":1}`},
		{"field path", `{"_id": 0, "x": "$a"}`, `{"_id": 7, "a": 1}`, `{"x":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := CompileProjectStage(coreDoc(t, tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Apply(coreDoc(t, tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if g, w := coreExtJSON(t, got), coreExtJSON(t, coreDoc(t, tc.want)); g != w {
				t.Errorf("got %s, want %s", g, w)
			}
		})
	}
	if _, err := CompileProjectStage(bson.D{}); coreErrCode(err) != mongoerr.ProjectionEmpty {
		t.Errorf("empty $project: err = %v, want Location51272", err)
	}
	if _, err := CompileProjectStage(coreDoc(t, `{"a.$": 1}`)); coreErrCode(err) != mongoerr.BadValue {
		t.Errorf("positional in $project: err = %v, want BadValue", err)
	}
}

func TestProjectionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		code mongoerr.Code
	}{
		{"exclusion in inclusion", `{"a": 1, "b": 0}`, mongoerr.ProjectionExclusionInInclusion},
		{"inclusion in exclusion", `{"a": 0, "b": 1}`, mongoerr.ProjectionInclusionInExclusion},
		{"expression in exclusion", `{"a": 0, "b": "$x"}`, mongoerr.ProjectionExpressionInExclusion},
		{"path collision", `{"a": 1, "a.b": 1}`, mongoerr.ProjectionPathPrefixCollision},
		{"path collision reverse", `{"a.b": 1, "a": 1}`, mongoerr.ProjectionPathCollision},
		{"empty sub-projection", `{"a": {}}`, mongoerr.ProjectionEmptySubProjection},
		{"two positionals", `{"a.$": 1, "b.$": 1}`, mongoerr.ProjectionPositionalTwice},
		{"elemMatch nested", `{"a.b": {"$elemMatch": {"c": 1}}}`, mongoerr.ProjectionNestedPositional},
		{"slice bad limit", `{"a": {"$slice": [1, 0]}}`, mongoerr.SliceInvalid},
		{"slice bad type", `{"a": {"$slice": "x"}}`, mongoerr.BadValue},
		{"slice bad array", `{"a": {"$slice": [1]}}`, mongoerr.BadValue},
		{"meta", `{"s": {"$meta": "textScore"}}`, mongoerr.NotImplemented},
		{"dollar field", `{"$a": 1}`, mongoerr.BadValue},
		{"empty component", `{"a..b": 1}`, mongoerr.BadValue},
		{"bad expression", `{"a": {"$bad": 1}}`, mongoerr.InvalidPipelineOperator},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := CompileProjection(coreDoc(t, tc.spec))
			if got := coreErrCode(err); got != tc.code {
				t.Errorf("CompileProjection(%s) error %v, want code %d", tc.spec, err, tc.code)
			}
		})
	}
}

func TestProjectionIntrospection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec      string
		keepsID   bool
		inclusion bool
		includesA bool
	}{
		{`{}`, true, false, true},
		{`{"a": 1}`, true, true, true},
		{`{"a": 1, "_id": 0}`, false, true, true},
		{`{"b": 1}`, true, true, false},
		{`{"a": 0}`, true, false, false},
		{`{"a.b": 0}`, true, false, true},
		{`{"_id": 0}`, false, false, true},
		{`{"a": {"$slice": 1}}`, true, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			t.Parallel()
			p, err := CompileProjection(coreDoc(t, tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			if p.KeepsID() != tc.keepsID || p.IsInclusion() != tc.inclusion || p.Includes("a") != tc.includesA {
				t.Errorf("KeepsID=%v IsInclusion=%v Includes(a)=%v; want %v %v %v",
					p.KeepsID(), p.IsInclusion(), p.Includes("a"), tc.keepsID, tc.inclusion, tc.includesA)
			}
		})
	}
}

// TestProjectStageKeeps: Keeps follows MongoDB's $project rules — _id: 1
// (or true, or computed) alone is an inclusion of _id only, _id: 0 alone
// an exclusion; a listed subfield keeps a field only under an exclusion;
// an expression (also $literal) keeps the field it computes.
func TestProjectStageKeeps(t *testing.T) {
	one, zero := int32(1), int32(0)
	tests := []struct {
		name string
		spec bson.D
		path string
		want bool
	}{
		{"inclusion lists it", bson.D{{Key: "operationType", Value: one}}, "operationType", true},
		{"inclusion omits it", bson.D{{Key: "fullDocument", Value: one}}, "operationType", false},
		{"inclusion keeps _id by default", bson.D{{Key: "fullDocument", Value: one}}, "_id", true},
		{"inclusion of a subfield", bson.D{{Key: "documentKey._id", Value: true}}, "documentKey._id", true},
		{"inclusion of a nested subfield", bson.D{{Key: "documentKey", Value: bson.D{{Key: "_id", Value: one}}}}, "documentKey._id", true},
		{"inclusion of the parent", bson.D{{Key: "documentKey", Value: one}}, "documentKey._id", true},
		{"inclusion of another subfield", bson.D{{Key: "documentKey.x", Value: one}}, "documentKey._id", false},
		{"inclusion of a subfield of a string", bson.D{{Key: "operationType.x", Value: one}}, "operationType", false},
		{"computed", bson.D{{Key: "operationType", Value: "$operationType"}}, "operationType", true},
		{"computed $literal", bson.D{{Key: "operationType", Value: bson.D{{Key: "$literal", Value: "insert"}}}}, "operationType", true},
		{"another field computed by $literal", bson.D{{Key: "kind", Value: bson.D{{Key: "$literal", Value: one}}}}, "operationType", false},
		{"computed parent", bson.D{{Key: "documentKey", Value: "$documentKey"}}, "documentKey._id", true},
		{"_id: 1 alone", bson.D{{Key: "_id", Value: one}}, "operationType", false},
		{"_id: true alone", bson.D{{Key: "_id", Value: true}}, "operationType", false},
		{"_id computed alone", bson.D{{Key: "_id", Value: "$_id"}}, "operationType", false},
		{"_id: 1 with an inclusion", bson.D{{Key: "_id", Value: one}, {Key: "fullDocument", Value: one}}, "operationType", false},
		{"_id: 1 with an exclusion", bson.D{{Key: "_id", Value: one}, {Key: "fullDocument", Value: zero}}, "operationType", true},
		{"_id: 0 alone", bson.D{{Key: "_id", Value: zero}}, "operationType", true},
		{"_id: 0 alone drops _id", bson.D{{Key: "_id", Value: zero}}, "_id", false},
		{"_id: 0 with an inclusion", bson.D{{Key: "_id", Value: zero}, {Key: "operationType", Value: one}}, "operationType", true},
		{"exclusion of another field", bson.D{{Key: "fullDocument", Value: zero}}, "operationType", true},
		{"exclusion of it", bson.D{{Key: "documentKey", Value: false}}, "documentKey._id", false},
		{"exclusion of another subfield", bson.D{{Key: "documentKey.x", Value: zero}}, "documentKey._id", true},
		{"exclusion of the subfield", bson.D{{Key: "documentKey._id", Value: zero}}, "documentKey._id", false},
		{"exclusion of the nested subfield", bson.D{{Key: "fullDocument", Value: zero}, {Key: "documentKey", Value: bson.D{{Key: "_id", Value: false}}}}, "documentKey._id", false},
		{"exclusion of a subfield of a string", bson.D{{Key: "operationType.x", Value: zero}}, "operationType", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := CompileProjectStage(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Keeps(tt.path); got != tt.want {
				t.Errorf("CompileProjectStage(%v).Keeps(%q) = %v, want %v", tt.spec, tt.path, got, tt.want)
			}
		})
	}
}
