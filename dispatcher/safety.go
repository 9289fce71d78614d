package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// WithPayloadErrorPause sets the function a Dispatcher calls, once, when its
// trigger's payload_errors.max_consecutive is reached (see
// triggers.PayloadErrorPolicy): the runner pauses the trigger with
// Runner.Pause(name, reason, "payload_errors"). reason names the limit and
// the last payload error. f is called on a delivering goroutine and must not
// block. Without it (or with max_consecutive 0) payload errors never pause:
// they are dead-lettered, or retried every retry.max_backoff without dead
// letters. Only New uses it.
func WithPayloadErrorPause(f func(reason string)) Option {
	return func(o *options) { o.payloadPause = f }
}

// payloadGuard counts a dispatcher's consecutive payload errors and halts it
// when they reach the limit.
type payloadGuard struct {
	max    int          // payload_errors.max_consecutive (0: never halts)
	pause  func(string) // WithPayloadErrorPause (nil: never halts)
	streak atomic.Int64 // consecutive payload errors
	halted atomic.Bool  // the limit was reached: nothing more is delivered
}

// enabled reports whether payload errors can halt the dispatcher.
func (g *payloadGuard) enabled() bool { return g.max > 0 && g.pause != nil }

// Circuit returns a snapshot of the trigger's endpoint circuit; ok is false
// when the trigger's circuit section cannot open it.
func (d *Dispatcher) Circuit() (st CircuitStatus, ok bool) {
	if d.circuit == nil {
		return CircuitStatus{}, false
	}
	return d.circuit.status(), true
}

// Halted reports whether payload errors reached payload_errors.max_consecutive:
// the dispatcher then delivers nothing more (every held event stays
// undone, so the checkpoint does not pass it) until it is replaced.
func (d *Dispatcher) Halted() bool { return d.payload.halted.Load() }

// deliverGuarded delivers j's event under the payload-error pause and the
// circuit breaker. held reports that the event must stay undone (not
// delivered, not dead-lettered): the dispatcher halted on payload errors.
// Otherwise res and err are the delivery's outcome, as Deliver (with dead
// letters) or DeliverUntilSuccess (without) report it: a failure returned
// here is dead-lettered by the caller. While the circuit is open the event
// is never returned as failed: it waits at the gate, or is the probe. A
// round of attempts held at the gate goes on, once the circuit closes,
// with the attempts retry.max_attempts leaves it and no sooner than its
// backoff let it (see rounds).
func (d *Dispatcher) deliverGuarded(ctx context.Context, j job) (res Result, err error, held bool) {
	forever := !d.deadLetter
	var rs rounds
	for {
		if d.payload.halted.Load() {
			return Result{}, nil, true
		}
		if gerr := d.circuit.gate(ctx); gerr != nil {
			return Result{WebhookID: WebhookID(d.trigger, j.ev.Token), Reason: ReasonCanceled}, fmt.Errorf("wait for the circuit to close: %w", gerr), false
		}
		if rs.done {
			return res, err, false // dead-lettered by the caller, now that the circuit is closed
		}
		if waited, werr := d.awaitDue(ctx, j.prog, &rs); werr != nil {
			res.Reason = ReasonCanceled
			return res, fmt.Errorf("deliver %s: %w", res.WebhookID, werr), false
		} else if waited {
			continue // the circuit may have opened meanwhile: back to its gate
		}
		// Bounded rounds when something must see each failure: a payload
		// error that may pause, or a circuit that counts failed deliveries
		// (without dead letters a round is retry.max_attempts attempts).
		bounded := !forever || d.circuit != nil
		payloadForever := forever && !d.payload.enabled()
		// Numbered on from the previous rounds' attempts (res), the
		// current round's among them.
		var r roundResult
		r, err = d.sender.deliver(ctx, j.ev, forever && !bounded, payloadForever, j.prog, res, res.Attempts-rs.start)
		res = r.Result
		switch {
		case err == nil:
			d.payload.streak.Store(0)
			d.circuit.succeeded()
			return res, nil, false
		case res.Reason == ReasonCanceled || ctx.Err() != nil:
			return res, err, false
		case errors.Is(err, errCircuitHeld):
			d.hold(&rs, r)
			continue // another delivery opened the circuit: wait at its gate
		case res.Reason == ReasonPayload:
			if d.payloadError(ctx, err) {
				return res, err, true
			}
			return res, err, false // dead-lettered by the caller
		}
		d.payload.streak.Store(0)
		if d.circuit.failed(res.Status, err.Error(), res.WebhookID, j.prog, d.sender.retryAfter(r.resp)) {
			return d.probe(ctx, j, res, err)
		}
		if d.circuit.open() || errors.Is(err, errOpensCircuit) {
			// Opened by another delivery: hold this one, redeliver after
			// the circuit closes. (A round an open_on status ended whose
			// circuit another delivery's probe closed meanwhile goes on.)
			d.hold(&rs, r)
			continue
		}
		if !forever {
			return res, err, false
		}
		// Without dead letters: the next round after a backoff, which the
		// last answer's Retry-After may lengthen.
		rs.next(d, res.Attempts, r.resp)
	}
}

// rounds is where a delivery's rounds of attempts stand between two runs
// of the retry stage (deliverGuarded, deliverBatchGuarded). A round held
// at the open circuit, another delivery's failure having opened it, goes
// on once the circuit closes with the attempts retry.max_attempts leaves
// it (with dead letters an event is never sent more than
// retry.max_attempts times, a probe aside), and not before the backoff,
// lengthened by Retry-After, that its last attempt was due to wait. A
// round that ended while the circuit was open (its last attempt failed,
// or failed permanently) has no attempt left: with dead letters the
// delivery is done once the circuit closes, without another request;
// without, a new round begins once the wait between rounds is over.
type rounds struct {
	start int       // res.Attempts when the current round began
	ended int       // the rounds ended so far: the exponent of the next wait between rounds
	done  bool      // with dead letters, the round ended while the circuit was open
	due   time.Time // when the next attempt may be sent (zero: at once)
}

// hold records that the round r was cut short, or ended, while the
// circuit was open (or, for a round open_on cut short, while another
// delivery's probe closed it).
func (d *Dispatcher) hold(rs *rounds, r roundResult) {
	switch {
	case !r.ended:
		rs.due = r.due
	case d.deadLetter:
		rs.done = true
	default:
		rs.next(d, r.Attempts, r.resp)
	}
}

// next ends the current round: the next one begins with the delivery's
// attempts-th attempt, after the backoff between rounds (d's retry
// policy, by the rounds ended before), which resp's Retry-After may
// lengthen.
func (rs *rounds) next(d *Dispatcher, attempts int, resp *http.Response) {
	wait := d.sender.backoff(d.sender.retry.InitialBackoff, d.sender.retry.MaxBackoff, min(rs.ended, 30), resp)
	rs.start, rs.ended, rs.due = attempts, rs.ended+1, d.clock.Now().Add(wait)
}

// awaitDue waits until the delivery's next attempt may be sent (rs.due),
// which prog records, and reports whether it waited: the circuit may have
// opened meanwhile, so the caller goes back to its gate. Its error is
// ctx's.
func (d *Dispatcher) awaitDue(ctx context.Context, prog *progress, rs *rounds) (waited bool, err error) {
	due := rs.due
	rs.due = time.Time{}
	wait := due.Sub(d.clock.Now())
	if due.IsZero() || wait <= 0 {
		return false, nil
	}
	prog.scheduled(due)
	return true, d.clock.Sleep(ctx, wait)
}

// payloadError counts a payload error and reports whether the event must
// be held: the limit is reached (the dispatcher halts and pauses the
// trigger) or, without dead letters, the event can never be skipped.
func (d *Dispatcher) payloadError(ctx context.Context, err error) (held bool) {
	if !d.payload.enabled() {
		return false
	}
	n := d.payload.streak.Add(1)
	if d.deadLetter && n < int64(d.payload.max) {
		return false
	}
	if d.payload.halted.CompareAndSwap(false, true) {
		reason := fmt.Sprintf("%d consecutive payload errors (payload_errors.max_consecutive is %d); the last: %s", n, d.payload.max, payloadCause(err))
		if !d.deadLetter {
			reason = fmt.Sprintf("payload error without dead letters: %s", payloadCause(err))
		}
		d.payload.pause(reason) // the runner logs the pause and its reason

	}
	return true
}

// payloadCause is a payload error's message without the "deliver <id>: "
// prefix, so that the pause reason says each thing once.
func payloadCause(err error) string {
	if u := errors.Unwrap(err); u != nil {
		return u.Error()
	}
	return err.Error()
}

// scheduled records when the next attempt of a delivery is due (its last
// attempt as recorded).
func (p *progress) scheduled(next time.Time) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hol.NextAttemptAt = next
}

// probe retries j's event alone while the circuit its failure opened is
// open: one attempt at each probe time (doubling intervals), until one
// succeeds (the circuit closes, the event is delivered) or ctx ends (the
// event stays undone). Nothing is dead-lettered here.
func (d *Dispatcher) probe(ctx context.Context, j job, res Result, err error) (Result, error, bool) {
	j.prog.scheduled(d.circuit.status().NextProbeAt)
	d.log.LogAttrs(ctx, slog.LevelWarn, "circuit opened: deliveries wait; the failed event is retried alone as a probe",
		slog.String("webhook_id", res.WebhookID), slog.Int("status", res.Status), slog.String("error", err.Error()))
	return d.probeLoop(ctx, j.prog, res, 1, func(n int) (Attempt, error) { return d.sender.probeOnce(ctx, j.ev, n) })
}

// probeLoop sends the delivery whose failure opened the circuit again (send,
// attempt number n), one attempt at each probe time (doubling intervals),
// until one succeeds (the circuit closes) or ctx ends; res is that
// delivery's result so far. Nothing is dead-lettered here. events is the
// number of events the request carries: a batch of several that the
// endpoint refuses as too large (tooLarge; a failure whatever
// retry.success_on and drop_on say, see sendOnce) closes the circuit too, since
// the endpoint answered, and is returned as that failure for the caller
// to send in parts (the same request would be refused forever, and the
// parts would wait at the gate of a circuit no probe closes).
func (d *Dispatcher) probeLoop(ctx context.Context, prog *progress, res Result, events int, send func(n int) (Attempt, error)) (Result, error, bool) {
	for n := res.Attempts + 1; ; n++ {
		if serr := d.clock.Sleep(ctx, d.circuit.nextProbe()); serr != nil {
			res.Reason = ReasonCanceled
			return res, fmt.Errorf("wait for the next circuit probe of %s: %w", res.WebhookID, serr), false
		}
		d.circuit.halfOpen()
		at, perr := send(n)
		var next time.Time
		refused := perr != nil && tooLarge(at.Status, events) && ctx.Err() == nil
		if perr != nil && at.Reason != ReasonDropped && at.Reason != ReasonCanceled && ctx.Err() == nil && !refused {
			d.circuit.probeFailed(at.Status, perr.Error(), d.sender.retryAfter(at.resp))
			next = d.circuit.status().NextProbeAt
		}
		prog.attempted(at, !at.Retry, next)
		res.Attempts, res.Status, res.Reason, res.Body = n, at.Status, at.Reason, at.Body
		if perr == nil || at.Reason == ReasonDropped {
			res.Dropped = at.Reason == ReasonDropped
			d.circuit.probeSucceeded()
			d.log.LogAttrs(ctx, slog.LevelInfo, "circuit closed: the probe succeeded", slog.String("webhook_id", res.WebhookID))
			return res, nil, false
		}
		if refused {
			d.circuit.probeSucceeded()
			d.log.LogAttrs(ctx, slog.LevelInfo, "circuit closed: the endpoint answered the probe, refusing the batch as too large; it is sent in parts",
				slog.String("webhook_id", res.WebhookID), slog.Int("events", events))
			return res, fmt.Errorf("probe %s: %w", res.WebhookID, perr), false
		}
		if ctx.Err() != nil || at.Reason == ReasonCanceled {
			res.Reason = ReasonCanceled
			return res, fmt.Errorf("probe %s: %w", res.WebhookID, perr), false
		}
	}
}
