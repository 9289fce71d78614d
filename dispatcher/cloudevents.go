package dispatcher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// CloudEvents content types.
const (
	// ContentTypeCloudEventsJSON is the Content-Type of a structured
	// CloudEvents message in the JSON event format.
	ContentTypeCloudEventsJSON = "application/cloudevents+json"
	// ceSpecVersion is the CloudEvents specification version sent.
	ceSpecVersion = "1.0"
)

// Message is the HTTP request one event becomes, apart from the headers
// every request of the trigger carries and the per-attempt
// webhook-timestamp and webhook-signature.
type Message struct {
	// ID is the webhook-id (and, with a CloudEvents format, the event's id).
	ID string
	// Body is the exact request body (what is signed).
	Body []byte
	// Header holds the message's own headers, which win over the
	// trigger's: the ce-* attributes of the cloudevents-binary format, a
	// batch's Content-Type; nil otherwise.
	Header http.Header
}

// CloudEventAttributes are the context attributes changehook gives a change
// event (CloudEvents 1.0). Optional attributes are "" when the event lacks
// what they come from.
type CloudEventAttributes struct {
	// ID is the webhook-id: unique per trigger and event, stable across
	// retries and redeliveries.
	ID string
	// Source is the event's namespace as a URI reference: "/db/coll",
	// "/db" for database-level events, "/" when the event has no ns (each
	// segment percent-encoded).
	Source string
	// Type is webhook.cloudevents.type, or "com.changehook." + the
	// operationType.
	Type string
	// Time is wallTime (millisecond precision) or else clusterTime (second
	// precision), RFC 3339 in UTC; "" when the event has neither.
	Time string
	// Subject is the documentKey as relaxed Extended JSON; "" for events
	// without one.
	Subject string
}

// CloudEventAttributesOf returns the attributes of the change event raw,
// delivered with webhook id by a webhook configured as w.
func CloudEventAttributesOf(w *triggers.Webhook, id string, raw bson.Raw) CloudEventAttributes {
	a := CloudEventAttributes{ID: id, Source: "/"}
	op, _ := raw.Lookup("operationType").StringValueOK()
	if w.CloudEvents != nil && w.CloudEvents.Type != "" {
		a.Type = w.CloudEvents.Type
	} else if op != "" {
		a.Type = triggers.DefaultCloudEventsTypePrefix + op
	} else {
		a.Type = triggers.DefaultCloudEventsTypePrefix + "change"
	}
	if ns, ok := raw.Lookup("ns").DocumentOK(); ok {
		var b strings.Builder
		for _, k := range []string{"db", "coll"} {
			if s, ok := ns.Lookup(k).StringValueOK(); ok {
				b.WriteByte('/')
				b.WriteString(url.PathEscape(s))
			}
		}
		if b.Len() > 0 {
			a.Source = b.String()
		}
	}
	if dt, ok := raw.Lookup("wallTime").DateTimeOK(); ok {
		a.Time = time.UnixMilli(dt).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	} else if t, _, ok := raw.Lookup("clusterTime").TimestampOK(); ok {
		a.Time = time.Unix(int64(t), 0).UTC().Format(time.RFC3339)
	}
	if dk, ok := raw.Lookup("documentKey").DocumentOK(); ok {
		if out, err := marshalExtJSON(dk, false); err == nil {
			a.Subject = string(out)
		}
	}
	return a
}

// BuildMessage returns the request that event ev of trigger becomes with
// webhook w: the payload (BuildPayload), for the cloudevents format wrapped
// in a structured CloudEvent, for cloudevents-binary with the ce-*
// headers. Its errors are BuildPayload's.
func BuildMessage(trigger string, w triggers.Webhook, ev Event) (Message, error) {
	id := WebhookID(trigger, ev.Token)
	payload, err := BuildPayload(w, ev)
	if err != nil {
		return Message{ID: id}, err
	}
	return wrapMessage(&w, id, ev.Raw, payload)
}

// wrapMessage applies w's CloudEvents format to payload.
func wrapMessage(w *triggers.Webhook, id string, raw bson.Raw, payload []byte) (Message, error) {
	m := Message{ID: id, Body: payload}
	switch w.Format {
	case triggers.FormatCloudEvents:
		a := CloudEventAttributesOf(w, id, raw)
		body, err := structuredCloudEvent(a, payload)
		if err != nil {
			return m, fmt.Errorf("build payload: encode CloudEvent: %w", err)
		}
		m.Body = body
	case triggers.FormatCloudEventsBinary:
		a := CloudEventAttributesOf(w, id, raw)
		h := make(http.Header, 6)
		h["Ce-Specversion"] = []string{ceSpecVersion}
		h["Ce-Id"] = []string{ceHeaderValue(a.ID)}
		h["Ce-Source"] = []string{ceHeaderValue(a.Source)}
		h["Ce-Type"] = []string{ceHeaderValue(a.Type)}
		if a.Time != "" {
			h["Ce-Time"] = []string{a.Time}
		}
		if a.Subject != "" {
			h["Ce-Subject"] = []string{ceHeaderValue(a.Subject)}
		}
		m.Header = h
	}
	return m, nil
}

// structuredCloudEvent encodes a CloudEvent in the JSON event format with
// payload (a JSON document) as its data.
func structuredCloudEvent(a CloudEventAttributes, payload []byte) ([]byte, error) {
	ev := struct {
		SpecVersion     string          `json:"specversion"`
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Type            string          `json:"type"`
		DataContentType string          `json:"datacontenttype"`
		Time            string          `json:"time,omitempty"`
		Subject         string          `json:"subject,omitempty"`
		Data            json.RawMessage `json:"data"`
	}{ceSpecVersion, a.ID, a.Source, a.Type, "application/json", a.Time, a.Subject, payload}
	var buf bytes.Buffer
	buf.Grow(len(payload) + 256)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ceHeaderValue percent-encodes a string attribute for a ce-* header, as
// the CloudEvents HTTP binding (1.0.2, 3.1.3.2) requires: space, double
// quote, percent and every byte outside printable ASCII (UTF-8 encoded
// first).
func ceHeaderValue(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == '%' || c > '~' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '"' || c == '%' || c > '~' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}
