package cli

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
)

// maxGaps bounds the fields payloadGaps lists.
const maxGaps = 8

// payloadGaps are the fields of a trigger's payload that came out null or
// were left out for one event: what a field the payload reads that is
// missing from the event turns into ($concat of a missing field is null, a
// field path to one leaves its field out). Endpoints that need the field
// (a chat hook's text) refuse such a request, yet the payload was built
// without error, so test and validate --events say it.
type payloadGaps struct {
	null, omitted []string // dotted payload field names, in payload order
}

// empty reports whether the payload had no gap.
func (g payloadGaps) empty() bool { return len(g.null) == 0 && len(g.omitted) == 0 }

// short is the gaps in a few words: "null: text; left out: user.name".
func (g payloadGaps) short() string {
	var parts []string
	if len(g.null) > 0 {
		parts = append(parts, "null: "+strings.Join(g.null, ", "))
	}
	if len(g.omitted) > 0 {
		parts = append(parts, "left out: "+strings.Join(g.omitted, ", "))
	}
	return strings.Join(parts, "; ")
}

// sentence is the gaps as test's note says them.
func (g payloadGaps) sentence() string {
	var parts []string
	if len(g.null) > 0 {
		parts = append(parts, "has "+strings.Join(g.null, ", ")+" null")
	}
	if len(g.omitted) > 0 {
		parts = append(parts, "leaves out "+strings.Join(g.omitted, ", "))
	}
	return fmt.Sprintf("this event's payload %s: a field the payload reads is missing from the event (or null in it). "+
		"An endpoint that needs the field (a chat hook's text) refuses such a request: "+
		`give it a fallback with $ifNull, e.g. {$ifNull: ["$fullDocument.name", "unknown"]}`, strings.Join(parts, " and "))
}

// findPayloadGaps evaluates t's payload expression on event (after the
// trigger's pipeline) and compares its result with the payload's literal
// document fields. No payload expression (the whole event is sent), or
// one that fails (the caller reports the failure): no gaps.
func findPayloadGaps(t *triggers.Trigger, event bson.D) payloadGaps {
	var g payloadGaps
	spec, ok := t.Webhook.PayloadSpec.(bson.D)
	if t.Webhook.Payload == nil || !ok {
		return g
	}
	v, err := t.Webhook.Payload.Eval(event)
	if err != nil {
		return g
	}
	if res, ok := v.(bson.D); ok {
		g.walk(spec, res, "", 0)
	}
	return g
}

// walk compares the literal document spec with its value res, naming
// fields under prefix.
func (g *payloadGaps) walk(spec, res bson.D, prefix string, depth int) {
	if depth > 32 || isOperator(spec) {
		return
	}
	for _, e := range spec {
		if len(g.null)+len(g.omitted) >= maxGaps {
			return
		}
		if literalNull(e.Value) {
			continue // null on purpose
		}
		name := prefix + e.Key
		v, found := lookupField(res, e.Key)
		switch {
		case !found:
			g.omitted = append(g.omitted, name)
		case v == nil:
			g.null = append(g.null, name)
		default:
			sub, isDoc := e.Value.(bson.D)
			got, gotDoc := v.(bson.D)
			if isDoc && gotDoc {
				g.walk(sub, got, name+".", depth+1)
			}
		}
	}
}

// literalNull reports whether v is null written as such: null or
// {$literal: null}.
func literalNull(v any) bool {
	if d, ok := v.(bson.D); ok && len(d) == 1 && d[0].Key == "$literal" {
		v = d[0].Value
	}
	return v == nil
}

// isOperator reports whether d is an operator expression ({$op: ...})
// rather than a literal document.
func isOperator(d bson.D) bool { return len(d) == 1 && strings.HasPrefix(d[0].Key, "$") }

// lookupField returns d's field key (not a path) and whether it is there.
func lookupField(d bson.D, key string) (any, bool) {
	for _, e := range d {
		if e.Key == key {
			if mql.IsMissing(e.Value) {
				return nil, false
			}
			return e.Value, true
		}
	}
	return nil, false
}
