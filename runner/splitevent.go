package runner

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/changehook/changehook/internal/bsonwalk"
	"go.mongodb.org/mongo-driver/v2/bson"
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
	a.reset()
	return bson.Raw(doc), nil
}
