// Package deadletter replays and purges dead letters for the dlq commands
// and the admin API, streaming through the state database in batches
// (store.EachDeadLetter, store.PurgeDeadLetters) so that any number of dead
// letters of any size is handled in bounded memory.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// Selection says which dead letters an operation applies to: exactly one
// of IDs, Trigger or All (Trigger with All: that trigger's).
type Selection struct {
	// Trigger selects one trigger's dead letters.
	Trigger string `json:"trigger,omitempty"`
	// IDs selects dead letters by id.
	IDs []string `json:"ids,omitempty"`
	// All selects every dead letter (of Trigger when set).
	All bool `json:"all,omitempty"`
	// After starts after this position: the Summary.Next of a replay that
	// stopped early, so that the next one continues past the dead letters
	// it handled (those that failed included) instead of starting at the
	// oldest. With Trigger or All it is a position in the dead-letter
	// order; with IDs, one of the IDs (those after it are replayed).
	After string `json:"after,omitempty"`
}

// Validate reports a selection that names nothing or mixes ids with a
// trigger or all.
func (s Selection) Validate() error {
	switch {
	case len(s.IDs) > 0 && (s.All || s.Trigger != ""):
		return errors.New("give ids, or a trigger and/or all, not both")
	case len(s.IDs) == 0 && !s.All && s.Trigger == "":
		return errors.New("give ids, a trigger or all")
	}
	for _, id := range s.IDs {
		if id == "" {
			return errors.New("empty dead letter id")
		}
	}
	if s.After != "" {
		if len(s.IDs) > 0 {
			if !slices.Contains(s.IDs, s.After) {
				return errors.New("after: not one of the ids; give the next value of the previous call with the same ids")
			}
			return nil
		}
		if _, err := store.ParseDeadLetterCursor(s.After); err != nil {
			return fmt.Errorf("after: %w", err)
		}
	}
	return nil
}

// Filter returns the store filter of s (assumed valid), starting after
// s.After.
func (s Selection) Filter() store.DeadLetterFilter {
	if len(s.IDs) > 0 {
		return store.DeadLetterFilter{IDs: s.IDs}
	}
	var after store.DeadLetterCursor
	if s.After != "" {
		after, _ = store.ParseDeadLetterCursor(s.After) // checked by Validate
	}
	return store.DeadLetterFilter{Trigger: s.Trigger, After: after}
}

// Result is the outcome of replaying one dead letter.
type Result struct {
	// ID and Trigger identify the dead letter.
	ID      string
	Trigger string
	// Status is the last HTTP status (0: no response).
	Status int
	// Attempts is how many attempts the replay made.
	Attempts int
	// Err is nil when the event was delivered and its dead letter
	// deleted; otherwise the dead letter stays and Err says why.
	Err error

	cut bool // the delivery was ended by the replay's time running out
	// reason is Err in words shared by every dead letter failing the same
	// way, quoting neither the endpoint's URL nor its answer (see Reason).
	reason string
	// recorded: the replay's attempts and last outcome are in the dead
	// letter.
	recorded bool
}

// Summary counts a replay's results.
type Summary struct {
	// Replayed were delivered and deleted; Failed stay dead-lettered.
	Replayed int `json:"replayed"`
	Failed   int `json:"failed"`
	// Next is, when a replay stopped early (its context ended, or the
	// state database failed), the position of the last dead letter it
	// handled (with IDs, its id; "" when it handled none): the same
	// Selection with After set to it continues after it. "" when the
	// replay went through to the end.
	Next string `json:"next,omitempty"`
	// Reasons say why the Failed ones failed, one entry per reason in
	// the order first met (their counts add up to Failed). It is bounded:
	// at most MaxReasons entries, the failures of further reasons counted
	// in a last one whose Reason is OtherReasons.
	Reasons []Reason `json:"reasons,omitempty"`
}

// Reason counts the dead letters a replay failed to deliver for one reason.
type Reason struct {
	// Reason says why in words that fit every dead letter counted, and
	// that quote neither a webhook's URL (nor its query) nor an endpoint's
	// answer: "delivery failed: HTTP 503 (server_error)", `trigger
	// "orders" is not in triggers.yaml: its webhook is unknown`, "no such
	// dead letter". Each dead letter's own error is Result.Err.
	Reason string `json:"reason"`
	// Count is how many dead letters failed for it.
	Count int `json:"count"`
	// IDs are the ids of the first of them, at most MaxReasonIDs.
	IDs []string `json:"ids"`
	// Attempts is how many delivery attempts the replay made for them.
	// With none, their dead letters are as they were: their attempts and
	// last error are those of before the replay.
	Attempts int `json:"attempts"`
	// Recorded is how many of them have the replay's attempts and last
	// outcome recorded in their dead letter.
	Recorded int `json:"recorded"`
}

// Bounds of Summary.Reasons.
const (
	// MaxReasons is the most entries Summary.Reasons holds, the
	// OtherReasons one included.
	MaxReasons = 8
	// MaxReasonIDs is the most ids a Reason lists.
	MaxReasonIDs = 5
	// maxReasonText bounds a Reason's text.
	maxReasonText = 300
)

// OtherReasons is the Reason of the entry counting failures whose own
// reason did not fit in Summary.Reasons.
const OtherReasons = "other reasons (more than the answer lists; changehook dlq replay prints each dead letter's)"

// add counts res, a failure, in s.Reasons.
func (s *Summary) add(res Result) {
	why := textcut.Marked(res.reason, maxReasonText)
	i := slices.IndexFunc(s.Reasons, func(r Reason) bool { return r.Reason == why })
	if i < 0 {
		if len(s.Reasons) >= MaxReasons-1 {
			why = OtherReasons
			i = slices.IndexFunc(s.Reasons, func(r Reason) bool { return r.Reason == why })
		}
		if i < 0 {
			s.Reasons = append(s.Reasons, Reason{Reason: why, IDs: []string{}})
			i = len(s.Reasons) - 1
		}
	}
	r := &s.Reasons[i]
	r.Count++
	r.Attempts += res.Attempts
	if res.recorded {
		r.Recorded++
	}
	if len(r.IDs) < MaxReasonIDs {
		r.IDs = append(r.IDs, res.ID)
	}
}

// ErrNotFound is the Result.Err of an id with no dead letter.
var ErrNotFound = errors.New("no such dead letter")

// ErrEventNotKept is (wrapped) the Result.Err of a dead letter whose
// change event was too large to keep in it (dispatcher.TrimmedEvent): there
// is no event to send, so it is not replayed and stays, and the error says
// how to deliver the change again.
var ErrEventNotKept = errors.New("not replayed: its change event was too large to keep in the dead letter")

// Replayer delivers dead letters again with their trigger's current webhook
// settings and retry policy and deletes each one that is delivered; one that
// is not keeps the replay's attempts, last status and error. A dead letter
// of a trigger that is batched now is sent as a batch of one (a JSON array
// under dispatcher.BatchWebhookID of its event), the shape of every request
// of that trigger; otherwise as one event under its webhook-id. One whose event
// was too large to keep is not replayed (ErrEventNotKept). A Replayer is
// used by one goroutine at a time. It builds one Sender per trigger it
// replays for (NewSender) and keeps it for its next Replay, but each
// Replay closes the webhook connections its deliveries opened before it
// returns (dispatcher.Sender.CloseIdleConnections), so a Replayer, or a new
// one per call as the admin API builds, leaves no keep-alive connection
// open behind it.
type Replayer struct {
	// Store holds the dead letters.
	Store *store.Store
	// Config is the configuration whose triggers' webhooks are used.
	Config *triggers.Config
	// NewSender builds the Sender of a trigger (options such as the user
	// agent and observers are the caller's).
	NewSender func(*triggers.Trigger) (*dispatcher.Sender, error)

	senders map[string]replaySender
}

// Replay replays the dead letters sel selects, in the dead-letter order
// (ids: in the order given), calling each (when not nil) after every one.
// It stops early only when ctx ends or the state database fails, returning
// the summary so far with the error (and, for a trigger or all, its Next);
// a delivery that fails is counted and reported, and the replay goes on.
// Each delivery ends a little before ctx's deadline, and a failed one is
// recorded in its dead letter even when ctx has ended. When it returns, the connections its
// deliveries opened are closed.
func (r *Replayer) Replay(ctx context.Context, sel Selection, each func(Result)) (Summary, error) {
	var sum Summary
	if err := sel.Validate(); err != nil {
		return sum, err
	}
	defer r.closeIdle()
	report := func(res Result) {
		if res.Err != nil {
			sum.Failed++
			sum.add(res)
		} else {
			sum.Replayed++
		}
		if each != nil {
			each(res)
		}
	}
	if len(sel.IDs) > 0 {
		// An id given twice is replayed once: its second copy would find
		// the dead letter the first delivered gone.
		ids := uniqueIDs(sel.IDs)
		if sel.After != "" {
			ids = ids[slices.Index(ids, sel.After)+1:] // checked by Validate
		}
		// Next, when the call stops early, is the last id handled: a call
		// with the same ids and it as After continues with the rest.
		last := sel.After
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				sum.Next = last
				return sum, err
			}
			dl, ok, err := r.Store.GetDeadLetter(ctx, id)
			if err != nil {
				sum.Next = last
				return sum, err
			}
			if !ok {
				report(Result{ID: id, Err: ErrNotFound, reason: ErrNotFound.Error() + " (replayed or purged already?)"})
				last = id
				continue
			}
			res := r.replayOne(ctx, dl)
			report(res)
			last = id
			if res.cut {
				sum.Next = id
				return sum, context.DeadlineExceeded
			}
		}
		return sum, nil
	}
	err := r.Store.EachDeadLetter(ctx, sel.Filter(), func(dl store.StoredDeadLetter) error {
		res := r.replayOne(ctx, dl)
		report(res)
		sum.Next = dl.Cursor().String()
		if res.cut {
			// What is left of the time is for recording, not for another
			// delivery.
			return context.DeadlineExceeded
		}
		return ctx.Err()
	})
	if err == nil {
		sum.Next = ""
	}
	return sum, err
}

// recordReserve is the part of a replay's remaining time (at most) kept
// from a delivery for recording its failure in the dead letter.
const recordReserve = 2 * time.Second

// recordTimeout bounds recording a failed replay in its dead letter, on a
// context of its own: the replay's may have ended, which is what cut the
// delivery short.
const recordTimeout = 5 * time.Second

// deliveryContext returns ctx for one delivery, ending early enough before
// ctx's deadline (a fifth of the time left, at most recordReserve) that
// the failure of a delivery cut short can be recorded within it.
func deliveryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline.Add(-min(recordReserve, time.Until(deadline)/5)))
}

// replayOne delivers dl and deletes it once delivered; a failed replay adds
// its attempts and last outcome to the dead letter. One stored without its
// event is refused (ErrEventNotKept) without an attempt: what it holds is
// not the change, and sending the document as it is now instead, under
// the change's webhook-id, would pass off another state as that change.
func (r *Replayer) replayOne(ctx context.Context, dl store.StoredDeadLetter) Result {
	res := Result{ID: dl.ID, Trigger: dl.Trigger}
	if dl.Trimmed == dispatcher.TrimmedEvent {
		res.Err = fmt.Errorf("%w (%d bytes); %s", ErrEventNotKept, dl.EventSize, dl.RedeliverHint())
		res.reason = ErrEventNotKept.Error() + "; its dead letter says how to deliver the change again"
		return res
	}
	s, err := r.sender(dl.Trigger)
	if err != nil {
		// The sender's errors name the webhook's URL only redacted
		// (triggers.RedactURL).
		res.Err = err
		res.reason = err.Error()
		return res
	}
	ev := dispatcher.Event{Raw: dl.Event, Token: dl.Token}
	var out dispatcher.Result
	dctx, cancel := deliveryContext(ctx)
	if s.batched {
		// The shape every request of the trigger has: its receiver
		// reads JSON arrays.
		out, err = s.DeliverBatch(dctx, []dispatcher.Event{ev})
	} else {
		out, err = s.Deliver(dctx, ev)
	}
	res.cut = err != nil && errors.Is(dctx.Err(), context.DeadlineExceeded)
	cancel()
	res.Status, res.Attempts = out.Status, out.Attempts
	if err != nil {
		status := "no response"
		if out.Status != 0 {
			status = fmt.Sprintf("HTTP %d", out.Status)
		}
		res.Err = fmt.Errorf("%s after %s: %w", status, dispatcher.AttemptsText(out.Attempts), err)
		res.reason = failureReason(status, out)
		if res.cut {
			res.reason += ", cut short as the replay's time ran out"
		}
		if out.Attempts == 0 {
			// No request was sent: the dead letter stays as it was.
			return res
		}
		// The dead letter keeps the replay's trace: its attempts and last
		// status, reason, error and response. On a context of its own:
		// the replay's may be what ended the delivery.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		found, uerr := r.Store.RecordReplayFailure(rctx, dl.ID, out, err)
		cancel()
		switch {
		case uerr != nil:
			res.Err = fmt.Errorf("%w (and the dead letter was not updated: %v)", res.Err, uerr)
			res.reason += "; the dead letter was not updated (the state database failed)"
		case !found:
			res.Err = fmt.Errorf("%w (and the dead letter is gone: replayed or purged meanwhile)", res.Err)
			res.reason += "; the dead letter is gone (replayed or purged meanwhile)"
		default:
			res.recorded = true
		}
		return res
	}
	if _, err := r.Store.DeleteDeadLetter(ctx, dl.ID); err != nil {
		res.Err = fmt.Errorf("delivered (HTTP %d) but could not delete the dead letter; a later replay would deliver it again: %w", out.Status, err)
		res.reason = "delivered but the dead letter could not be deleted (the state database failed); a later replay would deliver it again"
	}
	return res
}

// failureReason words a failed replay's outcome out (status: its last
// HTTP status in words) for Reason: a payload that could not be built, or
// another delivery that sent no request, as what it is, not as a delivery
// that got no response.
func failureReason(status string, out dispatcher.Result) string {
	switch {
	case out.Reason == dispatcher.ReasonPayload && out.Attempts == 0:
		return "payload could not be built from the event (payload_error): no request was sent"
	case out.Attempts == 0 && out.Reason != "":
		return "not sent (" + out.Reason + ")"
	case out.Attempts == 0:
		return "not sent"
	case out.Reason != "":
		return "delivery failed: " + status + " (" + out.Reason + ")"
	}
	return "delivery failed: " + status
}

// replaySender is the Sender of a trigger and whether the trigger is
// batched (its requests carry a JSON array: a replay sends a batch of one).
type replaySender struct {
	*dispatcher.Sender
	batched bool
}

// sender returns the cached Sender of trigger.
func (r *Replayer) sender(trigger string) (replaySender, error) {
	if s, ok := r.senders[trigger]; ok {
		return s, nil
	}
	var t *triggers.Trigger
	for _, c := range r.Config.Triggers {
		if c.Name == trigger {
			t = c
		}
	}
	if t == nil || trigger == "" {
		return replaySender{}, fmt.Errorf("trigger %q is not in %s: its webhook is unknown", trigger, r.Config.Path)
	}
	s, err := r.NewSender(t)
	if err != nil {
		return replaySender{}, fmt.Errorf("prepare delivery: %w", err)
	}
	if r.senders == nil {
		r.senders = map[string]replaySender{}
	}
	rs := replaySender{Sender: s, batched: t.Batch != nil}
	r.senders[trigger] = rs
	return rs, nil
}

// closeIdle closes the idle webhook connections of every Sender built so
// far: a replay's deliveries have all returned when it runs.
func (r *Replayer) closeIdle() {
	for _, s := range r.senders {
		s.CloseIdleConnections()
	}
}

// Purge deletes the dead letters sel selects, in batches, and returns how
// many were deleted (with the number deleted so far on an error).
func Purge(ctx context.Context, st *store.Store, sel Selection) (int64, error) {
	if err := sel.Validate(); err != nil {
		return 0, err
	}
	return st.PurgeDeadLetters(ctx, sel.Filter())
}

// uniqueIDs returns ids without repeats, each where it first appears.
func uniqueIDs(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
