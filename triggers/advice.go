package triggers

import (
	"fmt"
	"net/url"
	"regexp"
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
	return out
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
