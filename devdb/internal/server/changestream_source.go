package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// csQueued is an event produced by the scan but not yet returned.
type csQueued struct {
	raw   bson.Raw
	token resumeToken
	// final marks the invalidate event: the stream ends after it.
	final bool
}

// changeStreamSource is the CursorSource of one change stream. The cursor
// manager calls NextBatch from one goroutine at a time, and Close once.
//
// Position: pos is the cluster time up to which the oplog has been
// scanned (every entry with TS <= pos has been turned into queued events or
// dropped). Each NextBatch continues from pos with Engine.OplogRawAfter, so the
// oplog is never rescanned, and waits on Engine.Changed for new entries.
type changeStreamSource struct {
	s        *Server
	target   csTarget
	images   csImages
	pipeline csPipeline
	// matchOnly reports that every stage of pipeline is $match, which
	// passes an event through unchanged or drops it.
	matchOnly bool
	// matchFields, when matchPartial, are the only top-level fields those
	// $match stages read (matchFieldsOf): emitRaw decodes just them.
	matchFields  []string
	matchPartial bool
	// opFilter, when opFilterOK, are the operation types the pipeline (a
	// filter on operationType alone, opFilterOf) passes: an event built
	// from an encoded entry is decided on the entry's op.
	opFilter   []string
	opFilterOK bool
	// split reports a $changeStreamSplitLargeEvent stage: events over
	// maxSplitEventSize are returned as fragments.
	split bool
	// skipFragments is, while the event a fragment's resume token names
	// is queued, how many of its fragments the client has already read.
	skipFragments int

	pos bson.Timestamp
	// pbrt is the postBatchResumeToken of the last reply.
	pbrt resumeToken
	// queue holds produced events not yet returned (batch limits), and
	// queueBytes their total size.
	queue      []csQueued
	queueBytes int
	// resume is the event token the stream must find at its start before
	// producing events (resumeAfter/startAfter an event); nil once found.
	resume *resumeToken
	// startAt is a startAtOperationTime (or a high-water mark resumed
	// from) the scan has not yet passed: the entries of a transaction
	// committed before it that lie at or after it (each entry has its own
	// time, its events the commit's) are not shown. nil once an entry
	// committed at or after it was read.
	startAt *bson.Timestamp
	// stopped reports that the last scan stopped at a full batch, maybe
	// inside a transaction, rather than at the committed end.
	stopped bool
	// done is set once the invalidate event has been queued.
	done bool
	// failed is the error that broke the stream; later calls return it.
	failed error
	closed bool
	// catalog keeps the catalog entry updateLookup decoded last (NextBatch
	// runs on one goroutine at a time).
	catalog storage.CollectionCache
}

// newChangeStreamSource resolves the stream's starting point. Whether the
// oplog still holds the history it needs is checked when the stream reads
// (fill), as MongoDB's oplog scan does: an aggregate with an empty first
// batch succeeds and its first getMore fails with ChangeStreamHistoryLost
// (286).
func newChangeStreamSource(s *Server, scope csScope, db, coll string, spec changeStreamSpec, p csPipeline) (*changeStreamSource, error) {
	cs := &changeStreamSource{
		s:        s,
		target:   csTarget{scope: scope, db: db, coll: coll},
		pipeline: p,
		images: csImages{
			fullDocument:             spec.FullDocument,
			fullDocumentBeforeChange: spec.FullDocumentBeforeChange,
			expanded:                 spec.ShowExpandedEvents,
		},
	}
	cs.images.lookup = cs.lookupCurrent
	cs.images.lookupRaw = cs.lookupCurrentRaw
	if named, ok := p.(interface{ StageNames() []string }); ok && p != nil {
		cs.matchOnly = true
		for _, name := range named.StageNames() {
			cs.matchOnly = cs.matchOnly && name == "$match"
		}
	}
	switch tok := spec.token(); {
	case tok != nil && tok.HighWaterMark:
		// Every event at or after the mark: as for startAtOperationTime,
		// whose first postBatchResumeToken it may be. The marks a scan
		// gives (take) lie between transactions, where the two agree.
		cs.pos = csTSPrev(tok.ClusterTime)
		cs.pbrt = *tok
		at := tok.ClusterTime
		cs.startAt = &at
	case tok != nil:
		// Strictly after the event (for startAfter an invalidate: after the
		// invalidate, i.e. after the event that caused it).
		cs.pos = csTSPrev(tok.ClusterTime)
		t := *tok
		cs.resume = &t
		cs.pbrt = t
	case spec.StartAtOperationTime != nil:
		// Inclusive, of the events' clusterTime: a transaction's events
		// all report its commit time, its first entry's.
		at := *spec.StartAtOperationTime
		cs.pos = csTSPrev(at)
		cs.pbrt = highWaterMark(at)
		cs.startAt = &at
	default:
		// Everything after the latest committed entry, including any a
		// client has already read: those are not shown.
		pos, err := s.store.CommittedOpTime()
		if err != nil {
			return nil, err
		}
		cs.pos = pos
		cs.pbrt = highWaterMark(csTSNext(cs.pos))
	}
	return cs, nil
}

// historyLostError is ChangeStreamHistoryLost (286).
func historyLostError() *mongoerr.Error {
	return &mongoerr.Error{Code: mongoerr.ChangeStreamHistoryLost,
		Message: "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
		Labels:  []string{labelNonResumable}}
}

// checkHistory fails with ChangeStreamHistoryLost when the oplog no longer
// holds every entry at or after from.
func (cs *changeStreamSource) checkHistory(from bson.Timestamp) error {
	// Lost only when retention removed an entry at or after from: a
	// caught-up stream whose last entry the next write trims (with the
	// periodic no-ops off, after a quiet period longer than the age limit
	// that entry is the only one) missed nothing. As on MongoDB, a start before the oplog's first entry ever
	// counts as lost: a new data directory's oplog starts with a no-op
	// entry (storage.OpNoop), so a stream opened on a fresh server is never
	// before it.
	if csTSLess(from, cs.s.store.HistoryStart()) {
		return historyLostError()
	}
	return nil
}

// lookupCurrent returns the current version of ent's document in its
// collection (fullDocument: updateLookup), or nil when the document or the
// collection (with the same UUID) no longer exists.
func (cs *changeStreamSource) lookupCurrent(ent *storage.OplogEntry) (bson.D, error) {
	var doc bson.D
	err := cs.lookupIn(ent, func(tx *storage.Tx, c *storage.Collection, id any) error {
		_, d, found, err := tx.Get(c, id)
		if found {
			doc = d
		}
		return err
	})
	return doc, err
}

// lookupCurrentRaw is lookupCurrent returning the stored encoded document.
func (cs *changeStreamSource) lookupCurrentRaw(ent *storage.OplogEntry) (bson.Raw, error) {
	var doc bson.Raw
	err := cs.lookupIn(ent, func(tx *storage.Tx, c *storage.Collection, id any) error {
		d, found, err := tx.GetRaw(c, id)
		if found {
			doc = d
		}
		return err
	})
	return doc, err
}

// lookupIn calls get in a read transaction with ent's collection and
// document _id, unless the document key has no _id or the collection (with
// ent's UUID) no longer exists.
func (cs *changeStreamSource) lookupIn(ent *storage.OplogEntry, get func(tx *storage.Tx, c *storage.Collection, id any) error) error {
	id, ok := fieldOf(ent.DocumentKey, "_id")
	if !ok {
		return nil
	}
	err := cs.s.store.View(func(tx *storage.Tx) error {
		c, err := tx.CollectionCached(ent.DB, ent.Coll, &cs.catalog)
		if err != nil || c == nil {
			return err
		}
		if len(ent.UUID.Data) > 0 && !bytes.Equal(c.UUID.Data, ent.UUID.Data) {
			return nil
		}
		return get(tx, c, id)
	})
	if err != nil {
		return fmt.Errorf("look up %s.%s: %w", ent.DB, ent.Coll, err)
	}
	return nil
}

// NextBatch returns up to n events (n <= 0: bounded by maxBytes only). When
// none is available it waits up to await for new oplog entries, woken by the
// storage engine only for commits in the stream's scope (a write elsewhere
// does not wake it), and scans once more when await ends, so that the empty
// batch's postBatchResumeToken covers every entry committed by then. The
// batch that carries the invalidate event reports exhausted.
func (cs *changeStreamSource) NextBatch(ctx context.Context, n, maxBytes int, await time.Duration) ([]bson.Raw, bool, error) {
	if cs.failed != nil {
		return nil, true, cs.failed
	}
	if cs.closed {
		return nil, true, &mongoerr.Error{Code: mongoerr.CursorKilled, Message: "change stream cursor is closed"}
	}
	var (
		timer    *time.Timer
		waiter   *storage.Waiter
		timedOut bool
	)
	if await > 0 {
		// Registered before the first scan, so that a commit racing with
		// the scan still wakes the wait below. Entries outside the scope
		// (the target is immutable, so its test is safe from the committing
		// goroutine) cannot produce events; the scan at the end of the wait
		// still moves the position past them.
		waiter = cs.s.store.Wait(cs.target.inScope)
		defer waiter.Close()
	}
	for {
		if err := cs.fill(n, maxBytes); err != nil {
			// Whatever failed (an event too large, the user's pipeline on
			// one event, history lost, the oplog read): as MongoDB, whose
			// getMore (and aggregate) abandons the batch it was building,
			// the command fails and the events queued before the failing
			// one are not returned either. The client's resume token stays
			// at the last batch it received, so a resumed stream reads them
			// again.
			cs.failed = err
			cs.queue, cs.queueBytes = nil, 0
			return nil, true, err
		}
		if len(cs.queue) > 0 || cs.done || await <= 0 || timedOut {
			// After a wait that ended with nothing matching, the reply
			// still advances the postBatchResumeToken past everything
			// scanned.
			docs, exhausted := cs.take(n, maxBytes)
			return docs, exhausted, nil
		}
		if timer == nil {
			timer = time.NewTimer(await)
			defer timer.Stop()
		}
		select {
		case <-waiter.C():
		case <-timer.C:
			timedOut = true
		case <-ctx.Done():
			return nil, false, cs.interrupted(ctx)
		}
	}
}

// interrupted is the error for a getMore whose wait was cut short: at
// server shutdown, InterruptedAtShutdown with the ResumableChangeStreamError
// label (drivers resume elsewhere); when the cursor was killed, CursorKilled.
func (cs *changeStreamSource) interrupted(ctx context.Context) error {
	if cs.s.ctx != nil && cs.s.ctx.Err() != nil {
		return &mongoerr.Error{Code: mongoerr.InterruptedAtShutdown,
			Message: "interrupted at shutdown", Labels: []string{labelResumable}}
	}
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return mongoerr.Errorf(mongoerr.MaxTimeMSExpired, "operation exceeded time limit")
	}
	return &mongoerr.Error{Code: mongoerr.CursorKilled, Message: "cursor killed during getMore"}
}

// ReplyFields returns the postBatchResumeToken of the batch just returned.
func (cs *changeStreamSource) ReplyFields() bson.D {
	return bson.D{{Key: "postBatchResumeToken", Value: cs.pbrt.Doc()}}
}

// Close releases the source. It holds no goroutines or storage handles, so
// this only drops buffered events.
func (cs *changeStreamSource) Close() {
	cs.closed = true
	cs.queue, cs.queueBytes = nil, 0
}

// maxQueueKept is the largest queue array (in events) a change stream keeps
// for its next fill once the queue is empty.
const maxQueueKept = 8192

// take removes up to n queued events within maxBytes and updates the
// postBatchResumeToken: the last returned event's token when the batch is
// full or events remain queued (as MongoDB), else the high-water mark just
// after the scanned position, which covers entries the filters dropped —
// only once the scan has reached the committed end, so that a mark never
// falls inside a transaction, whose events all report its first entry's
// time.
func (cs *changeStreamSource) take(n, maxBytes int) ([]bson.Raw, bool) {
	var docs []bson.Raw
	if want := len(cs.queue); want > 0 {
		if n > 0 {
			want = min(want, n)
		}
		docs = make([]bson.Raw, 0, want)
	}
	size := 0
	exhausted := false
	i := 0
	for ; i < len(cs.queue); i++ {
		q := cs.queue[i]
		if n > 0 && len(docs) >= n {
			break
		}
		if len(docs) > 0 && size+batchElemSize(q.raw) > maxBytes {
			break
		}
		if q.raw != nil {
			docs = append(docs, q.raw)
			size += batchElemSize(q.raw)
		}
		cs.queueBytes -= batchElemSize(q.raw)
		cs.pbrt = q.token
		if q.final {
			exhausted = true
			i++
			break
		}
	}
	if i < len(cs.queue) {
		cs.queue = cs.queue[i:]
	} else {
		// Emptied: the next fill reuses the array, without the events.
		clear(cs.queue)
		cs.queue = cs.queue[:0]
		if cap(cs.queue) > maxQueueKept {
			cs.queue = nil
		}
		if !exhausted && cs.resume == nil && !cs.stopped && (n <= 0 || len(docs) < n) {
			if hwm := highWaterMark(csTSNext(cs.pos)); hwm.compare(cs.pbrt) > 0 {
				cs.pbrt = hwm
			}
		}
	}
	return docs, exhausted
}

// fill scans the oplog after pos and queues events until n events or
// maxBytes are queued, or the committed end of the oplog is reached.
func (cs *changeStreamSource) fill(n, maxBytes int) error {
	if cs.done || cs.full(n, maxBytes) {
		return nil
	}
	// Retention may have removed entries this stream has not read yet: fail
	// rather than skip them silently.
	if err := cs.checkHistory(csTSNext(cs.pos)); err != nil {
		return err
	}
	// Entries outside the scope are skipped by processRaw on their header
	// alone, so the scan need not copy them out of storage — except while
	// the resume token is being looked for, which checks every entry.
	var in func(*storage.OplogEntry) bool
	if cs.resume == nil {
		in = cs.target.inScope
	}
	var perr error
	cs.stopped = false
	err := cs.s.store.OplogRawAfterIn(cs.pos, in, func(r *storage.RawOplogEntry) bool {
		if perr = cs.processRaw(r); perr != nil {
			return false
		}
		cs.pos = r.TS
		cs.stopped = cs.done || cs.full(n, maxBytes)
		return !cs.stopped
	})
	if perr != nil {
		return perr
	}
	if errors.Is(err, storage.ErrHistoryLost) {
		// Trimmed while this stream was reading: checkHistory's look at
		// HistoryStart came before the trim or its publication.
		return historyLostError()
	}
	if err != nil {
		return fmt.Errorf("read oplog for change stream: %w", err)
	}
	return nil
}

// full reports whether the queue already holds a full batch.
func (cs *changeStreamSource) full(n, maxBytes int) bool {
	if n > 0 && len(cs.queue) >= n {
		return true
	}
	return len(cs.queue) > 0 && cs.queueBytes >= maxBytes
}

// rawEventCheck, when not nil, is called with every event buildEventRaw
// built (tests compare it with the decoding path's).
var rawEventCheck func(r *storage.RawOplogEntry, im csImages, raw []byte, tok resumeToken)

// matchCheck, when not nil, is called with every event a matchPartial
// pipeline decided on and its decision (tests decide again on the whole
// event).
var matchCheck func(p csPipeline, raw bson.Raw, keep bool)

// processRaw is process for an encoded entry. Entries outside the stream's
// scope are skipped without decoding their documents, and the common events
// are built from the encoded entry (buildEventRaw); everything else is
// decoded and goes through process.
func (cs *changeStreamSource) processRaw(r *storage.RawOplogEntry) error {
	if cs.startAt != nil && r.Raw != nil {
		// Entries are scanned from startAt on, so only a transaction
		// committed before it and still writing at it is left out. Later
		// entries are all committed later: the check ends with the first
		// entry that passes it. (An entry reaching here without Raw is out
		// of the stream's scope and shows nothing either way.)
		if csTSLess(commitTime(r), *cs.startAt) {
			return nil
		}
		cs.startAt = nil
	}
	if cs.resume == nil {
		hdr := storage.OplogEntry{TS: r.TS, Op: r.Op, DB: r.DB, Coll: r.Coll, ToDB: r.ToDB, ToColl: r.ToColl}
		if !cs.target.inScope(&hdr) {
			return nil
		}
		// rawEventOK ops are never expanded-only and never invalidate.
		if (cs.pipeline == nil || cs.matchOnly) && rawEventOK(r, cs.images) {
			// The event's operationType is the entry's op (buildEventRaw):
			// an operation-type filter drops an event before it is built
			// (unless a test checks every decision on the built event).
			if cs.opFilterOK && matchCheck == nil && !slices.Contains(cs.opFilter, r.Op) {
				return nil
			}
			im := cs.images
			var looked *bson.Raw
			if rawEventCheck != nil && im.fullDocument == fdUpdateLookup {
				// The check's decoding path must see the document this
				// lookup saw, not a later version.
				lookup := im.lookupRaw
				im.lookupRaw = func(ent *storage.OplogEntry) (bson.Raw, error) {
					d, err := lookup(ent)
					looked = &d
					return d, err
				}
			}
			if raw, tok, ok := buildEventRaw(r, im); ok {
				if rawEventCheck != nil {
					if looked != nil {
						im.lookup = func(*storage.OplogEntry) (bson.D, error) {
							if *looked == nil {
								return nil, nil
							}
							var d bson.D
							err := bson.Unmarshal(*looked, &d)
							return d, err
						}
					}
					rawEventCheck(r, im, raw, tok)
				}
				return cs.emitRaw(raw, tok, r.Op)
			}
		}
	}
	ent, err := r.Decode()
	if err != nil {
		return fmt.Errorf("read oplog for change stream: read oplog: decode oplog entry %016x: %w", uint64(r.TS.T)<<32|uint64(r.TS.I), err)
	}
	return cs.process(ent)
}

// commitTime returns the cluster time the events of r report: its
// transaction's commit time (CommitTS), or its own time outside a
// transaction.
func commitTime(r *storage.RawOplogEntry) bson.Timestamp {
	if v, ok := r.Lookup("commitTs"); ok {
		if t, i, ok := v.TimestampOK(); ok {
			return bson.Timestamp{T: t, I: i}
		}
	}
	return r.TS
}

// emitRaw is emit for an encoded event (never final) of operation type op
// when the pipeline is absent or matchOnly: an operation-type filter
// (opFilterOK) decides on op alone; any other pipeline sees the event
// decoded, exactly the document buildEvent would have produced (or only the
// top-level fields its filters read, matchPartial: the same answer). A kept
// event is the encoded one unchanged ($match returns its input, so
// checkEventID holds and re-encoding would give the same bytes).
func (cs *changeStreamSource) emitRaw(raw bson.Raw, tok resumeToken, op string) error {
	if cs.opFilterOK {
		keep := slices.Contains(cs.opFilter, op)
		if matchCheck != nil {
			matchCheck(cs.pipeline, raw, keep)
		}
		if !keep {
			return nil
		}
	} else if cs.pipeline != nil {
		var ev bson.D
		ok := false
		if cs.matchPartial {
			ev, ok = matchDecode(raw, cs.matchFields)
		}
		if !ok {
			ev, ok = decodeEventD(raw)
		}
		if !ok {
			if err := bson.Unmarshal(raw, &ev); err != nil {
				return fmt.Errorf("decode change event: %w", err)
			}
		}
		_, keep, err := cs.pipeline.ApplyOne(ev)
		if err != nil {
			return err
		}
		if matchCheck != nil && cs.matchPartial {
			matchCheck(cs.pipeline, raw, keep)
		}
		if !keep {
			return nil
		}
	}
	return cs.queueEvent(raw, tok, false)
}

// process turns one oplog entry into queued events: the resume point check,
// the namespace filter, the event itself, the user's pipeline, and the
// invalidate event that follows a drop, rename or dropDatabase of the
// watched namespace.
func (cs *changeStreamSource) process(ent *storage.OplogEntry) error {
	inScope := cs.target.inScope(ent)
	if cs.resume != nil {
		tok := *cs.resume
		// As MongoDB, whose oplog filter drops the entries the stream does
		// not show before its resume check, the token must be the first
		// event shown at or after its time; that event otherwise fails the
		// stream, named in the message.
		shown := inScope && cs.shows(ent)
		if !shown || csTSLess(ent.TS, tok.ClusterTime) {
			return nil
		}
		if ent.TS != tok.ClusterTime || eventHash(ent.Op, ent.DB, ent.Coll, ent.DocumentKey) != tok.EventHash {
			return &mongoerr.Error{Code: mongoerr.ChangeStreamFatalError,
				Message: fmt.Sprintf(`cannot resume stream; the resume token was not found. {_data: "%s"}`, eventTokenFor(ent)),
				Labels:  []string{labelNonResumable}}
		}
		cs.resume = nil
		if tok.Split {
			// Resumed after a fragment: the event's later fragments follow.
			evTok := eventTokenFor(ent)
			ev, err := buildEvent(ent, evTok, cs.images)
			if err != nil {
				return err
			}
			cs.skipFragments = int(tok.Fragment) + 1
			err = cs.emit(ev, evTok, false)
			cs.skipFragments = 0 // also when the pipeline dropped the event
			return err
		}
		if !tok.FromInvalidate && cs.target.invalidates(ent) {
			// Resumed after the invalidating event: the invalidate is next.
			return cs.emitInvalidate(ent)
		}
		return nil
	}
	if !inScope || (ent.View && !cs.shows(ent)) {
		// A view's create or drop that the stream does not report does
		// not invalidate it either.
		return nil
	}
	if cs.shows(ent) {
		tok := eventTokenFor(ent)
		ev, err := buildEvent(ent, tok, cs.images)
		if err != nil {
			return err
		}
		if err := cs.emit(ev, tok, false); err != nil {
			return err
		}
	}
	if cs.target.invalidates(ent) {
		return cs.emitInvalidate(ent)
	}
	return nil
}

// shows reports whether the stream reports ent (already in scope) as an
// event: expanded-only events need showExpandedEvents, and a view's create
// or drop is reported, as MongoDB's system.views events, only with
// showExpandedEvents and only to database and deployment streams.
func (cs *changeStreamSource) shows(ent *storage.OplogEntry) bool {
	if ent.View {
		return cs.images.expanded && cs.target.scope != csCollection
	}
	return !expandedOnly(ent.Op) || cs.images.expanded
}

// emitInvalidate queues the invalidate event caused by ent and ends the stream.
func (cs *changeStreamSource) emitInvalidate(ent *storage.OplogEntry) error {
	tok := invalidateTokenFor(ent)
	cs.done = true
	return cs.emit(invalidateEvent(ent, tok), tok, true)
}

// emit runs ev through the user's pipeline and queues the result. A final
// (invalidate) event is queued even when the pipeline filters it out, with
// no document, so that the stream still ends there.
func (cs *changeStreamSource) emit(ev bson.D, tok resumeToken, final bool) error {
	out, keep := ev, true
	if cs.pipeline != nil {
		var err error
		out, keep, err = cs.pipeline.ApplyOne(ev)
		if err != nil {
			return err
		}
	}
	if !keep {
		if final {
			cs.queue = append(cs.queue, csQueued{token: tok, final: true})
		}
		return nil
	}
	if cs.pipeline != nil {
		if err := checkEventID(out, tok); err != nil {
			return err
		}
	}
	raw, err := bson.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode change event: %w", err)
	}
	return cs.queueEvent(raw, tok, final)
}

// queueEvent queues the encoded event raw, or with a
// $changeStreamSplitLargeEvent stage and over maxSplitEventSize its
// fragments (after the skipFragments the client has read). An event over
// maxEventSize that is not split fails the stream with BSONObjectTooLarge.
func (cs *changeStreamSource) queueEvent(raw bson.Raw, tok resumeToken, final bool) error {
	skip := cs.skipFragments
	cs.skipFragments = 0
	if cs.split && len(raw) > maxSplitEventSize {
		frags, err := splitEvent(raw, tok)
		if err != nil {
			return err
		}
		if skip > len(frags) {
			return differentSplitError()
		}
		for _, f := range frags[skip:] {
			cs.queue = append(cs.queue, f)
			cs.queueBytes += batchElemSize(f.raw)
		}
		return nil
	}
	if skip > 0 {
		return differentSplitError()
	}
	if len(raw) > maxEventSize {
		return eventTooLarge(len(raw), tok)
	}
	cs.queue = append(cs.queue, csQueued{raw: raw, token: tok, final: final})
	cs.queueBytes += batchElemSize(raw)
	return nil
}

// differentSplitError is MongoDB's error for a stream resumed from a
// fragment's token whose event no longer splits as it did.
func differentSplitError() error {
	return &mongoerr.Error{Code: mongoerr.ChangeStreamFatalError,
		Message: "Attempted to resume from a split event, but the resumed stream produced a different split. Ensure that the pipeline used to resume is the same as the original",
		Labels:  []string{labelNonResumable}}
}

// maxEventSize is the largest change event a stream returns: MongoDB
// serializes each event with the server's internal BSON limit
// (BSONObjMaxInternalSize, 16 MiB + 16 KiB, the limit its error message
// names), so the event of a document of the maximum user size, 16 MiB, with
// the event's own fields still fits.
const maxEventSize = wire.MaxCommandSize

// eventTooLarge is MongoDB's error for a change event of size bytes,
// larger than a BSON document may be (BSONObjectTooLarge, 10334): the
// server's message names the size and the event's first element, its _id
// (the resume token), in the server's own notation. The command that read
// it adds its context (executorError).
func eventTooLarge(size int, tok resumeToken) error {
	return mongoerr.Errorf(mongoerr.BSONObjectTooLarge, "BSONObj size: %d (0x%X) is invalid. Size must be between 0 and 16793600(16MB) First element: _id: %s",
		size, size, mql.FormatValue(tok.Doc()))
}

// checkEventID fails the stream with ChangeStreamFatalError (280) when the
// user's pipeline removed or changed the event's _id (its resume token).
func checkEventID(out bson.D, tok resumeToken) error {
	id, ok := fieldOf(out, "_id")
	if d, isDoc := id.(bson.D); ok && isDoc && mql.Identical(d, tok.Doc()) {
		return nil
	}
	found := "missing"
	if ok {
		found = fmt.Sprint(id)
	}
	return &mongoerr.Error{Code: mongoerr.ChangeStreamFatalError,
		Message: fmt.Sprintf("Encountered an event whose _id field, which contains the resume token, was modified by the pipeline. Modifying the _id field of an event makes it impossible to resume the stream from that point. Only transformations that retain the unmodified _id field are allowed. Expected: %s but found: %s",
			tok.Doc().String(), found),
		Labels: []string{labelNonResumable}}
}

// csTSPrev returns the largest timestamp before ts (ts itself for zero).
func csTSPrev(ts bson.Timestamp) bson.Timestamp {
	switch {
	case ts.I > 0:
		return bson.Timestamp{T: ts.T, I: ts.I - 1}
	case ts.T > 0:
		return bson.Timestamp{T: ts.T - 1, I: ^uint32(0)}
	}
	return ts
}
