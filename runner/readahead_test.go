package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/changehook/changehook/internal/testhooks"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// fakeStream serves replies of events, each event's _id {_data: "e<n>"},
// and after each reply the postBatchResumeToken {_data: "p<reply>"} (or,
// when samePBRT, the reply's last event's _id). Reply sizes cycle through
// sizes; a size of 0 is an empty read. After replies replies (0: never)
// TryNext fails with err (nil: the server closes the cursor).
type fakeStream struct {
	sizes    []int
	replies  int
	err      error
	samePBRT bool
	getMores chan int // each getMore's number, when not nil

	n, reply, left int
	cur, token     bson.Raw
	failed         error
	closed         bool
}

func fakeEvent(n int) bson.Raw {
	b, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: fmt.Sprintf("e%d", n)}}},
		{Key: "operationType", Value: "insert"}, {Key: "pad", Value: bytes.Repeat([]byte{'x'}, n%97)}})
	return b
}

func fakeToken(s string) bson.Raw {
	b, _ := bson.Marshal(bson.D{{Key: "_data", Value: s}})
	return b
}

func (f *fakeStream) TryNext(ctx context.Context) bool {
	if f.failed != nil || f.closed {
		return false
	}
	if f.left == 0 {
		if ctx.Err() != nil {
			f.failed = ctx.Err()
			return false
		}
		if f.replies > 0 && f.reply == f.replies {
			if f.err != nil {
				f.failed = f.err
			} else {
				f.closed = true
			}
			return false
		}
		f.reply++
		if f.getMores != nil {
			f.getMores <- f.reply
		}
		f.left = f.sizes[(f.reply-1)%len(f.sizes)]
		if f.left == 0 {
			f.token = fakeToken(fmt.Sprintf("p%d", f.reply))
			return false
		}
	}
	f.n++
	f.left--
	f.cur = fakeEvent(f.n)
	f.token = f.cur.Lookup("_id").Document()
	if f.left == 0 && !f.samePBRT {
		f.token = fakeToken(fmt.Sprintf("p%d", f.reply))
	}
	return true
}

func (f *fakeStream) Err() error { return f.failed }
func (f *fakeStream) ID() int64 {
	if f.closed {
		return 0
	}
	return 1
}
func (f *fakeStream) ResumeToken() bson.Raw     { return f.token }
func (f *fakeStream) RemainingBatchLength() int { return f.left }
func (f *fakeStream) current() bson.Raw         { return f.cur }

// TestReadAheadCopiesReplies: every event arrives once, in order, as an
// equal copy, in the reply it was read in; the token after each event is
// the event's _id, and the reply's postBatchResumeToken after its last
// event; empty reads carry the stream's token; the stream's end
// (an error, or the server's close) is the last reply. Replies handed
// back are reused without ever writing to their buffers again: every
// event and token read stays as it was (the watch loop hands them over to
// the dispatcher).
func TestReadAheadCopiesReplies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		samePBRT bool
		err      error
	}{
		{"pbrt after each reply, then an error", false, errors.New("boom")},
		{"pbrt equal to the last event, then a close", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeStream{sizes: []int{3, 1, 0, 50, 7, 0, 0, 200}, replies: 40, err: tc.err, samePBRT: tc.samePBRT}
			out := make(chan *readReply, readAheadReplies)
			free := make(chan *readReply, readAheadReplies+2)
			go readAhead(t.Context(), fs, time.Now, out, free, &sync.Pool{})
			n, reply := 0, 0
			var last *readReply
			var kept, seen []readEvent // every event read, and a copy of it as it was handed out
			for r := range out {
				if last != nil {
					t.Fatalf("reply after the stream's end")
				}
				if r.err != nil || r.closed {
					last = r
					if len(r.events) != 0 {
						t.Fatalf("the end came with %d events", len(r.events))
					}
					continue
				}
				reply++
				want := fs.sizes[(reply-1)%len(fs.sizes)]
				if len(r.events) != want {
					t.Fatalf("reply %d: %d events, want %d", reply, len(r.events), want)
				}
				if want == 0 {
					if !bytes.Equal(r.token, fakeToken(fmt.Sprintf("p%d", reply))) {
						t.Fatalf("empty reply %d: token %v", reply, r.token)
					}
				}
				for i, e := range r.events {
					n++
					kept = append(kept, e)
					seen = append(seen, readEvent{raw: bytes.Clone(e.raw), after: bytes.Clone(e.after)})
					if !bytes.Equal(e.raw, fakeEvent(n)) {
						t.Fatalf("event %d: %v", n, e.raw)
					}
					switch {
					case i < len(r.events)-1 || tc.samePBRT:
						if !bytes.Equal(e.after, e.raw.Lookup("_id").Document()) {
							t.Fatalf("event %d: token after %v, want its own", n, e.after)
						}
					case !bytes.Equal(e.after, fakeToken(fmt.Sprintf("p%d", reply))):
						t.Fatalf("event %d, the last of reply %d: token after %v", n, reply, e.after)
					}
				}
				free <- r
			}
			if last == nil {
				t.Fatal("the stream's end never came")
			}
			if reply != 40 || last.err != tc.err || (tc.err == nil) != last.closed {
				t.Fatalf("%d replies, end %+v", reply, last)
			}
			for i, e := range kept {
				if !bytes.Equal(e.raw, seen[i].raw) || !bytes.Equal(e.after, seen[i].after) {
					t.Fatalf("event %d changed after its reply was handed back: %v, token after %v", i+1, e.raw, e.after)
				}
			}
		})
	}
}

// TestReadAheadBounded: with nobody handling replies, the reader sends
// readAheadReplies of them, reads one more and waits: it never issues a
// further getMore, and stops when its context ends.
func TestReadAheadBounded(t *testing.T) {
	fs := &fakeStream{sizes: []int{100}, getMores: make(chan int, 100)}
	out := make(chan *readReply, readAheadReplies)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		readAhead(ctx, fs, time.Now, out, nil, &sync.Pool{})
	}()
	for range readAheadReplies + 1 {
		<-fs.getMores
	}
	cancel()
	<-done
	if got := len(fs.getMores); got != 0 {
		t.Fatalf("%d getMores beyond the %d replies the reader may hold", got, readAheadReplies+1)
	}
	if len(out) != readAheadReplies {
		t.Fatalf("%d replies waiting, want %d", len(out), readAheadReplies)
	}
	if r := <-out; len(r.events) != 100 || !bytes.Equal(r.events[0].raw, fakeEvent(1)) {
		t.Fatalf("first reply: %d events", len(r.events))
	}
}

// TestReadAheadReusesReleasedBuffers: a reply's buffer is reused only once
// the watch loop and every event submitted from it gave their references
// back, and then it is (a later reply is read into it). Events are held
// for two replies before they are released, as a dispatcher holds them;
// none of their bytes changes while held, and released buffers are
// poisoned before reuse, so a premature reuse would show.
func TestReadAheadReusesReleasedBuffers(t *testing.T) {
	testhooks.PoisonReleased = true
	t.Cleanup(func() { testhooks.PoisonReleased = false })
	fs := &fakeStream{sizes: []int{40, 40, 0, 40}, replies: 60, err: errors.New("end")}
	out := make(chan *readReply, readAheadReplies)
	free := make(chan *readReply, readAheadReplies+2)
	go readAhead(t.Context(), fs, time.Now, out, free, &sync.Pool{})
	type held struct {
		rb     *replyBuf
		events []readEvent
		copies [][]byte
	}
	var queue []held
	released := map[*byte]bool{} // backing arrays of released buffers
	reused, n := 0, 0
	check := func(h held) {
		for i, e := range h.events {
			if !bytes.Equal(e.raw, h.copies[i]) {
				t.Fatalf("a held event changed: %x, was %x", e.raw, h.copies[i])
			}
		}
	}
	for r := range out {
		if r.err != nil {
			break
		}
		if len(r.events) == 0 {
			r.done()
			free <- r
			continue
		}
		if released[unsafe.SliceData(r.rb.b)] {
			reused++
		}
		h := held{rb: r.rb, events: append([]readEvent(nil), r.events...)}
		for _, e := range r.events {
			n++
			if !bytes.Equal(e.raw, fakeEvent(n)) {
				t.Fatalf("event %d: %v", n, e.raw)
			}
			h.copies = append(h.copies, bytes.Clone(e.raw))
			r.rb.hold() // submitted
		}
		r.done()
		free <- r
		for _, old := range queue {
			check(old)
		}
		queue = append(queue, h)
		if len(queue) > 2 {
			old := queue[0]
			queue = queue[1:]
			check(old)
			released[unsafe.SliceData(old.rb.b)] = true
			for range old.events {
				old.rb.put() // the watermark passed it
			}
		}
	}
	if reused == 0 {
		t.Fatalf("no reply was read into a released buffer (%d events)", n)
	}
}
