package runner

import (
	"fmt"
	"time"

	"github.com/changehook/changehook/dispatcher"
)

// PauseByPayloadErrors is PauseInfo.By of a trigger paused because
// payload_errors.max_consecutive consecutive events' payloads could not be
// built (see triggers.PayloadErrorPolicy). Such a pause makes the runner
// unready (Ready, /readyz) until the trigger is resumed: with the zero
// ResumeFrom after the configuration is fixed (a reload or a restart
// applies it), the held events are delivered. A reload alone does not lift
// it (the held event stays held until a resume); a restart clears it,
// since the pause lives in memory. The trigger's status shows
// PayloadErrorsWayOut as its way out.
const PauseByPayloadErrors = "payload_errors"

// PayloadErrorsWayOut is the way out (TriggerStatus.WayOut) of trigger
// name paused by PauseByPayloadErrors: what to do, in order, so that the
// held event and every later one are delivered with a fixed payload.
func PayloadErrorsWayOut(name string) string {
	return fmt.Sprintf("fix webhook.payload in the configuration, reload (kill -HUP, or POST /api/reload), then run `changehook resume %s`: "+
		"the held event and every later one are delivered with the fixed payload; `changehook dlq replay --all --trigger %s` re-sends those dead-lettered before it", name, name)
}

// withCircuit adds disp's circuit to st, and shows a running trigger whose
// circuit is not closed as StateRetrying (TriggerStatus.Circuit says until
// when): the stream is open but deliveries wait for the probe. Its Since is
// the first failure: when the circuit opened (probe cycles do not move it),
// or, when earlier, the trigger's own retrying since or the dispatcher's
// first failed attempt (deliveries failed before the circuit opened; also
// while the oldest event waits for the probe), so that /readyz reports an
// endpoint that stays down past admin.retrying_unready_after.
func withCircuit(st TriggerStatus, disp *dispatcher.Dispatcher) TriggerStatus {
	if disp == nil {
		return st
	}
	c, ok := disp.Circuit()
	if !ok {
		return st
	}
	st.Circuit = &c
	if c.State != dispatcher.CircuitClosed && (st.State == StateRunning || st.State == StateRetrying) {
		since := c.OpenedAt
		if since.IsZero() {
			since = c.Since
		}
		if st.State == StateRetrying && !st.Since.IsZero() && st.Since.Before(since) {
			since = st.Since
		}
		// The first failed attempt, also when the watcher did not see the
		// trigger retrying (its oldest event waits for the probe and has
		// no next attempt of its own).
		if first := disp.FailingSince(); !first.IsZero() && first.Before(since) {
			since = first
		}
		st.State, st.Since, st.Retrying = StateRetrying, since, true
		if st.LastError == "" || st.LastErrorAt.Before(c.Since) {
			st.LastError, st.LastErrorAt = "circuit "+string(c.State)+": "+c.LastError, c.Since
		}
		if st.WayOut == "" {
			st.WayOut = circuitWayOut(c)
		}
	}
	return st
}

// circuitWayOut is the way out of a trigger whose circuit c is open or
// half-open: what it waits for, and what ends the wait.
func circuitWayOut(c dispatcher.CircuitStatus) string {
	last := c.LastError
	if last == "" && c.LastStatus != 0 {
		last = fmt.Sprintf("HTTP %d", c.LastStatus)
	}
	next := "is being retried now"
	if !c.NextProbeAt.IsZero() && c.State == dispatcher.CircuitOpen {
		next = "is retried alone at " + c.NextProbeAt.UTC().Format(time.RFC3339)
	}
	probe := ""
	if p := c.Probe; p != nil {
		probe = fmt.Sprintf(" (%s, %s so far)", p.WebhookID, dispatcher.AttemptsText(p.Attempts))
	}
	return fmt.Sprintf("the endpoint's circuit is open (last failure: %s): nothing is skipped or dead-lettered meanwhile; "+
		"the delivery that opened it%s %s, then at doubling intervals up to circuit.max_probe_interval, every other one waits, and the first success "+
		"resumes delivery in order. Fix the endpoint, or the payload if the endpoint refuses it (changehook test shows the body); "+
		"a restart, or a reload that changes the trigger, retries at once", last, probe, next)
}

// circuitRank orders circuit states from closed (0) to open (2).
func circuitRank(s dispatcher.CircuitState) int {
	switch s {
	case dispatcher.CircuitOpen:
		return 2
	case dispatcher.CircuitHalfOpen:
		return 1
	}
	return 0
}
