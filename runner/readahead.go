package runner

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/internal/testhooks"
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
// watch loop's to hand over (dispatcher.SubmitOwned), in a replyBuf that
// is reused only once every event submitted from it is released.
type readReply struct {
	events []readEvent
	rb     *replyBuf // holds every event and token copy (nil: none)
	at     time.Time // when its first event was read
	token  bson.Raw  // after an empty read: the stream's resume token (nil: none)
	err    error
	closed bool // the server closed the cursor (cs.ID() == 0)
}

// replyBuf is the buffer of one reply's copies. It is reference counted:
// the watch loop holds one reference while it handles the reply and each
// event it submits holds one, given back by the dispatcher once its
// watermark has passed the event (dispatcher.Event.Release). The last
// release puts the buffer into its pool for a later reply; a reference
// never given back (an event abandoned at shutdown) only leaves the buffer
// to the garbage collector.
type replyBuf struct {
	b       []byte
	refs    atomic.Int32
	pool    *sync.Pool
	release func() // rb.put, bound once: every event's Event.Release
}

// getReplyBuf returns a buffer of at least size bytes' capacity from pool
// (a released one when it is large enough, else a new one), holding one
// reference.
func getReplyBuf(pool *sync.Pool, size int) *replyBuf {
	rb, _ := pool.Get().(*replyBuf)
	if rb == nil || cap(rb.b) < size {
		rb = &replyBuf{b: make([]byte, 0, size), pool: pool}
		rb.release = rb.put
	}
	rb.b = rb.b[:0]
	rb.refs.Store(1)
	return rb
}

// hold takes one more reference, for an event about to be submitted.
func (rb *replyBuf) hold() { rb.refs.Add(1) }

// put gives one reference back; the last one returns the buffer to its
// pool.
func (rb *replyBuf) put() {
	if rb.refs.Add(-1) != 0 {
		return
	}
	if testhooks.PoisonReleased {
		b := rb.b[:cap(rb.b)]
		for i := range b {
			b[i] = 0xEE
		}
	}
	rb.pool.Put(rb)
}

// readAhead reads cs into out (the time of each reply from now), one readReply per getMore reply (an empty
// read too), until the stream fails or closes (its last reply says so) or
// ctx ends. It reads the next reply while the watch loop handles the
// previous one; out's capacity bounds how far it gets ahead. Replies the
// watch loop is done with come back through free and their event lists are
// reused; their buffers come from bufs (see replyBuf), sized by the last
// reply's copies.
func readAhead(ctx context.Context, cs changeStream, now func() time.Time, out chan<- *readReply, free <-chan *readReply, bufs *sync.Pool) {
	defer close(out)
	last := 0 // the last reply's copies' size, to size the next buffer
	for {
		var r *readReply
		select {
		case r = <-free:
			clear(r.events)
			r.events, r.rb, r.token, r.err, r.closed = r.events[:0], nil, nil, nil, false
		default:
			r = &readReply{}
		}
		if cs.TryNext(ctx) {
			r.at = now()
			r.rb = getReplyBuf(bufs, last+last/8)
			for {
				r.add(cs.current(), cs.ResumeToken())
				if cs.RemainingBatchLength() == 0 || !cs.TryNext(ctx) {
					break
				}
			}
			r.err = cs.Err()
			last = len(r.rb.b)
		} else {
			switch {
			case cs.Err() != nil:
				r.err = cs.Err()
			case cs.ID() == 0:
				r.closed = true
			}
			if rt := cs.ResumeToken(); rt != nil {
				r.token = bytes.Clone(rt)
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

// done gives back the watch loop's reference to the reply's buffer, once
// it has submitted the events it will submit.
func (r *readReply) done() {
	if r.rb != nil {
		r.rb.put()
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
// garbage once the reply is done, and the new array is the one reused).
func (r *readReply) copy(b []byte) bson.Raw {
	start := len(r.rb.b)
	r.rb.b = append(r.rb.b, b...)
	return bson.Raw(r.rb.b[start:len(r.rb.b):len(r.rb.b)])
}
