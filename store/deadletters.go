package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/textcut"
)

// Dead letters are always read in the order of DeadLettersIndex — trigger,
// then dead-lettered time, then id — so that every query is served by the
// index (no in-memory sort in the database, whatever the number and size
// of the dead letters) and pages continue after a DeadLetterCursor
// (keyset pagination: stable while dead letters are added or removed).

// deadLetterOrder is the sort of every dead-letter query: the key pattern
// of DeadLettersIndex.
var deadLetterOrder = bson.D{{Key: "trigger", Value: 1}, {Key: "deadLetteredAt", Value: 1}, {Key: "_id", Value: 1}}

// DeadLetterBatch is how many dead letters the streaming operations
// (EachDeadLetter, PurgeDeadLetters) handle per query: only their ids and
// sort keys are held for a batch, and each full dead letter is read alone.
const DeadLetterBatch = 500

// DeadLetterCursor is a position in the dead-letter order; a listing that
// starts after it returns the dead letters that follow it. The zero value
// is the start.
type DeadLetterCursor struct {
	// Trigger, At and ID are the sort key of the last dead letter seen.
	Trigger string
	At      time.Time
	ID      string
}

// cursorPrefix starts every encoded cursor, so that it cannot be mistaken
// for a dead letter id (those start with msg_).
const cursorPrefix = "dlc_"

// IsZero reports whether c is the start of the order.
func (c DeadLetterCursor) IsZero() bool { return c.ID == "" && c.Trigger == "" && c.At.IsZero() }

// String encodes c as an opaque, URL-safe token (dlc_...) that
// ParseDeadLetterCursor reads back; "" for the zero cursor.
func (c DeadLetterCursor) String() string {
	if c.IsZero() {
		return ""
	}
	raw := strconv.FormatInt(c.At.UnixMilli(), 10) + "\x00" + c.Trigger + "\x00" + c.ID
	return cursorPrefix + base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseDeadLetterCursor decodes a cursor made by DeadLetterCursor.String.
func ParseDeadLetterCursor(s string) (DeadLetterCursor, error) {
	bad := fmt.Errorf("%s is not a dead-letter cursor (the next-page value a listing printed)", textcut.Quote(s))
	enc, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok {
		return DeadLetterCursor{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return DeadLetterCursor{}, bad
	}
	parts := strings.SplitN(string(raw), "\x00", 3)
	if len(parts) != 3 || parts[2] == "" {
		return DeadLetterCursor{}, bad
	}
	ms, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return DeadLetterCursor{}, bad
	}
	return DeadLetterCursor{At: time.UnixMilli(ms).UTC(), Trigger: parts[1], ID: parts[2]}, nil
}

// IsDeadLetterCursor reports whether s has the shape of an encoded cursor
// (rather than a dead letter id).
func IsDeadLetterCursor(s string) bool { return strings.HasPrefix(s, cursorPrefix) }

// Cursor returns the position just after dl in the dead-letter order.
func (dl StoredDeadLetter) Cursor() DeadLetterCursor {
	return DeadLetterCursor{Trigger: dl.Trigger, At: dl.DeadLetteredAt, ID: dl.ID}
}

// DeadLetterFilter selects dead letters.
type DeadLetterFilter struct {
	// Trigger restricts the result to one trigger ("" = all).
	Trigger string
	// IDs restricts the result to these dead letter ids (nil = no
	// restriction).
	IDs []string
	// After starts the result after this position (zero: at the start).
	After DeadLetterCursor
	// Limit caps the number of results of ListDeadLetters (0 = no limit;
	// prefer a limit: without one every match is held in memory).
	// EachDeadLetter ignores it.
	Limit int
	// Summary reads each dead letter without its token and last response,
	// and with its event reduced to operationType, ns and documentKey (and
	// Trimmed and EventSize), for listings of many.
	Summary bool
}

// query returns the filter of f: its trigger and ids, and the keyset
// condition "after f.After in the dead-letter order".
func (f DeadLetterFilter) query() bson.D {
	q := bson.D{}
	if f.Trigger != "" {
		q = append(q, bson.E{Key: "trigger", Value: f.Trigger})
	}
	if f.IDs != nil {
		q = append(q, bson.E{Key: "_id", Value: bson.D{{Key: "$in", Value: f.IDs}}})
	}
	if !f.After.IsZero() {
		a := f.After
		at := bson.DateTime(a.At.UnixMilli())
		q = append(q, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "trigger", Value: bson.D{{Key: "$gt", Value: a.Trigger}}}},
			bson.D{{Key: "trigger", Value: a.Trigger}, {Key: "deadLetteredAt", Value: bson.D{{Key: "$gt", Value: at}}}},
			bson.D{{Key: "trigger", Value: a.Trigger}, {Key: "deadLetteredAt", Value: at}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: a.ID}}}},
		}})
	}
	return q
}

// summaryProjection keeps what a listing shows.
var summaryProjection = bson.D{
	{Key: "trigger", Value: 1}, {Key: "attempts", Value: 1}, {Key: "lastStatus", Value: 1},
	{Key: "lastReason", Value: 1}, {Key: "lastError", Value: 1}, {Key: "firstAttemptAt", Value: 1},
	{Key: "deadLetteredAt", Value: 1}, {Key: "event.operationType", Value: 1}, {Key: "event.ns", Value: 1},
	{Key: "event.documentKey", Value: 1}, {Key: "trimmed", Value: 1}, {Key: "eventSize", Value: 1},
	{Key: "skippedBy", Value: 1},
}

// ListDeadLetters returns the dead letters matching f, ordered by trigger,
// then oldest first. With a limit it is one page; the next page starts
// after the last result's Cursor.
func (s *Store) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]StoredDeadLetter, error) {
	opts := options.Find().SetSort(deadLetterOrder)
	if f.Limit > 0 {
		opts.SetLimit(int64(f.Limit))
	}
	if f.Summary {
		opts.SetProjection(summaryProjection)
	}
	cur, err := s.deadLetters.Find(ctx, f.query(), opts)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	var out []StoredDeadLetter
	for cur.Next(ctx) {
		var d deadLetterDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, d.stored())
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// deadLetterKey is a dead letter's sort key, all a batch holds.
type deadLetterKey struct {
	ID             string    `bson:"_id"`
	Trigger        string    `bson:"trigger"`
	DeadLetteredAt time.Time `bson:"deadLetteredAt"`
}

// deadLetterKeys returns at most n sort keys of the dead letters matching
// f (its Limit and Summary ignored), in order.
func (s *Store) deadLetterKeys(ctx context.Context, f DeadLetterFilter, n int) ([]deadLetterKey, error) {
	opts := options.Find().SetSort(deadLetterOrder).SetLimit(int64(n)).
		SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "trigger", Value: 1}, {Key: "deadLetteredAt", Value: 1}})
	cur, err := s.deadLetters.Find(ctx, f.query(), opts)
	if err != nil {
		return nil, err
	}
	var keys []deadLetterKey
	if err := cur.All(ctx, &keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// ErrStop, returned by an EachDeadLetter callback, ends the iteration
// without an error.
var ErrStop = errors.New("stop")

// EachDeadLetter calls fn with every dead letter matching f (Limit
// ignored), in the dead-letter order, holding at most one batch of ids
// (DeadLetterBatch) and one dead letter in memory: it reads a batch of
// sort keys, then each dead letter by id. fn may delete the dead letter it
// is given; dead letters added meanwhile are seen when they sort after the
// current position, and ones removed meanwhile are skipped. An error from
// fn ends the iteration and is returned (ErrStop: nil).
func (s *Store) EachDeadLetter(ctx context.Context, f DeadLetterFilter, fn func(StoredDeadLetter) error) error {
	for {
		keys, err := s.deadLetterKeys(ctx, f, DeadLetterBatch)
		if err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		for _, k := range keys {
			dl, ok, err := s.GetDeadLetter(ctx, k.ID)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := fn(dl); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if len(keys) < DeadLetterBatch {
			return nil
		}
		last := keys[len(keys)-1]
		f.After = DeadLetterCursor{Trigger: last.Trigger, At: last.DeadLetteredAt, ID: last.ID}
	}
}

// CountDeadLettersMatching returns how many dead letters match f (Limit, After and
// Summary ignored).
func (s *Store) CountDeadLettersMatching(ctx context.Context, f DeadLetterFilter) (int64, error) {
	f.After = DeadLetterCursor{}
	n, err := s.deadLetters.CountDocuments(ctx, f.query())
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// PurgeDeadLetters deletes the dead letters matching f (Limit, After and
// Summary ignored) in batches of DeadLetterBatch, so that neither side
// holds more than one batch of ids, and returns how many were deleted. On
// an error the dead letters deleted so far stay deleted and their number
// is returned with it.
func (s *Store) PurgeDeadLetters(ctx context.Context, f DeadLetterFilter) (int64, error) {
	f.After = DeadLetterCursor{}
	var deleted int64
	for {
		keys, err := s.deadLetterKeys(ctx, f, DeadLetterBatch)
		if err != nil {
			return deleted, fmt.Errorf("purge dead letters: %w", err)
		}
		if len(keys) == 0 {
			return deleted, nil
		}
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		res, err := s.deadLetters.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return deleted, fmt.Errorf("purge dead letters: %w", err)
		}
		deleted += res.DeletedCount
		if len(keys) < DeadLetterBatch {
			return deleted, nil
		}
		// The next batch starts after this one: a dead letter that another
		// process re-created meanwhile under an id of this batch is not
		// looked at twice.
		last := keys[len(keys)-1]
		f.After = DeadLetterCursor{Trigger: last.Trigger, At: last.DeadLetteredAt, ID: last.ID}
	}
}
