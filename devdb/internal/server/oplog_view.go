package server

import (
	"errors"
	"fmt"
	"iter"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
)

// The oplog as a replica-set member serves it: local.oplog.rs, read-only,
// each of devdb's oplog entries rendered in MongoDB's entry format (op,
// ns, ui, o, o2, ts, t, v, wall), oldest first in natural order. Tools read
// it for the oplog's window (the oldest entry's time: changehook's console,
// db.getReplicationInfo) and to inspect recent writes.
//
// What a client can tell from MongoDB's: a drop's o2 has no numRecords, an
// array's delta is never replaced by the whole array when it is the larger,
// and writes outside transactions carry no lsid, txnNumber or stmtId.
const (
	oplogDB   = "local"
	oplogColl = "oplog.rs"
)

// isOplog reports whether db.coll is the oplog collection.
func isOplog(db, coll string) bool { return db == oplogDB && coll == oplogColl }

// oplogInfo is local.oplog.rs as listCollections describes it: a capped
// collection of the oplog's size bound, without an _id index, with the
// UUID its data directory keeps.
func (s *Server) oplogInfo(nameOnly bool) bson.D {
	d := bson.D{{Key: "name", Value: oplogColl}, {Key: "type", Value: "collection"}}
	if nameOnly {
		return d
	}
	return append(d,
		bson.E{Key: "options", Value: bson.D{{Key: "capped", Value: true}, {Key: "size", Value: s.store.OplogMaxBytes()}, {Key: "autoIndexId", Value: false}}},
		bson.E{Key: "info", Value: bson.D{{Key: "readOnly", Value: false}, {Key: "uuid", Value: s.store.OplogUUID()}}})
}

// oplogDocs calls fn with the oplog's entries in MongoDB's format, after
// the entry at after (zero: from the oldest kept) oldest first, or every
// entry newest first when reverse, until fn returns false. upTo is the
// position a reader resuming after that document starts from: its own
// entry's time, or a transaction's last entry's. A transaction's entries
// are its applyOps entries (renderTxn), gathered whole before they are
// rendered, which the transaction size limit bounds. It reads in chunks
// (storage.Engine.OplogRawAfter) and returns storage.ErrHistoryLost when
// the retention bounds removed entries after after.
func (s *Server) oplogDocs(after bson.Timestamp, reverse bool, fn func(d bson.D, upTo bson.Timestamp) bool) error {
	var txn []*storage.OplogEntry // the transaction being gathered
	stopped := false
	flush := func() bool {
		if len(txn) == 0 {
			return true
		}
		upTo := txn[len(txn)-1].TS
		if reverse {
			upTo = txn[0].TS
		}
		entries := s.renderTxn(txn, reverse)
		clear(txn)
		txn = txn[:0]
		if reverse {
			slices.Reverse(entries)
		}
		for _, d := range entries {
			if !fn(d, upTo) {
				stopped = true
				return false
			}
		}
		return true
	}
	var decodeErr error
	each := func(r *storage.RawOplogEntry) bool {
		ent, err := r.Decode()
		if err != nil {
			decodeErr = fmt.Errorf("decode oplog entry %v: %w", r.TS, err)
			return false
		}
		if ent.LSID != nil && ent.CommitTS != nil {
			if len(txn) > 0 && !sameTxn(txn[0], ent) && !flush() {
				return false
			}
			txn = append(txn, ent)
			return true
		}
		if !flush() {
			return false
		}
		if !fn(s.renderEntry(ent), ent.TS) {
			stopped = true
			return false
		}
		return true
	}
	var err error
	if reverse {
		err = s.store.OplogRawBefore(bson.Timestamp{}, each)
	} else {
		err = s.store.OplogRawAfter(after, each)
	}
	switch {
	case stopped:
		return nil
	case err != nil:
		return err
	case decodeErr != nil:
		return decodeErr
	}
	flush()
	return nil
}

// errCappedPositionLost is MongoDB's error for a read of a capped
// collection whose position the collection's bounds removed.
func errCappedPositionLost() error {
	return mongoerr.Errorf(mongoerr.CappedPositionLost, "CollectionScan died due to position in capped collection being deleted.")
}

// oplogStream yields the oplog entries matching p in MongoDB's format,
// oldest first (newest first when reverse). It reads lazily, in chunks, so
// a cursor may pause between documents; entries the oplog's retention
// removes while a forward cursor is paused before them end it with
// CappedPositionLost, as on MongoDB. A filter on ts from a point (a tool
// reading what came after its last entry, tsLowerBound) starts the read
// there; from before the oldest entry kept, it reads them all.
func (s *Server) oplogStream(p *queryPlan, reverse bool) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		read, stopped := 0, false
		emit := func(d bson.D, _ bson.Timestamp) bool {
			read++
			p.countScanned()
			m, err := p.filter.MatchErr(d)
			if err != nil {
				stopped = true
				yield(nil, err)
				return false
			}
			if m && !yield(d, nil) {
				stopped = true
				return false
			}
			return true
		}
		err := s.oplogDocs(p.tsAfter, reverse, emit)
		if errors.Is(err, storage.ErrHistoryLost) && read == 0 && !p.tsAfter.IsZero() {
			err = s.oplogDocs(bson.Timestamp{}, reverse, emit)
		}
		if stopped {
			return
		}
		if err == nil {
			p.countScanEnd()
		}
		if errors.Is(err, storage.ErrHistoryLost) {
			err = errCappedPositionLost()
		}
		if err != nil {
			yield(nil, fmt.Errorf("scan local.oplog.rs: %w", dataErr(err)))
		}
	}
}

// sameTxn reports whether two transaction entries are of one commit.
func sameTxn(a, b *storage.OplogEntry) bool {
	return a.TxnNumber == b.TxnNumber && *a.CommitTS == *b.CommitTS
}

// maxApplyOpsBytes bounds the operations of one applyOps entry, under
// the 16 MiB document limit with room for the entry's other fields.
const maxApplyOpsBytes = 16<<20 - 64<<10

// renderTxn renders one committed transaction's entries (gathered newest
// first when reverse) as MongoDB logs an unprepared transaction: one
// applyOps entry at the commit's time, or, when its operations exceed one
// entry's size, a chain of entries (partialTxn: true, each at its first
// operation's time, linked by prevOpTime) whose last has the operations'
// count. The entries are returned in commit order.
func (s *Server) renderTxn(ents []*storage.OplogEntry, reverse bool) []bson.D {
	ordered := ents
	if reverse {
		ordered = slices.Clone(ents)
		slices.Reverse(ordered)
	}
	type chunk struct {
		ops  bson.A
		from *storage.OplogEntry
	}
	var chunks []chunk
	size := 0
	for _, e := range ordered {
		op := s.renderEntry(e)
		// An applyOps operation has only what applies it: op, ns, ui, o, o2.
		inner := op[:0:0]
		for _, f := range op {
			switch f.Key {
			case "op", "ns", "ui", "o", "o2":
				inner = append(inner, f)
			}
		}
		n := approxSize(inner)
		if raw, err := bson.Marshal(inner); err == nil {
			n = len(raw)
		}
		if len(chunks) == 0 || (size+n > maxApplyOpsBytes && len(chunks[len(chunks)-1].ops) > 0) {
			chunks = append(chunks, chunk{from: e})
			size = 0
		}
		c := &chunks[len(chunks)-1]
		c.ops = append(c.ops, inner)
		size += n
	}
	out := make([]bson.D, 0, len(chunks))
	prev := bson.D{{Key: "ts", Value: bson.Timestamp{}}, {Key: "t", Value: int64(-1)}}
	for i, c := range chunks {
		o := bson.D{{Key: "applyOps", Value: c.ops}}
		ts := *c.from.CommitTS
		if len(chunks) > 1 {
			ts = c.from.TS
			if i < len(chunks)-1 {
				o = append(o, bson.E{Key: "partialTxn", Value: true})
			} else {
				o = append(o, bson.E{Key: "count", Value: int64(len(ordered))})
			}
		}
		out = append(out, bson.D{
			{Key: "lsid", Value: c.from.LSID},
			{Key: "txnNumber", Value: c.from.TxnNumber},
			{Key: "op", Value: "c"},
			{Key: "ns", Value: "admin.$cmd"},
			{Key: "o", Value: o},
			{Key: "ts", Value: ts},
			{Key: "t", Value: admReplTerm},
			{Key: "v", Value: int64(2)},
			{Key: "wall", Value: bson.NewDateTimeFromTime(c.from.Wall)},
			{Key: "prevOpTime", Value: prev},
		})
		prev = bson.D{{Key: "ts", Value: ts}, {Key: "t", Value: admReplTerm}}
	}
	return out
}

// renderEntry renders one oplog entry as MongoDB logs its operation.
func (s *Server) renderEntry(e *storage.OplogEntry) bson.D {
	ns := e.DB + "." + e.Coll
	cmdNS := e.DB + ".$cmd"
	var op string
	var o, o2 bson.D
	switch e.Op {
	case "insert":
		op, o, o2 = "i", e.Doc, e.DocumentKey
	case "update":
		op, o, o2 = "u", updateOplogO(e.Pre, e.Doc, e.Diff), e.DocumentKey
	case "replace":
		op, o, o2 = "u", e.Doc, e.DocumentKey
	case "delete":
		op, o = "d", e.DocumentKey
	case storage.OpNoop:
		// The entry's msg: "initiating set" or storage.PeriodicNoopMsg
		// (a data directory's first entry may have none).
		op, ns, o = "n", "", e.Extra
		if len(o) == 0 {
			o = bson.D{{Key: "msg", Value: "initiating set"}}
		}
	case "create":
		op, ns = "c", cmdNS
		o = append(bson.D{{Key: "create", Value: e.Coll}}, e.Extra...)
		if e.View {
			// A view's creation is an insert of its definition in
			// system.views.
			op, ns = "i", e.DB+".system.views"
			o = bson.D{{Key: "_id", Value: ns}}
			for _, f := range e.Extra {
				if f.Key != "idIndex" {
					o = append(o, f)
				}
			}
			o[0].Value = e.DB + "." + e.Coll
			o2 = bson.D{{Key: "_id", Value: e.DB + "." + e.Coll}}
		}
	case "drop":
		op, ns = "c", cmdNS
		o = bson.D{{Key: "drop", Value: e.Coll}}
		if e.View {
			// A view's drop is a delete of its definition in system.views.
			op, ns = "d", e.DB+".system.views"
			o = bson.D{{Key: "_id", Value: e.DB + "." + e.Coll}}
		}
	case "rename":
		op, ns = "c", cmdNS
		o = bson.D{{Key: "renameCollection", Value: e.DB + "." + e.Coll}, {Key: "to", Value: e.ToDB + "." + e.ToColl}, {Key: "stayTemp", Value: false}}
		if dt, ok := fieldOf(e.Extra, "dropTarget"); ok {
			o = append(o, bson.E{Key: "dropTarget", Value: dt})
		}
	case "dropDatabase":
		op, ns = "c", cmdNS
		o = bson.D{{Key: "dropDatabase", Value: int32(1)}}
	case "createIndexes", "dropIndexes":
		op, ns = "c", cmdNS
		var spec bson.D
		if ixs, ok := fieldOf(e.Extra, "indexes"); ok {
			if a, ok := ixs.(bson.A); ok && len(a) > 0 {
				spec, _ = a[0].(bson.D)
			}
		}
		if e.Op == "createIndexes" {
			o = append(bson.D{{Key: "createIndexes", Value: e.Coll}}, spec...)
		} else {
			name, _ := fieldOf(spec, "name")
			o, o2 = bson.D{{Key: "dropIndexes", Value: e.Coll}, {Key: "index", Value: name}}, spec
		}
	case "modify":
		op, ns = "c", cmdNS
		o = append(bson.D{{Key: "collMod", Value: e.Coll}}, e.Extra...)
		if before, ok := fieldOf(e.StateBefore, "collectionOptions"); ok {
			o2 = bson.D{{Key: "collectionOptions_old", Value: before}}
		}
	default:
		op, ns, o = "n", "", bson.D{{Key: "msg", Value: e.Op}}
	}
	d := make(bson.D, 0, 9)
	d = append(d, bson.E{Key: "op", Value: op}, bson.E{Key: "ns", Value: ns})
	if len(e.UUID.Data) > 0 && op != "n" && !e.View {
		d = append(d, bson.E{Key: "ui", Value: e.UUID})
	}
	if o == nil {
		o = bson.D{}
	}
	d = append(d, bson.E{Key: "o", Value: o})
	if o2 != nil {
		d = append(d, bson.E{Key: "o2", Value: o2})
	}
	return append(d,
		bson.E{Key: "ts", Value: e.TS},
		bson.E{Key: "t", Value: admReplTerm},
		bson.E{Key: "v", Value: int64(2)},
		bson.E{Key: "wall", Value: bson.NewDateTimeFromTime(e.Wall)})
}

// tsLowerBound returns a timestamp every document matching filter has a
// top-level ts after, from the filter's conditions on ts (equality, $eq,
// $gt, $gte on a timestamp, also inside a top-level $and): ok is false
// when it has none. A timestamp condition matches only timestamps, so a
// document with a ts of another type (or none) never matches it.
func tsLowerBound(filter bson.D) (after bson.Timestamp, ok bool) {
	raise := func(t bson.Timestamp, inclusive bool) {
		if inclusive {
			// After the timestamp just before t.
			switch {
			case t.I > 0:
				t.I--
			case t.T > 0:
				t.T, t.I = t.T-1, ^uint32(0)
			default:
				return
			}
		}
		if !ok || after.Before(t) {
			after, ok = t, true
		}
	}
	for _, e := range filter {
		switch e.Key {
		case "ts":
			switch v := e.Value.(type) {
			case bson.Timestamp:
				raise(v, true)
			case bson.D:
				for _, c := range v {
					if t, isTS := c.Value.(bson.Timestamp); isTS {
						switch c.Key {
						case "$eq", "$gte":
							raise(t, true)
						case "$gt":
							raise(t, false)
						}
					}
				}
			}
		case "$and":
			if a, isArray := e.Value.(bson.A); isArray {
				for _, sub := range a {
					if d, isDoc := sub.(bson.D); isDoc {
						if t, found := tsLowerBound(d); found {
							raise(t, false)
						}
					}
				}
			}
		}
	}
	return after, ok
}
