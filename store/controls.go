package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ControlsCollection holds one runtime control document per trigger, keyed
// by trigger name (or by one partition's key, "NAME/p<i>of<N>"): whether it
// is paused and the newest control request (pause, resume, skip,
// redeliver) with each unit's result and the combined result.
const ControlsCollection = "controls"

// Control request kinds.
const (
	// RequestPause pauses the trigger (Control.Paused becomes true).
	RequestPause = "pause"
	// RequestResume resumes it from Request.From ("" checkpoint, "now",
	// RFC 3339).
	RequestResume = "resume"
	// RequestSkip dead-letters the event holding the trigger.
	RequestSkip = "skip"
	// RequestRedeliver rewinds the trigger to Request.Since.
	RequestRedeliver = "redeliver"
)

// ControlRequest is one control operation asked for by the CLI or the admin
// API. The process running each unit of the trigger (the trigger, or each
// of its partitions: in a cluster, the unit's lease holder) applies it once
// to that unit and records the unit's result in Control.Units; once every
// unit has, the combined result is recorded in Control.Applied.
type ControlRequest struct {
	// ID identifies the request (random, unique).
	ID string `bson:"id"`
	// Kind is one of the Request* constants.
	Kind string `bson:"kind"`
	// From is a resume's position: "", "now" or an RFC 3339 time.
	From string `bson:"from,omitempty"`
	// Since is a redeliver's start.
	Since time.Time `bson:"since,omitzero"`
	// WebhookID is, for a skip, the webhook-id of the event it is meant
	// for (the head_of_line webhook_id the trigger's status showed): the
	// skip is refused unless the trigger is stuck on that event. "" skips
	// whatever event the trigger is stuck on when the skip is applied.
	WebhookID string `bson:"webhookId,omitempty"`
	// By names who asked ("cli", "api", …).
	By string `bson:"by,omitempty"`
	// At is when it was asked.
	At time.Time `bson:"at"`
}

// ControlResult is what applying a request did.
type ControlResult struct {
	// ID is the applied request's ID.
	ID string `bson:"id"`
	// At is when it was applied.
	At time.Time `bson:"at"`
	// Error is why it failed ("" on success), naming neither the request's
	// kind nor the trigger: the requester says them (runner.RequestControl
	// returns "KIND NAME: " and Error).
	Error string `bson:"error,omitempty"`
	// Message says what was done ("skipped msg_…", "skipped 12:00:00–12:05:00", …).
	Message string `bson:"message,omitempty"`
}

// UnitResult is what applying a request did to one unit of its trigger: the
// trigger itself, or one partition of a partitioned trigger. Each unit's
// runner (the cluster member holding its lease) records its own.
type UnitResult struct {
	// Key is the unit's checkpoint key: the trigger name, or
	// "NAME/p<i>of<N>".
	Key string `bson:"key"`
	// ID is the request's ID.
	ID string `bson:"id"`
	// By is the instance that applied it ("" outside a cluster).
	By string `bson:"by,omitempty"`
	// At is when it was applied.
	At time.Time `bson:"at"`
	// Error is why it failed ("" on success), naming neither the request's
	// kind nor the unit (ControlResult.Error names the failed units).
	Error string `bson:"error,omitempty"`
	// Message says what was done to this unit.
	Message string `bson:"message,omitempty"`
}

// Control is a trigger's runtime control document.
type Control struct {
	// Trigger is the trigger name (_id).
	Trigger string `bson:"_id"`
	// Paused is whether the trigger is held.
	Paused bool `bson:"paused"`
	// Reason and By say why and by whom it was paused.
	Reason string `bson:"reason,omitempty"`
	By     string `bson:"by,omitempty"`
	// PausedAt is when the pause was asked for.
	PausedAt time.Time `bson:"pausedAt,omitzero"`
	// Request is the newest request (nil: none).
	Request *ControlRequest `bson:"request,omitempty"`
	// Applied is the result of the newest applied request (nil: none): set
	// once every unit of the trigger has recorded its result in Units.
	Applied *ControlResult `bson:"applied,omitempty"`
	// Units are the results recorded so far for the newest request, one
	// per unit (partition) that applied it; a new request empties it.
	Units []UnitResult `bson:"units,omitempty"`
	// ResumeSuperseded is set on a partition's document whose newest
	// request is a resume when a pause of the whole trigger is recorded
	// after it (RequestControl): that resume no longer lifts the
	// partition's pause (a resume from a position still moves its
	// checkpoint), so that the trigger's pause holds every partition
	// whatever order a process reads the documents in, after a restart or
	// a reload too. The partition's next request clears it.
	ResumeSuperseded bool `bson:"resumeSuperseded,omitempty"`
}

// UnitsDone returns the keys of the units that recorded a result for the
// newest request.
func (c Control) UnitsDone() map[string]UnitResult {
	out := map[string]UnitResult{}
	if c.Request == nil {
		return out
	}
	for _, u := range c.Units {
		if u.ID == c.Request.ID {
			out[u.Key] = u
		}
	}
	return out
}

// Pending reports whether c's request has not been applied by every unit
// yet (Applied does not carry its ID).
func (c Control) Pending() bool {
	return c.Request != nil && (c.Applied == nil || c.Applied.ID != c.Request.ID)
}

func (s *Store) controls() *mongo.Collection {
	return s.checkpoints.Database().Collection(ControlsCollection)
}

// ControlsCollection returns the controls collection, for watching it.
func (s *Store) ControlsCollection() *mongo.Collection { return s.controls() }

// RequestControl records req for trigger (replacing an earlier request and
// its units' results) and returns its ID. A pause request also sets Paused with reason; a resume
// clears it, and for a trigger's name also the pauses stored for its
// partitions' keys ("NAME/p<i>of<N>", see PartitionControls): it resumes
// every partition, so none is paused again when a process reads the
// documents later. A pause of a trigger's name marks the resumes stored
// for its partitions' keys as superseded (Control.ResumeSuperseded), so
// that none lifts the pause when a process reads the documents later; a
// resume of one partition's key while its trigger's document says paused
// is refused with a *TriggerPausedError and nothing is recorded (the
// trigger's pause holds every partition: `resume NAME` lifts it). req.ID
// and req.At are filled in when empty.
//
// A request that rewrites a position or dead-letters an event (redeliver,
// skip, resume from a position: see Rewrites) is never dropped: while one
// is pending (Control.Pending) RequestControl records nothing and returns a
// *PendingRequestError naming it. A pending pause or resume from the
// checkpoint is replaced: the newer request says what the trigger is to be.
func (s *Store) RequestControl(ctx context.Context, trigger, reason string, req ControlRequest) (string, error) {
	if trigger == "" {
		return "", errors.New("request control: empty trigger name")
	}
	if req.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		req.ID = hex.EncodeToString(b[:])
	}
	if req.At.IsZero() {
		req.At = time.Now().UTC()
	}
	set := bson.D{{Key: "request", Value: req}, {Key: "units", Value: bson.A{}}}
	switch req.Kind {
	case RequestPause:
		set = append(set, bson.E{Key: "paused", Value: true}, bson.E{Key: "reason", Value: reason},
			bson.E{Key: "by", Value: req.By}, bson.E{Key: "pausedAt", Value: req.At})
	case RequestResume:
		set = append(set, bson.E{Key: "paused", Value: false})
	case RequestSkip, RequestRedeliver:
	default:
		return "", fmt.Errorf("request control of trigger %q: unknown kind %q", trigger, req.Kind)
	}
	// Replace only the request read here (none: the document has none, or
	// there is no document): a request stored in between makes the upsert
	// insert a second document with the same _id, refused as a duplicate
	// key, and the check is made again.
	for range maxRequestRaces {
		cur, found, err := s.LoadControl(ctx, trigger)
		if err != nil {
			return "", fmt.Errorf("request %s of trigger %q: %w", req.Kind, trigger, err)
		}
		filter := bson.D{{Key: "_id", Value: trigger}, {Key: "request", Value: bson.D{{Key: "$exists", Value: false}}}}
		if found && cur.Request != nil {
			if cur.Pending() && Rewrites(*cur.Request) {
				return "", &PendingRequestError{Trigger: trigger, Pending: *cur.Request}
			}
			filter = bson.D{{Key: "_id", Value: trigger}, {Key: "request.id", Value: cur.Request.ID}}
		}
		switch req.Kind {
		case RequestResume:
			if err := s.refuseUnderTriggerPause(ctx, trigger); err != nil {
				return "", err
			}
			// Before the resume is recorded, so that no process reads a
			// partition's pause again after applying it.
			if err := s.clearPartitionPauses(ctx, trigger); err != nil {
				return "", fmt.Errorf("request %s of trigger %q: %w", req.Kind, trigger, err)
			}
		case RequestPause:
			// Before the pause is recorded, so that no process reads a
			// partition's resume as lifting it after applying it.
			if err := s.supersedePartitionResumes(ctx, trigger); err != nil {
				return "", fmt.Errorf("request %s of trigger %q: %w", req.Kind, trigger, err)
			}
		}
		update := bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: "resumeSuperseded", Value: ""}}}}
		_, err = s.controls().UpdateOne(ctx, filter, update, options.UpdateOne().SetUpsert(true))
		if mongo.IsDuplicateKeyError(err) {
			continue // another request was stored meanwhile
		}
		if err != nil {
			return "", fmt.Errorf("request %s of trigger %q: %w", req.Kind, trigger, err)
		}
		return req.ID, nil
	}
	return "", fmt.Errorf("request %s of trigger %q: other requests kept being stored meanwhile (%d times): try again", req.Kind, trigger, maxRequestRaces)
}

// clearPartitionPauses sets Paused false in the control documents of
// trigger's partitions' keys that are paused (none when trigger is itself
// a partition's key).
func (s *Store) clearPartitionPauses(ctx context.Context, trigger string) error {
	filter := bson.D{{Key: "_id", Value: bson.Regex{Pattern: "^" + regexp.QuoteMeta(trigger) + `/p[0-9]+of[0-9]+$`}}, {Key: "paused", Value: true}}
	if _, err := s.controls().UpdateMany(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "paused", Value: false}}}}); err != nil {
		return fmt.Errorf("resume the partitions: %w", err)
	}
	return nil
}

// supersedePartitionResumes marks the control documents of trigger's
// partitions' keys whose newest request is a resume as superseded by a
// pause of the whole trigger (Control.ResumeSuperseded); none when trigger
// is itself a partition's key.
func (s *Store) supersedePartitionResumes(ctx context.Context, trigger string) error {
	filter := bson.D{{Key: "_id", Value: bson.Regex{Pattern: "^" + regexp.QuoteMeta(trigger) + `/p[0-9]+of[0-9]+$`}},
		{Key: "request.kind", Value: RequestResume}, {Key: "resumeSuperseded", Value: bson.D{{Key: "$ne", Value: true}}}}
	if _, err := s.controls().UpdateMany(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "resumeSuperseded", Value: true}}}}); err != nil {
		return fmt.Errorf("supersede the partitions' resumes: %w", err)
	}
	return nil
}

// refuseUnderTriggerPause returns a *TriggerPausedError when key is one
// partition's key whose trigger's control document says paused, else nil
// (or the error reading that document).
func (s *Store) refuseUnderTriggerPause(ctx context.Context, key string) error {
	name, _, n, ok := triggers.ParsePartitionKey(key)
	if !ok || n <= 1 || name == key {
		return nil // a trigger's own name
	}
	c, found, err := s.LoadControl(ctx, name)
	if err != nil {
		return fmt.Errorf("request %s of trigger %q: %w", RequestResume, key, err)
	}
	if found && c.Paused {
		return &TriggerPausedError{Partition: key, Trigger: name, By: c.By, Reason: c.Reason, PausedAt: c.PausedAt}
	}
	return nil
}

// TriggerPausedError is RequestControl's error for a resume of one
// partition while its whole trigger is paused: nothing was recorded.
type TriggerPausedError struct {
	// Partition is the partition's key the resume named; Trigger its
	// trigger's name.
	Partition, Trigger string
	// By, Reason and PausedAt are the trigger's pause.
	By, Reason string
	PausedAt   time.Time
}

// Error names the trigger's pause and the resume that lifts it.
func (e *TriggerPausedError) Error() string {
	pause := strings.TrimPrefix(byText(e.By), " ")
	if !e.PausedAt.IsZero() {
		pause += " since " + e.PausedAt.UTC().Format(time.RFC3339)
	}
	if e.Reason != "" {
		pause += fmt.Sprintf(": %q", e.Reason)
	}
	if pause = strings.TrimSpace(pause); pause != "" {
		pause = " (" + pause + ")"
	}
	return fmt.Sprintf("%s is paused as a whole%s, which holds every partition, so %s cannot be resumed alone: nothing was recorded; "+
		"run `changehook resume %s` to resume every partition (then `changehook pause` the partitions to keep held by their keys)",
		e.Trigger, pause, e.Partition, e.Trigger)
}

// maxRequestRaces bounds how often RequestControl reads the control
// document again because another request was stored in between.
const maxRequestRaces = 5

// Rewrites reports whether req rewrites a unit's position or dead-letters
// an event when it is applied (a redeliver, a skip, a resume from a
// position), so that dropping it unapplied would lose what the operator
// asked for; a pause, or a resume from the checkpoint, only says what state
// the trigger is to be in.
func Rewrites(req ControlRequest) bool {
	switch req.Kind {
	case RequestRedeliver, RequestSkip:
		return true
	case RequestResume:
		return req.From != ""
	}
	return false
}

// PendingRequestError is RequestControl's error when the trigger has a
// request pending that must not be dropped (see Rewrites): nothing was
// recorded.
type PendingRequestError struct {
	// Trigger is the control document's key (a trigger or a partition).
	Trigger string
	// Pending is the request still waiting to be applied.
	Pending ControlRequest
}

// Error names the pending request and how to proceed.
func (e *PendingRequestError) Error() string {
	return fmt.Sprintf("%s has a request still pending, %s (asked%s at %s), which is applied when a changehook runs it and which a new request would drop: "+
		"nothing was recorded; send this one again once that one is applied (run changehook with %s, or in a cluster wait for the member that takes it over)",
		e.Trigger, describeRequest(e.Pending), byText(e.Pending.By), e.Pending.At.UTC().Format(time.RFC3339), e.Trigger)
}

// describeRequest is req as the command that asks for it: "redeliver
// --since T", "skip --webhook-id ID", "resume --from now".
func describeRequest(req ControlRequest) string {
	switch {
	case req.Kind == RequestRedeliver:
		return "redeliver --since " + req.Since.UTC().Format(time.RFC3339)
	case req.Kind == RequestSkip && req.WebhookID != "":
		return "skip --webhook-id " + req.WebhookID
	case req.Kind == RequestResume && req.From != "":
		return "resume --from " + req.From
	}
	return req.Kind
}

// byText is " by WHO", or "" when nobody is named.
func byText(by string) string {
	if by == "" {
		return ""
	}
	return " by " + by
}

// MarkControlApplied records res as the combined result of trigger's
// request res.ID, unless a newer request replaced it meanwhile. Writing the
// same result twice (two members saw the last unit's result) is harmless.
func (s *Store) MarkControlApplied(ctx context.Context, trigger string, res ControlResult) error {
	_, err := s.controls().UpdateOne(ctx,
		bson.D{{Key: "_id", Value: trigger}, {Key: "request.id", Value: res.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "applied", Value: res}}}})
	if err != nil {
		return fmt.Errorf("record control result of trigger %q: %w", trigger, err)
	}
	return nil
}

// RecordUnitApplied records res as unit res.Key's result of trigger's
// request res.ID, once: it does nothing (ok false) when that unit already
// recorded one, or a newer request replaced res.ID. On success it returns the
// control document as it is after the write, so the caller can tell whether
// every unit has now applied the request.
func (s *Store) RecordUnitApplied(ctx context.Context, trigger string, res UnitResult) (c Control, ok bool, err error) {
	if res.Key == "" || res.ID == "" {
		return Control{}, false, fmt.Errorf("record control result of trigger %q: empty unit key or request id", trigger)
	}
	filter := bson.D{{Key: "_id", Value: trigger}, {Key: "request.id", Value: res.ID},
		{Key: "units", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "key", Value: res.Key}, {Key: "id", Value: res.ID}}}}}}}}
	err = s.controls().FindOneAndUpdate(ctx, filter, bson.D{{Key: "$push", Value: bson.D{{Key: "units", Value: res}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&c)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Control{}, false, nil
	}
	if err != nil {
		return Control{}, false, fmt.Errorf("record control result of %s for trigger %q: %w", res.Key, trigger, err)
	}
	return c, true, nil
}

// LoadControl returns trigger's control document; ok is false when it has
// none.
func (s *Store) LoadControl(ctx context.Context, trigger string) (c Control, ok bool, err error) {
	err = s.controls().FindOne(ctx, bson.D{{Key: "_id", Value: trigger}}).Decode(&c)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Control{}, false, nil
	}
	if err != nil {
		return Control{}, false, fmt.Errorf("load control of trigger %q: %w", trigger, err)
	}
	return c, true, nil
}

// ListControls returns every control document, ordered by trigger name:
// those of triggers no longer configured too (they are kept, see
// LoadControls), so it reads as many documents as triggers and partitions
// were ever controlled.
func (s *Store) ListControls(ctx context.Context) ([]Control, error) {
	return s.findControls(ctx, bson.D{}, "list controls")
}

// LoadControls returns the control documents of keys (trigger names and
// partition keys, "NAME/p<i>of<N>"), ordered by key, leaving out the keys
// that have none; no keys, no documents. It reads only those: a runner
// reads its configuration's documents, not those of every trigger ever
// controlled. The documents of other keys are kept, never deleted on the
// runner's behalf: a pause must hold when its trigger is removed and added
// back, and during a rolling update another member may still run a
// trigger this one no longer has. Only runner.Repartition deletes some:
// those of the partitions it removes.
func (s *Store) LoadControls(ctx context.Context, keys []string) ([]Control, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	return s.findControls(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}}, "load controls")
}

// PartitionControls returns the control documents of trigger's partition
// keys, "NAME/p<i>of<N>" for any N, ordered by key — not the trigger's own
// (keyed by its name), which applies to every partitioning.
func (s *Store) PartitionControls(ctx context.Context, trigger string) ([]Control, error) {
	filter := bson.D{{Key: "_id", Value: bson.Regex{Pattern: "^" + regexp.QuoteMeta(trigger) + `/p[0-9]+of[0-9]+$`}}}
	return s.findControls(ctx, filter, fmt.Sprintf("list the partitions' controls of trigger %q", trigger))
}

// DeleteControl removes the control document of key (a trigger's name or
// a partition's key); deleting a missing one is not an error. Only a key
// no process runs may lose its document: see runner.Repartition.
func (s *Store) DeleteControl(ctx context.Context, key string) error {
	if _, err := s.controls().DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
		return fmt.Errorf("delete control of %q: %w", key, err)
	}
	return nil
}

// findControls returns the control documents matching filter, ordered by
// key; action prefixes its errors.
func (s *Store) findControls(ctx context.Context, filter bson.D, action string) ([]Control, error) {
	cur, err := s.controls().Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", action, err)
	}
	var out []Control
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", action, err)
	}
	return out, nil
}
