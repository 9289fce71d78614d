package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
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
// resume from a position, skip, redeliver) once, recording the result in the
// document (store.Control.Applied), which is what `changehook pause|resume|
// skip|redeliver` and the admin API wait for. Pauses therefore survive
// restarts and reach the process running the trigger.

// skipWait bounds how long Skip waits for the held event to be read again.
const skipWait = 10 * time.Second

// Skip dead-letters the first event after the trigger's checkpoint — the one
// holding a stuck strict or dead_letter: false trigger — and moves the
// checkpoint past it. It stops the trigger's watcher first (waiting for it
// as Stop does) and starts it again afterwards. The dead letter's last error
// says it was skipped by by (and the history records the skip); it returns
// its webhook id.
//
// A partitioned trigger holds events per partition, so Skip on one needs
// the partition: name is then the partition's key, "NAME/p<i>of<N>" (the
// trigger's status shows which partition is held); the trigger's own name
// is refused without touching anything.
func (r *Runner) Skip(ctx context.Context, name, by string) (webhookID string, err error) {
	if _, err := r.slot(name); err != nil {
		return "", fmt.Errorf("skip event: %w", err)
	}
	err = r.holding(ctx, name, "skip event", func(ss []*slot) error {
		s := ss[0]
		s.mu.Lock()
		t := s.t
		s.mu.Unlock()
		key := t.Key()
		cp, found, err := r.store.LoadCheckpoint(ctx, key)
		if err != nil {
			return err
		}
		if !found {
			return errors.New("the trigger has no checkpoint yet, so no event is held")
		}
		readCtx, cancel := context.WithTimeout(ctx, skipWait)
		defer cancel()
		cs, err := t.Watch(readCtx, r.client, t.ChangeStreamOptions().SetResumeAfter(cp.Token).SetMaxAwaitTime(time.Second))
		if err != nil {
			return fmt.Errorf("open the change stream at the checkpoint: %w", err)
		}
		defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
		if !cs.Next(readCtx) {
			if err := cs.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("read the event after the checkpoint: %w", err)
			}
			return errors.New("no event after the checkpoint: nothing is held")
		}
		raw := bson.Raw(append([]byte(nil), cs.Current...))
		if op, _ := raw.Lookup("operationType").StringValueOK(); op == "invalidate" {
			return errors.New("the next event is an invalidate: the trigger's stream ended")
		}
		token, ok := raw.Lookup("_id").DocumentOK()
		if !ok {
			return errors.New("the held event has no resume token")
		}
		now := r.opts.Clock.Now()
		webhookID = dispatcher.WebhookID(t.Name, bson.Raw(token))
		dl := dispatcher.DeadLetter{Trigger: t.Name, WebhookID: webhookID, Event: raw, Token: bson.Raw(token),
			LastReason: "skipped", LastError: "skipped by " + by, FirstAttemptAt: now, DeadLetteredAt: now}
		if err := r.store.PutDeadLetter(ctx, dl); err != nil {
			return err
		}
		next := store.Checkpoint{Trigger: key, Token: bson.Raw(token), UpdatedAt: now}
		if ts, i, ok := raw.Lookup("clusterTime").TimestampOK(); ok {
			next.ClusterTime = bson.Timestamp{T: ts, I: i}
		}
		if err := r.store.SaveCheckpoint(ctx, next); err != nil {
			return err
		}
		r.log.Warn("event skipped and dead-lettered", "trigger", t.Name, "key", key, "webhook_id", webhookID, "by", by)
		if r.opts.History != nil {
			op, _ := raw.Lookup("operationType").StringValueOK()
			dk, _ := raw.Lookup("documentKey").DocumentOK()
			r.opts.History.Record(store.AttemptRecord{Kind: store.KindSkipped, Trigger: t.Name, Partition: historyPartition(t),
				WebhookID: webhookID, DocumentKey: dk, Operation: op, Reason: "skipped", By: by, At: now})
		}
		return nil
	})
	return webhookID, err
}

// Redeliver rewinds a running trigger to since: it stops the watcher
// (waiting as Stop does, so its final checkpoint cannot overwrite the
// rewind), moves the checkpoint to the first change at or after since and
// starts it again, so every change since then is delivered again with the
// same webhook-ids. since must still be in the oplog and not in the future.
// On a partitioned trigger every partition is rewound.
func (r *Runner) Redeliver(ctx context.Context, name string, since time.Time) error {
	if since.IsZero() || since.After(r.opts.Clock.Now()) {
		return fmt.Errorf("redeliver trigger %s: since must be a time in the past, not %v", name, since)
	}
	return r.holding(ctx, name, "redeliver trigger", func(ss []*slot) error {
		for _, s := range ss {
			s.mu.Lock()
			t := s.t
			s.mu.Unlock()
			cp, err := PositionAt(ctx, r.client, t, since)
			if err != nil {
				return err
			}
			if err := r.store.SaveCheckpoint(ctx, cp); err != nil {
				return err
			}
		}
		r.log.Warn("trigger rewound for redelivery", "trigger", name, "since", since.UTC().Format(time.RFC3339))
		return nil
	})
}

// loadPauses pauses every trigger whose control document says paused,
// before Run starts the triggers. A failure is logged; the watch of the
// controls applies them once it can read them.
func (r *Runner) loadPauses(ctx context.Context) {
	loadCtx, cancel := context.WithTimeout(ctx, DefaultCheckpointTimeout)
	defer cancel()
	cs, err := r.store.ListControls(loadCtx)
	if err != nil {
		r.log.Warn("cannot read the runtime controls; applying them once readable", "error", err)
		return
	}
	for _, c := range cs {
		if c.Paused {
			r.pauseFromControl(c)
		}
	}
}

func (r *Runner) pauseFromControl(c store.Control) {
	ss, err := r.slotsOf(c.Trigger)
	if err != nil {
		return
	}
	since := c.PausedAt
	if since.IsZero() {
		since = r.opts.Clock.Now()
	}
	for i, s := range ss {
		s.mu.Lock()
		if s.pause == nil {
			s.pause = &PauseInfo{Reason: c.Reason, By: c.By, Since: since}
			if i == 0 {
				r.log.Warn("trigger paused", "trigger", c.Trigger, "by", c.By, "reason", c.Reason)
			}
			r.reconcile(s)
		}
		s.mu.Unlock()
	}
}

// watchControls applies control requests until ctx ends: it opens the
// controls collection's change stream, then reads every document (so no
// request written before the stream opened is missed), then applies each
// change. A failed stream is reopened with backoff.
func (r *Runner) watchControls(ctx context.Context) {
	coll := r.store.ControlsCollection()
	for attempt := 0; ; attempt++ {
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup))
		if err == nil {
			if docs, lerr := r.store.ListControls(ctx); lerr == nil {
				for _, c := range docs {
					r.applyControl(ctx, c)
				}
				for cs.Next(ctx) {
					attempt = 0
					var ev struct {
						FullDocument *store.Control `bson:"fullDocument"`
					}
					if cs.Decode(&ev) == nil && ev.FullDocument != nil {
						r.applyControl(ctx, *ev.FullDocument)
					}
				}
				err = cs.Err()
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

// applyControl applies c's pending request and records the result.
func (r *Runner) applyControl(ctx context.Context, c store.Control) {
	if !c.Pending() {
		return
	}
	req := *c.Request
	if req.Kind == store.RequestSkip || req.Kind == store.RequestRedeliver || (req.Kind == store.RequestResume && req.From != "") {
		// Checkpoint rewrites belong to the process running the trigger:
		// a member that does not run it leaves the request to the owner.
		// A partitioned trigger's rewrite (redeliver, resume from) needs
		// every partition held here: in a cluster whose members share the
		// partitions, stop the others or run it with one member.
		if ss, err := r.slotsOf(c.Trigger); err == nil {
			want := true
			for _, s := range ss {
				s.mu.Lock()
				want = want && s.want
				s.mu.Unlock()
			}
			if !want {
				return
			}
		}
	}
	res := store.ControlResult{ID: req.ID}
	var msg string
	var err error
	switch req.Kind {
	case store.RequestPause:
		if err = r.Pause(c.Trigger, c.Reason, req.By); err == nil {
			msg = "paused"
		}
	case store.RequestResume:
		var from ResumeFrom
		if from, err = ParseResumeFrom(req.From); err == nil {
			var sk Skipped
			if sk, err = r.Resume(ctx, c.Trigger, from); err == nil {
				msg = "resumed from the checkpoint"
				if !from.IsCheckpoint() {
					msg = fmt.Sprintf("resumed from %s; skipped the changes from %s to %s", from,
						timeText(sk.From), timeText(sk.To))
				}
			}
		}
	case store.RequestSkip:
		var id string
		if id, err = r.Skip(ctx, c.Trigger, req.By); err == nil {
			msg = "skipped and dead-lettered " + id
		}
	case store.RequestRedeliver:
		if err = r.Redeliver(ctx, c.Trigger, req.Since); err == nil {
			msg = "redelivering every change since " + timeText(req.Since)
		}
	default:
		err = fmt.Errorf("unknown control request %q", req.Kind)
	}
	if ctx.Err() != nil {
		return // shutting down: the request stays pending for the next start
	}
	res.At, res.Message = r.opts.Clock.Now().UTC(), msg
	if err != nil {
		res.Error = err.Error()
		r.log.Warn("control request failed", "trigger", c.Trigger, "kind", req.Kind, "error", err)
	}
	mctx, cancel := context.WithTimeout(ctx, DefaultCheckpointTimeout)
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
// store, for a trigger of its configuration (else ErrUnknownTrigger).
func (r *Runner) RequestControl(ctx context.Context, name, reason string, req store.ControlRequest) (string, error) {
	if _, err := r.slotsOf(name); err != nil {
		return "", fmt.Errorf("%s: %w", req.Kind, err)
	}
	return RequestControl(ctx, r.store, name, reason, req)
}

// RequestControl records a control request for trigger name in the state
// database and waits (until ctx ends) for the process running the trigger to
// apply it; it returns the result's message, or the request's error. It is
// how the admin API and the CLI reach whichever process runs the trigger.
// When ctx ends first the request stays recorded and is applied when a
// process runs the trigger; the error then wraps ctx's error.
func RequestControl(ctx context.Context, st *store.Store, name, reason string, req store.ControlRequest) (string, error) {
	id, err := st.RequestControl(ctx, name, reason, req)
	if err != nil {
		return "", err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c, ok, err := st.LoadControl(ctx, name)
		if err == nil && ok && c.Applied != nil && c.Applied.ID == id {
			if c.Applied.Error != "" {
				return "", fmt.Errorf("%s %s: %s", req.Kind, name, c.Applied.Error)
			}
			return c.Applied.Message, nil
		}
		if ok && c.Request != nil && c.Request.ID != id {
			return "", fmt.Errorf("%s %s: replaced by a newer request before it was applied", req.Kind, name)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s %s: recorded, but no running changehook applied it yet (it applies when changehook runs the trigger): %w", req.Kind, name, ctx.Err())
		case <-tick.C:
		}
	}
}
