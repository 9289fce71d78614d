package triggers

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestAdvice: a payload string holding a template placeholder and a batch
// sent to a chat service's incoming webhook are advised against; the same
// settings without the mistake, and a placeholder under $literal, are not.
func TestAdvice(t *testing.T) {
	slack := "https://hooks.slack.com/services/T000/B000/XXXX"
	batch := &BatchPolicy{MaxEvents: 10}
	tests := []struct {
		name  string
		url   string
		spec  any
		batch *BatchPolicy
		want  []string // a part of each piece of advice, in order
	}{
		{name: "nothing to say", url: slack, spec: bson.D{{Key: "text", Value: "$fullDocument.name"}}},
		{name: "mustache placeholder", url: "https://example.com/h",
			spec: bson.D{{Key: "text", Value: bson.D{{Key: "$concat", Value: bson.A{"New order {{fullDocument._id}}", "!"}}}}},
			want: []string{`webhook.payload: "New order {{fullDocument._id}}" looks like a template placeholder`}},
		{name: "placeholder under $literal", url: "https://example.com/h",
			spec: bson.D{{Key: "text", Value: bson.D{{Key: "$literal", Value: "{{kept}}"}}}}},
		{name: "braces without a placeholder", url: "https://example.com/h", spec: bson.D{{Key: "text", Value: "{not one}"}}},
		{name: "batch to slack", url: slack, batch: batch, want: []string{"batch: a batched request's body is a JSON array"}},
		{name: "batch to discord", url: "https://discord.com/api/webhooks/1/abc", batch: batch, want: []string{"batch: "}},
		{name: "batch elsewhere", url: "https://example.com/h", batch: batch},
		{name: "both", url: slack, batch: batch, spec: bson.D{{Key: "text", Value: "${x}"}},
			want: []string{`webhook.payload: "${x}" looks like`, "batch: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Advice(&Trigger{Webhook: Webhook{URL: tc.url, PayloadSpec: tc.spec}, Batch: tc.batch})
			if len(got) != len(tc.want) {
				t.Fatalf("Advice = %q, want %d pieces like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) && !strings.Contains(got[i], w) {
					t.Errorf("advice %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestMatchAdvice: a match on a field no change event has, and a match on
// fullDocument while updates arrive without it, are advised against; the
// same filters where they can match are not.
func TestMatchAdvice(t *testing.T) {
	d := func(k string, v any) bson.D { return bson.D{{Key: k, Value: v}} }
	all := []string{"insert", "update", "replace", "delete"}
	tests := []struct {
		name  string
		match bson.D
		ops   []string
		full  string
		want  []string
	}{
		{name: "event fields", match: bson.D{{Key: "operationType", Value: "insert"}, {Key: "ns.coll", Value: "c"}}, ops: all},
		{name: "a document field at the top", match: d("quantity", d("$lt", 20)), ops: []string{"insert"},
			want: []string{"match: quantity is no field of a change event, so every event sees it missing; the changed document is under fullDocument (fullDocument.quantity)"}},
		{name: "under $or, named once", match: d("$or", bson.A{d("status", "paid"), d("status", "sent"), d("fullDocument.x", 1)}), ops: []string{"insert"},
			want: []string{"match: status is no field"}},
		{name: "fullDocument with updates", match: d("fullDocument.quantity", d("$lt", 20)), ops: all,
			want: []string{"match: update events carry no fullDocument unless full_document is updateLookup, whenAvailable or required, so for every update fullDocument.quantity is missing"}},
		{name: "fullDocument with updateLookup", match: d("fullDocument.quantity", d("$lt", 20)), ops: all, full: "updateLookup"},
		{name: "fullDocument without updates", match: d("fullDocument.quantity", d("$lt", 20)), ops: []string{"insert", "replace"}},
		{name: "updatedFields with updates", match: d("updateDescription.updatedFields.quantity", d("$exists", true)), ops: []string{"update"}},
		{name: "$expr is not walked", match: d("$expr", d("$gt", bson.A{"$fullDocument.a", 1})), ops: all},
		{name: "both", match: bson.D{{Key: "qty", Value: 1}, {Key: "fullDocument.a", Value: 1}}, ops: all,
			want: []string{"match: qty is no field", "match: update events carry no fullDocument"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Trigger{Match: tc.match, Operations: tc.ops, Webhook: Webhook{URL: "https://example.com/h"}}
			tr.FullDocument = options.FullDocument(tc.full)
			got := Advice(tr)
			if len(got) != len(tc.want) {
				t.Fatalf("Advice = %q, want %d pieces like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("advice %d = %q, want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}
