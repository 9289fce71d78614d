package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
)

// oplogTail is a tailable cursor on local.oplog.rs (find with tailable,
// and awaitData to wait in getMore): it returns the entries matching its
// find, oldest first, and at the end of the oplog stays open where it
// stopped, so a later getMore returns the entries written since. As on
// MongoDB, it stays open even when its first batch matched nothing (the
// server drops a tailable cursor only on an empty collection, and the
// oplog always holds an entry), one whose position the oplog's retention
// removed fails with CappedPositionLost, and with awaitData an empty
// getMore waits up to its maxTimeMS (1 s by default) for a write.
type oplogTail struct {
	s *Server
	f *findSpec
	// after is the position: the last entry examined (zero: none yet).
	after bson.Timestamp
	// skipped and returned count the matching entries skipped (f.skip)
	// and returned (against f.limit).
	skipped, returned int64
	// pending is a matching entry that did not fit the last batch, and
	// pendingUpTo the position after it.
	pending     bson.Raw
	pendingUpTo bson.Timestamp
	started     bool
	failed      error
}

// newOplogTail returns a tailable cursor source for the find f.
func (s *Server) newOplogTail(f *findSpec) *oplogTail {
	return &oplogTail{s: s, f: f, after: f.plan.tsAfter}
}

// NextBatch implements CursorSource.
func (t *oplogTail) NextBatch(ctx context.Context, n, maxBytes int, await time.Duration) ([]bson.Raw, bool, error) {
	if t.failed != nil {
		return nil, true, t.failed
	}
	var waiter *storage.Waiter
	if await > 0 {
		// Registered before the read, so that a commit racing with it
		// still ends the wait below.
		waiter = t.s.store.Wait(nil)
		defer waiter.Close()
	}
	var timer *time.Timer
	for {
		out, err := t.fill(n, maxBytes)
		if err != nil {
			t.failed = err
			return nil, true, err
		}
		t.started = true
		if t.f.limit > 0 && t.returned >= t.f.limit && t.pending == nil {
			return out, true, nil
		}
		if len(out) > 0 || await <= 0 {
			return out, false, nil
		}
		if timer == nil {
			timer = time.NewTimer(await)
			defer timer.Stop()
		}
		select {
		case <-waiter.C():
		case <-timer.C:
			return nil, false, nil
		case <-ctx.Done():
			if t.s.ctx != nil && t.s.ctx.Err() != nil {
				return nil, true, mongoerr.Errorf(mongoerr.InterruptedAtShutdown, "interrupted at shutdown")
			}
			return nil, true, mongoerr.Errorf(mongoerr.CursorKilled, "cursor killed during getMore")
		}
	}
}

// fill reads the entries after the position into a batch of at most n
// documents (n <= 0: no limit) within maxBytes, moving the position past
// every entry it examined.
func (t *oplogTail) fill(n, maxBytes int) ([]bson.Raw, error) {
	var out []bson.Raw
	size := 0
	full := func() bool { return n > 0 && len(out) >= n }
	add := func(raw bson.Raw, upTo bson.Timestamp) bool {
		if len(out) > 0 && size+batchElemSize(raw) > maxBytes {
			t.pending, t.pendingUpTo = raw, upTo
			return false
		}
		out = append(out, raw)
		size += batchElemSize(raw)
		t.after = upTo
		return true
	}
	if t.pending != nil {
		raw, upTo := t.pending, t.pendingUpTo
		t.pending = nil
		add(raw, upTo)
	}
	var matchErr error
	err := t.s.oplogDocs(t.after, false, func(d bson.D, upTo bson.Timestamp) bool {
		if full() || t.pending != nil || (t.f.limit > 0 && t.returned >= t.f.limit) {
			return false
		}
		m, err := t.f.plan.filter.MatchErr(d)
		if err != nil {
			matchErr = err
			return false
		}
		if !m {
			t.after = upTo
			return true
		}
		if t.skipped < t.f.skip {
			t.skipped++
			t.after = upTo
			return true
		}
		d, err = t.f.project(d)
		if err != nil {
			matchErr = err
			return false
		}
		raw, err := bson.Marshal(d)
		if err != nil {
			matchErr = mongoerr.Errorf(mongoerr.InternalError, "encode result document: %v", err)
			return false
		}
		t.returned++
		return add(raw, upTo)
	})
	if errors.Is(err, storage.ErrHistoryLost) && !t.started && len(out) == 0 && t.after == t.f.plan.tsAfter && !t.after.IsZero() {
		// The filter's ts bound is older than the oldest entry kept:
		// the first read starts from the oldest.
		t.after = bson.Timestamp{}
		return t.fill(n, maxBytes)
	}
	switch {
	case matchErr != nil:
		return nil, matchErr
	case errors.Is(err, storage.ErrHistoryLost):
		return nil, errCappedPositionLost()
	case err != nil:
		return nil, fmt.Errorf("scan local.oplog.rs: %w", dataErr(err))
	}
	return out, nil
}

// ReplyFields implements CursorSource: a find cursor's reply has none.
func (t *oplogTail) ReplyFields() bson.D { return nil }

// Close implements CursorSource. The source holds no goroutines or storage
// handles.
func (t *oplogTail) Close() { t.pending = nil }
