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

// TestMatchNeverHoldsAdvice: a condition that must hold for the match to
// hold, on a field that no operation the trigger delivers carries, is
// advised against, word for word; the same condition where some event
// carries the field, where a missing field satisfies it, or where another
// branch of $or, $nor or $not can make the match hold, is not.
func TestMatchNeverHoldsAdvice(t *testing.T) {
	d := func(k string, v any) bson.D { return bson.D{{Key: k, Value: v}} }
	paid := d("fullDocument.status", "paid")
	before := d("fullDocumentBeforeChange.status", "paid")
	updated := d("updateDescription.updatedFields.status", d("$exists", true))
	const (
		noFull = "match: fullDocument.status must hold, but no operation delivered (delete) carries fullDocument " +
			"(insert and replace events do, and update events with full_document), so the match never holds"
		noPreImages = "match: fullDocumentBeforeChange.status must hold, but full_document_before_change is off, so no event carries " +
			"fullDocumentBeforeChange and the match never holds; set full_document_before_change: whenAvailable or required " +
			"(the collection needs changeStreamPreAndPostImages)"
		noPreImageOp = "match: fullDocumentBeforeChange.status must hold, but no operation delivered (insert) carries fullDocumentBeforeChange " +
			"(update, replace and delete events do), so the match never holds"
		noUpdate = "match: updateDescription.updatedFields.status must hold, but only update events carry updateDescription and the operations " +
			"delivered (insert, replace) do not include update, so the match never holds"
	)
	tests := []struct {
		name   string
		match  bson.D
		ops    []string
		full   string
		before string
		want   []string
	}{
		{name: "fullDocument on delete only", match: paid, ops: []string{"delete"}, want: []string{noFull}},
		{name: "fullDocument under $and", match: d("$and", bson.A{d("operationType", "delete"), paid}), ops: []string{"delete"}, want: []string{noFull}},
		{name: "fullDocument as a whole document", match: d("fullDocument", d("status", "paid")), ops: []string{"delete"},
			want: []string{"match: fullDocument must hold, but no operation delivered (delete) carries fullDocument " +
				"(insert and replace events do, and update events with full_document), so the match never holds"}},
		{name: "fullDocument with insert", match: paid, ops: []string{"insert", "delete"}},
		{name: "fullDocument with replace", match: paid, ops: []string{"replace"}},
		{name: "fullDocument with update and updateLookup", match: paid, ops: []string{"update", "delete"}, full: "updateLookup"},
		{name: "fullDocument missing is what is asked", match: d("fullDocument.status", d("$exists", false)), ops: []string{"delete"}},
		{name: "fullDocument null matches missing", match: d("fullDocument.status", nil), ops: []string{"delete"}},
		{name: "fullDocument $ne matches missing", match: d("fullDocument.status", d("$ne", "paid")), ops: []string{"delete"}},
		{name: "fullDocument under $or", match: d("$or", bson.A{d("operationType", "delete"), paid}), ops: []string{"delete"}},
		{name: "fullDocument under $nor", match: d("$nor", bson.A{paid}), ops: []string{"delete"}},
		{name: "fullDocument $not matches missing", match: d("fullDocument.n", d("$not", d("$gt", 1))), ops: []string{"delete"}},
		{name: "pre-image off", match: before, ops: []string{"update", "delete"}, before: "off", want: []string{noPreImages}},
		{name: "pre-image unset", match: before, ops: []string{"delete"}, want: []string{noPreImages}},
		{name: "pre-image on, insert only", match: before, ops: []string{"insert"}, before: "whenAvailable", want: []string{noPreImageOp}},
		{name: "pre-image on", match: before, ops: []string{"delete"}, before: "required"},
		{name: "updateDescription without update", match: updated, ops: []string{"insert", "replace"}, want: []string{noUpdate}},
		{name: "updateDescription with update", match: updated, ops: []string{"update"}},
		{name: "updateDescription missing is what is asked", match: d("updateDescription", d("$exists", false)), ops: []string{"insert"}},
		{name: "each once, in order", ops: []string{"delete"},
			match: bson.D{paid[0], before[0], {Key: "fullDocument.status", Value: "sent"}, {Key: "updateDescription.x", Value: 1}},
			want: []string{noFull, noPreImages, "match: updateDescription.x must hold, but only update events carry updateDescription and the operations " +
				"delivered (delete) do not include update, so the match never holds"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Trigger{Match: tc.match, Operations: tc.ops, Webhook: Webhook{URL: "https://example.com/h"},
				FullDocument: options.FullDocument(tc.full), FullDocumentBeforeChange: options.FullDocument(tc.before)}
			if got := Advice(tr); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Advice:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestQuotedNumberVariableAdvice: a comparison whose operand is a quoted
// ${VAR} reading as a number is a comparison with a string (README's
// flow-style trap), advised against word for word; the same variable
// unquoted in block style, a quoted variable that is no number, an
// equality, a comparison under $or, and an operand that says it is a
// string on purpose (an explicit !!str, a block scalar) are not. The
// advice is conditional: unquoting is right only for numbers.
func TestQuotedNumberVariableAdvice(t *testing.T) {
	env := func(k string) (string, bool) {
		switch k {
		case "LIMIT":
			return "20", true
		case "RATE":
			return "0.5", true
		case "STATUS":
			return "paid", true
		case "ZIP":
			return "02134", true
		}
		return testEnv(k)
	}
	limit := `match: fullDocument.quantity: {$lt: "${LIMIT}"} compares with the string "20", not a number: a quoted ${VAR} stays a string, ` +
		"and $lt with a string matches only string values; if fullDocument.quantity holds numbers, write the condition in block style with the variable unquoted, " +
		`$lt: ${LIMIT} on a line of its own; if it holds strings, write $lt: !!str "${LIMIT}" to say so (see ${VAR} under Configuration reference in README.md)`
	tests := []struct {
		name  string
		match string // the match section, indented under it
		want  []string
	}{
		{name: "flow style", match: `      fullDocument.quantity: { $lt: "${LIMIT}" }`, want: []string{limit}},
		{name: "quoted in block style", match: "      fullDocument.quantity:\n        $lt: '${LIMIT}'",
			want: []string{limit}},
		{name: "under $and, a float", match: `      $and: [{ fullDocument.rate: { $gte: "${RATE:-1}" } }]`,
			want: []string{`match: fullDocument.rate: {$gte: "${RATE:-1}"} compares with the string "0.5", not a number: a quoted ${VAR} stays a string, ` +
				"and $gte with a string matches only string values; if fullDocument.rate holds numbers, write the condition in block style with the variable unquoted, " +
				`$gte: ${RATE:-1} on a line of its own; if it holds strings, write $gte: !!str "${RATE:-1}" to say so (see ${VAR} under Configuration reference in README.md)`}},
		{name: "unquoted in block style", match: "      fullDocument.quantity:\n        $lt: ${LIMIT}"},
		{name: "not a number", match: `      fullDocument.status: { $gt: "${STATUS}" }`},
		{name: "equality", match: `      fullDocument.code: { $eq: "${LIMIT}" }`},
		{name: "a number written quoted", match: `      fullDocument.quantity: { $lt: "20" }`},
		{name: "under $or", match: `      $or: [{ fullDocument.quantity: { $lt: "${LIMIT}" } }, { operationType: delete }]`},
		// A string on purpose: an explicit !!str, or a block scalar.
		{name: "explicit string tag", match: "      fullDocument.zip:\n        $gte: !!str ${ZIP}"},
		{name: "explicit string tag, quoted", match: `      fullDocument.zip: { $gte: !!str "${ZIP}" }`},
		{name: "literal block scalar", match: "      fullDocument.zip:\n        $gte: |-\n          ${ZIP}"},
		{name: "folded block scalar", match: "      fullDocument.zip:\n        $gte: >-\n          ${ZIP}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "triggers:\n  - name: t1\n    database: shop\n    full_document: updateLookup\n    match:\n" + tc.match +
				"\n    webhook:\n      url: http://127.0.0.1:9999/h\n"
			cfg, err := Parse("triggers.yaml", []byte(src), env)
			if err != nil {
				t.Fatal(err)
			}
			if got := Advice(cfg.Triggers[0]); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Advice:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
