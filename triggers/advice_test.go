package triggers

import (
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
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
