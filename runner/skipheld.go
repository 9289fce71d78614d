package runner

import (
	"fmt"
	"strings"

	"github.com/changehook/changehook/dispatcher"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// What a skip acts on.
//
// A skip dead-letters the event a unit is stuck on, and only that event
// (or, for a batched trigger, the events of the request the endpoint
// refused). A unit is stuck on an event when either
//
//   - it runs and its head-of-line event (the oldest one not delivered or
//     dead-lettered, which holds the checkpoint) has failed its last
//     attempt: the status shows it retrying, or failed when a trigger
//     without dead letters meets a permanent rejection, with a head_of_line
//     whose last_reason is set; or
//   - it failed on a change event too large to read (see toolarge.go) and
//     delivered every event it read before it.
//
// The process that applies the skip (in a cluster, the member running the
// unit) looks at its own state of the unit before it stops the unit
// (stuckOn); anything else — a unit delivering normally, paused, stopped,
// failed for another reason — is refused naming its state, and a unit that
// runs is left running. The event is then read again after the checkpoint
// once the unit is stopped, and dead-lettered only if it is the event the
// unit was stuck on (check): when its delivery succeeded (or it was
// dead-lettered) meanwhile, the trigger recovered and the skip refuses
// rather than dead-letter the next event. A request may also name the
// event it is meant for (the head_of_line webhook_id the operator saw): it
// is refused unless the unit is stuck on that event.
//
// A unit that failed on a change event too large to read keeps delivering
// the events it read before it; while it does, the skip is refused without
// stopping it, unless the oldest of them has failed its last attempt: the
// unit is then stuck on that event, which the skip dead-letters (the unit
// starts again, delivers the rest and fails on the large event again). The
// large event is dead-lettered only if it is the first after the
// checkpoint and its resume token is the one the server's error named.
//
// A batched trigger's head of line is a sealed batch: its requests carry
// the batch's id (dispatcher.BatchWebhookID of its first and last events'
// resume tokens), and the endpoint refuses the batch, not one of its
// events. A skip of a batch dead-letters each event of the request the
// endpoint refused, each its own dead letter (as the dispatcher
// dead-letters a batch it gives up on): the whole batch, or, when the
// endpoint refused the batch as too large and it is being sent in parts,
// the part whose attempt failed (the events before it were delivered). It
// does so only if the events after the checkpoint are still exactly that
// batch — as many events, the first and last of which give the batch's id
// — and moves the checkpoint past the last event it dead-letters. The
// parts delivered after the skip looked and before it stopped the unit are
// left out (narrowToUndelivered: the stopped watcher's progress says which
// part it was sending), so that no event is both delivered and a dead
// letter; a skip whose whole part was delivered so is refused. A
// request naming the event it is meant for names the batch by the batch's
// id, as the status shows it; naming one of its events is refused.
//
// Each dead letter a skip stores keeps what the attempts of the request
// the endpoint refused established — their number, the last one's status,
// reason, error and response body (truncated and masked as the sender
// keeps it), the first one's time — as the dispatcher's dead letter of
// that request would (each event of a batch the batch's), and says who
// skipped it (dispatcher.DeadLetter.SkippedBy). They come from the stopped
// watcher when it still holds that request, its newest attempts, else from
// what stuckOn saw (heldEvent.attempts).

// heldEvent is the event a unit is stuck on, as stuckOn found it.
type heldEvent struct {
	// eventID is the head-of-line event's own webhook-id (for a batch, its
	// first event's; "" for tooLarge, whose event is named by
	// tooLargeData).
	eventID string
	// batch is the batch the head-of-line event starts (zero for an event
	// alone).
	batch heldBatch
	// tooLarge reports that the unit failed on a change event too large
	// to read.
	tooLarge bool
	// tooLargeData is the _data of the resume token the server's error
	// named for that event ("" when it named none).
	tooLargeData string
	// hol is the head of line as stuckOn saw it: what the attempts of the
	// refused request established, which the dead letters keep (zero for
	// tooLarge, whose event was never attempted).
	hol dispatcher.HeadOfLine
}

// heldBatch is the sealed batch a unit is stuck on.
type heldBatch struct {
	// id is the batch's webhook-id ("" for an event alone).
	id string
	// events is its number of events.
	events int
	// from and n are the events of the request the endpoint refused: n
	// events from the batch's from-th (0 and events unless it is sent in
	// parts).
	from, n int
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
	last, startFailed, key := s.last.Load(), s.err.Load() != nil, s.t.Key()
	s.mu.Unlock()
	notStuck := func(how string) error {
		return fmt.Errorf("not stuck on an event (state %s: %s), so nothing was skipped; skip only dead-letters the event a stuck trigger holds on: "+
			"a head_of_line event whose last attempt failed (state retrying or failed), or a change event too large to read (state failed)", st.State, how)
	}
	if paused {
		return heldEvent{}, cur != nil, notStuck("nothing is being delivered; resume it first")
	}
	if !startFailed && (failed || cur != nil) && last != nil {
		if token, large := last.failedOnTooLarge(); large {
			return stuckOnTooLarge(cur, token, key, want)
		}
	}
	switch {
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
	}
	held, err = headHeld(h, want)
	return held, true, err
}

// stuckOnTooLarge is stuckOn for a unit whose watcher failed on a change
// event too large to read, whose resume token the server's error named
// (token, nil when it named none). cur is the unit's watcher while it
// still delivers the events it read before the large one (nil once it
// ended): while one of them is held, the unit is stuck on it if its last
// attempt failed, and the skip is refused otherwise.
func stuckOnTooLarge(cur *instance, token bson.Raw, key, want string) (held heldEvent, running bool, err error) {
	held = heldEvent{tooLarge: true}
	if token != nil {
		held.tooLargeData, _ = token.Lookup("_data").StringValueOK()
	}
	if cur == nil {
		return held, false, nil
	}
	h, ok := cur.w.disp.HeadOfLine()
	switch {
	case !ok:
		return held, false, nil
	case h.LastReason == "":
		return heldEvent{}, true, fmt.Errorf("it failed on a change event too large to read, but still delivers the events it read before it (its head_of_line %s has not failed an attempt), "+
			"so nothing was skipped: a skip now would dead-letter one of them, not the large event; once they are delivered (it shows no head_of_line), "+
			"run `changehook skip %s` again", h.WebhookID, key)
	}
	held, err = headHeld(h, want)
	return held, true, err
}

// headHeld returns the held event for h, a head of line whose last
// attempt failed, or refuses a request naming another event (want, ""
// for any).
func headHeld(h dispatcher.HeadOfLine, want string) (heldEvent, error) {
	if h.WebhookID == h.EventID {
		if want != "" && want != h.WebhookID {
			return heldEvent{}, fmt.Errorf("stuck on event %s, not on %s, so nothing was skipped", h.WebhookID, want)
		}
		return heldEvent{eventID: h.EventID, hol: h}, nil
	}
	b := heldBatch{id: h.WebhookID, events: h.Events, from: h.PartFrom, n: h.PartEvents}
	switch {
	case b.events < 1 || b.from < 0 || b.n < 1 || b.from+b.n > b.events:
		// Unreachable: HeadOfLine describes a part of its batch.
		return heldEvent{}, fmt.Errorf("stuck on batch %s, whose refused request (events %d to %d of %d) is not known, so nothing was skipped", b.id, b.from+1, b.from+b.n, b.events)
	case want != "" && want != b.id:
		return heldEvent{}, fmt.Errorf("stuck on batch %s (%d events), not on %s, so nothing was skipped; a batch is skipped by its id, %s, as its head_of_line shows it", b.id, b.events, want, b.id)
	}
	return heldEvent{eventID: h.EventID, batch: b, hol: h}, nil
}

// check refuses the events read after the checkpoint, whose resume tokens
// are tokens (one for an event, as many as the batch has events for a
// batch, fewer when fewer were there), unless they are the ones the unit
// of trigger, whose key is key, was stuck on (and the one the request
// names, want, if any).
func (h heldEvent) check(trigger, key string, tokens []bson.Raw, want string) error {
	id := dispatcher.WebhookID(trigger, tokens[0])
	switch {
	case h.tooLarge:
		data, _ := tokens[0].Lookup("_data").StringValueOK()
		if h.tooLargeData == "" || !strings.EqualFold(data, h.tooLargeData) {
			return fmt.Errorf("it failed on a change event too large to read, but the first event after the checkpoint, %s, is not that event, so nothing was skipped: "+
				"the events before the large one are not all delivered. Run `changehook resume %s`: it delivers them and fails on the large event again; then skip it", id, key)
		}
		if want != "" && id != want {
			return fmt.Errorf("stuck on event %s (too large to read), not on %s, so nothing was skipped", id, want)
		}
	case id != h.eventID && h.batch.id != "":
		return fmt.Errorf("the batch it was stuck on, %s, was delivered or dead-lettered meanwhile: the trigger recovered, "+
			"so nothing was skipped (the next event, %s, is left to be delivered)", h.batch.id, id)
	case id != h.eventID:
		return fmt.Errorf("the event it was stuck on, %s, was delivered or dead-lettered meanwhile: the trigger recovered, "+
			"so nothing was skipped (the next event, %s, is left to be delivered)", h.eventID, id)
	case h.batch.id != "" && len(tokens) != h.batch.events:
		return fmt.Errorf("batch %s has %d events, but only %d follow the checkpoint, so nothing was skipped", h.batch.id, h.batch.events, len(tokens))
	case h.batch.id != "" && dispatcher.BatchWebhookID(trigger, tokens[0], tokens[len(tokens)-1]) != h.batch.id:
		return fmt.Errorf("the %d events after the checkpoint are not batch %s, which it was stuck on (the first is, the last is not), so nothing was skipped", len(tokens), h.batch.id)
	}
	return nil
}

// attempts returns what the delivery attempts of event i of held (0 for
// an event alone, else its index in the batch) established, for its dead
// letter: the head of line of the unit's stopped watcher (stopped, ok
// false when it holds none) when it still describes a failed attempt of a
// request carrying that event — the newest — else what stuckOn saw, whose
// refused request carried it (narrowToUndelivered only leaves events out).
// Its LastReason is "" when no attempt was made (an event too large to
// read).
func (h heldEvent) attempts(stopped dispatcher.HeadOfLine, ok bool, i int) dispatcher.HeadOfLine {
	want := h.eventID
	if h.batch.id != "" {
		want = h.batch.id
	}
	if ok && stopped.LastReason != "" && stopped.EventID == h.eventID && stopped.WebhookID == want &&
		i >= stopped.PartFrom && i < stopped.PartFrom+stopped.PartEvents {
		return stopped
	}
	return h.hol
}

// skipped is what a skip dead-lettered.
type skipped struct {
	// webhookID is the event's webhook-id, or the batch's.
	webhookID string
	// events are the webhook-ids of the dead letters, in stream order.
	events []string
	// batch is the batch the events belong to (zero for an event alone).
	batch heldBatch
}

// message describes sk for the control request's result.
func (sk skipped) message() string {
	b := sk.batch
	switch {
	case b.id == "":
		return "skipped and dead-lettered " + sk.webhookID
	case b.n == b.events:
		return fmt.Sprintf("skipped batch %s and dead-lettered its %d events, each its own dead letter: %s", b.id, b.n, idRange(sk.events))
	}
	return fmt.Sprintf("skipped batch %s and dead-lettered events %d to %d of its %d, the part the endpoint refused (the events before it were delivered), each its own dead letter: %s",
		b.id, b.from+1, b.from+b.n, b.events, idRange(sk.events))
}

// idRange names ids, in stream order: all of them when they are few, else
// the first and the last.
func idRange(ids []string) string {
	if len(ids) <= 3 {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s … %s", ids[0], ids[len(ids)-1])
}
