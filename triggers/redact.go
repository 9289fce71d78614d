package triggers

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
)

// RedactedMask is the mask that replaces secret values in redacted views.
const RedactedMask = "[redacted]"

// ConfigView is a configuration with every secret masked, safe to log and to
// serve from /api. It marshals to JSON.
type ConfigView struct {
	Path     string        `json:"path"`
	MongoDB  MongoDBConfig `json:"mongodb"`
	State    StateConfig   `json:"state"`
	Admin    AdminConfig   `json:"admin"`
	Log      LogConfig     `json:"log"`
	Triggers []TriggerView `json:"triggers"`
}

// TriggerView is a trigger with every secret masked: the webhook URL without
// password and query values, header values and signing keys replaced by
// RedactedMask. Match, Project and Payload are relaxed Extended JSON.
type TriggerView struct {
	Name                     string          `json:"name"`
	Database                 string          `json:"database,omitempty"`
	Collection               string          `json:"collection,omitempty"`
	Operations               []string        `json:"operations"`
	Match                    json.RawMessage `json:"match,omitempty"`
	Project                  json.RawMessage `json:"project,omitempty"`
	FullDocument             string          `json:"full_document"`
	FullDocumentBeforeChange string          `json:"full_document_before_change"`
	StartAt                  string          `json:"start_at"`
	Ordering                 string          `json:"ordering"`
	Concurrency              int             `json:"concurrency"`
	Enabled                  bool            `json:"enabled"`
	Webhook                  WebhookView     `json:"webhook"`
	Retry                    RetryView       `json:"retry"`
	DeadLetter               bool            `json:"dead_letter"`
}

// WebhookView is the masked webhook section of a TriggerView.
type WebhookView struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers,omitempty"`
	Secrets []string          `json:"secrets,omitempty"`
	Timeout string            `json:"timeout"`
	Format  string            `json:"format"`
	Payload json.RawMessage   `json:"payload,omitempty"`
}

// RetryView is the retry section of a TriggerView.
type RetryView struct {
	MaxAttempts    int    `json:"max_attempts"`
	InitialBackoff string `json:"initial_backoff"`
	MaxBackoff     string `json:"max_backoff"`
}

// Redacted returns c with every secret masked (see ConfigView).
func (c *Config) Redacted() ConfigView {
	v := ConfigView{
		Path:     c.Path,
		MongoDB:  MongoDBConfig{URI: RedactURI(c.MongoDB.URI)},
		State:    c.State,
		Admin:    c.Admin,
		Log:      c.Log,
		Triggers: make([]TriggerView, 0, len(c.Triggers)),
	}
	for _, t := range c.Triggers {
		v.Triggers = append(v.Triggers, t.Redacted())
	}
	return v
}

// Redacted returns t with every secret masked (see TriggerView).
func (t *Trigger) Redacted() TriggerView {
	v := TriggerView{
		Name:                     t.Name,
		Database:                 t.Database,
		Collection:               t.Collection,
		Operations:               slices.Clone(t.Operations),
		Match:                    extJSONDoc(t.Match),
		Project:                  extJSONDoc(t.Project),
		FullDocument:             string(t.FullDocument),
		FullDocumentBeforeChange: string(t.FullDocumentBeforeChange),
		StartAt:                  "now",
		Ordering:                 string(t.Ordering),
		Concurrency:              t.Concurrency,
		Enabled:                  t.Enabled,
		Webhook: WebhookView{
			URL:     RedactURL(t.Webhook.URL),
			Method:  t.Webhook.Method,
			Timeout: t.Webhook.Timeout.String(),
			Format:  t.Webhook.Format,
		},
		Retry: RetryView{
			MaxAttempts:    t.Retry.MaxAttempts,
			InitialBackoff: t.Retry.InitialBackoff.String(),
			MaxBackoff:     t.Retry.MaxBackoff.String(),
		},
		DeadLetter: t.DeadLetter,
	}
	if !t.StartAt.Now {
		v.StartAt = t.StartAt.Time.Format(time.RFC3339Nano)
	}
	if len(t.Webhook.Headers) > 0 {
		v.Webhook.Headers = make(map[string]string, len(t.Webhook.Headers))
		for k := range t.Webhook.Headers {
			v.Webhook.Headers[k] = RedactedMask
		}
	}
	for range t.Webhook.Secrets {
		v.Webhook.Secrets = append(v.Webhook.Secrets, RedactedMask)
	}
	if t.Webhook.PayloadSpec != nil {
		v.Webhook.Payload = extJSONValue(t.Webhook.PayloadSpec)
	}
	return v
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

// RedactURL is dispatcher.RedactURL: userinfo, query values and every path
// segment after the first are masked, so API output and logs show where a
// trigger posts without its token.
func RedactURL(raw string) string { return dispatcher.RedactURL(raw) }

// String describes the webhook without secrets (URL redacted, header values
// and keys masked), so that printing a Trigger with %v cannot leak them.
func (w Webhook) String() string {
	return fmt.Sprintf("{%s %s headers:%d secrets:%d timeout:%s format:%s}",
		w.Method, RedactURL(w.URL), len(w.Headers), len(w.Secrets), w.Timeout, w.Format)
}

// String returns the connection string with its password masked.
func (m MongoDBConfig) String() string { return RedactURI(m.URI) }
