package cli

import (
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
)

// TestFindPayloadGaps: the payload's literal fields that come out null or
// left out for an event are named with their dotted path; operator
// results, nulls written as such and a whole-event payload are not.
func TestFindPayloadGaps(t *testing.T) {
	event := bson.D{{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "Ada"}, {Key: "gone", Value: nil}}}}
	tests := []struct {
		name          string
		spec          any // nil: no payload
		null, omitted []string
	}{
		{name: "no payload"},
		{name: "complete", spec: bson.D{{Key: "text", Value: "$fullDocument.name"}}},
		{name: "concat of a missing field", spec: bson.D{{Key: "text", Value: bson.D{{Key: "$concat", Value: bson.A{"Hi ", "$fullDocument.nope"}}}}},
			null: []string{"text"}},
		{name: "a null field", spec: bson.D{{Key: "v", Value: "$fullDocument.gone"}}, null: []string{"v"}},
		{name: "nested and left out", spec: bson.D{{Key: "user", Value: bson.D{{Key: "id", Value: "$fullDocument._id"}, {Key: "email", Value: "$fullDocument.email"}}}},
			omitted: []string{"user.email"}},
		{name: "an operator's result document", spec: bson.D{{Key: "doc", Value: bson.D{{Key: "$literal", Value: bson.D{{Key: "x", Value: nil}}}}}}},
		{name: "a literal null", spec: bson.D{{Key: "x", Value: bson.D{{Key: "$literal", Value: nil}}}, {Key: "y", Value: nil}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &triggers.Trigger{}
			if tc.spec != nil {
				expr, err := mql.CompileExpr(tc.spec)
				if err != nil {
					t.Fatal(err)
				}
				tr.Webhook.Payload, tr.Webhook.PayloadSpec = expr, tc.spec
			}
			g := findPayloadGaps(tr, event)
			if !slices.Equal(g.null, tc.null) || !slices.Equal(g.omitted, tc.omitted) {
				t.Errorf("gaps null %q, left out %q; want %q, %q", g.null, g.omitted, tc.null, tc.omitted)
			}
		})
	}
}
