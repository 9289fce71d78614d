package triggers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/triggers"
)

// TestProjectMustKeepIDUnchanged: a project may leave _id (the resume
// token) out, include it or set it to itself; one that projects a part of
// it or computes it is refused at the field, since the server ends the
// stream at the first event (ChangeStreamFatalError, 280). Each accepted
// form is checked to stream on devdb, and each refused one to fail there,
// except those including _id._data alone: they keep a token that has no
// other field, but not one with more (MongoDB adds _typeBits for some
// document keys), so they are refused too.
func TestProjectMustKeepIDUnchanged(t *testing.T) {
	tests := []struct {
		project string
		want    string // the validation error; "" when accepted
		// streams: a refused project the server still streams for this
		// event (its token has only _data).
		streams bool
	}{
		{`{operationType: 1, fullDocument: 1}`, "", true},
		{`{_id: 1, operationType: 1, fullDocument: 1}`, "", true},
		{`{_id: true, operationType: 1}`, "", true},
		{`{_id: "$_id", operationType: 1, fullDocument: 1}`, "", true},
		{`{fullDocument: 0}`, "", true},
		{`{"_id._data": 0}`, "p.yaml:7:15: project: _id._data: a part of _id (the resume token) cannot be projected", false},
		{`{"_id._data": 1, operationType: 1}`, "p.yaml:7:15: project: _id._data: a part of _id (the resume token) cannot be projected", true},
		{`{_id: {_data: 1}, operationType: 1}`, "p.yaml:7:15: project: _id: must be kept unchanged", true},
		{`{_id: {$literal: 1}, operationType: 1}`, "p.yaml:7:15: project: _id: must be kept unchanged", false},
		{`{operationType: 1, _id: "$documentKey", fullDocument: 1}`, "p.yaml:7:33: project: _id: must be kept unchanged", false},
	}
	_, client := devdbtest.Start(t)
	for i, tt := range tests {
		t.Run(tt.project, func(t *testing.T) {
			src := "triggers:\n  - name: t\n    database: shop\n    collection: orders\n    ordering: none\n    webhook: { url: \"http://127.0.0.1:1/h\" }\n    project: " + tt.project + "\n"
			cfg, err := triggers.Parse("p.yaml", []byte(src), nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Parse: %v\nwant an error with %q", err, tt.want)
			}
			tr := &triggers.Trigger{Name: "t", Database: "shop", Operations: []string{"insert"}}
			if cfg != nil {
				tr = cfg.Triggers[0]
			} else if err := bson.UnmarshalExtJSON([]byte(jsonish(tt.project)), false, &tr.Project); err != nil {
				t.Fatal(err)
			}
			tr.Collection = "orders" + string(rune('a'+i))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cs, err := tr.Watch(ctx, client, tr.ChangeStreamOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close(context.Background())
			if _, err := client.Database("shop").Collection(tr.Collection).InsertOne(ctx, bson.D{{Key: "_id", Value: "o1"}}); err != nil {
				t.Fatal(err)
			}
			if ok := cs.Next(ctx); ok != tt.streams {
				t.Errorf("the server streams it: %v (%v), want %v", ok, cs.Err(), tt.streams)
			}
		})
	}
}

// jsonish quotes the bare keys of the flow mappings above for Extended
// JSON.
func jsonish(s string) string {
	for _, k := range []string{"_id", "_data", "operationType", "fullDocument"} {
		s = strings.ReplaceAll(s, "{"+k+":", `{"`+k+`":`)
		s = strings.ReplaceAll(s, " "+k+":", ` "`+k+`":`)
	}
	return strings.ReplaceAll(s, "$literal:", `"$literal":`)
}
