package dispatcher

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// What a sink left out of a dead letter that does not fit in one MongoDB
// document (16 MiB), the values of DeadLetter.Trimmed.
const (
	// TrimmedResponse: the last response body was dropped and the last
	// error shortened; the event is whole, so the dead letter replays as
	// any other.
	TrimmedResponse = "response"
	// TrimmedEvent: the event itself did not fit. Only its identity is
	// kept — its _id (the resume token), operationType, clusterTime,
	// wallTime, ns, to, documentKey, txnNumber and lsid — without the
	// change's documents (fullDocument, fullDocumentBeforeChange,
	// updateDescription) or anything else; the response is dropped and
	// the last error shortened too. Such a dead letter says which change
	// failed but cannot be replayed: the change itself is no longer there.
	TrimmedEvent = "event"
)

// EventIdentityFields are the top-level fields of a change event a dead
// letter trimmed to TrimmedEvent keeps, in this order.
var EventIdentityFields = []string{"_id", "operationType", "clusterTime", "wallTime", "ns", "to", "documentKey", "txnNumber", "lsid"}

// Why storing a dead letter failed: the reason label of
// changehook_dead_letter_store_failures_total and
// HeadOfLine.DeadLetter.Reason.
const (
	// DeadLetterFailTooLarge: it does not fit in one document even trimmed
	// to the event's identity (a document key of megabytes).
	DeadLetterFailTooLarge = "too_large"
	// DeadLetterFailUnavailable: the state database did not answer in
	// time or cannot be reached (network, no primary, an election, a
	// shutdown).
	DeadLetterFailUnavailable = "unavailable"
	// DeadLetterFailUnauthorized: changehook's user may not write the
	// dead letters (it needs readWrite on the state database).
	DeadLetterFailUnauthorized = "unauthorized"
	// DeadLetterFailLeaseLost: this cluster member no longer holds the
	// trigger's lease, so another member delivers the event.
	DeadLetterFailLeaseLost = "lease_lost"
	// DeadLetterFailOther: anything else (a document validator on the
	// collection, disk full, …); the error says what.
	DeadLetterFailOther = "other"
)

// DeadLetterFailReasons are the DeadLetterFail* values, every value the
// reason label can take.
var DeadLetterFailReasons = []string{DeadLetterFailTooLarge, DeadLetterFailUnavailable, DeadLetterFailUnauthorized,
	DeadLetterFailLeaseLost, DeadLetterFailOther}

// DeadLetterStoreError is a sink's failure to store a dead letter, with
// its reason (one of DeadLetterFailReasons). Its text is Err's.
type DeadLetterStoreError struct {
	// Reason is why it failed (DeadLetterFail*).
	Reason string
	// Err is the failure.
	Err error
}

// Error returns Err's text.
func (e *DeadLetterStoreError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *DeadLetterStoreError) Unwrap() error { return e.Err }

// DeadLetterFailReason returns why err, a DeadLetterSink's error, failed:
// the Reason of the *DeadLetterStoreError it wraps, DeadLetterFailOther
// when it wraps none (or one with an unknown reason).
func DeadLetterFailReason(err error) string {
	var e *DeadLetterStoreError
	if errors.As(err, &e) && slices.Contains(DeadLetterFailReasons, e.Reason) {
		return e.Reason
	}
	return DeadLetterFailOther
}

// TrimmedNote explains, for people, what was left out of dl to store it
// (see Trimmed) and, when its event was not kept, why it cannot be
// replayed and what delivers the change again; "" when nothing was left
// out.
func (dl DeadLetter) TrimmedNote() string {
	switch dl.Trimmed {
	case TrimmedResponse:
		return "it did not fit whole in a dead letter (a MongoDB document holds at most 16 MiB): stored without the last response body " +
			"and with the last error cut to 1 KiB; the event is whole"
	case TrimmedEvent:
		return fmt.Sprintf("its change event (%s) did not fit in a dead letter (a MongoDB document holds at most 16 MiB): "+
			"only what identifies the change is kept (resume token, operation, namespace, document key and times), not its documents, "+
			"so it cannot be replayed; %s", byteSize(dl.EventSize), dl.RedeliverHint())
	}
	return ""
}

// MaxStreamEventSize is the largest change event a change stream returns
// whole: a BSON document's limit, 16 MiB. A dead letter whose EventSize is
// this or more holds an event the stream returned only in fragments
// (reassembled by the watcher), or one a skip dead-lettered because the
// server could not return it at all.
const MaxStreamEventSize = 16 << 20

// RedeliverHint says how to deliver the change of dl, a dead letter whose
// event was not kept (TrimmedEvent), again: from the oplog with
// `changehook redeliver`, then purge the dead letter. When the event is
// larger than a change stream returns whole (EventSize of
// MaxStreamEventSize or more), a server that splits large events
// ($changeStreamSplitLargeEvent) lets the watcher reassemble it, and on
// one that does not a redeliver would stop at it again: the hint says so,
// and to make the trigger's events smaller first there.
func (dl DeadLetter) RedeliverHint() string {
	cmd := "`changehook redeliver " + dl.Trigger + " --since TIME`, TIME just before the change"
	if t, _, ok := dl.Event.Lookup("clusterTime").TimestampOK(); ok && t != 0 {
		cmd = "`changehook redeliver " + dl.Trigger + " --since " + time.Unix(int64(t), 0).UTC().Format(time.RFC3339) + "` (the change's time)"
	} else if !dl.FirstAttemptAt.IsZero() {
		cmd += " (its delivery was first attempted at " + dl.FirstAttemptAt.UTC().Format(time.RFC3339) + ")"
	}
	first := ""
	if dl.EventSize >= MaxStreamEventSize {
		first = "a change stream returns this change (larger than 16 MiB) only in fragments, which changehook reassembles on MongoDB 7.0 and 6.0.9 and later; " +
			"on an older server a redeliver would stop at it again, so there first give the trigger a `project` that leaves out fullDocument, fullDocumentBeforeChange and updateDescription " +
			"(or drop full_document: updateLookup and the pre-images) and reload; then "
	}
	return fmt.Sprintf("to deliver the change again, %srun %s, which reads it from the oplog while the oplog still holds it "+
		"and delivers it with every later change of the trigger, under the same webhook-ids (or read the document by its key yourself); "+
		"then `changehook dlq purge %s --yes`", first, cmd, dl.WebhookID)
}

// byteSize is n bytes in MiB or KiB, or bytes.
func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
