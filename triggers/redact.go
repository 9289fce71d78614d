package triggers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// redacted replaces secret parts of URLs.
const redacted = "REDACTED"

// RedactURL returns raw with its secrets removed, for logs, errors and API
// output: the userinfo is replaced by "REDACTED", every query value by
// "REDACTED" (keys are kept, so an operator can still see which parameters
// were set), the fragment is dropped, and everything after the first path
// segment becomes "REDACTED", because incoming-webhook services put their
// token in the path (Slack's /services/T…/B…/<secret>, Zapier's
// /hooks/catch/<id>/<key>/): scheme, host and the first segment are enough to
// tell endpoints apart. A URL that does not parse is replaced entirely, since
// the parse error could echo a secret.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	c := *u
	if c.User != nil {
		c.User = url.User(redacted)
	}
	c.Fragment, c.RawFragment = "", ""
	if first, rest, ok := strings.Cut(strings.TrimPrefix(c.Path, "/"), "/"); ok && strings.Trim(rest, "/") != "" {
		c.Path, c.RawPath = "/"+first+"/"+redacted, ""
	}
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok {
				parts[i] = k + "=" + redacted
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	if c.Opaque != "" {
		// "scheme:opaque" URLs have no structure to keep.
		c.Opaque = redacted
	}
	return c.String()
}

// MarshalJSON writes the trigger as the configuration file spells it, with
// every secret hidden: the webhook as Webhook.MarshalJSON writes it, match,
// project and payload as relaxed Extended JSON, start_at as "now" or an
// RFC 3339 time.
func (t *Trigger) MarshalJSON() ([]byte, error) {
	v := struct {
		Name                     string          `json:"name"`
		Database                 string          `json:"database,omitempty"`
		Collection               string          `json:"collection,omitempty"`
		Operations               []string        `json:"operations"`
		Match                    json.RawMessage `json:"match,omitempty"`
		Project                  json.RawMessage `json:"project,omitempty"`
		FullDocument             string          `json:"full_document"`
		FullDocumentBeforeChange string          `json:"full_document_before_change"`
		StartAt                  string          `json:"start_at"`
		Ordering                 Ordering        `json:"ordering"`
		Concurrency              int             `json:"concurrency"`
		Enabled                  bool            `json:"enabled"`
		Webhook                  Webhook         `json:"webhook"`
		Retry                    RetryPolicy     `json:"retry"`
		DeadLetter               bool            `json:"dead_letter"`
	}{
		Name:                     t.Name,
		Database:                 t.Database,
		Collection:               t.Collection,
		Operations:               slices.Clone(t.Operations),
		Match:                    extJSONDoc(t.Match),
		Project:                  extJSONDoc(t.Project),
		FullDocument:             string(t.FullDocument),
		FullDocumentBeforeChange: string(t.FullDocumentBeforeChange),
		StartAt:                  "now",
		Ordering:                 t.Ordering,
		Concurrency:              t.Concurrency,
		Enabled:                  t.Enabled,
		Webhook:                  t.Webhook,
		Retry:                    t.Retry,
		DeadLetter:               t.DeadLetter,
	}
	if !t.StartAt.Now {
		v.StartAt = t.StartAt.Time.Format(time.RFC3339Nano)
	}
	return marshalJSON(v)
}

// marshalJSON is json.Marshal without HTML escaping, so that RedactedMask
// and URLs read as written ("<secret>", "&"), not as \u003c escapes.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// extJSONDoc marshals a document as relaxed Extended JSON (nil when empty).
func extJSONDoc(d bson.D) json.RawMessage {
	if len(d) == 0 {
		return nil
	}
	b, err := bson.MarshalExtJSON(d, false, false)
	if err != nil {
		return nil
	}
	return b
}

// extJSONValue marshals any value as relaxed Extended JSON (nil on error).
func extJSONValue(v any) json.RawMessage {
	wrapped := extJSONDoc(bson.D{{Key: "v", Value: v}})
	var m map[string]json.RawMessage
	if wrapped == nil || json.Unmarshal(wrapped, &m) != nil {
		return nil
	}
	return m["v"]
}

// String returns the connection string with its password masked.
func (m MongoDBConfig) String() string { return RedactURI(m.URI) }

// GoString is String, so that %#v cannot show the password either.
func (m MongoDBConfig) GoString() string { return "triggers.MongoDBConfig{" + m.String() + "}" }

// Format prints String for every verb (GoString for %#v).
func (m MongoDBConfig) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, m.GoString())
		return
	}
	fmt.Fprint(f, m.String())
}

// LogValue logs the connection string with its password masked.
func (m MongoDBConfig) LogValue() slog.Value { return slog.StringValue(m.String()) }

// MarshalJSON writes {"uri": <the connection string, password masked>}.
func (m MongoDBConfig) MarshalJSON() ([]byte, error) {
	return marshalJSON(struct {
		URI string `json:"uri"`
	}{RedactURI(m.URI)})
}

// String describes the trigger without secrets: its name, namespace,
// delivery settings and the webhook as Webhook.String shows it.
func (t Trigger) String() string {
	return fmt.Sprintf("{%s ns:%q ops:%v ordering:%s concurrency:%d enabled:%t webhook:%s retry:{%d %s %s} dead_letter:%t}",
		t.Name, t.Namespace(), t.Operations, t.Ordering, t.Concurrency, t.Enabled, t.Webhook,
		t.Retry.MaxAttempts, t.Retry.InitialBackoff, t.Retry.MaxBackoff, t.DeadLetter)
}

// GoString is String, so that %#v cannot show a secret either.
func (t Trigger) GoString() string { return "triggers.Trigger" + t.String() }

// Format prints String for every verb (GoString for %#v), so that no verb
// prints the trigger's fields raw.
func (t Trigger) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, t.GoString())
		return
	}
	fmt.Fprint(f, t.String())
}

// LogValue logs the trigger as String.
func (t Trigger) LogValue() slog.Value { return slog.StringValue(t.String()) }
