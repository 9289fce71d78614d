package runner

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Change events larger than a BSON document may be (16 MiB).
//
// MongoDB fails the read of such an event (typically an update with
// full_document: updateLookup or pre-images of a large document) with
// BSONObjectTooLarge (10334). A watcher that meets the error reopens its
// stream with $changeStreamSplitLargeEvent and reassembles the event from
// its fragments (see splitevent.go). What follows is for a server that
// refuses the stage (before MongoDB 6.0.9). The error does not carry the
// event, only, in its message, the event's first element: its _id, the
// resume token ("... First element: _id: { _data: \"8266...\" }"). The
// read that fails also abandons the events before it in the same batch, so
// a watcher that meets the error reads again one event per batch
// (Watcher.oneByOne) to deliver those first; the trigger then fails
// holding on the large event itself, which Skip can dead-letter: it reads the event again with its
// large fields removed (largeFieldsDropped) and checks that it is the one
// the error named.

// codeBSONObjectTooLarge is MongoDB's error code for a document (here a
// change event) larger than 16 MiB.
const codeBSONObjectTooLarge = 10334

// largeFields are the fields of a change event that can make it larger
// than 16 MiB: the post-image, the pre-image and the update's description.
var largeFields = bson.A{"fullDocument", "fullDocumentBeforeChange", "updateDescription"}

// tooLargeToken matches the resume token MongoDB's message names.
var tooLargeToken = regexp.MustCompile(`First element: _id: \{ _data: "([0-9A-Fa-f]+)" \}`)

// eventTooLarge reports whether err is a change stream's BSONObjectTooLarge;
// token is the resume token of the event its message names (nil when it
// names none) and at the event's cluster time (zero when unknown).
func eventTooLarge(err error) (token bson.Raw, at time.Time, ok bool) {
	var se mongo.ServerError
	if !errors.As(err, &se) || !se.HasErrorCode(codeBSONObjectTooLarge) {
		return nil, time.Time{}, false
	}
	var ce mongo.CommandError
	msg := err.Error()
	if errors.As(err, &ce) {
		msg = ce.Message
	}
	m := tooLargeToken.FindStringSubmatch(msg)
	if m == nil {
		return nil, time.Time{}, true
	}
	token, _ = bson.Marshal(bson.D{{Key: "_data", Value: m[1]}})
	return token, tokenTime(token), true
}

// tokenTime returns the cluster time, to the second, of the resume token
// tok, or zero when it cannot be read: a resume token's _data starts with
// the event's cluster time, the type byte 0x82, then its seconds and
// increment, big-endian.
func tokenTime(tok bson.Raw) time.Time {
	if len(tok) == 0 {
		return time.Time{}
	}
	data, ok := tok.Lookup("_data").StringValueOK()
	if !ok {
		return time.Time{}
	}
	if b, err := hex.DecodeString(data); err == nil && len(b) >= 9 && b[0] == 0x82 {
		return time.Unix(int64(uint32(b[1])<<24|uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4])), 0).UTC()
	}
	return time.Time{}
}

// tooLargeSizeRE matches the event's size MongoDB's message names
// ("BSONObj size: 18874697 (0x…) is invalid").
var tooLargeSizeRE = regexp.MustCompile(`BSONObj size: ([0-9]+) `)

// tooLargeSize returns the size in bytes of the change event an
// eventTooLarge error names, or, when its message does not say, the 16 MiB
// it is larger than.
func tooLargeSize(err error) int {
	if m := tooLargeSizeRE.FindStringSubmatch(err.Error()); m != nil {
		if n, perr := strconv.Atoi(m[1]); perr == nil && n > dispatcher.MaxStreamEventSize {
			return n
		}
	}
	return dispatcher.MaxStreamEventSize
}

// tooLargeText describes the event an eventTooLarge error names.
func tooLargeText(at time.Time) string {
	if at.IsZero() {
		return "the change event after the checkpoint"
	}
	return "the change event at " + at.Format(time.RFC3339)
}

// watchLargeFieldsDropped opens t's change stream with opts, its pipeline
// followed by a stage that removes the event's largeFields (and, when
// split, by $changeStreamSplitLargeEvent): the event keeps its _id (resume
// token), operation, namespace, document key and cluster time.
func watchLargeFieldsDropped(ctx context.Context, client *mongo.Client, t *triggers.Trigger, opts *options.ChangeStreamOptionsBuilder, split bool) (*mongo.ChangeStream, error) {
	stages := []bson.D{{{Key: "$unset", Value: largeFields}}}
	if split {
		stages = append(stages, SplitLargeEventsStage())
	}
	cs, err := t.WatchWith(ctx, client, opts, stages...)
	if err != nil {
		return nil, fmt.Errorf("open change stream for trigger %s without the large fields: %w", t.Name, err)
	}
	return cs, nil
}
