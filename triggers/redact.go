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
	"unicode"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// redacted replaces secret parts of URLs.
const redacted = "REDACTED"

// RedactURL returns a webhook URL with its secrets removed, for logs,
// errors, dead letters and API output. It is the one rule for webhook URLs:
//
//   - the userinfo becomes "REDACTED";
//   - every query value becomes "REDACTED" (the names stay, so an operator
//     can see which parameters were set); the fragment is dropped;
//   - a query name shaped like a token (SecretShapedSegment) becomes
//     "REDACTED" too: a part without "=" is a name, so "?flag" stays and
//     "?Xk39fjQm2Lp8Zr7Tq1Vw", a token passed as the whole query, does not;
//   - the path of a known incoming-webhook service, whose token is in the
//     path (Slack, Discord, Microsoft Teams, Zapier, Make, n8n), keeps its
//     first segment and the rest becomes "REDACTED";
//   - any path segment shaped like a token (SecretShapedSegment) becomes
//     "REDACTED";
//   - every other path prints as written ("/status/429" stays readable).
//
// Local commands (validate, test) use the same rule: an ordinary path reads
// as the user wrote it, a token never shows. A trigger's
// webhook.secret_path hides the whole path: use Webhook.RedactedURL, which
// applies it. A URL that does not parse is replaced entirely, since the
// parse error could echo a secret.
func RedactURL(raw string) string { return redactURL(raw, false, true) }

// redactURL applies RedactURL's rule; secretPath hides the whole path,
// hidePath=false prints the path as written.
func redactURL(raw string, secretPath, hidePath bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	c := *u
	if c.User != nil {
		c.User = url.User(redacted)
	}
	c.Fragment, c.RawFragment = "", ""
	if hidePath {
		c.Path, c.RawPath = redactPath(c.Hostname(), c.EscapedPath(), secretPath), ""
		if p, err := url.PathUnescape(c.Path); err == nil {
			c.Path = p
		}
	}
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			k, _, hasValue := strings.Cut(p, "=")
			if SecretShapedSegment(k) {
				k = redacted
			}
			if hasValue {
				k += "=" + redacted
			}
			parts[i] = k
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	if c.Opaque != "" {
		// "scheme:opaque" URLs have no structure to keep.
		c.Opaque = redacted
	}
	return c.String()
}

// redactPath applies the path part of RedactURL's rule to an escaped path.
func redactPath(host, path string, secretPath bool) string {
	trimmed := strings.Trim(path, "/")
	if trimmed == "" {
		return path
	}
	if secretPath {
		return "/" + redacted
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if secretPathService(strings.ToLower(host), strings.ToLower(path)) {
		if len(segs) > 1 && strings.Join(segs[1:], "") != "" {
			return "/" + segs[0] + "/" + redacted
		}
		return "/" + redacted
	}
	for i, s := range segs {
		if SecretShapedSegment(s) {
			segs[i] = redacted
		}
	}
	return "/" + strings.Join(segs, "/")
}

// secretPathService reports whether host and path (lower case) belong to an
// incoming-webhook service that carries its token in the path: Slack
// (hooks.slack.com), Discord (/api/webhooks/), Microsoft Teams
// (*.webhook.office.com, outlook.office.com/webhook), Zapier
// (hooks.zapier.com), Make (hook.*.make.com, hook.integromat.com) and n8n
// (/webhook/ and /webhook-test/ paths).
func secretPathService(host, path string) bool {
	switch {
	case host == "hooks.slack.com",
		host == "hooks.zapier.com",
		host == "hook.integromat.com",
		strings.HasPrefix(host, "hook.") && strings.HasSuffix(host, ".make.com"),
		strings.HasSuffix(host, ".webhook.office.com"),
		host == "outlook.office.com" || strings.HasSuffix(host, ".office.com") && strings.Contains(path, "/webhook"),
		(host == "discord.com" || host == "discordapp.com" || strings.HasSuffix(host, ".discord.com")) && strings.Contains(path, "/webhooks/"),
		strings.HasPrefix(path, "/webhook/") || strings.HasPrefix(path, "/webhook-test/") ||
			strings.Contains(path, "/webhook/") && strings.Contains(host, "n8n"):
		return true
	}
	return false
}

// SecretShapedSegment reports whether a URL path segment (or query name)
// looks like a webhook token rather than a name. The segment is judged part
// by part: its parts are the runs of token characters [A-Za-z0-9_.~+=-] and
// %-escapes between any other characters (in an escaped path, the
// sub-delimiters :;,!$&'()*@), and it is secret-shaped when any part has
// at least 16 characters mixing letters and digits, or 24 and more mixing
// upper and lower case. So a Telegram bot token
// ("bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw") is one, as a whole,
// while words, numbers, short identifiers and names built of them ("hooks",
// "429", "v1", "2024-01-31T10:00:00Z", "ops@example.com") are not.
func SecretShapedSegment(seg string) bool {
	if len(seg) < 16 {
		return false
	}
	start := 0
	for i := 0; i <= len(seg); i++ {
		if i < len(seg) && tokenChar(seg[i]) {
			continue
		}
		if secretShapedPart(seg[start:i]) {
			return true
		}
		start = i + 1
	}
	return false
}

// tokenChar reports whether c may be part of a token: a letter, a digit,
// one of _.~+=- or the % of an escape.
func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.~+=-%", c) >= 0
}

// secretShapedPart applies SecretShapedSegment's rule to part, a run of
// token characters: at least 16 of them mixing letters and digits, or 24
// mixing upper and lower case.
func secretShapedPart(part string) bool {
	if len(part) < 16 {
		return false
	}
	letters := strings.ContainsFunc(part, func(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' })
	digits := strings.ContainsFunc(part, func(r rune) bool { return '0' <= r && r <= '9' })
	return letters && digits || len(part) >= 24 && mixedCase(part)
}

// mixedCase reports whether s has both upper- and lower-case letters.
func mixedCase(s string) bool {
	return strings.ContainsFunc(s, unicode.IsUpper) && strings.ContainsFunc(s, unicode.IsLower)
}

// RedactedURL returns the webhook's URL as RedactURL shows it, with the
// whole path hidden when SecretPath is set.
func (w Webhook) RedactedURL() string { return redactURL(w.URL, w.SecretPath, true) }

// MarshalJSON writes the trigger as the configuration file spells it, with
// every secret hidden: the webhook as Webhook.MarshalJSON writes it, match,
// project and payload as relaxed Extended JSON, start_at as "now" or an
// RFC 3339 time.
func (t *Trigger) MarshalJSON() ([]byte, error) {
	v := struct {
		Name                     string             `json:"name"`
		Database                 string             `json:"database,omitempty"`
		Collection               string             `json:"collection,omitempty"`
		Operations               []string           `json:"operations"`
		Match                    json.RawMessage    `json:"match,omitempty"`
		Project                  json.RawMessage    `json:"project,omitempty"`
		FullDocument             string             `json:"full_document"`
		FullDocumentBeforeChange string             `json:"full_document_before_change"`
		StartAt                  string             `json:"start_at"`
		Ordering                 Ordering           `json:"ordering"`
		Concurrency              int                `json:"concurrency"`
		MaxInflightBytes         int64              `json:"max_inflight_bytes"`
		Partitions               int                `json:"partitions,omitempty"`
		Enabled                  bool               `json:"enabled"`
		Webhook                  Webhook            `json:"webhook"`
		Retry                    RetryPolicy        `json:"retry"`
		DeadLetter               bool               `json:"dead_letter"`
		PayloadErrors            PayloadErrorPolicy `json:"payload_errors"`
		Circuit                  CircuitPolicy      `json:"circuit"`
		Batch                    *BatchPolicy       `json:"batch,omitempty"`
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
		MaxInflightBytes:         t.MaxInflightBytes,
		Enabled:                  t.Enabled,
		Webhook:                  t.Webhook,
		Retry:                    t.Retry,
		DeadLetter:               t.DeadLetter,
		PayloadErrors:            t.PayloadErrors,
		Circuit:                  t.Circuit,
		Batch:                    t.Batch,
	}
	if !t.StartAt.Now {
		v.StartAt = t.StartAt.Time.Format(time.RFC3339Nano)
	}
	if t.Partitions > 1 {
		// Shown only when partitioned, so that the dump and the cluster's
		// definition hash of an unpartitioned trigger are as before.
		v.Partitions = t.Partitions
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
