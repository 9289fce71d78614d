package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
)

// Cursor batching limits.
const (
	// cursorDefaultFirstBatch is the first batch's document limit when the client
	// gives none (MongoDB's default of 101).
	cursorDefaultFirstBatch = 101
	// cursorMaxBatchBytes bounds the documents of one batch; the reply envelope
	// fits in the 16 KiB of slack MongoDB allows over 16 MiB.
	cursorMaxBatchBytes = wire.MaxDocumentSize
	// cursorDefaultAwait is how long a getMore on an awaitable cursor waits for
	// data when the client sends no maxTimeMS.
	cursorDefaultAwait = time.Second
)

// The context MongoDB's commands add to an error their query executor raises
// while producing documents (addContext): a runtime error such as a failing
// expression, a conversion, a sort over the memory limit or a failed $out
// write; for findAndModify, whatever fails while it finds, modifies, upserts
// or removes the document (a failing $expr, an update that cannot apply, a
// duplicate key, a failed validation, a result over 16 MiB). Errors found
// while the command is parsed or planned (unknown operator, bad syntax, a
// constant expression failing) carry none. MongoDB 6.0's update and delete
// commands add none to their write errors.
const (
	execContextFind          = "Executor error during find command"
	execContextAggregate     = "PlanExecutor error during aggregation"
	execContextGetMore       = "Executor error during getMore"
	execContextFindAndModify = "Plan executor error during findAndModify"
)

// withExecutorContext returns the server error err with its message
// prefixed with context as MongoDB's addContext does ("<context> :: caused
// by :: <message>"), its code and labels kept. The result still wraps err,
// so what the reply takes from it (a duplicate key's keyPattern and
// keyValue, a validation failure's errInfo) is kept too. An empty context,
// or an error that is not a server error, returns err unchanged.
func withExecutorContext(err error, context string) error {
	var me *mongoerr.Error
	if context == "" || !errors.As(err, &me) {
		return err
	}
	wrapped := *me
	wrapped.Message = context + " :: caused by :: " + me.Message
	return &contextError{me: &wrapped, err: err}
}

// contextError is a server error with context added: errors.As finds the
// prefixed *mongoerr.Error first, then anything the original error wraps.
type contextError struct {
	me  *mongoerr.Error
	err error
}

func (e *contextError) Error() string   { return e.me.Error() }
func (e *contextError) Unwrap() []error { return []error{e.me, e.err} }

// cursor is one registered server-side cursor.
type cursor struct {
	id   int64
	ns   string
	src  CursorSource
	opts CursorOptions

	// The fields below are guarded by cursorManager.mu.
	lastUsed time.Time
	inUse    bool
	killed   bool               // killCursors or shutdown hit it while in use
	cancel   context.CancelFunc // cancels the getMore using it; nil when idle
}

// cursorManager owns the open cursors: it registers them, pins one for the
// duration of a getMore, kills them and reaps idle ones.
type cursorManager struct {
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	cursors map[int64]*cursor
}

// newCursorManager returns an empty manager; now nil means time.Now.
func newCursorManager(timeout time.Duration, log *slog.Logger, now func() time.Time) *cursorManager {
	if now == nil {
		now = time.Now
	}
	return &cursorManager{timeout: timeout, log: log, now: now, cursors: map[int64]*cursor{}}
}

// register stores src under a fresh random positive id and returns the id.
func (m *cursorManager) register(ns string, src CursorSource, opts CursorOptions) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		id := rand.Int64N(math.MaxInt64) + 1
		if _, taken := m.cursors[id]; taken {
			continue
		}
		m.cursors[id] = &cursor{id: id, ns: ns, src: src, opts: opts, lastUsed: m.now()}
		return id
	}
}

// pin marks the cursor id on namespace ns in use by a getMore and returns it
// with a context (derived from ctx) that killCursors cancels. The caller must
// call unpin. As on MongoDB, which finds a cursor by its id alone, a cursor
// of another namespace is Unauthorized (13), not CursorNotFound (43), and
// stays open.
func (m *cursorManager) pin(ctx context.Context, id int64, ns string) (*cursor, context.Context, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cursors[id]
	if !ok {
		return nil, nil, mongoerr.Errorf(mongoerr.CursorNotFound, "cursor id %d not found", id)
	}
	if c.inUse {
		return nil, nil, mongoerr.Errorf(mongoerr.CursorInUse, "cursor id %d is already in use", id)
	}
	if c.ns != ns {
		return nil, nil, mongoerr.Errorf(mongoerr.Unauthorized, "Requested getMore on namespace '%s', but cursor belongs to a different namespace %s", ns, c.ns)
	}
	c.inUse = true
	cctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	return c, cctx, nil
}

// unpin releases a cursor pinned by pin. With drop (exhausted, failed) or
// when it was killed meanwhile, the cursor is removed and its source closed.
func (m *cursorManager) unpin(c *cursor, drop bool) {
	m.mu.Lock()
	c.cancel()
	c.cancel = nil
	c.inUse = false
	c.lastUsed = m.now()
	if drop || c.killed {
		delete(m.cursors, c.id)
		m.mu.Unlock()
		c.src.Close()
		return
	}
	m.mu.Unlock()
}

// kill removes the cursor id, whatever its namespace: MongoDB's
// killCursors finds a cursor by its id alone, as getMore does. An idle
// cursor's source is closed at once; a cursor in use has its getMore
// cancelled and is closed when that getMore ends. It reports whether the
// cursor existed.
func (m *cursorManager) kill(id int64) bool {
	m.mu.Lock()
	c, ok := m.cursors[id]
	if !ok || c.killed {
		m.mu.Unlock()
		return false
	}
	if c.inUse {
		c.killed = true
		c.cancel()
		m.mu.Unlock()
		return true
	}
	delete(m.cursors, id)
	m.mu.Unlock()
	c.src.Close()
	return true
}

// reap closes the idle cursors not used since now minus the timeout and
// returns how many it closed. Cursors in use are never reaped.
func (m *cursorManager) reap(now time.Time) int {
	m.mu.Lock()
	var stale []*cursor
	for id, c := range m.cursors {
		if !c.inUse && now.Sub(c.lastUsed) > m.timeout {
			delete(m.cursors, id)
			stale = append(stale, c)
		}
	}
	m.mu.Unlock()
	for _, c := range stale {
		m.log.Debug("devdb: reaped idle cursor", "cursor", c.id, "ns", c.ns)
		c.src.Close()
	}
	return len(stale)
}

// runJanitor reaps idle cursors at every tick until ctx is done, calling
// afterReap (if not nil) with the number reaped after each pass.
func (m *cursorManager) runJanitor(ctx context.Context, ticks <-chan time.Time, afterReap func(int)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
			n := m.reap(m.now())
			if afterReap != nil {
				afterReap(n)
			}
		}
	}
}

// closeAll closes every cursor (server shutdown). Cursors still in use are
// cancelled and closed by their getMore.
func (m *cursorManager) closeAll() {
	m.mu.Lock()
	var idle []*cursor
	for id, c := range m.cursors {
		if c.inUse {
			c.killed = true
			c.cancel()
			continue
		}
		delete(m.cursors, id)
		idle = append(idle, c)
	}
	m.mu.Unlock()
	for _, c := range idle {
		c.src.Close()
	}
}

// len returns the number of open cursors.
func (m *cursorManager) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cursors)
}

// cursorFirstBatch produces a command's cursor reply
// {cursor: {firstBatch: [...], <src.ReplyFields()...>, id, ns}} from src,
// and registers src for getMore unless it is exhausted or opts.SingleBatch
// (then, and on error, src is closed and the id is 0). ns is "db.coll". An
// error building the batch is returned with opts.ExecutorContext added.
func (s *Server) cursorFirstBatch(ctx context.Context, ns string, src CursorSource, opts CursorOptions) (bson.D, error) {
	var (
		docs      []bson.Raw
		exhausted bool
	)
	if !opts.ZeroBatch {
		n := opts.BatchSize
		if n <= 0 {
			n = cursorDefaultFirstBatch
		}
		var err error
		docs, exhausted, err = src.NextBatch(ctx, n, cursorMaxBatchBytes, 0)
		if err != nil {
			src.Close()
			return nil, withExecutorContext(err, opts.ExecutorContext)
		}
	}
	extra := src.ReplyFields()
	var id int64
	if exhausted || opts.SingleBatch {
		src.Close()
	} else {
		id = s.cursors.register(ns, src, opts)
	}
	return bson.D{{Key: "cursor", Value: cursorSubdoc("firstBatch", docs, extra, id, ns)}}, nil
}

// cursorSubdoc builds a cursor subdocument.
func cursorSubdoc(batchKey string, docs []bson.Raw, extra bson.D, id int64, ns string) bson.D {
	batch := make(bson.A, len(docs))
	for i, d := range docs {
		batch[i] = d
	}
	cd := make(bson.D, 0, 3+len(extra))
	cd = append(cd, bson.E{Key: batchKey, Value: batch})
	cd = append(cd, extra...)
	return append(cd, bson.E{Key: "id", Value: id}, bson.E{Key: "ns", Value: ns})
}
