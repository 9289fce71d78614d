package dispatcher

import (
	"sync"
	"time"
)

// HeadOfLine describes the oldest event a Dispatcher holds that is not yet
// delivered or dead-lettered: the event that holds the trigger's checkpoint
// (under Strict, every later event waits for it too).
type HeadOfLine struct {
	// WebhookID is the webhook-id its requests carry.
	WebhookID string
	// EventID is the event's own webhook-id (WebhookID of its resume
	// token): WebhookID, unless the event is the first of a sealed batch,
	// whose requests carry the batch's id.
	EventID string
	// Events is the number of events WebhookID's requests carry: a sealed
	// batch's, else 1. They are the event and the Events-1 events after it
	// in stream order.
	Events int
	// PartFrom and PartEvents say which of those events the request whose
	// attempts Attempts and the Last* fields describe carries: Events from
	// 0, unless the endpoint refused the batch as too large (413) and it is
	// being sent in parts (each its own request, with its own webhook-id),
	// the events before PartFrom being delivered or dead-lettered already.
	PartFrom, PartEvents int
	// PartWebhookID is the webhook-id of the part's requests while the
	// batch is sent in parts ("" otherwise: the requests carry WebhookID).
	PartWebhookID string
	// Submitted is when it was submitted; its age is now minus Submitted.
	Submitted time.Time
	// Attempts is the number of attempts made so far (0: not yet tried).
	Attempts int
	// LastStatus is the HTTP status of the last attempt (0: no response
	// or no attempt yet).
	LastStatus int
	// LastReason is the failure reason of the last attempt ("" when it
	// succeeded or none was made; see Reason*).
	LastReason string
	// LastError is the last attempt's error (never secrets).
	LastError string
	// LastResponse is the last attempt's response body, truncated to 4
	// KiB, with the secrets the request carried masked
	// (triggers.RedactedMask), as a dead letter keeps it ("" when it had
	// none).
	LastResponse string
	// FirstAttemptAt is when the first of the Attempts started (when the
	// payload first failed to build; zero before any attempt).
	FirstAttemptAt time.Time
	// NextAttemptAt is when the next attempt is due (zero when none is
	// scheduled: the event is being attempted or not yet started, or it
	// waits for the circuit's probe, WaitsForProbe).
	NextAttemptAt time.Time
	// WaitsForProbe is, while the endpoint's circuit is open and another
	// delivery is its probe (CircuitStatus.Probe), that delivery's
	// webhook-id: this one makes no attempt until a probe succeeds and
	// closes the circuit ("" otherwise; when it is the probe itself,
	// Attempts and NextAttemptAt are the probe's).
	WaitsForProbe string
	// Permanent reports that the retry policy judged the last failure
	// permanent (a 4xx other than 408/429, a redirect, a blocked address,
	// a payload error): a trigger without dead letters retries it anyway
	// and cannot get past it until the endpoint or the configuration is
	// fixed, or the event is skipped.
	Permanent bool
	// DeadLetter, when not nil, says the event (or, for a batch, one of
	// its events) was given up on but its dead letter could not be stored
	// yet: the dispatcher keeps trying, and the event holds the
	// checkpoint until it is stored. Attempts and the Last* fields still
	// describe the delivery's last attempt.
	DeadLetter *DeadLetterFailure
}

// DeadLetterFailure is a dead letter the dispatcher could not store yet
// (see DeadLetterSink).
type DeadLetterFailure struct {
	// WebhookID is the dead letter's (its event's own webhook-id).
	WebhookID string
	// Error is the sink's last error.
	Error string
	// Reason is its class, one of DeadLetterFailReasons.
	Reason string
	// Since is when the first try to store it failed; At when the last
	// one did.
	Since, At time.Time
	// Tries is the number of failed tries.
	Tries int
	// NextTryAt is when it is tried again.
	NextTryAt time.Time
	// EventTime is the event's clusterTime (zero when it has none).
	EventTime time.Time
}

// progress is a delivery's state as its attempts go by, shared between the
// delivering worker and HeadOfLine.
type progress struct {
	mu   sync.Mutex
	hol  HeadOfLine
	fail *failTrack // the dispatcher's FailingSince (nil: none)
}

// failTrack is a dispatcher's FailingSince.
type failTrack struct {
	mu    sync.Mutex
	since time.Time
	clock Clock
}

// note keeps since: a failure starts it, a success (or an acknowledged
// drop) clears it.
func (f *failTrack) note(failed bool) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case !failed:
		f.since = time.Time{}
	case f.since.IsZero():
		f.since = f.clock.Now()
	}
}

// attempted records an attempt; next is when the following one is due
// (zero: none is scheduled). An attempt Close cut off (ReasonCanceled)
// records nothing: the fields go on describing the last attempt that
// ended, which is what a skip of the held event dead-letters it with.
func (p *progress) attempted(at Attempt, permanent bool, next time.Time) {
	if p == nil || at.Reason == ReasonCanceled {
		return
	}
	p.fail.note(at.Err != nil && at.Reason != ReasonDropped)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hol.Attempts = at.Number
	if p.hol.FirstAttemptAt.IsZero() {
		p.hol.FirstAttemptAt = at.Start
	}
	p.hol.LastStatus, p.hol.LastReason, p.hol.LastError, p.hol.LastResponse = at.Status, at.Reason, "", at.Body
	if at.Err != nil {
		p.hol.LastError = at.Err.Error()
	}
	p.hol.Permanent = permanent && at.Err != nil
	p.hol.NextAttemptAt = next
}

// failedPayload records a payload that could not be built at now; next is
// when it is built again (zero: never).
func (p *progress) failedPayload(err error, now, next time.Time) {
	if p == nil {
		return
	}
	p.fail.note(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hol.FirstAttemptAt.IsZero() {
		p.hol.FirstAttemptAt = now
	}
	p.hol.LastStatus, p.hol.LastReason, p.hol.LastError, p.hol.LastResponse = 0, ReasonPayload, err.Error(), ""
	p.hol.Permanent, p.hol.NextAttemptAt = true, next
}

// deadLetterFailed records a failed try to store the dead letter dl
// (reason its class, next when it is tried again).
func (p *progress) deadLetterFailed(dl DeadLetter, err error, reason string, now, next time.Time) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.hol.DeadLetter
	if f == nil || f.WebhookID != dl.WebhookID {
		f = &DeadLetterFailure{WebhookID: dl.WebhookID, Since: now}
		if t, _, ok := dl.Event.Lookup("clusterTime").TimestampOK(); ok && t != 0 {
			f.EventTime = time.Unix(int64(t), 0).UTC()
		}
	} else {
		c := *f // snapshots share the old one
		f = &c
	}
	f.Error, f.Reason, f.At, f.NextTryAt = err.Error(), reason, now, next
	f.Tries++
	p.hol.DeadLetter = f
}

// deadLetterStored records that the dead letter whose store failed
// before is stored.
func (p *progress) deadLetterStored() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hol.DeadLetter = nil
}

// part records that the request of a batch's events from..from+n-1, with
// webhook-id id, is to be attempted next: a part of a batch the endpoint
// refused as too large, after the parts before it are done. Its attempts
// start afresh: the fields describing the last attempt are cleared.
func (p *progress) part(from, n int, id string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hol.PartFrom, p.hol.PartEvents, p.hol.PartWebhookID = from, n, id
	p.hol.Attempts, p.hol.LastStatus, p.hol.LastReason, p.hol.LastError, p.hol.LastResponse = 0, 0, "", "", ""
	p.hol.FirstAttemptAt, p.hol.Permanent, p.hol.NextAttemptAt = time.Time{}, false, time.Time{}
}

// snapshot returns a copy of the progress (zero for nil: no attempt yet).
func (p *progress) snapshot() HeadOfLine {
	if p == nil {
		return HeadOfLine{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hol
}

// HeadOfLine returns the oldest held event that is neither delivered nor
// dead-lettered, ok false when the dispatcher holds none. It is cheap (no
// scan: the tracker keeps its held events in stream order) and safe for
// concurrent use.
func (d *Dispatcher) HeadOfLine() (h HeadOfLine, ok bool) {
	probeID, probe := d.circuit.probing()
	// Read under the tracker's lock: once the event is passed, its bytes
	// may be reused (Event.Release).
	ok = d.tracker.withOldest(func(j *job) {
		h = j.prog.snapshot()
		if probeID != "" && (j.prog == nil || j.prog != probe) {
			// Not the probe: it waits at the circuit's gate, and a retry
			// it had scheduled waits too (Sender.heldByCircuit).
			h.WaitsForProbe, h.NextAttemptAt = probeID, time.Time{}
		}
		h.EventID = WebhookID(d.trigger, j.ev.Token)
		if h.WebhookID == "" {
			// Not the first event of a sealed batch (whose progress
			// carries the batch's id): the event's own.
			h.WebhookID = h.EventID
		}
		h.Submitted = j.ev.Received
		if h.Events == 0 {
			h.Events = 1
		}
		if h.PartEvents == 0 {
			h.PartFrom, h.PartEvents = 0, h.Events
		}
	})
	return h, ok
}

// FailingSince returns when the trigger's deliveries started failing: the
// first failed attempt since the last successful one (zero while the last
// attempt succeeded, or none failed).
func (d *Dispatcher) FailingSince() time.Time {
	d.fail.mu.Lock()
	defer d.fail.mu.Unlock()
	return d.fail.since
}
