// Package dispatcher delivers change events to a trigger's webhook.
//
// It has two small parts. A Sender delivers one event, in the style of
// Alertmanager's notify package: build the payload (BuildPayload), sign it
// (Standard Webhooks v1), make one attempt (SendOnce, which answers "retry?"
// and the failure), and a retry stage (Deliver) driven by two small
// swappable policies in go-retryablehttp's style, CheckRetry and Backoff
// (exponential backoff with full jitter, honouring Retry-After), with an
// injectable Clock for the waits; the outcome is a Result. A Tracker is an
// ordered-acknowledgement tracker after redpanda connect's
// checkpoint.Capped: it admits events in stream order with bounded capacity
// (backpressure), starts them according to the trigger's Ordering, and keeps
// the low-water mark, the newest resume token that is safe to checkpoint.
//
// A Dispatcher is the worker pool that combines them for the watch loop:
// Submit accepts events in stream order, at most Concurrency deliveries are
// in flight with a small bounded queue behind them, failures are
// dead-lettered or retried until they succeed, and Watermark reports the
// checkpointable token. One-off sends (dead-letter replay, test sends) call
// a Sender directly.
//
// Secrets (signing keys, header values, URL userinfo and query values) never
// appear in errors, logs or metric labels; see RedactURL.
package dispatcher

import (
	"context"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Ordering selects the delivery order guarantee of a trigger.
type Ordering string

const (
	// Strict delivers one event at a time, in stream order.
	Strict Ordering = "strict"
	// PerDocument delivers events with the same Event.Key in stream order;
	// events with different keys go in parallel up to Config.Concurrency.
	// An event with an empty key (a collection-level event such as drop,
	// rename or dropDatabase) is a barrier: it is delivered after every
	// earlier event is done, and later events wait until it is done.
	PerDocument Ordering = "per_document"
	// None delivers events in parallel up to Config.Concurrency, in no
	// particular order.
	None Ordering = "none"
)

// Valid reports whether o is one of Strict, PerDocument and None.
func (o Ordering) Valid() bool {
	switch o {
	case Strict, PerDocument, None:
		return true
	}
	return false
}

// RetryPolicy bounds the attempts made for one event.
//
// The wait before retry n (n = 0 for the first retry) is drawn uniformly from
// [0, min(MaxBackoff, InitialBackoff·2ⁿ)] ("full jitter"). When the failed
// response carries a Retry-After header (delta-seconds or HTTP-date), that
// delay is used instead of the jittered one, capped at MaxBackoff so that an
// endpoint cannot stall a trigger for longer than the operator allowed.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, including the first.
	// Values below 1 mean 1. Ignored when Config.DeadLetter is false
	// (deliveries are then retried until they succeed).
	MaxAttempts int
	// InitialBackoff is the base of the exponential backoff (default 500ms).
	InitialBackoff time.Duration
	// MaxBackoff caps every wait, Retry-After included (default 1m).
	MaxBackoff time.Duration
}

// Webhook describes the endpoint of a trigger and how its requests are built.
type Webhook struct {
	// URL is the absolute http or https endpoint.
	URL string
	// Method is the HTTP method (default POST).
	Method string
	// Headers are sent with every request. They may not set the reserved
	// headers Content-Type, webhook-id, webhook-timestamp, webhook-signature
	// and X-Changehook-Trigger. Their values are treated as secrets.
	Headers map[string]string
	// Secrets are Standard Webhooks signing keys ("whsec_" + base64). With
	// several keys (rotation) every request carries one signature per key.
	// No secret: no webhook-signature header.
	Secrets []string
	// Timeout bounds each attempt, response body included (default 10s).
	Timeout time.Duration
	// Format is "json" (relaxed Extended JSON, the default) or "canonical"
	// (canonical Extended JSON).
	Format string
	// Payload, when set, is evaluated on the change event and its result
	// (which must be a document) is sent instead of the whole event.
	Payload *mql.Expr
}

// Config is the delivery configuration of one trigger.
type Config struct {
	// Trigger is the trigger name: a metric label, a log attribute, the
	// X-Changehook-Trigger header and part of every webhook id.
	Trigger string
	// Webhook is the endpoint.
	Webhook Webhook
	// Retry is the retry policy.
	Retry RetryPolicy
	// DeadLetter true: an event that fails permanently (a 4xx other than
	// 408/429, a redirect) or exhausts Retry.MaxAttempts is handed to the
	// DeadLetterSink and counts as done. False: every failure is retried with
	// capped backoff until it succeeds; the event is never skipped, so it
	// blocks the trigger (Strict) or its key (PerDocument).
	DeadLetter bool
	// Ordering is the ordering guarantee (default Strict).
	Ordering Ordering
	// Concurrency is the maximum number of deliveries in flight for
	// PerDocument and None (default 1; Strict always uses 1).
	Concurrency int
	// UserAgent is the User-Agent header (default "changehook/<module version>").
	UserAgent string
}

// Event is one change event handed to the dispatcher.
type Event struct {
	// Raw is the change event document as the stream returned it.
	Raw bson.Raw
	// Token is the event's _id (its resume token) exactly as the driver
	// returned it; it is never re-encoded.
	Token bson.Raw
	// Key is the ordering key for PerDocument (the canonical documentKey
	// bytes); "" makes the event a barrier under PerDocument (see there).
	Key string
}

// DeadLetter records an event that could not be delivered.
type DeadLetter struct {
	// Trigger is the trigger name.
	Trigger string
	// WebhookID is the webhook-id the deliveries carried.
	WebhookID string
	// Event is the change event as the stream returned it.
	Event bson.Raw
	// Token is the event's resume token as the driver returned it.
	Token bson.Raw
	// Attempts is the number of attempts made.
	Attempts int
	// LastStatus is the HTTP status of the last attempt (0: no response).
	LastStatus int
	// LastReason is the failure reason of the last attempt (see Reason*).
	LastReason string
	// LastError is the last attempt's error, with secrets redacted.
	LastError string
	// LastResponse is the last response body, truncated to 4 KiB.
	LastResponse string
	// FirstAttemptAt is when the first attempt started.
	FirstAttemptAt time.Time
	// DeadLetteredAt is when the event was given up on.
	DeadLetteredAt time.Time
}

// DeadLetterSink stores dead letters. PutDeadLetter must be idempotent on
// (Trigger, WebhookID): after a crash the same event may be dead-lettered
// again. The dispatcher retries a failing PutDeadLetter (with backoff) until it
// succeeds or the dispatcher is closed; the event is not done before that.
type DeadLetterSink interface {
	PutDeadLetter(ctx context.Context, dl DeadLetter) error
}

// Result describes the outcome of Sender.Deliver.
type Result struct {
	// WebhookID is the webhook-id the requests carried.
	WebhookID string
	// Attempts is the number of attempts made.
	Attempts int
	// Status is the HTTP status of the last attempt (0: no response).
	Status int
	// Reason is the failure reason of the last attempt ("" on success).
	Reason string
	// Body is the last response body, truncated to 4 KiB.
	Body string
	// FirstAttemptAt is when the first attempt started (when the payload
	// failed, when it was given up on).
	FirstAttemptAt time.Time
	// Latency is the time from the first attempt's start to the end of the
	// last one, backoff waits included.
	Latency time.Duration
}

// Clock is the dispatcher's source of time: the webhook-timestamp, the
// metrics and the waits between attempts. Tests inject a fake one so that no
// test really sleeps through a backoff.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, in which case it returns
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// SystemClock is the Clock backed by the time package.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Sleep waits for d or for ctx to be done, whichever comes first.
func (SystemClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
