package triggers

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/textcut"
)

// Advice returns what a valid trigger's configuration very likely gets
// wrong, one sentence each, for `validate` and the run's log: settings
// that are accepted (they can be meant) but that the endpoint, or the
// reader of what it receives, almost never wants. Nil when there is none.
func Advice(t *Trigger) []string {
	var out []string
	if s, ok := placeholderString(t.Webhook.PayloadSpec, 0); ok {
		out = append(out, fmt.Sprintf("webhook.payload: %s looks like a template placeholder, but payload is a MongoDB expression "+
			"and sends a string as written: build it with $concat and field paths, e.g. "+
			`{$concat: ["Order ", {$toString: "$fullDocument._id"}]}`, textcut.Quote(s)))
	}
	if t.Batch != nil && chatHook(t.Webhook.URL) {
		out = append(out, "batch: a batched request's body is a JSON array of events, which chat incoming webhooks "+
			"(Slack, Discord, Teams) refuse; remove batch for this endpoint")
	}
	out = append(out, matchAdvice(t)...)
	return out
}

// eventFields are the top-level fields a change event may carry (MongoDB's
// manual, Change Events, expanded events included).
var eventFields = map[string]bool{
	"_id": true, "operationType": true, "clusterTime": true, "wallTime": true, "ns": true, "to": true,
	"documentKey": true, "fullDocument": true, "fullDocumentBeforeChange": true, "updateDescription": true,
	"txnNumber": true, "lsid": true, "collectionUUID": true, "operationDescription": true, "splitEvent": true,
	"nsType": true, "commitTimestamp": true,
}

// maxAdvisedPaths bounds how many field paths one piece of match advice names.
const maxAdvisedPaths = 3

// matchAdvice returns advice on t's match filter: a field path that is no
// field of a change event (the changed document is under fullDocument), and
// a condition on fullDocument while updates, which carry no fullDocument
// without full_document, are delivered.
func matchAdvice(t *Trigger) []string {
	var paths []string
	matchPaths(t.Match, 0, &paths)
	var foreign, full []string
	for _, p := range paths {
		first, _, _ := strings.Cut(p, ".")
		switch {
		case !eventFields[first]:
			if !slices.Contains(foreign, p) {
				foreign = append(foreign, p)
			}
		case first == "fullDocument":
			if !slices.Contains(full, p) {
				full = append(full, p)
			}
		}
	}
	var out []string
	if len(foreign) > 0 {
		foreign = foreign[:min(len(foreign), maxAdvisedPaths)]
		out = append(out, fmt.Sprintf("match: %s %s no field of a change event, so every event sees it missing; "+
			"the changed document is under fullDocument (%s)", strings.Join(foreign, ", "), plural(len(foreign), "is", "are"),
			"fullDocument."+foreign[0]))
	}
	noFull := t.FullDocument == "" || t.FullDocument == "default"
	if len(full) > 0 && noFull && slices.Contains(t.Operations, "update") {
		full = full[:min(len(full), maxAdvisedPaths)]
		out = append(out, fmt.Sprintf("match: update events carry no fullDocument unless full_document is updateLookup, "+
			"whenAvailable or required, so for every update %s %s missing; set full_document: updateLookup, "+
			"or test updateDescription.updatedFields", strings.Join(full, ", "), plural(len(full), "is", "are")))
	}
	return out
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// matchPaths appends the field paths filter's conditions test, at the top
// level and under $and, $or and $nor (not inside $expr or other operators).
func matchPaths(filter bson.D, depth int, out *[]string) {
	if depth > maxAdviceDepth {
		return
	}
	for _, e := range filter {
		switch e.Key {
		case "$and", "$or", "$nor":
			arr, _ := e.Value.(bson.A)
			for _, c := range arr {
				if d, ok := c.(bson.D); ok {
					matchPaths(d, depth+1, out)
				}
			}
		default:
			if !strings.HasPrefix(e.Key, "$") {
				*out = append(*out, e.Key)
			}
		}
	}
}

// placeholder matches the {{ name }} and ${ name } placeholders of
// template languages.
var placeholder = regexp.MustCompile(`\{\{[^{}]*\}\}|\$\{[^{}]*\}`)

// maxAdviceDepth bounds placeholderString's walk; payloads are parsed with
// a nesting limit far below it.
const maxAdviceDepth = 200

// placeholderString returns the first string in spec (a payload's BSON
// form) that holds a template placeholder.
func placeholderString(spec any, depth int) (string, bool) {
	if depth > maxAdviceDepth {
		return "", false
	}
	switch v := spec.(type) {
	case string:
		if placeholder.MatchString(v) {
			return v, true
		}
	case bson.D:
		for _, e := range v {
			if e.Key == "$literal" {
				continue // sent as written on purpose
			}
			if s, ok := placeholderString(e.Value, depth+1); ok {
				return s, true
			}
		}
	case bson.A:
		for _, e := range v {
			if s, ok := placeholderString(e, depth+1); ok {
				return s, true
			}
		}
	}
	return "", false
}

// chatHook reports whether raw is the URL of a chat service's incoming
// webhook, whose body must be one message.
func chatHook(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	switch {
	case host == "hooks.slack.com":
		return true
	case (host == "discord.com" || host == "discordapp.com") && strings.HasPrefix(u.Path, "/api/webhooks/"):
		return true
	case strings.HasSuffix(host, ".webhook.office.com"):
		return true
	}
	return false
}
