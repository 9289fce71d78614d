package runner

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// readAheadReplies is how many read replies wait for the watch loop while
// the reader reads the next: with one, the reader holds at most three
// replies (one being handled, one waiting, one being read).
const readAheadReplies = 1

// changeStream is what the reader uses of a *mongo.ChangeStream.
type changeStream interface {
	TryNext(ctx context.Context) bool
	Err() error
	ID() int64
	ResumeToken() bson.Raw
	RemainingBatchLength() int
	current() bson.Raw
}

// driverStream is a *mongo.ChangeStream as a changeStream.
type driverStream struct{ *mongo.ChangeStream }

func (s driverStream) current() bson.Raw { return s.Current }

// readEvent is one event of a read reply.
type readEvent struct {
	raw bson.Raw // the event, in the reply's copy
	// after is the stream's resume token after this event: the event's
	// own _id (within raw), or for the last event of a reply the reply's
	// postBatchResumeToken when it differs.
	after bson.Raw
}

// readReply is one read of the change stream, copied out of the driver's
// buffers: a getMore reply's events (none after an empty read), or the
// error or server-side close that ended the stream. The copies are the
// watch loop's to hand over (dispatcher.SubmitOwned): the reader never
// writes to a reply's buffer again, and a reused reply gets a new one.
type readReply struct {
	events []readEvent
	buf    []byte    // holds every event and token copy; never reused
	at     time.Time // when its first event was read
	token  bson.Raw  // after an empty read: the stream's resume token (nil: none)
	err    error
	closed bool // the server closed the cursor (cs.ID() == 0)
}

// readAhead reads cs into out (the time of each reply from now), one readReply per getMore reply (an empty
// read too), until the stream fails or closes (its last reply says so) or
// ctx ends. It reads the next reply while the watch loop handles the
// previous one; out's capacity bounds how far it gets ahead. Replies the
// watch loop is done with come back through free and their event lists are
// reused; their buffers are not (the events in them were handed over), a
// new one is sized by the last reply's.
func readAhead(ctx context.Context, cs changeStream, now func() time.Time, out chan<- *readReply, free <-chan *readReply) {
	defer close(out)
	last := 0 // the last reply's copies' size, to size the next buffer
	for {
		var r *readReply
		select {
		case r = <-free:
			clear(r.events)
			r.events, r.buf, r.token, r.err, r.closed = r.events[:0], nil, nil, nil, false
		default:
			r = &readReply{}
		}
		if cs.TryNext(ctx) {
			r.at = now()
			r.buf = make([]byte, 0, last+last/8)
			for {
				r.add(cs.current(), cs.ResumeToken())
				if cs.RemainingBatchLength() == 0 || !cs.TryNext(ctx) {
					break
				}
			}
			r.err = cs.Err()
			last = len(r.buf)
		} else {
			switch {
			case cs.Err() != nil:
				r.err = cs.Err()
			case cs.ID() == 0:
				r.closed = true
			}
			if rt := cs.ResumeToken(); rt != nil {
				start := len(r.buf)
				r.buf = append(r.buf, rt...)
				r.token = bson.Raw(r.buf[start:len(r.buf):len(r.buf)])
			}
		}
		select {
		case out <- r:
		case <-ctx.Done():
			return
		}
		if r.err != nil || r.closed {
			return
		}
	}
}

// add appends a copy of the event raw and the stream's token after it (the
// _id of that copy when it is the event's own).
func (r *readReply) add(raw, after bson.Raw) {
	e := readEvent{raw: r.copy(raw)}
	if id, ok := e.raw.Lookup("_id").DocumentOK(); ok && string(id) == string(after) {
		e.after = id
	} else {
		e.after = r.copy(after)
	}
	r.events = append(r.events, e)
}

// copy appends b to the reply's buffer and returns the copy. When the
// buffer grows, the earlier copies keep the old array (still valid; it is
// garbage once the reply is done).
func (r *readReply) copy(b []byte) bson.Raw {
	start := len(r.buf)
	r.buf = append(r.buf, b...)
	return bson.Raw(r.buf[start:len(r.buf):len(r.buf)])
}
