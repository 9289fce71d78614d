package triggers

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Bounds and defaults of the batch section.
const (
	// MinBatchEvents is the smallest batch.max_events accepted: a batch of
	// one is an unbatched delivery, which is what omitting batch gives.
	MinBatchEvents = 2
	// MaxBatchEvents bounds batch.max_events: a batched trigger holds at
	// most 2·MaxConcurrency events, as many as the largest unbatched one.
	MaxBatchEvents = 1000
	// DefaultBatchMaxBytes is batch.max_bytes when omitted (1 MiB).
	DefaultBatchMaxBytes int64 = 1 << 20
	// DefaultBatchMaxWait is batch.max_wait when omitted.
	DefaultBatchMaxWait = 100 * time.Millisecond
	// MinBatchMaxWait and MaxBatchMaxWait bound batch.max_wait.
	MinBatchMaxWait = time.Millisecond
	MaxBatchMaxWait = time.Hour
)

// BatchPolicy is a trigger's batch section: several events delivered in one
// signed request whose body is a JSON array of what one unbatched request
// would carry (the event, or the webhook.payload result; with format
// cloudevents, structured CloudEvents in the batched content mode,
// application/cloudevents-batch+json). A batch is acknowledged as a whole:
// the checkpoint passes its events only when the endpoint accepted the
// request, and a batch given up on is dead-lettered as its events, one dead
// letter per event; a batch refused as too large (413) is sent again in
// halves instead, so only an event refused alone is given up on. Orderings
// hold across batches: strict sends one batch at a time, in stream order;
// per_document never sends a batch while an earlier unacknowledged batch
// holds an event of the same document; none sends up to concurrency
// batches at once.
type BatchPolicy struct {
	// MaxEvents is the largest number of events in one request
	// (MinBatchEvents to MaxBatchEvents; required).
	MaxEvents int `json:"max_events"`
	// MaxBytes is the largest request body in bytes (default
	// DefaultBatchMaxBytes, at most the trigger's max_inflight_bytes): a
	// batch is closed before an event that would take it over. One event
	// larger than MaxBytes is sent alone, in a batch of one.
	MaxBytes int64 `json:"max_bytes"`
	// MaxWait is how long a batch that is not full waits for more events
	// while earlier batches are in flight (default DefaultBatchMaxWait). A
	// batch is sent at once, full or not, when no other batch of the
	// trigger is in flight (once it holds the events read from the stream
	// with its last one), so a quiet trigger's events are not delayed.
	MaxWait time.Duration `json:"max_wait"`
}

// MarshalJSON writes max_wait as a Go duration string ("100ms").
func (b BatchPolicy) MarshalJSON() ([]byte, error) {
	return marshalJSON(struct {
		MaxEvents int    `json:"max_events"`
		MaxBytes  int64  `json:"max_bytes"`
		MaxWait   string `json:"max_wait"`
	}{b.MaxEvents, b.MaxBytes, b.MaxWait.String()})
}

// batch decodes the batch section (the trigger's fields over the defaults
// section's; a trigger's "batch: ~" turns a defaulted batch off). It returns
// nil when neither sets it. at is the trigger and name its name, for
// errors about a batch inherited from defaults.
func (d *decoder) batch(own, def entry, at *yaml.Node, name string, defaultsOnly bool, maxInflight int64) *BatchPolicy {
	if own.set() {
		if v := deref(own.val); v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
			return nil
		}
	}
	if !own.set() && !def.set() {
		return nil
	}
	known := []string{"max_events", "max_bytes", "max_wait"}
	for _, e := range []entry{def, own} {
		if v := deref(e.val); e.set() && v.Kind != yaml.MappingNode {
			d.fields(v, "batch", known) // reports "expected a mapping"
			return nil
		}
	}
	f := d.mergedFields(own, def, "batch", known)
	b := &BatchPolicy{
		MaxEvents: d.integer(f["max_events"], "batch.max_events", MinBatchEvents, MinBatchEvents, MaxBatchEvents),
		MaxBytes:  d.byteSize(f["max_bytes"], "batch.max_bytes", DefaultBatchMaxBytes),
		MaxWait:   d.durationIn(f["max_wait"], "batch.max_wait", DefaultBatchMaxWait, MinBatchMaxWait, MaxBatchMaxWait),
	}
	if !f["max_events"].set() && !defaultsOnly {
		n := at
		if e := own; e.set() {
			n = deref(e.val)
		}
		d.errorf(n, "batch: missing field \"max_events\" (the most events in one request, %d to %d)", MinBatchEvents, MaxBatchEvents)
	}
	if !defaultsOnly && b.MaxBytes > maxInflight {
		// At the trigger's own max_bytes when it sets one; else at the
		// trigger, named: the defaults section's value may suit its other
		// triggers, and with many of them its line would not say which.
		n, from, whose := at, " (default)", fmt.Sprintf("trigger %q's", name)
		switch {
		case own.set() && ownFieldSet(own, "max_bytes"):
			n, from, whose = deref(f["max_bytes"].val), "", "the trigger's"
		case f["max_bytes"].set():
			from = " (from defaults)"
		}
		d.errorf(n, "batch.max_bytes: %d bytes%s is more than %s max_inflight_bytes (%d): a batch could never fill; "+
			"lower batch.max_bytes or raise max_inflight_bytes", b.MaxBytes, from, whose, maxInflight)
	}
	return b
}

// checkBatch reports a batch on a cloudevents-binary webhook, which carries
// one event per request (its attributes are headers). at is the trigger.
func (d *decoder) checkBatch(t *Trigger, own map[string]entry, at *yaml.Node) {
	if t.Batch == nil {
		return
	}
	n, from := at, " (from defaults)"
	if e := own["batch"]; e.set() {
		n, from = deref(e.val), ""
	}
	if t.Webhook.Format == FormatCloudEventsBinary {
		d.errorf(n, "batch%s: the cloudevents-binary format carries one event per request (its attributes are headers); "+
			"use format: cloudevents, whose batches are sent as application/cloudevents-batch+json, or remove batch", from)
	}
}

// ownFieldSet reports whether the mapping e sets key (as the last of its
// keys of that name would).
func ownFieldSet(e entry, key string) bool {
	v := deref(e.val)
	if v == nil || v.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		if v.Content[i].Value == key {
			return true
		}
	}
	return false
}
