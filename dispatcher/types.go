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
// checkpointable token. With triggers.Trigger.Batch the Dispatcher delivers
// batches instead: one signed request carries a JSON array of events, is
// acknowledged (or dead-lettered, event by event) as a whole, and the
// trigger's ordering holds between batches (BatchWebhookID,
// BuildBatchMessage). One-off sends (dead-letter replay, test sends) call a
// Sender directly.
//
// Secrets (signing keys, header values, URL userinfo and query values) never
// appear in errors, logs or metric labels; see triggers.RedactURL.
package dispatcher

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Event is one change event handed to the dispatcher.
type Event struct {
	// Raw is the change event document as the stream returned it.
	Raw bson.Raw
	// Token is the event's _id (its resume token) exactly as the driver
	// returned it; it is never re-encoded.
	Token bson.Raw
	// Key is the ordering key for triggers.PerDocument (DocumentKey of the
	// event's ns and documentKey); NoKey makes the event a barrier under
	// PerDocument (see there). Other orderings ignore it.
	Key Key
	// Received is when the event was read from the stream; the delivery
	// duration is measured from it (zero: from Submit, on the
	// dispatcher's clock).
	Received time.Time
	// Release, for SubmitOwned only (Submit copies and ignores it), is
	// called once the dispatcher no longer refers to Raw and Token: when
	// the watermark has passed the event (it and every earlier event were
	// delivered or dead-lettered), so that the caller may reuse their
	// buffer. It is called at most once, on a dispatcher goroutine with
	// internal locks held: it must not block nor call the Dispatcher. It
	// is not called for an event the watermark never passes (abandoned at
	// shutdown, or held when the dispatcher closes), nor when SubmitOwned
	// returns an error (the caller still owns the bytes).
	Release func()
	// More says that the caller submits another event right after this
	// one (the rest of the same read from the stream). A batched trigger
	// then does not send the batch being filled at once for want of
	// events (nothing in flight, none queued): it waits for the next
	// event, at most batch.max_wait, so that a read's events go in one
	// batch, cut the same way each time the same read is made again.
	More bool
}

// MaxErrorText bounds the text of a failure that is kept or shown: an
// AttemptError's message (which may quote an endpoint's answer: a
// redirect's Location, the names of its TLS certificate, a malformed
// response line) and DeadLetter.LastError. Longer text is cut and marked
// as cut.
const MaxErrorText = 1 << 10

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
	// LastError is the last attempt's error, with secrets redacted, at
	// most MaxErrorText bytes (a longer one is cut and marked so).
	LastError string
	// LastResponse is the last response body, truncated to 4 KiB, with the
	// secrets the request carried masked (triggers.RedactedMask).
	LastResponse string
	// FirstAttemptAt is when the first attempt started.
	FirstAttemptAt time.Time
	// DeadLetteredAt is when the event was given up on.
	DeadLetteredAt time.Time
	// Trimmed says what a sink left out of the dead letter to fit it in
	// one MongoDB document (16 MiB): "" (nothing), TrimmedResponse or
	// TrimmedEvent. Callers leave it empty, except for an event they could
	// not read whole (a change event over 16 MiB that a skip dead-letters:
	// TrimmedEvent with its EventSize); the sink sets it on what it stores.
	Trimmed string
	// EventSize is the size in bytes of the change event as the stream
	// returned it when Trimmed is TrimmedEvent (Event then holds only the
	// event's identity); 0 otherwise.
	EventSize int
	// SkippedBy says who dead-lettered the event with a skip ("cli",
	// "api", …; see runner.Runner.Skip) rather than the dispatcher giving
	// up on it; "" for the dispatcher's own dead letters. Attempts and the
	// Last* fields then still describe the delivery attempts made before
	// the skip; an event that never had one (a change event too large to
	// read) has LastReason "skipped".
	SkippedBy string
}

// DeadLetterSink stores dead letters. PutDeadLetter must be idempotent on
// (Trigger, WebhookID): after a crash the same event may be dead-lettered
// again. A dead letter too large to store whole is stored trimmed (see
// DeadLetter.Trimmed), never refused for its size alone: an error means
// nothing was stored. The dispatcher retries a failing PutDeadLetter (with
// backoff) until it succeeds or the dispatcher is closed; the event is not
// done before that, and the trigger's head of line shows the failure
// (HeadOfLine.DeadLetter). An error wrapping a *DeadLetterStoreError says
// why it failed (its Reason, also the label of
// changehook_dead_letter_store_failures_total); any other counts as
// DeadLetterFailOther.
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
	// Reason is the failure reason of the last attempt ("" on success,
	// ReasonDropped when Dropped).
	Reason string
	// Dropped reports that the endpoint answered a status in retry.drop_on:
	// the delivery succeeded (nil error) without the endpoint accepting the
	// event, and nothing is dead-lettered.
	Dropped bool
	// Body is the last response body, truncated to 4 KiB, with the secrets
	// the request carried masked (triggers.RedactedMask).
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
