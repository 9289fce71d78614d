package runner

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/changehook/changehook/internal/bsonwalk"
	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Change events split by $changeStreamSplitLargeEvent.
//
// MongoDB 7.0 (and 6.0.9) returns a change event larger than 16 MiB as
// fragments when the stream's pipeline ends with the
// $changeStreamSplitLargeEvent stage: consecutive documents, each with its
// own resume token as _id and splitEvent {fragment: n (from 1), of: m},
// holding the event's top-level fields between them. A watcher whose stream
// fails with BSONObjectTooLarge reopens it with the stage (see
// Watcher.splitStage) and reassembles the fragments into the event
// (splitAssembler) before it hands it to the dispatcher like any other.

// maxSplitFragments bounds the fragments of one split event a watcher
// holds: an event with more is a clear error rather than unbounded memory.
// Each fragment holds at most 16 MiB; the change events that exceed 16 MiB
// (a post-image, a pre-image and the update's description, each at most a
// document's 16 MiB) come in at most four.
const maxSplitFragments = 8

// maxFragmentSize bounds one fragment: a BSON document as the server's
// internal limit allows it (16 MiB + 16 KiB).
const maxFragmentSize = 16<<20 + 16<<10

// splitEventOf returns the fragment number and the number of fragments of
// raw's splitEvent field; ok is false when raw has no splitEvent (an event
// that was not split). MongoDB puts splitEvent right after _id, so the
// walk reads two elements of an ordinary event.
func splitEventOf(raw bson.Raw) (fragment, of int64, ok bool, err error) {
	w := bsonwalk.New(raw)
	for i := 0; ; i++ {
		key, v, more := w.Next()
		if !more {
			if w.Malformed() {
				// A malformed event is the dispatcher's to report; look
				// the field up as Raw does.
				v, lerr := raw.LookupErr("splitEvent")
				if lerr != nil {
					return 0, 0, false, nil
				}
				return splitNumbers(v)
			}
			return 0, 0, false, nil
		}
		if string(key) == "splitEvent" {
			return splitNumbers(v)
		}
		if i >= 1 && string(key) != "_id" {
			// Past _id and the element after it: not a fragment.
			return 0, 0, false, nil
		}
	}
}

// splitNumbers reads splitEvent's fragment and of.
func splitNumbers(v bson.RawValue) (fragment, of int64, ok bool, err error) {
	doc, isDoc := v.DocumentOK()
	if !isDoc {
		return 0, 0, true, fmt.Errorf("read split change event: splitEvent is a %s, not a document", v.Type)
	}
	fragment, fok := doc.Lookup("fragment").AsInt64OK()
	of, ook := doc.Lookup("of").AsInt64OK()
	if !fok || !ook {
		return 0, 0, true, fmt.Errorf("read split change event: splitEvent %s lacks an integer fragment or of", doc)
	}
	return fragment, of, true, nil
}

// errSplitIncomplete reports fragments that do not make up an event.
var errSplitIncomplete = errors.New("split change event incomplete")

// splitAssembler reassembles the fragments of one split change event, in
// the order the stream returns them. Its zero value holds nothing; it
// holds at most maxSplitFragments fragments of at most maxFragmentSize
// each. Not safe for concurrent use (the watch loop owns it).
type splitAssembler struct {
	of, next int64 // fragments of the event, the next one expected (0: none held)
	// buf holds, from reserve on, the top-level fields of the fragments
	// read so far other than their _id and splitEvent; the bytes before
	// reserve leave room for the document's length and its _id.
	buf     []byte
	reserve int
	// clusterTime is the first fragment's, for error messages.
	clusterTime bson.Timestamp
}

// holding reports whether fragments of an unfinished event are held.
func (a *splitAssembler) holding() bool { return a.next != 0 }

// interrupted returns the error for a change event that is not a fragment
// arriving while fragments of an unfinished event are held, and drops them.
func (a *splitAssembler) interrupted() error {
	err := fmt.Errorf("%w: an event that is not a fragment came after fragment %d of %d (of the event at cluster time %d.%d)",
		errSplitIncomplete, a.next-1, a.of, a.clusterTime.T, a.clusterTime.I)
	a.reset()
	return err
}

// reset drops the fragments held (a stream that reopens reads them again).
func (a *splitAssembler) reset() { *a = splitAssembler{} }

// add takes the fragment raw (fragment of its event's of, as
// splitEventOf read them) and, once it was the last, returns the whole
// event: the fields of every fragment in order, without splitEvent, with
// the last fragment's _id (its resume token: a stream resumed after it
// continues with the next event). raw is copied; the event returned is
// the caller's. An error — a fragment out of order, repeated or missing,
// an of that changes or is out of range, a fragment too large, fragments
// of an event that never completes — leaves the assembler empty.
func (a *splitAssembler) add(raw bson.Raw, fragment, of int64) (bson.Raw, error) {
	ev, err := a.addFragment(raw, fragment, of)
	if err != nil {
		a.reset()
	}
	return ev, err
}

func (a *splitAssembler) addFragment(raw bson.Raw, fragment, of int64) (bson.Raw, error) {
	switch {
	case of < 1 || of > maxSplitFragments:
		return nil, fmt.Errorf("%w: fragment %d of %d: changehook reassembles events of at most %d fragments", errSplitIncomplete, fragment, of, maxSplitFragments)
	case fragment < 1 || fragment > of:
		return nil, fmt.Errorf("%w: fragment %d of %d is out of range", errSplitIncomplete, fragment, of)
	case len(raw) > maxFragmentSize:
		return nil, fmt.Errorf("%w: fragment %d of %d has %d bytes, more than a fragment may (%d)", errSplitIncomplete, fragment, of, len(raw), maxFragmentSize)
	case a.next == 0 && fragment != 1:
		return nil, fmt.Errorf("%w: fragment %d of %d came without the fragments before it (the stream started within the split event)", errSplitIncomplete, fragment, of)
	case a.next != 0 && of != a.of:
		return nil, fmt.Errorf("%w: fragment %d says the event has %d fragments, the fragments before it said %d", errSplitIncomplete, fragment, of, a.of)
	case a.next != 0 && fragment < a.next:
		return nil, fmt.Errorf("%w: fragment %d of %d came again after fragment %d", errSplitIncomplete, fragment, of, a.next-1)
	case a.next != 0 && fragment > a.next:
		return nil, fmt.Errorf("%w: fragment %d of %d came after fragment %d: fragments are missing", errSplitIncomplete, fragment, of, a.next-1)
	}
	elems, err := raw.Elements()
	if err != nil {
		return nil, fmt.Errorf("read split change event fragment %d of %d: %w", fragment, of, err)
	}
	var id bson.RawElement
	if fragment == 1 {
		for _, e := range elems {
			if e.Key() == "_id" {
				id = e
				break
			}
		}
		if id == nil {
			return nil, fmt.Errorf("read split change event fragment 1 of %d: no _id (resume token)", of)
		}
		// Room for the document's length and the last fragment's _id:
		// fragments' tokens differ from the first's in their fragment
		// number only, so the first's size and some slack are enough
		// (addFragment copies the event when they are not).
		a.reserve = 4 + len(id) + 64
		// Every fragment but the last is filled close to the limit: size
		// the buffer for of fragments like this one, so that it is
		// rarely grown (and copied) again.
		a.buf = make([]byte, a.reserve, a.reserve+min(int(of)*len(raw), int(of)*maxFragmentSize))
		a.of = of
		if t, i, ok := raw.Lookup("clusterTime").TimestampOK(); ok {
			a.clusterTime = bson.Timestamp{T: t, I: i}
		}
	}
	for _, e := range elems {
		switch e.Key() {
		case "_id":
			id = e
		case "splitEvent":
		default:
			a.buf = append(a.buf, e...)
		}
	}
	if id == nil {
		return nil, fmt.Errorf("read split change event fragment %d of %d: no _id (resume token)", fragment, of)
	}
	if fragment < of {
		a.next = fragment + 1
		return nil, nil
	}
	// The last fragment: the event is its _id, then the fields.
	var doc []byte
	if start := a.reserve - 4 - len(id); start >= 0 {
		doc = a.buf[start:]
		copy(doc[4:], id)
	} else {
		doc = make([]byte, 0, 4+len(id)+len(a.buf)-a.reserve+1)
		doc = append(doc, 0, 0, 0, 0)
		doc = append(doc, id...)
		doc = append(doc, a.buf[a.reserve:]...)
	}
	doc = append(doc, 0)
	binary.LittleEndian.PutUint32(doc, uint32(len(doc)))
	if cap(doc)-len(doc) > len(doc)/8 {
		// The buffer was sized for fragments as large as the first, and
		// the later ones were smaller: the dispatcher's byte budgets
		// (max_inflight_bytes and the process-wide one) count the event's
		// length, so it keeps an exact copy rather than the whole buffer,
		// up to twice the event's size.
		doc = bytes.Clone(doc)
	}
	a.reset()
	return bson.Raw(doc), nil
}

// splitStageName is MongoDB's stage that splits large change events.
const splitStageName = "$changeStreamSplitLargeEvent"

// eventUnsplittable reports whether err is the server failing to split a
// change event (Location7182500): one of its top-level fields alone is
// larger than a fragment, as when a `project` puts the document and its
// pre-image into one field. The server has the stage; the event cannot be
// read with it.
func eventUnsplittable(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == int32(mongoerr.SplitEventTooLarge)
}

// splitStageRefused reports whether err, the failure to open a change
// stream whose pipeline ends with $changeStreamSplitLargeEvent, is the
// server refusing the stage: a server error that is neither transient nor
// about the stream's position (history lost, an invalid resume token, a
// ChangeStreamFatalError, which a server that knows the stage raises). A
// server before MongoDB 6.0.9 answers "Unrecognized pipeline stage name"
// (40324); any other such refusal counts too, and when the stage was not
// its cause the stream opened without it fails again and says so. An event
// the server cannot split (eventUnsplittable) counts as well: read without
// the stage, it fails as too large, which skip can handle. reason is the
// clause that says so, for the failure's reason.
func splitStageRefused(err error) (reason string, ok bool) {
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code == 0 || mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		return "", false
	}
	switch {
	case ce.Code == 286 || ce.Code == 260 || ce.Code == 280, transientCode(ce.Code),
		ce.HasErrorLabel("RetryableError"), ce.HasErrorLabel("ResumableChangeStreamError"):
		return "", false
	}
	if eventUnsplittable(err) {
		return fmt.Sprintf("the server cannot split it either: one of its top-level fields alone is larger than a fragment "+
			"(a `project` that puts large fields into one field makes such events) (%s %d): %s", ce.Name, ce.Code, ce.Message), true
	}
	return fmt.Sprintf("the server cannot split large change events ($changeStreamSplitLargeEvent needs MongoDB 7.0 or 6.0.9 and later): "+
		"it refused the stage (%s %d): %s", ce.Name, ce.Code, ce.Message), true
}

// resumeNeedsSplit reports whether err is MongoDB refusing to resume after
// a fragment's resume token without $changeStreamSplitLargeEvent
// (ChangeStreamFatalError 280 naming the stage): the checkpoint is the
// token of a split event's last fragment.
func resumeNeedsSplit(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == 280 && strings.Contains(ce.Message, splitStageName)
}

// splitRetry decides, after the stream ended with err (opened: it was
// open), whether it reopens at once with or without
// $changeStreamSplitLargeEvent (true) or err is handled as any other. It
// turns the stage on when a read failed on an event too large to return
// or a resume needs the stage, and off, for good, when the server refused
// it or cannot split an event (eventUnsplittable; first, with the stage,
// it reads one event per batch to deliver the events before that one):
// the watcher then reads one event per batch and fails on the large
// event, as without the stage. Each turn happens at most once per Run, so
// the reopens it asks for are bounded.
func (w *Watcher) splitRetry(err error, opened bool) bool {
	if err == nil || w.splitRefused != "" {
		return false
	}
	_, _, large := eventTooLarge(err)
	switch {
	case w.streamSplit && eventUnsplittable(err) && !w.oneByOne:
		// The read that failed abandoned the events before the one the
		// server cannot split, large ones too: read one per batch, still
		// with the stage, to deliver those first.
		w.oneByOne = true
		w.log.Warn("the server cannot split a change event larger than 16 MiB: one of its top-level fields alone is larger than a fragment; "+
			"the trigger reads one event per batch to deliver the events before it", "error", err)
		return true
	case w.streamSplit && (!opened || eventUnsplittable(err)):
		// An event the server cannot split fails the open stream too
		// (a getMore), not only its open.
		reason, refused := splitStageRefused(err)
		if !refused {
			return false
		}
		w.splitStage, w.splitRefused, w.oneByOne = false, reason, true
		if eventUnsplittable(err) {
			w.log.Warn("the server cannot split a change event larger than 16 MiB: one of its top-level fields alone is larger than a fragment; "+
				"the trigger reads without $changeStreamSplitLargeEvent, one event per batch, and fails on that event", "error", err)
		} else {
			w.log.Warn("the server cannot split large change events ($changeStreamSplitLargeEvent needs MongoDB 7.0 or 6.0.9 and later); "+
				"the trigger reads one event per batch and fails on the change event larger than 16 MiB", "error", err)
		}
		return true
	case large && !w.streamSplit:
		w.splitStage = true
		w.log.Info("a change event is larger than the 16 MiB a change stream returns whole: reopening the stream with $changeStreamSplitLargeEvent to read it in fragments")
		return true
	case !opened && !w.streamSplit && resumeNeedsSplit(err):
		w.splitStage = true
		w.log.Info("the checkpoint is the resume token of a split change event: reopening the stream with $changeStreamSplitLargeEvent")
		return true
	}
	return false
}

// reassemble passes an event of the stream on (raw, as read), or, on a
// stream with $changeStreamSplitLargeEvent, takes a fragment: held then
// reports that the event is not complete yet, and with the last fragment
// the whole event is returned, owned (the watcher's own buffer). An event
// that is no fragment while fragments are held, and fragments that do not
// make up an event, are errors (errSplitIncomplete).
func (w *Watcher) reassemble(raw bson.Raw) (ev bson.Raw, owned, held bool, err error) {
	if !w.streamSplit {
		return raw, false, false, nil
	}
	ev, owned, err = w.frags.Add(raw)
	switch {
	case err != nil:
		return nil, false, false, err
	case ev == nil:
		return nil, false, true, nil
	case owned:
		w.reassembled.Inc()
		w.log.Debug("reassembled a split change event", "bytes", len(ev))
	}
	return ev, owned, false, nil
}

// SplitLargeEventsStage returns the $changeStreamSplitLargeEvent stage, for
// a reader of change streams to append last to its pipeline
// (triggers.Trigger.WatchWith): MongoDB 7.0 (and 6.0.9) then returns an
// event larger than 16 MiB in fragments, which an EventAssembler puts
// back together, instead of failing the read with BSONObjectTooLarge.
func SplitLargeEventsStage() bson.D { return bson.D{{Key: splitStageName, Value: bson.D{}}} }

// SplitStageRefused reports whether err, the failure to open a change
// stream whose pipeline ends with SplitLargeEventsStage, says that the
// server cannot split large events (a server before MongoDB 6.0.9, or an
// event it cannot split): the caller opens the stream without the stage,
// whose reads then fail on an event over 16 MiB.
func SplitStageRefused(err error) bool {
	_, refused := splitStageRefused(err)
	return refused
}

// EventAssembler puts back together the change events that a stream with
// SplitLargeEventsStage returns in fragments, one document of the stream
// at a time (Add). It keeps the fragments of at most one event, at most
// maxSplitFragments of them. Its zero value is ready to use; it is not
// safe for concurrent use.
type EventAssembler struct{ a splitAssembler }

// Add takes the stream's next document. An event that was not split is
// returned as it is (raw itself). A fragment is copied and kept, (nil,
// false, nil), until its event's last fragment, with which the whole event
// is returned, reassembled: the fields of every fragment in order, without
// splitEvent, with the last fragment's _id (its resume token: a stream
// resumed after it continues with the next event), in a buffer of its
// own. Fragments that do not make up one event — out of order, missing,
// repeated, with another event between them, malformed — are an error
// (wrapping errSplitIncomplete) and drop what was kept.
func (e *EventAssembler) Add(raw bson.Raw) (ev bson.Raw, reassembled bool, err error) {
	fragment, of, ok, err := splitEventOf(raw)
	switch {
	case err != nil:
		e.a.reset()
		return nil, false, fmt.Errorf("%w: %w", errSplitIncomplete, err)
	case !ok && e.a.holding():
		return nil, false, e.a.interrupted()
	case !ok:
		return raw, false, nil
	}
	ev, err = e.a.add(raw, fragment, of)
	return ev, ev != nil, err
}

// holding reports whether fragments of an unfinished event are kept.
func (e *EventAssembler) holding() bool { return e.a.holding() }

// reset drops the fragments kept (a stream that reopens reads them again).
func (e *EventAssembler) reset() { e.a.reset() }
