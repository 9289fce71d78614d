package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// A dead letter is one document, and MongoDB refuses a document larger
// than maxDocumentSize. An event close to that limit — as a change stream
// may return it — plus its resume token, last error and up to 4 KiB of
// response does not fit. Such a dead letter is stored trimmed rather than
// refused (PutDeadLetter): first without its response (its last error is
// already cut to dispatcher.MaxErrorText) (dispatcher.TrimmedResponse), then, if that
// still does not fit, with only the event's identity
// (dispatcher.TrimmedEvent). The size is computed before the write, and a
// write the server refuses as too large (by its error code) is tried again
// at the next level, so that an event is never held for the size of its
// dead letter.

// maxDocumentSize is MongoDB's largest document (16 MiB, the server's
// maxBsonObjectSize): a stored dead letter must fit in one.
const maxDocumentSize = 16 << 20

// trimLevels are the forms of a dead letter PutDeadLetter tries, in order.
var trimLevels = []string{"", dispatcher.TrimmedResponse, dispatcher.TrimmedEvent}

// tooLargeCodes are the server's error codes for a document larger than
// maxDocumentSize: BSONObjectTooLarge (an insert on newer servers), and the update
// and upsert stages' own ("Resulting document after update is larger
// than …", "Document to upsert is larger than …").
var tooLargeCodes = []int{int(mongoerr.BSONObjectTooLarge), 17419, 17420}

// unavailableCodes are server errors that say the state database cannot
// take the write now: no primary (an election, a stepdown), a shutdown,
// a host that cannot be reached, a time limit.
var unavailableCodes = []int{int(mongoerr.NotWritablePrimary), int(mongoerr.NotPrimaryNoSecondaryOk), int(mongoerr.NotPrimaryOrSecondary),
	int(mongoerr.PrimarySteppedDown), int(mongoerr.ShutdownInProgress), int(mongoerr.InterruptedAtShutdown),
	int(mongoerr.InterruptedDueToReplStateChange), int(mongoerr.HostUnreachable), int(mongoerr.HostNotFound),
	int(mongoerr.NetworkTimeout), int(mongoerr.MaxTimeMSExpired), int(mongoerr.ExceededTimeLimit)}

// hasCode reports whether err is a server error carrying one of codes.
func hasCode(err error, codes []int) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}

// isTooLarge reports whether err is the server refusing a document as
// larger than maxDocumentSize: one of tooLargeCodes, or an insert's
// BadValue "object to insert too large…" (MongoDB 6.0 and 7.0, devdb).
func isTooLarge(err error) bool {
	if hasCode(err, tooLargeCodes) {
		return true
	}
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCodeWithMessage(int(mongoerr.BadValue), "object to insert too large")
}

// deadLetterFailure classifies a failed dead-letter write: one of
// dispatcher.DeadLetterFailReasons.
func deadLetterFailure(err error) string {
	switch {
	case isTooLarge(err):
		return dispatcher.DeadLetterFailTooLarge
	case hasCode(err, []int{int(mongoerr.Unauthorized), int(mongoerr.AuthenticationFailed)}):
		return dispatcher.DeadLetterFailUnauthorized
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, mongo.ErrClientDisconnected),
		mongo.IsTimeout(err), mongo.IsNetworkError(err), hasCode(err, unavailableCodes):
		return dispatcher.DeadLetterFailUnavailable
	}
	var le mongo.LabeledError
	if errors.As(err, &le) && le.HasErrorLabel("RetryableWriteError") {
		return dispatcher.DeadLetterFailUnavailable
	}
	return dispatcher.DeadLetterFailOther
}

// trimmedDoc returns the stored form of dl trimmed to level ("" for none,
// or a dispatcher.Trimmed* value), encoded without its _id (the upsert
// takes it from the filter), and the size of the document it makes with
// its _id.
func trimmedDoc(dl dispatcher.DeadLetter, level string) (bson.Raw, int, error) {
	doc := deadLetterDoc{
		Trigger:        dl.Trigger,
		Event:          dl.Event,
		Token:          dl.Token,
		Attempts:       dl.Attempts,
		LastStatus:     dl.LastStatus,
		LastReason:     dl.LastReason,
		LastError:      dl.LastError,
		LastResponse:   dl.LastResponse,
		FirstAttemptAt: dl.FirstAttemptAt,
		DeadLetteredAt: dl.DeadLetteredAt,
		Trimmed:        level,
		SkippedBy:      dl.SkippedBy,
	}
	if level != "" {
		doc.LastResponse = ""
	}
	if level == dispatcher.TrimmedEvent {
		ident, err := eventIdentity(dl.Event)
		if err != nil {
			return nil, 0, err
		}
		doc.Event, doc.EventSize = ident, len(dl.Event)
		if dl.EventSize > 0 {
			// The caller knows the event's size: one a change stream
			// could not return whole (its server's error names it).
			doc.EventSize = dl.EventSize
		}
	}
	raw, err := bson.Marshal(doc)
	if err != nil {
		return nil, 0, fmt.Errorf("encode: %w", err)
	}
	// The _id element: type, "_id\x00", length, the string and its NUL.
	return raw, len(raw) + 1 + 4 + 4 + len(dl.WebhookID) + 1, nil
}

// eventIdentity returns the fields of the change event ev that say which
// change it is (dispatcher.EventIdentityFields), in ev's order, as a
// document of their own.
func eventIdentity(ev bson.Raw) (bson.Raw, error) {
	elems, err := ev.Elements()
	if err != nil {
		return nil, fmt.Errorf("read the event's fields: %w", err)
	}
	out := make([]byte, 4, 256)
	for _, e := range elems {
		if slices.Contains(dispatcher.EventIdentityFields, e.Key()) {
			out = append(out, e...)
		}
	}
	out = append(out, 0)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out, nil
}

// WriteFailReason classifies a failed write to the state database, such as
// a checkpoint save: ErrLeaseLost (a newer lease epoch fenced the write
// out) is dispatcher.DeadLetterFailLeaseLost, and every other error is
// classified as a failed dead-letter write is (unauthorized, unavailable,
// too_large or other: one of dispatcher.DeadLetterFailReasons).
func WriteFailReason(err error) string {
	if errors.Is(err, ErrLeaseLost) {
		return dispatcher.DeadLetterFailLeaseLost
	}
	return deadLetterFailure(err)
}
