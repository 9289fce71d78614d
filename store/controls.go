package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ControlsCollection holds one runtime control document per trigger, keyed
// by trigger name: whether it is paused and the newest control request
// (resume from a position, skip, redeliver) with its result.
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
// API; the process running the trigger applies it once and records the
// result in Control.Applied.
type ControlRequest struct {
	// ID identifies the request (random, unique).
	ID string `bson:"id"`
	// Kind is one of the Request* constants.
	Kind string `bson:"kind"`
	// From is a resume's position: "", "now" or an RFC 3339 time.
	From string `bson:"from,omitempty"`
	// Since is a redeliver's start.
	Since time.Time `bson:"since,omitzero"`
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
	// Error is why it failed ("" on success).
	Error string `bson:"error,omitempty"`
	// Message says what was done ("skipped msg_…", "skipped 12:00:00–12:05:00", …).
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
	// Applied is the result of the newest applied request (nil: none).
	Applied *ControlResult `bson:"applied,omitempty"`
}

// Pending reports whether c's request has not been applied yet.
func (c Control) Pending() bool {
	return c.Request != nil && (c.Applied == nil || c.Applied.ID != c.Request.ID)
}

func (s *Store) controls() *mongo.Collection {
	return s.checkpoints.Database().Collection(ControlsCollection)
}

// ControlsCollection returns the controls collection, for watching it.
func (s *Store) ControlsCollection() *mongo.Collection { return s.controls() }

// RequestControl records req for trigger (replacing an earlier request) and
// returns its ID. A pause request also sets Paused with reason; a resume
// clears it. req.ID and req.At are filled in when empty.
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
	set := bson.D{{Key: "request", Value: req}}
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
	_, err := s.controls().UpdateOne(ctx, bson.D{{Key: "_id", Value: trigger}}, bson.D{{Key: "$set", Value: set}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return "", fmt.Errorf("request %s of trigger %q: %w", req.Kind, trigger, err)
	}
	return req.ID, nil
}

// MarkControlApplied records res as the result of trigger's request res.ID,
// unless a newer request replaced it meanwhile.
func (s *Store) MarkControlApplied(ctx context.Context, trigger string, res ControlResult) error {
	_, err := s.controls().UpdateOne(ctx,
		bson.D{{Key: "_id", Value: trigger}, {Key: "request.id", Value: res.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "applied", Value: res}}}})
	if err != nil {
		return fmt.Errorf("record control result of trigger %q: %w", trigger, err)
	}
	return nil
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

// ListControls returns every control document, ordered by trigger name.
func (s *Store) ListControls(ctx context.Context) ([]Control, error) {
	cur, err := s.controls().Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list controls: %w", err)
	}
	var out []Control
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list controls: %w", err)
	}
	return out, nil
}
