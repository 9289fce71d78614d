package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Runtime controls stored in the state database.
//
// With Options.Controls the Runner applies the control documents of
// <state.database>.controls (see store.Control): when Run starts, every
// trigger whose document says paused starts paused; then Run watches the
// collection's own change stream and applies each new request (pause,
// resume from the checkpoint or a position, skip, redeliver). A request
// applies to every unit of its trigger — the trigger itself, or each
// partition of a partitioned one — and each unit's runner (in a cluster,
// the member holding the unit's lease) applies it to its unit and records
// the unit's result (store.Control.Units); once every unit has, the
// combined result is recorded (store.Control.Applied), which is what
// `changehook pause|resume|skip|redeliver` and the admin API wait for.
// Pauses therefore survive restarts and reach every process running a
// part of the trigger. See applyControl for the details.

// skipWait bounds how long Skip waits for the held event to be read again.
const skipWait = 10 * time.Second

// Skip dead-letters the event a stuck trigger holds on — its head-of-line
// event whose last delivery attempt failed, typically in a strict or
// dead_letter: false trigger — and moves the checkpoint past it. A trigger
// not stuck on an event (delivering normally, paused, stopped, failed for
// another reason) is refused, naming its state, and left as it is (see
// stuckOn). Otherwise Skip stops the trigger's watcher (waiting for it as
// Stop does), dead-letters the first event after the checkpoint if it is
// still the one the trigger was stuck on — refusing when the trigger
// recovered meanwhile — and starts the watcher again. The dead letter
// keeps what the delivery's attempts established (their number, the last
// one's status, reason, error and response, the first one's time) and
// says it was skipped by by (SkippedBy; the history records the skip too);
// Skip returns its webhook id.
//
// A batched trigger is stuck on a batch: Skip dead-letters each event of
// the request the endpoint refused (the batch, or the part of it being
// sent after a 413), each its own dead letter, if the events after the
// checkpoint are still exactly that batch, and returns the batch's webhook
// id (see skipheld.go).
//
// An event larger than 16 MiB, which the change stream cannot return (a
// trigger fails on it), is read again without its fullDocument,
// fullDocumentBeforeChange and updateDescription and dead-lettered so, if
// its resume token is the one the trigger's error named; the trigger's
// failure is then lifted. While the trigger still delivers the events it
// read before that event, or when the first event after the checkpoint is
// another one, Skip refuses (see skipheld.go). When the event cannot be
// read without those fields, Skip refuses and names the `changehook resume
// --from` time after it.
//
// A trigger running under a cluster lease (StartLeased) is skipped as the
// lease's epoch: the checkpoint is claimed for it (loadUnitCheckpoint), the
// dead letter stored only while the lease is valid and the new checkpoint
// written fenced (saveUnitCheckpoint). Once the lease lapsed, or a newer
// epoch claimed the checkpoint, Skip fails with an error wrapping ErrFenced
// before any dead letter is written, and the newer checkpoint stays.
//
// A partitioned trigger holds events per partition, so Skip on one needs
// the partition: name is then the partition's key, "NAME/p<i>of<N>" (the
// trigger's status shows which partition is held); the trigger's own name
// is refused without touching anything.
func (r *Runner) Skip(ctx context.Context, name, by string) (webhookID string, err error) {
	s, err := r.slot(name)
	if err != nil {
		return "", fmt.Errorf("skip event: %w", err) // the error names the trigger
	}
	sk, _, err := r.skip(ctx, s, by, "", "")
	if err != nil {
		return "", fmt.Errorf("skip event %s: %w", name, err)
	}
	return sk.webhookID, nil
}

// skip is Skip of the unit of s for the control request control ("":
// none), which may name the webhook-id of the event it is meant for (want,
// "": any); its error names neither the action nor the unit (Skip's does,
// and RequestControl's for a request). A request's skip marks the new
// checkpoint with its id, and a request whose id the checkpoint already
// carries was applied — by a previous lease holder that could not record
// it — so it reports already and skips nothing more: a skip applied twice
// would dead-letter the next event too.
func (r *Runner) skip(ctx context.Context, s *slot, by, control, want string) (sk skipped, already bool, err error) {
	held, running, notStuck := r.stuckOn(s, want)
	return r.skipHeld(ctx, s, by, control, want, held, running, notStuck)
}

// skipHeld is skip once stuckOn found the unit of s stuck on held, or not
// stuck (notStuck). A unit whose watcher runs is refused as it is; any
// other is refused once its checkpoint is claimed (under a lease: a lapsed
// one refuses with ErrFenced first).
func (r *Runner) skipHeld(ctx context.Context, s *slot, by, control, want string, held heldEvent, running bool, notStuck error) (sk skipped, already bool, err error) {
	s.mu.Lock()
	name, lease := s.t.Key(), s.lease
	s.mu.Unlock()
	if notStuck != nil && running {
		if lease != nil && !lease.Valid() {
			return skipped{}, false, ErrFenced
		}
		if control != "" {
			if cp, found, err := r.store.LoadCheckpoint(ctx, name); err == nil && found && cp.Control == control {
				return skipped{}, true, nil
			}
		}
		return skipped{}, false, notStuck
	}
	err = r.hold(ctx, []*slot{s}, requestedBy("skip", by), func(ss []*slot) error {
		s := ss[0]
		s.mu.Lock()
		t, l := s.t, s.lease
		s.mu.Unlock()
		key := t.Key()
		cp, found, err := r.loadUnitCheckpoint(ctx, s)
		if err != nil {
			return err
		}
		if found && control != "" && cp.Control == control {
			already = true
			return nil
		}
		if notStuck != nil {
			return notStuck
		}
		if !found {
			return errors.New("the trigger has no checkpoint yet, so no event is held")
		}
		readCtx, cancel := context.WithTimeout(ctx, skipWait)
		defer cancel()
		evs, largeSize, err := r.readHeld(readCtx, t, cp.Token, held)
		if err != nil {
			return err
		}
		tokens := make([]bson.Raw, len(evs))
		for i, raw := range evs {
			token, ok := raw.Lookup("_id").DocumentOK()
			if !ok {
				return errors.New("the held event has no resume token")
			}
			tokens[i] = bson.Raw(token)
		}
		if err := held.check(t.Name, key, tokens, want); err != nil {
			return err
		}
		// The events the request the endpoint refused carries: the event
		// alone, or the batch's (or its part's, the events before which
		// were delivered).
		from, n := 0, 1
		if held.batch.id != "" {
			if err := narrowToUndelivered(s, &held); err != nil {
				return err
			}
			from, n = held.batch.from, held.batch.n
		}
		// What the attempts established, from the watcher that made the
		// last ones: stopped now, it still holds the event.
		var stopped dispatcher.HeadOfLine
		var stoppedOK bool
		if w := s.last.Load(); w != nil && !held.tooLarge {
			stopped, stoppedOK = w.disp.HeadOfLine()
		}
		now := r.opts.Clock.Now()
		// Under a lease the dead letters go through the lease's gate: a
		// member whose lease lapsed while it read the events must not
		// dead-letter an event the new owner is about to deliver. A skip
		// that fails after some of a batch's dead letters leaves the
		// checkpoint as it was: those events are delivered again, and a
		// later skip stores their dead letters again (by webhook-id).
		var sink dispatcher.DeadLetterSink = r.store
		if l != nil {
			sink = gatedSink{r.store, l}
		}
		ids := make([]string, 0, n)
		for i := from; i < from+n; i++ {
			id := dispatcher.WebhookID(t.Name, tokens[i])
			// The dead letter keeps what the delivery's attempts
			// established, as the dispatcher's own would, and says who
			// skipped it.
			a := held.attempts(stopped, stoppedOK, i)
			dl := dispatcher.DeadLetter{Trigger: t.Name, WebhookID: id, Event: evs[i], Token: tokens[i],
				Attempts: a.Attempts, LastStatus: a.LastStatus, LastReason: a.LastReason, LastError: a.LastError,
				LastResponse: a.LastResponse, FirstAttemptAt: a.FirstAttemptAt, DeadLetteredAt: now, SkippedBy: cmp.Or(by, "unknown")}
			if a.LastReason == "" {
				// Never attempted (an event too large to read).
				dl.LastReason, dl.LastError, dl.FirstAttemptAt = "skipped", "skipped by "+dl.SkippedBy, now
			}
			if held.batch.id != "" {
				dl.LastError = fmt.Sprintf("batch %s (event %d of its %d): %s", held.batch.id, i+1, held.batch.events, dl.LastError)
			}
			if largeSize > 0 {
				// Its change event could not be read whole: stored as the
				// sink stores an event too large to keep, with only what
				// identifies the change, so that it shows as such and is
				// not replayed as if it were the change.
				dl.Trimmed, dl.EventSize = dispatcher.TrimmedEvent, largeSize
				dl.LastError += fmt.Sprintf("; the change event is larger than the 16 MiB a change stream can return (%d bytes): "+
					"stored with only what identifies the change, not its %s", largeSize, largeFieldsText)
			}
			if err := sink.PutDeadLetter(ctx, dl); err != nil {
				if errors.Is(err, ErrFenced) {
					return err
				}
				var at time.Time
				if ts, _, ok := evs[i].Lookup("clusterTime").TimestampOK(); ok && ts != 0 {
					at = time.Unix(int64(ts), 0)
				}
				return fmt.Errorf("its dead letter cannot be stored, so nothing was skipped and the trigger goes on holding the event: "+
					"make the state database take the write, or give the event up without a dead letter with %s: %w", resumeAfter(key, at), err)
			}
			r.countSkipDeadLetter(t.Name)
			ids = append(ids, id)
		}
		last := evs[from+n-1]
		next := store.Checkpoint{Trigger: key, Token: tokens[from+n-1], UpdatedAt: now, Control: control}
		if ts, i, ok := last.Lookup("clusterTime").TimestampOK(); ok {
			next.ClusterTime = bson.Timestamp{T: ts, I: i}
		}
		if err := r.saveUnitCheckpoint(ctx, s, next); err != nil {
			return err
		}
		if held.tooLarge || largeSize > 0 {
			// The trigger failed on this event alone: it continues.
			s.mu.Lock()
			s.clearFailure()
			s.mu.Unlock()
		}
		sk = skipped{webhookID: ids[0], events: ids, batch: held.batch}
		if held.batch.id != "" {
			sk.webhookID = held.batch.id
			r.log.Warn("batch skipped and its events dead-lettered", "trigger", t.Name, "key", key, "webhook_id", held.batch.id,
				"events", n, "first_event", from+1, "batch_events", held.batch.events, "by", by)
		} else {
			r.log.Warn("event skipped and dead-lettered", "trigger", t.Name, "key", key, "webhook_id", ids[0], "by", by)
		}
		if r.HistoryOn() {
			for i, id := range ids {
				raw := evs[from+i]
				op, _ := raw.Lookup("operationType").StringValueOK()
				dk, _ := raw.Lookup("documentKey").DocumentOK()
				r.recordHistory(store.AttemptRecord{Kind: store.KindSkipped, Trigger: t.Name, Partition: historyPartition(t),
					WebhookID: id, DocumentKey: dk, Operation: op, Reason: "skipped", By: by, At: now})
			}
		}
		return nil
	})
	if err == nil && !already {
		// The gauge and the status count the new dead letters before the
		// control's result is recorded.
		if cerr := r.RecountDeadLetters(ctx, name); cerr != nil {
			r.RefreshDeadLetters()
		}
	}
	return sk, already, err
}

// narrowToUndelivered leaves out of held, the batch a unit was stuck on
// when the skip looked, the events the unit's watcher delivered since: a
// batch the endpoint refused as too large is sent in parts, one after the
// other, and a part may have been delivered between the look and the stop.
// The unit's newest watcher, stopped now, holds the batch's progress: when
// it shows the same batch being sent from a later event (the events before
// that one delivered), the skip dead-letters only the events from there to
// the end of the refused request, so none is both delivered and a dead
// letter; when it has got past the whole refused request, the skip is
// refused (the unit recovered from what it was stuck on). Anything else
// (the watcher shows another head of line, or none) leaves held as it is:
// check then compares the events after the checkpoint. s.mu must not be
// held; the unit is held stopped.
func narrowToUndelivered(s *slot, held *heldEvent) error {
	b := &held.batch
	w := s.last.Load()
	if w == nil {
		return nil
	}
	h, ok := w.disp.HeadOfLine()
	if !ok || h.WebhookID != b.id || h.EventID != held.eventID || h.Events != b.events || h.PartFrom <= b.from {
		return nil
	}
	if h.PartFrom >= b.from+b.n {
		return fmt.Errorf("the part of batch %s it was stuck on (events %d to %d of its %d) was delivered meanwhile: the trigger recovered from it, "+
			"so nothing was skipped (it now sends events %d to %d; see its head_of_line)", b.id, b.from+1, b.from+b.n, b.events, h.PartFrom+1, h.PartFrom+h.PartEvents)
	}
	b.n -= h.PartFrom - b.from
	b.from = h.PartFrom
	return nil
}

// countSkipDeadLetter counts a dead letter skip stored for trigger like
// one its dispatcher stores.
func (r *Runner) countSkipDeadLetter(trigger string) { r.dmet.DeadLettered(trigger) }

// largeFieldsText names largeFields for messages.
const largeFieldsText = "fullDocument, fullDocumentBeforeChange and updateDescription"

// readHeld reads again, after the checkpoint token of t, what the unit was
// stuck on (held): the first event — read without its large fields when
// it is too large to read, largeSize then its size as the server's error
// names it (0: read whole) — or, for a batch, as many events as the batch
// has (fewer when fewer follow the checkpoint), for check to compare.
func (r *Runner) readHeld(ctx context.Context, t *triggers.Trigger, token bson.Raw, held heldEvent) (evs []bson.Raw, largeSize int, err error) {
	n := max(1, held.batch.events)
	// One event per batch for an event alone: a read that fails on an
	// event too large to return then fails on the first event after the
	// checkpoint.
	opts := t.ChangeStreamOptions().SetResumeAfter(token).SetMaxAwaitTime(time.Second).SetBatchSize(int32(n))
	// With $changeStreamSplitLargeEvent where the server has it, as the
	// watcher reads once it met a large event: an event it reassembled
	// is read as it delivered it (its webhook-id is the last fragment's),
	// and a checkpoint that is a fragment's token can be resumed from.
	// Where the server refuses the stage, without it, as the watcher then
	// reads.
	split := true
	cs, err := t.WatchWith(ctx, r.client, opts, SplitLargeEventsStage())
	if SplitStageRefused(err) {
		split = false
		cs, err = t.Watch(ctx, r.client, opts)
	}
	if err == nil {
		defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
		var frags EventAssembler
		for len(evs) < n && cs.Next(ctx) {
			raw := bson.Raw(append([]byte(nil), cs.Current...))
			if split {
				var err error
				if raw, _, err = frags.Add(raw); err != nil {
					return nil, 0, fmt.Errorf("read the event after the checkpoint: %w", err)
				}
				if raw == nil {
					continue // a fragment of an event not complete yet
				}
			}
			if op, _ := raw.Lookup("operationType").StringValueOK(); op == "invalidate" {
				if len(evs) == 0 {
					return nil, 0, errors.New("the next event is an invalidate: the trigger's stream ended")
				}
				break // the stream ends within the batch's range: check refuses
			}
			evs = append(evs, raw)
		}
		err = cs.Err()
		_, _, tooLarge := eventTooLarge(err)
		switch {
		case len(evs) == n || (len(evs) > 0 && (err == nil || errors.Is(err, context.DeadlineExceeded))):
			return evs, 0, nil
		case tooLarge && held.batch.id == "":
			// Read again without its large fields, below.
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			return nil, 0, fmt.Errorf("read the event after the checkpoint: %w", err)
		default:
			return nil, 0, errors.New("no event after the checkpoint: nothing is held")
		}
	} else if _, _, ok := eventTooLarge(err); !ok || held.batch.id != "" {
		return nil, 0, fmt.Errorf("open the change stream at the checkpoint: %w", err)
	}
	raw, rerr := r.readTooLarge(ctx, t, opts, split, err)
	if rerr != nil {
		return nil, 0, rerr
	}
	return []bson.Raw{raw}, tooLargeSize(err), nil
}

// readTooLarge reads the first event after the checkpoint (opts resume
// there) of t, which failed to read with cause, an eventTooLarge error,
// again without its large fields (with $changeStreamSplitLargeEvent when
// split, as the read that failed), and returns it if it is the event the
// error names. Otherwise it refuses, naming the `resume --from` time that
// continues after the event.
func (r *Runner) readTooLarge(ctx context.Context, t *triggers.Trigger, opts *options.ChangeStreamOptionsBuilder, split bool, cause error) (bson.Raw, error) {
	token, at, _ := eventTooLarge(cause)
	refuse := func(why error) error {
		from := "a time after it"
		if !at.IsZero() {
			from = at.Add(time.Second).Format(time.RFC3339)
		}
		return fmt.Errorf("%s is larger than the 16 MiB a change stream can return and cannot be skipped alone (%w); "+
			"to continue after it, run `changehook resume %s --from %s`, which also skips the changes after it up to then: %w",
			tooLargeText(at), why, t.Name, from, cause)
	}
	if token == nil {
		return nil, refuse(errors.New("the server's error names no resume token"))
	}
	cs, err := watchLargeFieldsDropped(ctx, r.client, t, opts, split)
	if err != nil {
		return nil, refuse(err)
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	if !cs.Next(ctx) {
		err := cs.Err()
		if err == nil {
			err = errors.New("no event after the checkpoint")
		}
		return nil, refuse(fmt.Errorf("read it without its %s: %w", largeFieldsText, err))
	}
	raw := bson.Raw(append([]byte(nil), cs.Current...))
	want, _ := bson.Raw(token).Lookup("_data").StringValueOK()
	if got, _ := raw.Lookup("_id", "_data").StringValueOK(); !strings.EqualFold(got, want) {
		return nil, refuse(fmt.Errorf("read without its %s, the event after the checkpoint has resume token %q, not the %q the error names", largeFieldsText, got, want))
	}
	return raw, nil
}

// Redeliver rewinds a running trigger to since: it stops the watcher
// (waiting as Stop does, so its final checkpoint cannot overwrite the
// rewind), moves the checkpoint back to the first change at or after since
// and starts it again, so every change since then is delivered again with
// the same webhook-ids. A checkpoint before since is kept (see rewind):
// resuming from it delivers every change since since too, after those
// before since it has not delivered yet. since must still be in the oplog
// and not in the future. On a partitioned trigger every partition of this
// Runner is rewound (in a cluster, the control request reaches each
// partition's owner instead: see the controls section above).
func (r *Runner) Redeliver(ctx context.Context, name string, since time.Time) error {
	if since.IsZero() {
		return fmt.Errorf("redeliver trigger %s: since must be a time in the past, not %v", name, since)
	}
	// By the server's clock, which stamps the oplog: this machine's may be
	// behind it (or ahead).
	if err := CheckNotFuture(ctx, r.client, since); err != nil {
		return fmt.Errorf("redeliver trigger %s: %w", name, err)
	}
	return r.holding(ctx, name, "redeliver trigger", func(ss []*slot) error {
		for _, s := range ss {
			if _, err := r.rewind(ctx, s, since, ""); err != nil {
				return err
			}
		}
		return nil
	})
}

// rewound is what rewind did to a unit's checkpoint.
type rewound struct {
	// already: the checkpoint names the control request, which a previous
	// lease holder applied and could not record; nothing was done again.
	already bool
	// kept: the unit's position was before since and stayed; from is its
	// cluster time (zero: unknown).
	kept bool
	from time.Time
	// prior: the unit had no checkpoint of its own, and its position was
	// the previous partitioning's checkpoint (see priorCheckpoint).
	prior bool
}

// message is the unit's result of a redeliver from since, as the control
// request reports it.
func (rw rewound) message(since time.Time) string {
	switch {
	case rw.already:
		return appliedBefore
	case rw.kept:
		from := ""
		if !rw.from.IsZero() {
			from = " (" + timeText(rw.from) + ")"
		}
		if rw.prior {
			return fmt.Sprintf("checkpoint of the previous partitioning (partitions changed without the checkpoints carried over) is before %s; "+
				"delivering everything since that checkpoint%s, every change since %s included", timeText(since), from, timeText(since))
		}
		return fmt.Sprintf("checkpoint is before %s; delivering everything since the checkpoint%s, every change since %s included",
			timeText(since), from, timeText(since))
	}
	return "redelivering every change since " + timeText(since)
}

// pausedRedeliverNote ends the result of a redeliver applied to a paused
// unit, whose rewound checkpoint waits for the pause to be lifted.
const pausedRedeliverNote = "paused: delivered once the trigger is resumed"

// rewind moves the checkpoint of s's unit back to the first change at or
// after since, marked as control request control's rewrite ("" for none);
// the unit must be held stopped, and since already compared with the
// server's clock (CheckNotFuture).
//
// It never moves the checkpoint forward. A checkpoint before since
// (compared by TokenPosition) is kept: resuming from it delivers every
// change since since anyway, and moving it would skip the changes in
// between, neither delivered nor dead-lettered yet (those written while
// the trigger was paused, or after a lease holder that died had fallen
// behind). A unit without a checkpoint of its own after a change of
// partitions that did not carry them over is held to the one it would
// have resumed from (see priorCheckpoint) as to its own, as resumeFrom
// holds it: when that is before since, it becomes the unit's checkpoint
// (as `checkpoints repartition` would start the unit there), so that the
// changes since it are delivered; when the previous partitioning's
// checkpoints have no position to compare, it fails and writes nothing.
// A unit without a checkpoint whose trigger starts at a start_at time
// before since is kept at that start likewise. With a control, the kept
// position is written again marked with it, so that the request is
// applied once. When the two positions cannot be compared it fails and
// writes nothing.
//
// With a control, a checkpoint already marked with it was rewritten by a
// previous lease holder that could not record its result: rewind then does
// nothing again (already).
//
// A unit that failed with its position lost (see lostHistory) is refused,
// unless its checkpoint was moved since: it would stay failed and deliver
// nothing; the error gives its way out.
func (r *Runner) rewind(ctx context.Context, s *slot, since time.Time, control string) (rewound, error) {
	var rw rewound
	s.mu.Lock()
	t := s.t
	s.mu.Unlock()
	cur, found, err := r.loadUnitCheckpoint(ctx, s)
	if err != nil {
		return rw, err
	}
	if found && control != "" && cur.Control == control {
		rw.already = true
		return rw, nil
	}
	if !found {
		// After a change of partitions that did not carry the checkpoints
		// over, the unit would resume from the previous partitioning's:
		// moving it to since from anywhere later would skip the changes in
		// between, neither delivered nor dead-lettered.
		prior, ok, others, err := priorCheckpoints(ctx, r.store, t)
		switch {
		case err != nil:
			return rw, err
		case ok:
			cur, found, rw.prior = prior, true, true
		case others > 0:
			return rw, fmt.Errorf("cannot tell whether the previous partitioning's checkpoints are before %s (none has a position to compare), "+
				"so nothing was changed", timeText(since))
		}
	}
	// since was compared with the server's clock before the unit was held
	// (Redeliver, applyUnit), once: so is start_at, before it.
	if !found && !t.StartAt.Now && t.StartAt.Time.Before(since) {
		// The unit would start at start_at: that is its position.
		if cur, err = positionAt(ctx, r.client, t, t.StartAt.Time); err != nil {
			return rw, fmt.Errorf("the trigger has no checkpoint yet and starts at its start_at: %w", err)
		}
		found = true
	}
	cp, err := positionAt(ctx, r.client, t, since)
	if err != nil {
		return rw, err
	}
	if found {
		if rw.kept, err = positionBefore(cur, cp); err != nil {
			return rw, fmt.Errorf("cannot tell whether the checkpoint is before %s, so it was left as it is: %w", timeText(since), err)
		}
	}
	s.mu.Lock()
	wayOut, loss, lost := s.lostHistory()
	s.mu.Unlock()
	if lost && !r.checkpointResumable(ctx, t) {
		// The unit stays failed whatever the redeliver writes: a
		// checkpoint before since would be kept, and one moved back to
		// since is not resumed from until the failure is lifted, which
		// resume --from since does.
		return rw, lostRedeliverRefusal(t.Key(), loss, since, rw.kept, wayOut)
	}
	if rw.kept {
		cp, rw.from = cur, checkpointTime(cur)
	}
	if !rw.kept || control != "" || rw.prior {
		// The previous partitioning's position is written as the unit's
		// own even without a control: the unit has none to resume from.
		cp.Trigger, cp.Control = t.Key(), control
		if rw.kept && rw.prior {
			cp.UpdatedAt = r.opts.Clock.Now()
		}
		if err := r.saveUnitCheckpoint(ctx, s, cp); err != nil {
			return rw, err
		}
	}
	if rw.kept {
		r.log.Warn("checkpoint before the redelivery's start kept: delivering everything since it", "trigger", t.Name, "key", t.Key(),
			"since", timeText(since), "checkpoint", timeText(rw.from))
	} else {
		r.log.Warn("trigger rewound for redelivery", "trigger", t.Name, "key", t.Key(), "since", timeText(since))
	}
	return rw, nil
}

// positionBefore reports whether checkpoint a is before checkpoint b in
// their stream (TokenPosition), or an error when either token has no
// position to compare.
func positionBefore(a, b store.Checkpoint) (bool, error) {
	pa, err := TokenPosition(a.Token)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	pb, err := TokenPosition(b.Token)
	if err != nil {
		return false, fmt.Errorf("position at the time: %w", err)
	}
	return pa < pb, nil
}

// checkpointTime is cp's cluster time, from its ClusterTime or else its
// token (zero: unknown).
func checkpointTime(cp store.Checkpoint) time.Time {
	if cp.ClusterTime.T != 0 {
		return time.Unix(int64(cp.ClusterTime.T), 0).UTC()
	}
	at, _ := TokenTime(cp.Token)
	return at
}

// rewrittenBy reports whether the checkpoint of s's unit was last set by
// the rewrite of control request id: a previous lease holder applied it
// and could not record its result. Under a lease it first claims the
// checkpoint for the lease's epoch, so that a previous holder's rewrite
// either is seen here or fails afterwards (fenced), never both missed and
// written.
func (r *Runner) rewrittenBy(ctx context.Context, s *slot, id string) (bool, error) {
	cp, found, err := r.loadUnitCheckpoint(ctx, s)
	return found && cp.Control == id, err
}

// loadUnitCheckpoint reads the checkpoint of s's unit for a control that
// rewrites it: under the unit's lease when it runs under one — refused
// with ErrFenced once the lease is no longer valid, and otherwise claimed
// for the lease's epoch, so that a newer epoch's checkpoint is never read
// (and then overwritten) by a superseded holder (a refused claim tells the
// lease: Lease.Lost) — plainly otherwise. The unit must be held stopped.
func (r *Runner) loadUnitCheckpoint(ctx context.Context, s *slot) (store.Checkpoint, bool, error) {
	s.mu.Lock()
	key, l := s.t.Key(), s.lease
	s.mu.Unlock()
	if l == nil {
		return r.store.LoadCheckpoint(ctx, key)
	}
	if !l.Valid() {
		return store.Checkpoint{}, false, fmt.Errorf("claim checkpoint of %q: %w", key, ErrFenced)
	}
	cp, found, err := r.store.ClaimCheckpoint(ctx, l.Key(), l.Fence())
	if errors.Is(err, store.ErrLeaseLost) {
		l.Lost(err)
		return store.Checkpoint{}, false, fmt.Errorf("%w: %w", ErrFenced, err)
	}
	return cp, found, err
}

// appliedBefore is a unit's message for a rewrite its previous lease
// holder had already written.
const appliedBefore = "already applied to this partition by its previous lease holder, which could not record it"

// saveUnitCheckpoint writes a control's new checkpoint of s's unit: under
// the unit's lease when it runs under one (so a member that lost the lease
// can no longer move it, and an older epoch cannot overwrite it; a refused
// save tells the lease: Lease.Lost), plainly
// otherwise, and makes it the unit's known position (see
// knownCheckpoints) in place of the one its last watcher saved. The unit
// must be held stopped.
func (r *Runner) saveUnitCheckpoint(ctx context.Context, s *slot, cp store.Checkpoint) error {
	s.mu.Lock()
	l := s.lease
	s.mu.Unlock()
	if l == nil {
		if err := r.store.SaveCheckpoint(ctx, cp); err != nil {
			return err
		}
		knownCheckpoints{s: s}.remember(cp)
		return nil
	}
	if !l.Valid() {
		return fmt.Errorf("save checkpoint of %q: %w", cp.Trigger, ErrFenced)
	}
	cp.Trigger = l.Key()
	if err := r.store.SaveFencedCheckpoint(ctx, cp, l.Fence()); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			l.Lost(err)
			return fmt.Errorf("%w: %w", ErrFenced, err)
		}
		return err
	}
	knownCheckpoints{s: s}.remember(cp)
	return nil
}

// resumeFrom moves the checkpoint of s's unit to from (now or a time),
// marked as control request control's rewrite ("" for none), records the
// range it passed over in the history (the changes in it not delivered yet
// are left undelivered, not dead-lettered: see passedOver) and lifts the
// unit's pause and permanent failure; the unit must be held stopped. It
// only skips forward: a time
// whose position is before the unit's checkpoint (or that cannot be
// compared with it) is refused with an error wrapping ErrRewind that names
// `changehook redeliver`, and a time in the future with one wrapping
// ErrFutureTime (PositionAt); nothing is changed then. A unit without a
// checkpoint of its own after a change of partitions that did not carry
// them over is held to the one it would have resumed from (see
// priorCheckpoint) as to its own: a time before it is refused so, and a
// resume from now that finds it ahead of the server's clock moves back
// (Skipped.Back) and records nothing.
func (r *Runner) resumeFrom(ctx context.Context, s *slot, from ResumeFrom, control string) (Skipped, error) {
	p, err := r.planResume(ctx, s, from)
	if err != nil {
		return Skipped{}, err
	}
	return r.applyResume(ctx, p, from, control)
}

// resumePlan is where resumeFrom moves one unit: its slot, its checkpoint
// (old, when found), the position of the resume's time (cp) and, when the
// unit has no checkpoint, the one it would have resumed from under the
// trigger's previous partitioning (prior, when priorFound: see
// priorCheckpoint).
type resumePlan struct {
	s          *slot
	t          *triggers.Trigger
	old        store.Checkpoint
	found      bool
	cp         store.Checkpoint
	prior      store.Checkpoint
	priorFound bool
}

// planResume reads s's checkpoint and the position of from, and checks
// that moving there skips forward (see resumeFrom); it changes nothing.
func (r *Runner) planResume(ctx context.Context, s *slot, from ResumeFrom) (resumePlan, error) {
	s.mu.Lock()
	t := s.t
	s.mu.Unlock()
	old, found, err := r.store.LoadCheckpoint(ctx, t.Key())
	if err != nil {
		return resumePlan{}, err
	}
	p := resumePlan{s: s, t: t, old: old, found: found}
	if !found {
		if p.prior, p.priorFound, err = priorCheckpoint(ctx, r.store, t); err != nil {
			return resumePlan{}, err
		}
	}
	last, has := p.last()
	if has && !from.Now {
		if err := beforeCheckpoint(last, from.Time, t.Name); err != nil {
			return resumePlan{}, err
		}
	}
	if p.cp, err = PositionAt(ctx, r.client, t, from.Time); err != nil {
		return resumePlan{}, err
	}
	if has && !from.Now {
		if err := notRewind(last, p.cp, from.Time, t.Name); err != nil {
			return resumePlan{}, err
		}
	}
	return p, nil
}

// last returns the checkpoint p's unit would resume from without the
// resume: its own, or else the previous partitioning's (prior); ok is
// false when there is neither.
func (p resumePlan) last() (cp store.Checkpoint, ok bool) {
	if p.found {
		return p.old, true
	}
	return p.prior, p.priorFound
}

// priorCheckpoint returns, for t's unit that has no checkpoint of its own,
// read from st, the checkpoint it would have resumed from under the
// trigger's previous partitioning: the oldest of the checkpoints of another partitioning
// (otherPartitioning; the single checkpoint under the trigger's name when
// it ran unpartitioned), as `checkpoints repartition` would start every
// new partition from it. Its position is where a resume's skipped range
// truly starts after a change of partitions that did not carry the
// checkpoints over. ok is false when there is none.
func priorCheckpoint(ctx context.Context, st *store.Store, t *triggers.Trigger) (store.Checkpoint, bool, error) {
	cp, ok, _, err := priorCheckpoints(ctx, st, t)
	return cp, ok, err
}

// priorCheckpoints is priorCheckpoint, and also returns how many
// checkpoints of another partitioning there are (those without a position
// to compare included): a unit that must not move forward past them
// cannot be moved when there are some but none has a position (ok false).
func priorCheckpoints(ctx context.Context, st *store.Store, t *triggers.Trigger) (oldest store.Checkpoint, ok bool, n int, err error) {
	cps, err := st.TriggerCheckpoints(ctx, t.Name)
	if err != nil {
		return store.Checkpoint{}, false, 0, fmt.Errorf("list the checkpoints of %s under every partitioning: %w", t.Name, err)
	}
	others := otherPartitioning(t, cps)
	var oldestAt string
	for _, cp := range cps {
		if !slices.Contains(others, cp.Trigger) {
			continue
		}
		at, err := TokenPosition(cp.Token)
		if err != nil {
			continue // not comparable: it cannot start a range
		}
		if oldestAt == "" || at < oldestAt {
			oldest, oldestAt = cp, at
		}
	}
	return oldest, oldestAt != "", len(others), nil
}

// applyResume carries out p (see resumeFrom).
func (r *Runner) applyResume(ctx context.Context, p resumePlan, from ResumeFrom, control string) (Skipped, error) {
	var skipped Skipped
	s, t, cp := p.s, p.t, p.cp
	cp.Control = control
	if err := r.saveUnitCheckpoint(ctx, s, cp); err != nil {
		return skipped, err
	}
	// The range starts at the unit's checkpoint or, when it has none (its
	// partitions changed without the checkpoints carried over), where
	// the previous partitioning stood.
	old, found := p.last()
	if found {
		if skipped.From = checkpointTime(old); skipped.From.IsZero() {
			skipped.From = old.UpdatedAt
		}
	}
	// The new position by the server's clock (its token's time for now),
	// comparable with From; this machine's clock only when it has none.
	if skipped.To = checkpointTime(cp); skipped.To.IsZero() {
		skipped.To = cp.UpdatedAt
	}
	s.mu.Lock()
	s.pause, s.failed = nil, false
	s.mu.Unlock()
	if found {
		if back, err := positionBefore(cp, old); err == nil && back || err != nil && skipped.From.After(skipped.To) {
			// The old checkpoint was ahead of the new position (only a
			// resume from now gets here): nothing was skipped.
			skipped.Back = true
			r.log.Warn("trigger resumed from now, before its checkpoint: the checkpoint was ahead of the server's clock; nothing skipped, delivering every change from now",
				"trigger", t.Name, "key", t.Key(), "checkpoint", timeText(skipped.From), "now", timeText(skipped.To))
			return skipped, nil
		}
	}
	if r.HistoryOn() {
		r.recordHistory(store.AttemptRecord{Kind: store.KindSkipped, Trigger: t.Name, Partition: historyPartition(t),
			Reason: "resumed from " + from.String(), SkippedFrom: skipped.From, SkippedTo: skipped.To, At: r.opts.Clock.Now()})
	}
	return skipped, nil
}

// passedOver says what a resume that moved a checkpoint forward over sk
// did to the changes in between: those not delivered yet (the events the
// stopped trigger held, those not read yet) are left undelivered, and the
// resume does not dead-letter them either (no dead letter keeps them, so
// `dlq replay` cannot send them; `redeliver --since` can, while the oplog
// has them); those delivered (or dead-lettered) before stay so.
func passedOver(sk Skipped) string {
	if sk.From.IsZero() {
		return fmt.Sprintf("checkpoint set to %s, with no checkpoint before it to skip from: the changes before it that were not delivered yet are left undelivered, and not dead-lettered",
			timeText(sk.To))
	}
	return fmt.Sprintf("checkpoint moved from %s to %s: the changes in between that were not delivered yet are left undelivered, and not dead-lettered",
		timeText(sk.From), timeText(sk.To))
}

// skippedAttrs are the log attributes of sk's range: skipped_from (left
// out when there was no checkpoint before, rather than the zero time) and
// skipped_to.
func skippedAttrs(sk Skipped) []any {
	if sk.From.IsZero() {
		return []any{"skipped_to", sk.To}
	}
	return []any{"skipped_from", sk.From, "skipped_to", sk.To}
}

// passedOverLog is the log message of a resume that moved a checkpoint
// forward (see passedOver); skipped_from and skipped_to name the range,
// as the history's record of it does.
const passedOverLog = "trigger resumed past its checkpoint: the changes in between that were not delivered yet are left undelivered, and not dead-lettered"

// ErrRewind is returned (wrapped) by a resume from a time before the
// trigger's checkpoint: resume skips forward only; redeliver delivers again.
var ErrRewind = errors.New("refused, resume never moves a checkpoint back")

// notRewind returns nil when cp, the position at time at, is not before
// old, the checkpoint of trigger name's unit; otherwise an error wrapping
// ErrRewind that names the checkpoint's time and the command that does
// deliver the changes since at again.
func notRewind(old, cp store.Checkpoint, at time.Time, name string) error {
	before, err := positionBefore(cp, old)
	if err != nil {
		return fmt.Errorf("%w: cannot tell whether %s is before the checkpoint, so nothing was changed: %w", ErrRewind, timeText(at), err)
	}
	if !before {
		return nil
	}
	return rewindError(old, at, name)
}

// beforeCheckpoint returns rewindError when at falls in a second before
// old's cluster time, which no position at at can follow, else nil (a
// checkpoint of that second or without a time needs the position:
// notRewind). Checked before the position is looked up, so that a time
// both before the checkpoint and older than the oplog is refused for the
// checkpoint, whose way out (redeliver, or a later time) holds, rather
// than for the oplog, whose "earliest time it still reaches" may itself be
// before the checkpoint.
func beforeCheckpoint(old store.Checkpoint, at time.Time, name string) error {
	if cpAt := checkpointTime(old); !cpAt.IsZero() && at.Unix() < cpAt.Unix() {
		return rewindError(old, at, name)
	}
	return nil
}

// rewindError is the refusal of a resume from at, a time before old, the
// checkpoint of trigger name.
func rewindError(old store.Checkpoint, at time.Time, name string) error {
	cpAt := checkpointTime(old)
	where := ""
	switch {
	case cpAt.IsZero():
	case cpAt.Unix() == at.Unix():
		where = " (" + timeText(cpAt) + ", after changes of that second it handled)"
	default:
		where = " (" + timeText(cpAt) + ")"
	}
	return fmt.Errorf("%w: %s is before the trigger's checkpoint%s, so resuming from it would deliver again what was delivered, not skip anything; "+
		"nothing was changed. To deliver every change since %s again, run `changehook redeliver %s --since %s`; "+
		"to skip forward, resume from a later time or now", ErrRewind, timeText(at), where, timeText(at), name, timeText(at))
}

// CheckResumeFrom returns the error a resume of t (a trigger: each of its
// partitions; or one partition) from from would be refused with, read from
// the state database st and the deployment client watches: a time in the
// future (ErrFutureTime), before a unit's checkpoint (ErrRewind; for a unit
// without one after a change of partitions that did not carry them over,
// the previous partitioning's it would resume from, see priorCheckpoint)
// or no longer in the oplog. It returns nil for a resume from the checkpoint or
// now. The CLI checks it before recording the request, so that a refused
// resume changes nothing (a recorded resume lifts the pause); the process
// applying the request checks the same again.
func CheckResumeFrom(ctx context.Context, client *mongo.Client, st *store.Store, t *triggers.Trigger, from ResumeFrom) error {
	if from.Now || from.Time.IsZero() {
		return nil
	}
	units := []*triggers.Trigger{t}
	if _, one := t.PartitionIndex(); !one {
		units = t.Units()
	}
	var prior store.Checkpoint
	priorRead, priorFound := false, false
	for _, u := range units {
		old, found, err := st.LoadCheckpoint(ctx, u.Key())
		if err != nil {
			return fmt.Errorf("check the resume position: %w", err)
		}
		if !found {
			if !priorRead { // the same for every unit of t's partitioning
				if prior, priorFound, err = priorCheckpoint(ctx, st, u); err != nil {
					return fmt.Errorf("check the resume position: %w", err)
				}
				priorRead = true
			}
			old, found = prior, priorFound
		}
		if found {
			if err := beforeCheckpoint(old, from.Time, t.Name); err != nil {
				if len(units) > 1 {
					return fmt.Errorf("partition %s: %w", u.Key(), err)
				}
				return err
			}
		}
		cp, err := PositionAt(ctx, client, u, from.Time)
		if err != nil {
			return err
		}
		if found {
			if err := notRewind(old, cp, from.Time, t.Name); err != nil {
				if len(units) > 1 {
					return fmt.Errorf("partition %s: %w", u.Key(), err)
				}
				return err
			}
		}
	}
	return nil
}

// loadPauses pauses every trigger whose control document says paused,
// before Run starts the triggers, and lets every unit run (see
// slot.unread). When the documents cannot be read the units stay held,
// showing why, and the controls goroutine reads them again with backoff
// (it is poked): a pause is never skipped because a read failed.
func (r *Runner) loadPauses(ctx context.Context) {
	unread := r.unreadSlots()
	loadCtx, cancel := context.WithTimeout(ctx, DefaultCheckpointTimeout)
	defer cancel()
	cs, err := r.store.LoadControls(loadCtx, r.controlKeys())
	if err != nil {
		if ctx.Err() != nil {
			return // stopping: nothing is waiting for the read
		}
		r.controlsUnreadable(unread, err)
		r.pokeControls()
		return
	}
	r.applyPauses(cs)
	r.controlsRead(unread)
}

// applyPauses pauses the units of every paused document of cs, newest
// first: a unit paused by two documents (its partition's and its
// trigger's) shows the newer pause at once, not the older one replaced by
// the newer as if it had been paused again.
func (r *Runner) applyPauses(cs []store.Control) {
	cs = slices.Clone(cs)
	slices.SortStableFunc(cs, func(a, b store.Control) int { return b.PausedAt.Compare(a.PausedAt) })
	for _, c := range cs {
		if c.Paused {
			r.pauseFromControl(c)
		}
	}
}

// unreadSlots returns the units whose control documents have not been read
// yet (slot.unread): those a read of the configuration's documents
// starting now lets run once it succeeded.
func (r *Runner) unreadSlots() []*slot {
	r.mu.Lock()
	all := r.orderedSlots()
	r.mu.Unlock()
	var out []*slot
	for _, s := range all {
		s.mu.Lock()
		if s.unread {
			out = append(out, s)
		}
		s.mu.Unlock()
	}
	return out
}

// controlsRead lets the units ss run (if they should): their control
// documents were read and applied.
func (r *Runner) controlsRead(ss []*slot) {
	for _, s := range ss {
		s.mu.Lock()
		if s.unread {
			s.unread, s.unreadErr, s.unreadErrAt = false, "", time.Time{}
			r.reconcile(s)
		}
		s.mu.Unlock()
	}
}

// controlsUnreadable shows err, why their control documents could not be
// read, on the units ss, which stay held; it is logged once per failed
// read.
func (r *Runner) controlsUnreadable(ss []*slot, err error) {
	now := r.opts.Clock.Now()
	msg := "cannot read the runtime controls: " + err.Error()
	held := 0
	for _, s := range ss {
		s.mu.Lock()
		if s.unread {
			s.unreadErr, s.unreadErrAt = msg, now
			held++
		}
		s.mu.Unlock()
	}
	if held > 0 {
		r.log.Warn("cannot read the runtime controls; the triggers not started yet wait for them (they may be paused), read again shortly",
			"units", held, "error", err)
	} else {
		r.log.Warn("cannot read the runtime controls; read again shortly", "error", err)
	}
}

// pauseFromControl pauses every unit of c, a paused control document, that
// is not paused, showing c's reason, by and time. A unit already paused
// shows the newest pause: c's when its pause was read from c and c now says
// otherwise (the trigger was paused again), or when c's pause is more
// recent than the one it shows (read from another document, or set by
// Pause) — except a payload-error pause, this process's own, which stays
// shown until a resume (it keeps /readyz failing). For a pause request of
// c it notes, once per request, the pause each unit had before, for the
// request's result (repausedMessage).
func (r *Runner) pauseFromControl(c store.Control) {
	ss, err := r.slotsOf(c.Trigger)
	if err != nil {
		return
	}
	since := c.PausedAt
	if since.IsZero() {
		since = r.opts.Clock.Now()
	}
	reqID := ""
	if c.Request != nil && c.Request.Kind == store.RequestPause {
		reqID = c.Request.ID
	}
	logged := false
	for i, s := range ss {
		s.mu.Lock()
		prev := s.pause
		if reqID != "" && s.repaused[c.Trigger].id != reqID {
			// The pause the unit had before this request: none, or one
			// that is not already this request's (a unit a reload created
			// copies its pause).
			rp := repause{id: reqID}
			if prev != nil && (s.pauseDoc != c.Trigger || newerPause(*prev, true, c)) {
				p := *prev
				rp.prev = &p
			}
			if s.repaused == nil {
				s.repaused = map[string]repause{}
			}
			s.repaused[c.Trigger] = rp
		}
		switch {
		case prev == nil:
			s.pause, s.pauseDoc = &PauseInfo{Reason: c.Reason, By: c.By, Since: since}, c.Trigger
			if i == 0 {
				r.log.Warn("trigger paused", "trigger", c.Trigger, "by", c.By, "reason", c.Reason)
			}
			r.reconcile(s)
		case prev.By != PauseByPayloadErrors && newerPause(*prev, s.pauseDoc == c.Trigger, c):
			p := PauseInfo{Reason: c.Reason, By: c.By, Since: c.PausedAt}
			if p.Since.IsZero() {
				p.Since = prev.Since // a document without a time: the pause goes on
			}
			s.pause, s.pauseDoc = &p, c.Trigger
			if !logged {
				r.log.Warn("trigger paused again: its pause now shows the newest request's", "trigger", c.Trigger, "by", c.By, "reason", c.Reason,
					"paused_by_before", prev.By, "reason_before", prev.Reason)
				logged = true
			}
		}
		s.mu.Unlock()
	}
}

// newerPause reports whether paused control document c says something
// newer than p, the pause a unit shows: when p was read from c (sameDoc),
// any difference (c was paused again since); otherwise a pause asked for
// after p started.
func newerPause(p PauseInfo, sameDoc bool, c store.Control) bool {
	if sameDoc {
		return c.Reason != p.Reason || c.By != p.By || !c.PausedAt.IsZero() && !c.PausedAt.Equal(p.Since)
	}
	return !c.PausedAt.IsZero() && c.PausedAt.After(p.Since)
}

// repause is the newest pause request of a control document a unit saw,
// and the pause it had before that request (nil: it was not paused).
type repause struct {
	id   string
	prev *PauseInfo
}

// repausedMessage is a unit's result of a pause request when the unit was
// already paused (prev) and now shows cur: what it was and what it is, so
// that the requester sees that it was paused already and what changed.
func repausedMessage(prev, cur PauseInfo) string {
	if prev.By == PauseByPayloadErrors {
		return fmt.Sprintf("already paused by %s since %s, which stays shown (and /readyz failing) until a resume; this pause is recorded too and holds after a restart",
			PauseByPayloadErrors, timeText(prev.Since))
	}
	return "already paused (" + pauseText(prev) + "); now paused " + pauseText(cur)
}

// pauseText is "by B since T" and the reason, if any.
func pauseText(p PauseInfo) string {
	s := "by " + cmp.Or(p.By, "?") + " since " + timeText(p.Since)
	if p.Reason != "" {
		s += fmt.Sprintf(": %q", p.Reason)
	}
	return s
}

// controlKeys returns the keys of the control documents that concern the
// configuration: every trigger's name and every partition's key.
func (r *Runner) controlKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.order)+len(r.slots))
	keys = append(keys, r.order...)
	for key := range r.slots {
		if _, ok := r.units[key]; !ok {
			keys = append(keys, key) // a partition's (an unpartitioned trigger's is its name)
		}
	}
	return keys
}

// configuredKey reports whether key is a trigger's name or a unit's key in
// the configuration; r.mu must not be held.
func (r *Runner) configuredKey(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, trigger := r.units[key]
	_, unit := r.slots[key]
	return trigger || unit
}

// seeControl records that request id of control document key is being
// applied to this process's state and reports whether it is new there: not
// seen before, and key still in the configuration (a reload may have
// removed it since the document was read).
func (r *Runner) seeControl(key, id string) bool {
	r.ctlMu.Lock()
	defer r.ctlMu.Unlock()
	if r.ctlSeen[key] == id || !r.configuredKey(key) {
		return false
	}
	r.ctlSeen[key] = id
	return true
}

// forgetRemovedControls drops what ctlSeen records of keys no longer in the
// configuration (removed triggers, the partitions of a repartitioned one),
// so that it holds at most one entry per configured key however many
// triggers were ever controlled. A trigger added back applies its
// document's effect again, to units that are new.
func (r *Runner) forgetRemovedControls() {
	r.ctlMu.Lock()
	defer r.ctlMu.Unlock()
	for key := range r.ctlSeen {
		if !r.configuredKey(key) {
			delete(r.ctlSeen, key)
		}
	}
}

// controlQueue bounds the control documents read from the change stream
// and not applied yet; the reader waits when it is full.
const controlQueue = 64

// pokeControls asks the controls goroutine to read the configuration's
// control documents again (a unit started under a new lease, or added by a
// reload, may have requests to apply). It never blocks.
func (r *Runner) pokeControls() {
	select {
	case r.ctlPoke <- struct{}{}:
	default:
	}
}

// watchControls applies control requests until ctx ends. A reader opens the
// controls collection's change stream, then reads the configuration's
// documents (so no request written before the stream opened is missed) and
// hands each changed document over; a failed stream is reopened with
// backoff. This goroutine alone applies them, in the order read, and reads
// the configuration's documents again when poked (pokeControls; see
// readAllControls), and after a backoff when that read failed. Documents
// of triggers not in the configuration (removed ones, other partitionings)
// are never read in full, only seen going by on the stream when written,
// and ignored.
func (r *Runner) watchControls(ctx context.Context) {
	docs := make(chan controlRead, controlQueue)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		r.readControls(ctx, docs)
	}()
	defer func() { <-readerDone }()
	// A failed read of the documents is tried again after a backoff (a
	// healthy stream never reopens to read them again): retryDue is
	// signaled by the one waiting goroutine, retrying while it waits.
	retryDue := make(chan struct{}, 1)
	var retries sync.WaitGroup
	defer retries.Wait()
	retrying, attempt := false, 0
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-docs:
			if d.all != nil {
				r.controlsRead(d.all)
			} else {
				r.applyControl(ctx, d.c)
			}
			continue
		case <-r.ctlPoke:
		case <-retryDue:
			retrying = false
		}
		err := r.readAllControls(ctx)
		switch {
		case err == nil:
			attempt = 0
		case ctx.Err() != nil:
			return
		case !retrying:
			retrying = true
			delay := dispatcher.FullJitterBackoff(attempt, DefaultInitialRetryBackoff, DefaultMaxRetryBackoff)
			attempt++
			retries.Go(func() {
				if r.opts.Clock.Sleep(ctx, delay) == nil {
					retryDue <- struct{}{}
				}
			})
		}
	}
}

// readAllControls reads the configuration's control documents and applies
// them (a poke): their pauses first, newest first (see applyPauses), then
// each one's request. The units not started yet because their documents
// were not read (slot.unread) may run once that is done; when the read
// fails they stay held, showing why, and the error is returned.
func (r *Runner) readAllControls(ctx context.Context) error {
	unread := r.unreadSlots()
	lctx, cancel := context.WithTimeout(ctx, DefaultCheckpointTimeout)
	all, err := r.store.LoadControls(lctx, r.controlKeys())
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.controlsUnreadable(unread, err)
		}
		return fmt.Errorf("read the runtime controls: %w", err)
	}
	r.applyPauses(all)
	for _, c := range all {
		r.applyControl(ctx, c)
	}
	r.controlsRead(unread)
	return nil
}

// controlRead is what the controls' reader hands over: a control document
// c, or (all not nil) the end of the configuration's documents, read when
// the units all were not read yet (slot.unread).
type controlRead struct {
	c   store.Control
	all []*slot
}

// readControls sends the configuration's control documents, each time its
// stream opens, then every changed one, to docs until ctx ends.
func (r *Runner) readControls(ctx context.Context, docs chan<- controlRead) {
	send := func(d controlRead) bool {
		select {
		case docs <- d:
			return true
		case <-ctx.Done():
			return false
		}
	}
	coll := r.store.ControlsCollection()
	for attempt := 0; ; attempt++ {
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup))
		if err == nil {
			unread := r.unreadSlots()
			if all, lerr := r.store.LoadControls(ctx, r.controlKeys()); lerr == nil {
				for _, c := range all {
					if !send(controlRead{c: c}) {
						break
					}
				}
				if len(unread) > 0 {
					// Once those are applied, the units not read before are.
					send(controlRead{all: unread})
				}
				invalidated := false
				for cs.Next(ctx) {
					attempt = 0
					var ev struct {
						OperationType string         `bson:"operationType"`
						FullDocument  *store.Control `bson:"fullDocument"`
					}
					if cs.Decode(&ev) != nil {
						continue
					}
					if ev.OperationType == "invalidate" {
						invalidated = true
					}
					if ev.FullDocument != nil && !send(controlRead{c: *ev.FullDocument}) {
						break
					}
				}
				err = cs.Err()
				switch {
				case err != nil, ctx.Err() != nil:
				case invalidated:
					err = errors.New("the controls collection was dropped or renamed: its change stream ended (invalidate)")
				default:
					err = errors.New("the controls' change stream ended")
				}
			} else {
				err = lerr
			}
			_ = cs.Close(context.WithoutCancel(ctx))
		}
		if ctx.Err() != nil {
			return
		}
		delay := dispatcher.FullJitterBackoff(attempt, DefaultInitialRetryBackoff, DefaultMaxRetryBackoff)
		r.log.Warn("cannot watch the runtime controls; retrying", "error", err, "retry_in", delay)
		if r.opts.Clock.Sleep(ctx, delay) != nil {
			return
		}
	}
}

// rewrites reports whether req rewrites its units' checkpoints (redeliver,
// resume from now or a time): each unit is then held stopped from when this
// Runner learns of the request until the unit's runner has applied it, so
// that no member runs it from the old position meanwhile.
func rewrites(req store.ControlRequest) bool {
	return req.Kind == store.RequestRedeliver || req.Kind == store.RequestResume && req.From != ""
}

// applyControl brings this Runner in line with control document c (the
// controls goroutine alone calls it). A request applies to every unit of
// its trigger — the trigger, or each partition of a partitioned one; a
// partition's key names that partition alone:
//
//   - Its effect on this process's state is applied to every unit, run
//     here or not, so that a unit acquired later starts in the right
//     state: a paused document pauses them (at every reading, so units a
//     reload created are paused too); a resume lifts it, once.
//   - The runner of each unit (the lease holder in a cluster; for a pause
//     or a resume of a trigger no member runs — disabled on every live
//     member, no lease of it held — every member) applies it to that unit — a checkpoint rewrite under the unit's lease
//     — and records the unit's result in the document
//     (store.Store.RecordUnitApplied). Units nobody runs now are applied
//     by whichever member acquires them later (StartLeased pokes this
//     goroutine), before they read anything.
//   - Once every unit has recorded a result, the combined result is stored
//     as c.Applied, which `changehook pause|resume|skip|redeliver` and the
//     admin API wait for.
func (r *Runner) applyControl(ctx context.Context, c store.Control) {
	if c.Request == nil {
		if c.Paused {
			r.pauseFromControl(c) // a pause without its request: held all the same
		}
		return
	}
	ss, err := r.slotsOf(c.Trigger)
	if err != nil {
		return // not a trigger of this configuration
	}
	req := *c.Request
	if req.Kind == store.RequestSkip && len(ss) > 1 {
		// The held event is one partition's: the request must name it.
		// (RequestControl and the CLI refuse such a request before
		// storing it; one stored by an older version ends here.)
		if c.Pending() {
			r.finish(ctx, c, store.ControlResult{ID: req.ID, At: r.opts.Clock.Now().UTC(),
				Error: skipNeedsPartition(len(ss), ss[0].key(), ss[len(ss)-1].key()).Error()})
		}
		return
	}
	done := c.UnitsDone()
	r.mirrorRewrites(c, ss, done)
	if c.Paused {
		// Every time: units a reload created since start paused too.
		r.pauseFromControl(c)
	}
	if r.seeControl(c.Trigger, req.ID) {
		r.applyLocally(c, ss, c.Pending())
	}
	if !c.Pending() {
		return
	}
	unrun := r.unrun(ctx, c.Trigger, ss, req, done)
	fresh := false
	for _, s := range ss {
		s.mu.Lock()
		key := s.t.Key()
		mine := r.runsUnit(s, req, unrun)
		s.mu.Unlock()
		if _, ok := done[key]; ok || !mine {
			continue
		}
		if !fresh {
			// c may be older than what other members recorded since (a
			// unit handed over to this member after its previous owner
			// applied the request): read it again before applying.
			lctx, cancel := context.WithTimeout(ctx, DefaultCheckpointTimeout)
			now, found, err := r.store.LoadControl(lctx, c.Trigger)
			cancel()
			if err != nil || !found || now.Request == nil || now.Request.ID != req.ID {
				return // unreadable (applied at the next read) or replaced
			}
			c, done, fresh = now, now.UnitsDone(), true
			r.mirrorRewrites(c, ss, done)
			if _, ok := done[key]; ok || !c.Pending() {
				continue
			}
		}
		r.applyAndRecord(ctx, &c, s)
	}
	if !c.Pending() {
		return
	}
	if res, ok := r.combine(c, ss); ok {
		r.finish(ctx, c, res)
	}
}

// mirrorRewrites holds every unit of ss that a pending rewrite of c has not
// been applied to yet (see rewrites), and releases the others.
func (r *Runner) mirrorRewrites(c store.Control, ss []*slot, done map[string]store.UnitResult) {
	req := *c.Request
	for _, s := range ss {
		s.mu.Lock()
		_, unitDone := done[s.t.Key()]
		hold := rewrites(req) && c.Pending() && !unitDone && s.applied[c.Trigger].ID != req.ID
		_, held := s.rewrite[c.Trigger]
		switch {
		case hold && !held:
			if s.rewrite == nil {
				s.rewrite = map[string]string{}
			}
			s.rewrite[c.Trigger] = req.ID
			r.reconcile(s)
		case !hold && held:
			delete(s.rewrite, c.Trigger)
			r.reconcile(s)
		}
		s.mu.Unlock()
	}
}

// applyLocally applies a resume's effect on this process's state to every
// unit of ss, once per request: it lifts the pause and a permanent failure
// (a resume from a position too: its units stay held by mirrorRewrites
// until rewritten) — but not lost history under a resume from the
// checkpoint, which would fail again at once (see lostHistory; applyUnit
// decides) — and notes in each unit whether it lifted either (for
// applyUnit's result). A resume that was already applied everywhere before
// this process saw it (it was not watching the controls then) lifts only
// operators' pauses. A resume of a partition that a pause of its whole
// trigger superseded (store.Control.ResumeSuperseded) lifts nothing.
func (r *Runner) applyLocally(c store.Control, ss []*slot, pending bool) {
	if c.Paused || c.Request.Kind != store.RequestResume || c.ResumeSuperseded {
		// A resume a pause of the whole trigger superseded lifts nothing.
		return
	}
	logged := false
	for _, s := range ss {
		s.mu.Lock()
		lift := s.pause != nil && (pending || s.pause.By != PauseByPayloadErrors)
		if lift && !logged {
			r.log.Info("trigger resumed", "trigger", c.Trigger, "from", cmp.Or(c.Request.From, "checkpoint"))
			logged = true
		}
		// History lost stays failed under a resume from the checkpoint,
		// which would fail again at once: applyUnit refuses it (or lifts
		// it, when the checkpoint was moved since).
		_, _, lost := s.lostHistory()
		lost = lost && c.Request.From == ""
		if pending && (lift || s.failedNow() && !lost) {
			if s.lifted == nil {
				s.lifted = map[string]string{}
			}
			s.lifted[c.Trigger] = c.Request.ID
		}
		if lift {
			s.pause = nil
		}
		if pending && !lost {
			s.clearFailure()
		}
		r.reconcile(s)
		s.mu.Unlock()
	}
}

// runsUnit reports whether this Runner is the one to apply req to the unit
// of s and record its result: it runs the unit (holds its lease in a
// cluster); a pause or resume from the checkpoint outside a cluster, or,
// in a cluster, of a trigger disabled here that no member runs (unrun: see
// Runner.unrun), is every Runner's. s.mu must be held.
func (r *Runner) runsUnit(s *slot, req store.ControlRequest, unrun bool) bool {
	switch {
	case s.want:
		return true
	case rewrites(req) || req.Kind == store.RequestSkip:
		return false
	case !r.opts.Clustered:
		return true
	}
	return !s.t.Enabled && unrun
}

// unrun reports, for a pending pause or resume from the checkpoint of
// trigger (its units ss, done those that recorded a result), whether no
// member of the cluster runs the trigger (Options.Unrun), when that
// decides runsUnit: the trigger is disabled here, this Runner is
// clustered and a unit has recorded no result yet. A member that has the
// trigger disabled must not acknowledge a request that the trigger's
// lease holder, on another member, has not applied. When it cannot tell,
// it records nothing: the request stays pending, and is looked at again
// the next time the controls are read.
func (r *Runner) unrun(ctx context.Context, trigger string, ss []*slot, req store.ControlRequest, done map[string]store.UnitResult) bool {
	if !r.opts.Clustered || rewrites(req) || req.Kind == store.RequestSkip {
		return false
	}
	open := false
	for _, s := range ss {
		s.mu.Lock()
		_, ok := done[s.t.Key()]
		disabled := !s.t.Enabled
		s.mu.Unlock()
		if !disabled {
			return false
		}
		open = open || !ok
	}
	if !open || r.opts.Unrun == nil {
		return false
	}
	uctx, cancel := context.WithTimeout(ctx, DefaultCheckpointTimeout)
	defer cancel()
	unrun, err := r.opts.Unrun(uctx, trigger)
	if err != nil {
		r.log.Warn("cannot tell whether another member runs a trigger disabled here; its control request is acknowledged by the member that does, or looked at again when the controls are next read",
			"trigger", trigger, "error", err)
		return false
	}
	return unrun
}

// applyAndRecord applies c's request to the unit of s and records the
// unit's result in the control document (updating *c). Meanwhile a Stop of
// the unit (a handoff) waits, so that its lease is released only after the
// result is recorded and the next owner does not apply it again.
func (r *Runner) applyAndRecord(ctx context.Context, c *store.Control, s *slot) {
	busy := make(chan struct{})
	s.mu.Lock()
	s.ctl = busy
	key := s.t.Key()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.ctl = nil
		s.mu.Unlock()
		close(busy)
	}()
	res, ok := r.applyUnit(ctx, *c, s)
	if !ok {
		return
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCheckpointTimeout)
	defer cancel()
	after, recorded, err := r.store.RecordUnitApplied(mctx, c.Trigger, res)
	if err != nil {
		r.log.Warn("cannot record a control request's result; recorded again when the controls are next read", "trigger", c.Trigger, "key", key, "error", err)
		return
	}
	if recorded {
		*c = after
	}
}

// applyUnit applies c's request to the unit of s, which this Runner runs,
// and returns the unit's result; ok is false when the lease was lost
// meanwhile (the next owner applies it) or Run is stopping (the request
// stays pending). A result this Runner already produced for the request
// (its recording failed) is returned again.
func (r *Runner) applyUnit(ctx context.Context, c store.Control, s *slot) (res store.UnitResult, ok bool) {
	req := *c.Request
	s.mu.Lock()
	prev := s.applied[c.Trigger]
	t, l := s.t, s.lease
	s.mu.Unlock()
	if prev.ID == req.ID {
		return prev, true
	}
	res = store.UnitResult{Key: t.Key(), ID: req.ID}
	if l != nil {
		res.By = l.Fence().Owner
	}
	var msg string
	var err error
	switch req.Kind {
	case store.RequestPause:
		msg = "paused"
		s.mu.Lock()
		rp, cur := s.repaused[c.Trigger], s.pause
		s.mu.Unlock()
		if rp.id == req.ID && rp.prev != nil && cur != nil {
			msg = repausedMessage(*rp.prev, *cur)
		}
	case store.RequestResume:
		var from ResumeFrom
		if from, err = ParseResumeFrom(req.From); err != nil {
			break
		}
		if from.IsCheckpoint() {
			s.mu.Lock()
			lifted := s.lifted[c.Trigger] == req.ID
			wayOut, loss, lost := s.lostHistory()
			s.mu.Unlock()
			if c.ResumeSuperseded && !lifted {
				msg = supersededMessage(c.Trigger)
				break
			}
			if lost {
				if !r.checkpointResumable(ctx, t) {
					err = lostHistoryRefusal(t.Key(), loss, wayOut)
					break
				}
				// The checkpoint was moved since it failed: resumed from
				// there, the failure applyLocally left is lifted now.
				s.mu.Lock()
				if s.lifted == nil {
					s.lifted = map[string]string{}
				}
				s.lifted[c.Trigger] = req.ID
				s.clearFailure()
				r.reconcile(s)
				s.mu.Unlock()
				lifted = true
			}
			if lifted {
				msg = "resumed from the checkpoint"
			} else {
				// It ran as a resume leaves it: say so rather than claim
				// to have resumed it.
				msg = fmt.Sprintf("not paused or failed (state %s), so nothing changed", s.status().State)
			}
			break
		}
		var sk Skipped
		already := false
		err = r.hold(ctx, []*slot{s}, requestedBy("resume --from", req.By), func(ss []*slot) error {
			done, err := r.rewrittenBy(ctx, ss[0], req.ID)
			if err != nil {
				return err
			}
			if already = done; already {
				ss[0].mu.Lock()
				if !c.ResumeSuperseded {
					ss[0].pause = nil
				}
				ss[0].failed = false
				ss[0].mu.Unlock()
				return nil
			}
			ss[0].mu.Lock()
			pause := ss[0].pause
			ss[0].mu.Unlock()
			sk, err = r.resumeFrom(ctx, ss[0], from, req.ID)
			if c.ResumeSuperseded && pause != nil {
				// The checkpoint moved, but the pause of the whole
				// trigger recorded after the request holds.
				ss[0].mu.Lock()
				if ss[0].pause == nil {
					ss[0].pause = pause
				}
				ss[0].mu.Unlock()
			}
			return err
		})
		switch {
		case err == nil && already:
			msg = appliedBefore
		case err == nil && sk.Back:
			msg = fmt.Sprintf("resumed from %s, before its checkpoint (%s, ahead of the server's clock): nothing skipped; every change from %s is delivered",
				from, timeText(sk.From), timeText(sk.To))
		case err == nil:
			msg = fmt.Sprintf("resumed from %s: %s", from, passedOver(sk))
			r.log.Warn(passedOverLog, append([]any{"trigger", t.Name, "key", t.Key(), "from", from.String()}, skippedAttrs(sk)...)...)
			if c.ResumeSuperseded {
				msg += "; " + supersededMessage(c.Trigger)
			}
		case !errors.Is(err, ErrFenced) && ctx.Err() == nil:
			// The request lifted the unit's pause (or failure) when this
			// process read it (applyLocally), as on every member: the
			// unit runs again from the checkpoint it kept. Said, so that
			// the result does not pass it for unchanged.
			s.mu.Lock()
			lifted := s.lifted[c.Trigger] == req.ID
			s.mu.Unlock()
			if lifted {
				err = fmt.Errorf("%w; the resume lifted the pause (or failure) of %s all the same, so it runs again from its checkpoint, "+
					"delivering the changes since it: to leave them undelivered (not dead-lettered), run `changehook resume %s --from %s` again", err, t.Key(), t.Key(), from)
			}
		}
	case store.RequestSkip:
		var sk skipped
		var already bool
		sk, already, err = r.skip(ctx, s, req.By, req.ID, req.WebhookID)
		switch {
		case err == nil && already:
			msg = appliedBefore
		case err == nil:
			msg = sk.message()
		}
	case store.RequestRedeliver:
		if req.Since.IsZero() {
			err = fmt.Errorf("since must be a time in the past, not %v", req.Since)
			break
		}
		if err = CheckNotFuture(ctx, r.client, req.Since); err != nil {
			break // by the server's clock, before the trigger is held
		}
		var rw rewound
		err = r.hold(ctx, []*slot{s}, requestedBy("redeliver", req.By), func(ss []*slot) error {
			var err error
			rw, err = r.rewind(ctx, ss[0], req.Since, req.ID)
			return err
		})
		if err == nil {
			msg = rw.message(req.Since)
			s.mu.Lock()
			paused := s.pause != nil
			s.mu.Unlock()
			if paused && !rw.already {
				// The pause holds: nothing is delivered until a resume.
				msg += "; " + pausedRedeliverNote
			}
		}
	default:
		err = fmt.Errorf("unknown control request %q", req.Kind)
	}
	if ctx.Err() != nil || errors.Is(err, ErrFenced) {
		return res, false
	}
	res.At, res.Message = r.opts.Clock.Now().UTC(), msg
	if err != nil {
		res.Error = err.Error()
		r.log.Warn("control request failed", "trigger", t.Name, "key", t.Key(), "kind", req.Kind, "error", err)
	}
	s.mu.Lock()
	if s.applied == nil {
		s.applied = map[string]store.UnitResult{}
	}
	s.applied[c.Trigger] = res
	delete(s.rewrite, c.Trigger)
	r.reconcile(s)
	s.mu.Unlock()
	return res, true
}

// supersededMessage is the result of a resume of partition key that a
// pause of its whole trigger, recorded after it, superseded.
func supersededMessage(key string) string {
	name, _, _, _ := triggers.ParsePartitionKey(key)
	return fmt.Sprintf("still paused: `pause %s`, recorded after this resume, holds every partition (`changehook resume %s` resumes them all)", name, name)
}

// combine returns the combined result of c's request once every unit of ss
// has recorded one (ok false before): for one unit its result; for several,
// each unit's, and an error naming the units that failed.
func (r *Runner) combine(c store.Control, ss []*slot) (store.ControlResult, bool) {
	done := c.UnitsDone()
	units := make([]store.UnitResult, 0, len(ss))
	for _, s := range ss {
		s.mu.Lock()
		key := s.t.Key()
		s.mu.Unlock()
		u, ok := done[key]
		if !ok {
			return store.ControlResult{}, false
		}
		units = append(units, u)
	}
	res := store.ControlResult{ID: c.Request.ID, At: r.opts.Clock.Now().UTC()}
	if len(units) == 1 {
		res.Message, res.Error = units[0].Message, units[0].Error
		return res, true
	}
	var failed, lines []string
	same := true
	for _, u := range units {
		if u.Error != "" {
			failed = append(failed, u.Key+": "+u.Error)
			lines = append(lines, "  "+u.Key+": failed: "+u.Error)
		} else {
			lines = append(lines, "  "+u.Key+": "+u.Message)
		}
		same = same && u.Error == "" && u.Message == units[0].Message
	}
	switch {
	case same:
		res.Message = fmt.Sprintf("%s (all %d partitions)", units[0].Message, len(units))
	default:
		res.Message = fmt.Sprintf("applied by each of the %d partitions:\n%s", len(units), strings.Join(lines, "\n"))
	}
	if len(failed) > 0 {
		res.Error = fmt.Sprintf("failed on %d of %d partitions (%s); per partition:\n%s", len(failed), len(units), strings.Join(failed, "; "), strings.Join(lines, "\n"))
	}
	return res, true
}

// finish stores res as the result of c's request.
func (r *Runner) finish(ctx context.Context, c store.Control, res store.ControlResult) {
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCheckpointTimeout)
	defer cancel()
	if err := r.store.MarkControlApplied(mctx, c.Trigger, res); err != nil {
		r.log.Warn("cannot record a control request's result", "trigger", c.Trigger, "error", err)
	}
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "the start"
	}
	return t.UTC().Format(time.RFC3339)
}

// RequestControl is the package function RequestControl on the Runner's
// store, for a trigger of its configuration (else ErrUnknownTrigger). A
// skip, redeliver or resume from a position of a trigger disabled in its
// configuration is refused before anything is recorded, with an error
// wrapping ErrTriggerDisabled (see CheckEnabled).
func (r *Runner) RequestControl(ctx context.Context, name, reason string, req store.ControlRequest) (string, error) {
	ss, err := r.slotsOf(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", req.Kind, err)
	}
	if req.Kind == store.RequestSkip && len(ss) > 1 {
		// Refused before it is stored, where it would replace a request
		// still pending on the trigger.
		return "", fmt.Errorf("%s %s: %w", req.Kind, name, skipNeedsPartition(len(ss), ss[0].key(), ss[len(ss)-1].key()))
	}
	ss[0].mu.Lock()
	enabled := ss[0].t.Enabled // every unit's, as the trigger's
	ss[0].mu.Unlock()
	if err := checkEnabled(enabled, req); err != nil {
		// Refused before it is stored, where no member would ever apply
		// it and it would block the trigger's other controls.
		return "", fmt.Errorf("%s %s: %w", req.Kind, name, err)
	}
	if req.Kind == store.RequestResume {
		// Refused before it is stored, as the CLI does: a stored resume
		// lifts the pause even when its position is then refused.
		from, err := ParseResumeFrom(req.From)
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", req.Kind, name, err)
		}
		ss[0].mu.Lock()
		t := ss[0].t // the trigger, or the one partition name names
		ss[0].mu.Unlock()
		if len(ss) > 1 {
			r.mu.Lock()
			if i := slices.IndexFunc(r.cfg.Triggers, func(c *triggers.Trigger) bool { return c.Name == name }); i >= 0 {
				t = r.cfg.Triggers[i]
			}
			r.mu.Unlock()
		}
		if t != nil {
			if err := CheckResumeFrom(ctx, r.client, r.store, t, from); err != nil {
				return "", fmt.Errorf("%s %s: %w", req.Kind, name, err)
			}
		}
	}
	return RequestControl(ctx, r.store, name, reason, req)
}

// ErrTriggerDisabled is wrapped by the refusal of a skip, a redeliver or a
// resume from a position (see store.Rewrites) of a trigger disabled in the
// configuration (enabled: false): no changehook runs it, so the request
// would never be applied, and while pending it would refuse every other
// control of the trigger.
var ErrTriggerDisabled = errors.New("disabled (enabled: false), so no changehook runs it to apply this, and while pending it would refuse the trigger's other controls: " +
	"nothing was recorded; enable it first (enabled: true, then reload)")

// CheckEnabled returns an error wrapping ErrTriggerDisabled when req
// rewrites a position or dead-letters an event (store.Rewrites) and t, a
// trigger or one partition of it, is disabled; nil otherwise (a pause or a
// resume from the checkpoint of a disabled trigger is recorded: it says
// what the trigger is to be once enabled). Runner.RequestControl and the
// CLI check it before recording a request.
func CheckEnabled(t *triggers.Trigger, req store.ControlRequest) error {
	return checkEnabled(t.Enabled, req)
}

func checkEnabled(enabled bool, req store.ControlRequest) error {
	if enabled || !store.Rewrites(req) {
		return nil
	}
	return ErrTriggerDisabled
}

// CheckSkipTarget returns nil when t, a trigger or one partition of it,
// holds its own events, so that a skip can name it; for a partitioned
// trigger's whole name it returns the error naming its partitions (a skip
// must name the one that is stuck). The CLI checks it before recording a
// skip request, which would replace a request still pending on the
// trigger.
func CheckSkipTarget(t *triggers.Trigger) error {
	if _, ok := t.PartitionIndex(); ok || t.Partitions <= 1 {
		return nil
	}
	units := t.Units()
	return skipNeedsPartition(len(units), units[0].Key(), units[len(units)-1].Key())
}

// skipNeedsPartition is the error for a skip naming a trigger of n
// partitions, first and last their keys.
func skipNeedsPartition(n int, first, last string) error {
	return fmt.Errorf("it has %d partitions, each holding its own events: name one of them (%s … %s)", n, first, last)
}

// RequestControl records a control request for trigger name in the state
// database and waits (until ctx ends) for the processes running the
// trigger to apply it; it returns the result's message, or the request's
// error: "KIND NAME: " and why it failed, as the appliers recorded it
// (store.ControlResult.Error). It is how the admin API and the CLI reach whichever process runs
// the trigger — on a partitioned trigger, the owner of each partition:
// the result comes once every partition has applied it. When ctx ends first
// the request stays recorded and is applied when a process runs the trigger
// (each partition that has none yet); the error is then a *PendingError,
// which wraps ctx's error and names the partitions that applied it so far.
// Only a *PendingError means "recorded, applies later": when the request
// could not be recorded (the state database refused it or did not answer
// before ctx ended) the error wraps ErrNotRecorded and the store's error,
// and nothing will apply it. A request refused because the trigger has a
// redeliver, skip or resume from a position pending, which it would drop,
// wraps *store.PendingRequestError; a resume of one partition while its
// whole trigger is paused wraps *store.TriggerPausedError.
func RequestControl(ctx context.Context, st *store.Store, name, reason string, req store.ControlRequest) (string, error) {
	id, err := st.RequestControl(ctx, name, reason, req)
	if errors.As(err, new(*store.PendingRequestError)) || errors.As(err, new(*store.TriggerPausedError)) {
		return "", fmt.Errorf("%s %s: refused: %w", req.Kind, name, err)
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %w", req.Kind, name, ErrNotRecorded, err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last store.Control
	for {
		c, ok, err := st.LoadControl(ctx, name)
		if err == nil && ok && c.Applied != nil && c.Applied.ID == id {
			if c.Applied.Error != "" {
				// The appliers record why, naming neither the control nor
				// the trigger: said here, once.
				return "", fmt.Errorf("%s %s: %s", req.Kind, name, c.Applied.Error)
			}
			return c.Applied.Message, nil
		}
		if ok && c.Request != nil && c.Request.ID != id {
			return "", fmt.Errorf("%s %s: replaced by a newer request before it was applied", req.Kind, name)
		}
		if err == nil && ok {
			last = c
		}
		select {
		case <-ctx.Done():
			pe := &PendingError{Kind: req.Kind, Trigger: name, Err: ctx.Err()}
			for key := range last.UnitsDone() {
				pe.Applied = append(pe.Applied, key)
			}
			slices.Sort(pe.Applied)
			return "", pe
		case <-tick.C:
		}
	}
}

// ErrNotRecorded is wrapped by RequestControl's error when the state
// database did not confirm storing the request: most likely no process
// will ever apply it, so it must be sent again (a write that timed out may
// still have landed: a redeliver, skip or resume from a position sent again
// is then refused as pending, which says so).
var ErrNotRecorded = errors.New("not recorded, so nothing applies it: send it again once the state database answers " +
	"(if this write landed after all, a redeliver, skip or resume --from sent again is refused as already pending)")

// PendingError is RequestControl's error when its context ended before
// the request was applied everywhere; the request stays recorded.
type PendingError struct {
	// Kind and Trigger say which request, for which trigger.
	Kind, Trigger string
	// Applied are the units (partitions' keys, or the trigger's name) that
	// applied it so far; the others apply it when a process runs them.
	Applied []string
	// Err is the context's error.
	Err error
}

// Error says what was applied and what waits.
func (e *PendingError) Error() string {
	if len(e.Applied) == 0 {
		return fmt.Sprintf("%s %s: recorded, but no running changehook applied it yet (it applies when changehook runs the trigger): %v", e.Kind, e.Trigger, e.Err)
	}
	return fmt.Sprintf("%s %s: recorded and applied by %s so far; the other partitions apply it when a changehook runs them: %v",
		e.Kind, e.Trigger, strings.Join(e.Applied, ", "), e.Err)
}

// Unwrap returns the context's error.
func (e *PendingError) Unwrap() error { return e.Err }
