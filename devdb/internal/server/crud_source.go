package server

import (
	"context"
	"iter"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// seqSource is a CursorSource over a lazily evaluated document sequence.
// The sequence is pulled (iter.Pull2) only from NextBatch, which the cursor
// manager calls from one goroutine at a time; one document is read ahead so
// that a batch that ends the sequence reports exhaustion (cursor id 0).
type seqSource struct {
	next    func() (bson.D, error, bool)
	stop    func()
	pending bson.Raw
	done    bool
}

// newSeqSource returns a CursorSource over seq.
func newSeqSource(seq iter.Seq2[bson.D, error]) *seqSource {
	next, stop := iter.Pull2(seq)
	return &seqSource{next: next, stop: stop}
}

// pull returns the next encoded document, or nil at the end.
func (s *seqSource) pull() (bson.Raw, error) {
	if s.pending != nil {
		r := s.pending
		s.pending = nil
		return r, nil
	}
	if s.done {
		return nil, nil
	}
	d, err, ok := s.next()
	if !ok {
		s.done = true
		return nil, nil
	}
	if err != nil {
		s.done = true
		return nil, err
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		s.done = true
		return nil, mongoerr.Errorf(mongoerr.InternalError, "encode result document: %v", err)
	}
	return raw, nil
}

// NextBatch implements CursorSource.
func (s *seqSource) NextBatch(ctx context.Context, n, maxBytes int, _ time.Duration) ([]bson.Raw, bool, error) {
	var out []bson.Raw
	size := 0
	for n <= 0 || len(out) < n {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		r, err := s.pull()
		if err != nil {
			return nil, true, err
		}
		if r == nil {
			return out, true, nil
		}
		if len(out) > 0 && size+batchElemSize(r) > maxBytes {
			s.pending = r
			return out, false, nil
		}
		out = append(out, r)
		size += batchElemSize(r)
	}
	// Read one ahead so that a finished sequence closes the cursor now.
	r, err := s.pull()
	if err != nil {
		// Report the error on the next getMore, as MongoDB would.
		s.done = false
		s.next = func() (bson.D, error, bool) { return nil, err, true }
		return out, false, nil
	}
	if r == nil {
		return out, true, nil
	}
	s.pending = r
	return out, false, nil
}

// ReplyFields implements CursorSource.
func (s *seqSource) ReplyFields() bson.D { return nil }

// Close implements CursorSource.
func (s *seqSource) Close() { s.stop() }
