package runner

import (
	"fmt"
)

// What a skip acts on.
//
// A skip dead-letters the event a unit is stuck on, and only that event.
// A unit is stuck on an event when either
//
//   - it runs and its head-of-line event (the oldest one not delivered or
//     dead-lettered, which holds the checkpoint) has failed its last
//     attempt: the status shows it retrying, or failed when a trigger
//     without dead letters meets a permanent rejection, with a head_of_line
//     whose last_reason is set; or
//   - it failed on a change event too large to read (see toolarge.go).
//
// The process that applies the skip (in a cluster, the member running the
// unit) looks at its own state of the unit before it stops the unit
// (stuckOn); anything else — a unit delivering normally, paused, stopped,
// failed for another reason — is refused naming its state, and a unit that
// runs is left running. The event is then read again after the checkpoint
// once the unit is stopped, and dead-lettered only if it is the event the
// unit was stuck on: when its delivery succeeded (or it was dead-lettered)
// meanwhile, the trigger recovered and the skip refuses rather than
// dead-letter the next event. A request may also name the event it is
// meant for (the head_of_line webhook_id the operator saw): it is refused
// unless the unit is stuck on that event.

// heldEvent is the event a unit is stuck on, as stuckOn found it.
type heldEvent struct {
	// eventID is the head-of-line event's own webhook-id ("" for
	// tooLarge, whose event readTooLarge checks against the error).
	eventID string
	// tooLarge reports that the unit failed on a change event too large
	// to read.
	tooLarge bool
}

// stuckOn returns the event the unit of s is stuck on, or why it is not
// stuck: an error naming its state. want is the webhook-id the request
// names ("" for any): the head-of-line event's (its own, or its batch's)
// must be it. running reports that the unit's watcher runs, so that a
// refusal leaves it running.
func (r *Runner) stuckOn(s *slot, want string) (held heldEvent, running bool, err error) {
	st := s.status()
	s.mu.Lock()
	cur, failed, paused := s.cur, s.failed, s.pause != nil
	last, startFailed := s.last.Load(), s.err.Load() != nil
	s.mu.Unlock()
	notStuck := func(how string) error {
		return fmt.Errorf("not stuck on an event (state %s: %s), so nothing was skipped; skip only dead-letters the event a stuck trigger holds on: "+
			"a head_of_line event whose last attempt failed (state retrying or failed), or a change event too large to read (state failed)", st.State, how)
	}
	switch {
	case paused:
		return heldEvent{}, cur != nil, notStuck("nothing is being delivered; resume it first")
	case !startFailed && (failed || cur != nil) && last != nil && last.failedOnTooLarge():
		return heldEvent{tooLarge: true}, false, nil
	case cur == nil && (failed || st.State == StateFailed):
		return heldEvent{}, false, notStuck("it failed, but not on an event a skip can dead-letter; see its last_error and way_out")
	case cur == nil:
		return heldEvent{}, false, notStuck("it does not run in this process")
	case cur.w.failedPermanently():
		return heldEvent{}, true, notStuck("it failed, but not on an event a skip can dead-letter; see its last_error and way_out")
	}
	h, ok := cur.w.disp.HeadOfLine()
	switch {
	case !ok:
		return heldEvent{}, true, notStuck("it holds no undelivered event")
	case h.LastReason == "":
		return heldEvent{}, true, notStuck(fmt.Sprintf("its head-of-line event %s has not failed an attempt", h.WebhookID))
	case want != "" && want != h.WebhookID && want != h.EventID:
		return heldEvent{}, true, fmt.Errorf("stuck on event %s, not on %s, so nothing was skipped", h.WebhookID, want)
	}
	return heldEvent{eventID: h.EventID}, true, nil
}

// check refuses the event read after the checkpoint, whose webhook-id is
// id, unless it is the one the unit was stuck on (and the one the request
// names, want, if any).
func (h heldEvent) check(id, want string) error {
	switch {
	case h.eventID != "" && id != h.eventID:
		return fmt.Errorf("the event it was stuck on, %s, was delivered or dead-lettered meanwhile: the trigger recovered, "+
			"so nothing was skipped (the next event, %s, is left to be delivered)", h.eventID, id)
	case h.tooLarge && want != "" && id != want:
		return fmt.Errorf("stuck on event %s (too large to read), not on %s, so nothing was skipped", id, want)
	}
	return nil
}
