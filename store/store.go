// Package store keeps changehook's state in MongoDB: one checkpoint per
// trigger (the resume token to restart from) in <database>.checkpoints, and
// undeliverable events in <database>.deadletters.
//
// Resume tokens and events are stored as the exact bytes the change stream
// returned (embedded documents, never re-encoded), so a token read back is
// byte-for-byte the one the driver handed out.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/textcut"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Collection names inside the state database.
const (
	// CheckpointsCollection holds one checkpoint per trigger, keyed by
	// trigger name.
	CheckpointsCollection = "checkpoints"
	// DeadLettersCollection holds the dead letters, keyed by webhook id.
	DeadLettersCollection = "deadletters"
)

// Store reads and writes checkpoints and dead letters. It is safe for
// concurrent use.
type Store struct {
	checkpoints *mongo.Collection
	deadLetters *mongo.Collection
	// historyRetention is the attempts TTL (0: the default).
	historyRetention time.Duration
}

// New returns a Store on the database named database of client. It does no
// I/O; collections are created on first write.
func New(client *mongo.Client, database string) *Store {
	db := client.Database(database)
	return &Store{
		checkpoints: db.Collection(CheckpointsCollection),
		deadLetters: db.Collection(DeadLettersCollection),
	}
}

// Checkpoint is where a trigger resumes: the resume token of the newest event
// that, with every earlier one, was delivered or dead-lettered.
type Checkpoint struct {
	// Trigger is the trigger name (the document's _id).
	Trigger string
	// Token is the resume token exactly as the driver returned it.
	Token bson.Raw
	// ClusterTime is the cluster time of the position when known (zero:
	// unknown): the event's clusterTime or, for a position between events
	// (a trigger caught up with its stream), the last cluster time before
	// the one its resume token opens with. It lets operators see how far
	// behind a checkpoint is.
	ClusterTime bson.Timestamp
	// UpdatedAt is when the checkpoint was saved. SaveCheckpoint sets it to
	// the current time when zero.
	UpdatedAt time.Time
	// Control is the ID of the runtime control request (redeliver, resume
	// from a position) whose rewrite last set this checkpoint; it stays
	// through later saves, which leave it empty, until another rewrite
	// replaces it. A runner that takes the checkpoint over from one that
	// applied a request but could not record it sees it was applied.
	Control string
}

// positioned selects the checkpoint documents that hold a position (a
// resume token, a document): not the fences DeleteFencedCheckpoint leaves
// of removed checkpoints.
var positioned = bson.E{Key: "token", Value: bson.D{{Key: "$type", Value: "object"}}}

// removedToken is the token of a removed checkpoint's fence: a string, so
// that a release that predates fences, which decodes every checkpoint's
// token as a document, fails to load it instead of starting the trigger at
// start_at.
const removedToken = "removed"

// checkpointDoc is the stored form of a Checkpoint.
type checkpointDoc struct {
	ID          string         `bson:"_id"`
	Token       bson.Raw       `bson:"token"`
	ClusterTime bson.Timestamp `bson:"clusterTime,omitempty"`
	UpdatedAt   time.Time      `bson:"updatedAt"`
	Control     string         `bson:"control,omitempty"`
}

func (c checkpointDoc) checkpoint() Checkpoint {
	return Checkpoint{Trigger: c.ID, Token: c.Token, ClusterTime: c.ClusterTime, UpdatedAt: c.UpdatedAt, Control: c.Control}
}

// LoadCheckpoint returns the checkpoint of trigger; ok is false when the
// trigger has none (or only the fence of a removed one: see
// DeleteFencedCheckpoint).
func (s *Store) LoadCheckpoint(ctx context.Context, trigger string) (cp Checkpoint, ok bool, err error) {
	var doc checkpointDoc
	err = s.checkpoints.FindOne(ctx, bson.D{{Key: "_id", Value: trigger}, positioned}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("load checkpoint of trigger %q: %w", trigger, err)
	}
	return doc.checkpoint(), true, nil
}

// SaveCheckpoint creates or moves the checkpoint of cp.Trigger. It keeps
// the lease owner and epoch a fenced writer recorded (see
// SaveFencedCheckpoint): an unfenced save by the lease holder (a runtime
// control such as skip or resume --from) must not reopen the checkpoint to
// writers with an older epoch.
func (s *Store) SaveCheckpoint(ctx context.Context, cp Checkpoint) error {
	if err := validCheckpoint(&cp); err != nil {
		return err
	}
	set := bson.D{{Key: "token", Value: cp.Token}, {Key: "updatedAt", Value: cp.UpdatedAt}}
	if cp.Control != "" {
		set = append(set, bson.E{Key: "control", Value: cp.Control})
	}
	update := bson.D{{Key: "$set", Value: set}}
	if cp.ClusterTime.IsZero() {
		update = append(update, bson.E{Key: "$unset", Value: bson.D{{Key: "clusterTime", Value: ""}}})
	} else {
		update[0].Value = append(set, bson.E{Key: "clusterTime", Value: cp.ClusterTime})
	}
	_, err := s.checkpoints.UpdateOne(ctx, bson.D{{Key: "_id", Value: cp.Trigger}}, update, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("save checkpoint of trigger %q: %w", cp.Trigger, err)
	}
	return nil
}

// validCheckpoint checks cp before a save and sets UpdatedAt when zero.
func validCheckpoint(cp *Checkpoint) error {
	if cp.Trigger == "" {
		return errors.New("save checkpoint: empty trigger name")
	}
	if len(cp.Token) == 0 {
		return fmt.Errorf("save checkpoint of trigger %q: empty resume token", cp.Trigger)
	}
	if err := cp.Token.Validate(); err != nil {
		return fmt.Errorf("save checkpoint of trigger %q: resume token is not a document: %w", cp.Trigger, err)
	}
	if cp.UpdatedAt.IsZero() {
		cp.UpdatedAt = time.Now()
	}
	return nil
}

// ListCheckpoints returns every checkpoint, ordered by trigger name (not
// the fences removed ones leave: see DeleteFencedCheckpoint).
func (s *Store) ListCheckpoints(ctx context.Context) ([]Checkpoint, error) {
	cur, err := s.checkpoints.Find(ctx, bson.D{positioned}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var docs []checkpointDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	out := make([]Checkpoint, len(docs))
	for i, d := range docs {
		out[i] = d.checkpoint()
	}
	return out, nil
}

// DeleteCheckpoint removes the checkpoint of trigger (the trigger then starts
// from its start_at position), and its epoch fence with it: a lease holder
// removes a checkpoint with DeleteFencedCheckpoint instead. Deleting a
// missing checkpoint is not an error.
func (s *Store) DeleteCheckpoint(ctx context.Context, trigger string) error {
	if _, err := s.checkpoints.DeleteOne(ctx, bson.D{{Key: "_id", Value: trigger}}); err != nil {
		return fmt.Errorf("delete checkpoint of trigger %q: %w", trigger, err)
	}
	return nil
}

// StoredDeadLetter is a dead letter as stored; ID is its key in the
// collection (the webhook id, which already identifies the trigger and the
// event).
type StoredDeadLetter struct {
	// ID is the dead letter's key: its webhook id.
	ID string
	dispatcher.DeadLetter
}

// deadLetterDoc is the stored form of a dead letter.
type deadLetterDoc struct {
	ID             string    `bson:"_id,omitempty"`
	Trigger        string    `bson:"trigger"`
	Event          bson.Raw  `bson:"event"`
	Token          bson.Raw  `bson:"token"`
	Attempts       int       `bson:"attempts"`
	LastStatus     int       `bson:"lastStatus"`
	LastReason     string    `bson:"lastReason"`
	LastError      string    `bson:"lastError"`
	LastResponse   string    `bson:"lastResponse"`
	FirstAttemptAt time.Time `bson:"firstAttemptAt"`
	DeadLetteredAt time.Time `bson:"deadLetteredAt"`
	// Trimmed and EventSize: see dispatcher.DeadLetter (absent when
	// nothing was left out).
	Trimmed   string `bson:"trimmed,omitempty"`
	EventSize int    `bson:"eventSize,omitempty"`
	// SkippedBy: see dispatcher.DeadLetter (absent unless a skip stored
	// it).
	SkippedBy string `bson:"skippedBy,omitempty"`
}

func (d deadLetterDoc) stored() StoredDeadLetter {
	return StoredDeadLetter{ID: d.ID, DeadLetter: dispatcher.DeadLetter{
		Trigger:        d.Trigger,
		WebhookID:      d.ID,
		Event:          d.Event,
		Token:          d.Token,
		Attempts:       d.Attempts,
		LastStatus:     d.LastStatus,
		LastReason:     d.LastReason,
		LastError:      d.LastError,
		LastResponse:   d.LastResponse,
		FirstAttemptAt: d.FirstAttemptAt,
		DeadLetteredAt: d.DeadLetteredAt,
		Trimmed:        d.Trimmed,
		EventSize:      d.EventSize,
		SkippedBy:      d.SkippedBy,
	}}
}

// PutDeadLetter stores dl under its webhook id, its LastError cut to
// dispatcher.MaxErrorText bytes (marked as cut). It is idempotent: when a dead
// letter with that id exists (the same event of the same trigger dead-lettered
// again after a crash), the stored one is kept and nil is returned. It
// implements dispatcher.DeadLetterSink.
//
// A dead letter that does not fit in one document (16 MiB: an event close
// to that size with its token, error and response) is stored trimmed, as
// little as needed, and its Trimmed says how (see deadletter_fit.go):
// without its response (its last error is cut to MaxErrorText anyway)
// (dispatcher.TrimmedResponse), or else with only the event's identity
// (dispatcher.TrimmedEvent). dl.Trimmed, when set, is where it starts;
// with dispatcher.TrimmedEvent, a dl.EventSize set by the caller is kept as
// the event's size (an event the change stream could not return whole,
// whose size the server's error named), else it is dl.Event's. An
// error means nothing was stored; it wraps a *dispatcher.DeadLetterStoreError
// saying why.
func (s *Store) PutDeadLetter(ctx context.Context, dl dispatcher.DeadLetter) error {
	if dl.Trigger == "" || len(dl.Token) == 0 {
		return errors.New("put dead letter: trigger and resume token are required")
	}
	if dl.WebhookID == "" {
		dl.WebhookID = dispatcher.WebhookID(dl.Trigger, dl.Token)
	}
	if dl.DeadLetteredAt.IsZero() {
		dl.DeadLetteredAt = time.Now()
	}
	dl.LastError = textcut.Marked(dl.LastError, dispatcher.MaxErrorText)
	id := dl.WebhookID
	fail := func(reason string, err error) error {
		return fmt.Errorf("put dead letter %s of trigger %q: %w", id, dl.Trigger, &dispatcher.DeadLetterStoreError{Reason: reason, Err: err})
	}
	var refused error // why the last level tried did not fit
	for _, level := range trimLevels[max(0, slices.Index(trimLevels, dl.Trimmed)):] {
		doc, size, err := trimmedDoc(dl, level)
		if err != nil {
			return fail(dispatcher.DeadLetterFailOther, err)
		}
		if size > maxDocumentSize {
			// Known before asking the server.
			refused = fmt.Errorf("%d bytes, more than the %d a document may have", size, maxDocumentSize)
			continue
		}
		_, err = s.deadLetters.UpdateOne(ctx,
			bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$setOnInsert", Value: doc}},
			options.UpdateOne().SetUpsert(true))
		switch {
		case err == nil || mongo.IsDuplicateKeyError(err):
			// A duplicate key means a concurrent upsert inserted it first.
			return nil
		case isTooLarge(err):
			// The server counts more than computed (its limit is
			// lower): the next level.
			refused = err
			continue
		}
		return fail(deadLetterFailure(err), err)
	}
	return fail(dispatcher.DeadLetterFailTooLarge, fmt.Errorf("it does not fit in a document even with only its event's identity kept: %w", refused))
}

// GetDeadLetter returns the dead letter with id; ok is false when there is
// none.
func (s *Store) GetDeadLetter(ctx context.Context, id string) (dl StoredDeadLetter, ok bool, err error) {
	var doc deadLetterDoc
	err = s.deadLetters.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return StoredDeadLetter{}, false, nil
	}
	if err != nil {
		return StoredDeadLetter{}, false, fmt.Errorf("get dead letter %s: %w", id, err)
	}
	return doc.stored(), true, nil
}

// DeleteDeadLetter removes the dead letter with id (after a successful
// replay); deleted is false when there was none.
func (s *Store) DeleteDeadLetter(ctx context.Context, id string) (deleted bool, err error) {
	res, err := s.deadLetters.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return false, fmt.Errorf("delete dead letter %s: %w", id, err)
	}
	return res.DeletedCount > 0, nil
}

// RecordReplayFailure updates the dead letter with id after a replay that
// did not deliver it: res.Attempts more attempts, and the last status,
// reason, error (cut to dispatcher.MaxErrorText bytes, marked as cut) and
// response (truncated to 4 KiB) of the replay's last
// attempt. found is false when the dead letter no longer exists. A dead
// letter that this would take over the 16 MiB a document may have gets no
// response instead, and is marked trimmed
// (dispatcher.TrimmedResponse, unless it was trimmed already).
func (s *Store) RecordReplayFailure(ctx context.Context, id string, res dispatcher.Result, replayErr error) (found bool, err error) {
	msg := ""
	if replayErr != nil {
		msg = textcut.Marked(replayErr.Error(), dispatcher.MaxErrorText)
	}
	u, err := s.deadLetters.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{
		{Key: "$inc", Value: bson.D{{Key: "attempts", Value: res.Attempts}}},
		{Key: "$set", Value: bson.D{
			{Key: "lastStatus", Value: res.Status},
			{Key: "lastReason", Value: res.Reason},
			{Key: "lastError", Value: msg},
			{Key: "lastResponse", Value: textcut.UTF8(res.Body, 4<<10)},
		}},
	})
	if isTooLarge(err) {
		// A dead letter close to the size limit has no room for this
		// response: recorded without it (msg is already cut), the dead
		// letter marked trimmed as PutDeadLetter marks one (unless it is
		// already).
		lit := func(v any) bson.D { return bson.D{{Key: "$literal", Value: v}} }
		u, err = s.deadLetters.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.A{bson.D{{Key: "$set", Value: bson.D{
			{Key: "attempts", Value: bson.D{{Key: "$add", Value: bson.A{"$attempts", res.Attempts}}}},
			{Key: "lastStatus", Value: res.Status},
			{Key: "lastReason", Value: lit(res.Reason)},
			{Key: "lastError", Value: lit(msg)},
			{Key: "lastResponse", Value: ""},
			{Key: "trimmed", Value: bson.D{{Key: "$ifNull", Value: bson.A{"$trimmed", dispatcher.TrimmedResponse}}}},
		}}}})
	}
	if err != nil {
		return false, fmt.Errorf("record the failed replay of dead letter %s: %w", id, err)
	}
	return u.MatchedCount > 0, nil
}

// Compile-time check that Store is a dead-letter sink.
var _ dispatcher.DeadLetterSink = (*Store)(nil)
