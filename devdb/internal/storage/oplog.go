package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// OpNoop is the Op of an entry that changes nothing: the one a new data
// directory starts its oplog with, as a new replica set's oplog starts with
// its "initiating set" entry. It marks how far back history goes: a change
// stream may start anywhere after it, and one starting before it has lost
// history, as on MongoDB.
const OpNoop = "noop"

// OplogEntry is one committed change, in cluster-time order. Op is the change
// event's operationType: "insert", "update", "replace", "delete", "drop",
// "rename", "dropDatabase", "create", "createIndexes", "dropIndexes" or
// "modify"; or OpNoop, which no change stream reports.
type OplogEntry struct {
	// TS is the entry's cluster time, unique and strictly increasing.
	TS bson.Timestamp `bson:"ts"`
	// Wall is the wall-clock time of the write.
	Wall time.Time `bson:"wall"`
	// Op is the operation type.
	Op string `bson:"op"`
	// DB and Coll name the namespace (Coll is empty for dropDatabase).
	DB   string `bson:"db"`
	Coll string `bson:"coll,omitempty"`
	// UUID is the collection's UUID (subtype 4); zero for dropDatabase.
	UUID bson.Binary `bson:"uuid,omitempty"`
	// DocumentKey is {_id: …} for document operations.
	DocumentKey bson.D `bson:"documentKey,omitempty"`
	// Doc is the post-image for insert, replace and update.
	Doc bson.D `bson:"doc,omitempty"`
	// Pre is the pre-image for update, replace and delete. It is always
	// recorded (change streams derive an update's updateDescription from Pre
	// and Doc when it has no Diff);
	// Images says whether clients may see it as fullDocumentBeforeChange.
	Pre bson.D `bson:"pre,omitempty"`
	// Diff is, for an update, the diff of its $v: 2 delta oplog entry (an
	// operator update logs what each operator did, a pipeline update the
	// delta from Pre to Doc): change streams read updateDescription from
	// it. Without it (a $merge, or an entry written before devdb kept it)
	// the delta is computed from Pre and Doc.
	Diff bson.D `bson:"diff,omitempty"`
	// Images reports that the collection had changeStreamPreAndPostImages
	// enabled at write time.
	Images bool `bson:"images,omitempty"`
	// ToDB and ToColl are the rename target.
	ToDB   string `bson:"toDB,omitempty"`
	ToColl string `bson:"toColl,omitempty"`
	// Extra carries operationDescription data for expanded events:
	// {indexes: [spec]} for createIndexes/dropIndexes, the collMod options for
	// modify, {idIndex, …options} for create, {to: {db, coll}, dropTarget?:
	// uuid} for rename.
	Extra bson.D `bson:"extra,omitempty"`
	// StateBefore is, for a modify entry, the expanded event's
	// stateBeforeChange: {collectionOptions: {uuid, …options}}, the
	// collection's options before the collMod.
	StateBefore bson.D `bson:"stateBefore,omitempty"`
	// View reports that a create or drop entry is a view's: MongoDB
	// reports those (inserts and deletes in system.views) only to database
	// and deployment streams with showExpandedEvents, without
	// collectionUUID.
	View bool `bson:"view,omitempty"`
	// LSID and TxnNumber identify the multi-document transaction whose
	// commit wrote the entry (absent for every other write).
	LSID      bson.D `bson:"lsid,omitempty"`
	TxnNumber int64  `bson:"txnNumber,omitempty"`
	// CommitTS is, for a transaction's entry, the cluster time of the
	// transaction's first entry: the commit's time, which all its change
	// events report as clusterTime (MongoDB writes one applyOps entry).
	CommitTS *bson.Timestamp `bson:"commitTs,omitempty"`

	// docRaw, when not nil, is Doc already encoded (an insert's document
	// as the client sent it, see InsertRaw): marshalEntry writes it as the
	// doc field instead of encoding Doc, which is then nil.
	docRaw bson.Raw
	// preRaw, when not nil, is Pre already encoded (a deleted document's
	// stored bytes, see Delete), written as docRaw is for Doc.
	preRaw bson.Raw
}

// oplogEntryRawDoc is OplogEntry with the post- and pre-image already
// encoded: the same fields, names, tags and order (a test keeps them in
// step), so that bson.Marshal of it writes the bytes bson.Marshal of the
// OplogEntry with the decoded Doc and Pre would write, copying the
// documents instead of encoding them.
type oplogEntryRawDoc struct {
	TS          bson.Timestamp  `bson:"ts"`
	Wall        time.Time       `bson:"wall"`
	Op          string          `bson:"op"`
	DB          string          `bson:"db"`
	Coll        string          `bson:"coll,omitempty"`
	UUID        bson.Binary     `bson:"uuid,omitempty"`
	DocumentKey bson.D          `bson:"documentKey,omitempty"`
	Doc         bson.Raw        `bson:"doc,omitempty"`
	Pre         bson.Raw        `bson:"pre,omitempty"`
	Diff        bson.D          `bson:"diff,omitempty"`
	Images      bool            `bson:"images,omitempty"`
	ToDB        string          `bson:"toDB,omitempty"`
	ToColl      string          `bson:"toColl,omitempty"`
	Extra       bson.D          `bson:"extra,omitempty"`
	StateBefore bson.D          `bson:"stateBefore,omitempty"`
	View        bool            `bson:"view,omitempty"`
	LSID        bson.D          `bson:"lsid,omitempty"`
	TxnNumber   int64           `bson:"txnNumber,omitempty"`
	CommitTS    *bson.Timestamp `bson:"commitTs,omitempty"`
}

// marshalEntry encodes ent as stored in the oplog (bson.Marshal of ent,
// with docRaw and preRaw standing for Doc and Pre when set).
func marshalEntry(ent *OplogEntry) ([]byte, error) {
	if ent.docRaw == nil && ent.preRaw == nil {
		return bson.Marshal(ent)
	}
	w := &oplogEntryRawDoc{TS: ent.TS, Wall: ent.Wall, Op: ent.Op, DB: ent.DB, Coll: ent.Coll, UUID: ent.UUID,
		DocumentKey: ent.DocumentKey, Doc: ent.docRaw, Pre: ent.preRaw, Diff: ent.Diff, Images: ent.Images, ToDB: ent.ToDB, ToColl: ent.ToColl,
		Extra: ent.Extra, StateBefore: ent.StateBefore, View: ent.View, LSID: ent.LSID, TxnNumber: ent.TxnNumber, CommitTS: ent.CommitTS}
	for _, d := range []struct {
		dst *bson.Raw
		src bson.D
	}{{&w.Doc, ent.Doc}, {&w.Pre, ent.Pre}} {
		if *d.dst == nil && len(d.src) > 0 {
			raw, err := bson.Marshal(d.src)
			if err != nil {
				return nil, err
			}
			*d.dst = raw
		}
	}
	return bson.Marshal(w)
}

// appendOplog assigns ent its cluster time and writes it in the current
// transaction.
func (t *Tx) appendOplog(ent *OplogEntry) error {
	if !t.tx.Writable() {
		return mongoerr.Errorf(mongoerr.IllegalOperation, "write in a read-only transaction")
	}
	if t.shadow != nil {
		return t.capture(ent)
	}
	if t.txn != nil {
		ent.LSID, ent.TxnNumber = t.txn.LSID, t.txn.TxnNumber
	}
	now := t.e.opts.Now()
	ts := t.e.tickClusterTime(now)
	ent.TS = ts
	ent.Wall = now.UTC().Truncate(time.Millisecond)
	if t.txn != nil {
		if t.txnTS.IsZero() {
			t.txnTS, t.txnWall = ts, ent.Wall
		}
		commit := t.txnTS
		ent.CommitTS, ent.Wall = &commit, t.txnWall
	}
	raw, err := marshalEntry(ent)
	if err != nil {
		return fmt.Errorf("encode oplog entry: %w", err)
	}
	if err := t.putValue(t.tx.Bucket(bucketOplog), u64(packTS(ts)), raw, false, false); err != nil {
		return fmt.Errorf("write oplog entry: %w", err)
	}
	t.maxTS = packTS(ts)
	t.addHead(ent)
	t.oplogAdded += int64(len(raw))
	switch ent.Op {
	case "insert", "update", "replace", "delete":
		t.docWrites++
	}
	if t.oldest == 0 && t.e.oldestTS.Load() == 0 {
		// The first entry ever: history starts here.
		t.oldest = packTS(ts)
		t.historyStart = t.oldest
	}
	return nil
}

// tickClusterTime hands out the next cluster time at wall-clock time now:
// the current second with increment 1 once the clock has passed the last
// time handed out, else the last time's increment plus one. Only the single
// bbolt writer calls it, inside Update.
func (e *Engine) tickClusterTime(now time.Time) bson.Timestamp {
	last := unpackTS(e.allocTS)
	sec := uint32(now.Unix())
	ts := bson.Timestamp{T: sec, I: 1}
	if sec <= last.T {
		ts = bson.Timestamp{T: last.T, I: last.I + 1}
		if ts.I == 0 { // counter wrapped: move to the next second
			ts = bson.Timestamp{T: last.T + 1, I: 1}
		}
	}
	e.allocTS = packTS(ts)
	return ts
}

// NextClusterTime hands out a cluster time for a value a write stores: the
// time the next oplog entry would get, which no entry will get, as MongoDB
// ticks its cluster-time clock for the empty timestamps an insert or a
// replacement fills in. It is later than every time handed out before
// (every committed entry's, so every operationTime a client has seen) and
// earlier than every entry written after it, also in this transaction. It
// fails in a read-only transaction.
func (t *Tx) NextClusterTime() (bson.Timestamp, error) {
	if err := t.writable(); err != nil {
		return bson.Timestamp{}, err
	}
	return t.e.tickClusterTime(t.e.opts.Now()), nil
}

// DocumentWrites returns how many documents this transaction has inserted,
// updated, replaced or deleted so far (one per oplog entry of those kinds).
func (t *Tx) DocumentWrites() int { return t.docWrites }

// finish persists the cluster-time counter and the oplog size, and trims the
// oplog to its bounds, inside the committing transaction.
func (t *Tx) finish() error {
	if t.maxTS == 0 {
		return nil
	}
	meta := t.tx.Bucket(bucketMeta)
	if err := meta.Put(keyTS, u64(t.e.allocTS)); err != nil {
		return fmt.Errorf("persist cluster time: %w", err)
	}
	var size int64
	if v := meta.Get(keyOplogBytes); len(v) == 8 {
		size = int64(binary.BigEndian.Uint64(v))
	}
	size += t.oplogAdded
	trimmed := false
	if size > t.e.opts.OplogMaxBytes || t.e.opts.OplogMaxAge > 0 {
		var cutoff time.Time
		if t.e.opts.OplogMaxAge > 0 {
			cutoff = t.e.opts.Now().Add(-t.e.opts.OplogMaxAge)
		}
		n, newest, err := trimOplog(t.tx, size-t.e.opts.OplogMaxBytes, cutoff, t.maxTS)
		if err != nil {
			return err
		}
		size -= n
		if trimmed = n > 0; trimmed {
			t.historyStart = newest + 1
		}
	}
	if t.historyStart != 0 {
		if err := putHistoryStart(t.tx, t.historyStart); err != nil {
			return fmt.Errorf("persist the oplog's history start: %w", err)
		}
	}
	if err := meta.Put(keyOplogBytes, u64(uint64(max(size, 0)))); err != nil {
		return fmt.Errorf("persist oplog size: %w", err)
	}
	if trimmed {
		if k, _ := t.tx.Bucket(bucketOplog).Cursor().First(); len(k) == 8 {
			t.oldest = binary.BigEndian.Uint64(k)
		}
	}
	return nil
}

// trimOplog deletes the oldest entries while more than excess bytes must go
// or while entries are older than cutoff, never deleting the entry at keep
// (the newest), so the oplog always holds its newest entry and OldestOpTime
// is the TS of an existing entry. It returns the bytes removed and the
// packed time of the newest entry removed (zero when none was): the caller
// moves the history start just after it.
func trimOplog(btx *bolt.Tx, excess int64, cutoff time.Time, keep uint64) (removed int64, newest uint64, err error) {
	oplog := btx.Bucket(bucketOplog)
	c := oplog.Cursor()
	cutMS := int64(0)
	if !cutoff.IsZero() {
		cutMS = cutoff.UnixMilli()
	}
	for k, v := c.First(); k != nil; k, v = c.First() {
		if binary.BigEndian.Uint64(k) >= keep {
			break
		}
		own := v == nil
		if own {
			var err error
			if v, err = cursorValue(oplog, k, v); err != nil {
				return removed, newest, fmt.Errorf("trim oplog: %w", err)
			}
		}
		if removed < excess || (cutMS != 0 && entryWallMS(v) < cutMS) {
			removed += int64(len(v))
			newest = binary.BigEndian.Uint64(k)
			var err error
			if own {
				// k points into the page the deletion changes.
				err = oplog.DeleteBucket(bytes.Clone(k))
			} else {
				err = c.Delete()
			}
			if err != nil {
				return removed, newest, fmt.Errorf("trim oplog: %w", err)
			}
			continue
		}
		break
	}
	return removed, newest, nil
}

// entryWallMS extracts the wall time (ms) of an encoded entry without
// decoding the whole document.
func entryWallMS(raw []byte) int64 {
	v, err := bson.Raw(raw).LookupErr("wall")
	if err != nil {
		return 0
	}
	if dt, ok := v.DateTimeOK(); ok {
		return dt
	}
	return 0
}

// trimByAge applies the age limit outside write traffic (janitor).
func (e *Engine) trimByAge() error {
	cutoff := e.opts.Now().Add(-e.opts.OplogMaxAge)
	var oldest, start uint64
	var trimmed bool
	err := e.db.Update(func(btx *bolt.Tx) error {
		oplog := btx.Bucket(bucketOplog)
		c := oplog.Cursor()
		k, v := c.First()
		if k == nil {
			return nil
		}
		v, err := cursorValue(oplog, k, v)
		if err != nil {
			return err
		}
		if entryWallMS(v) >= cutoff.UnixMilli() {
			return nil
		}
		last, _ := c.Last()
		n, newest, err := trimOplog(btx, 0, cutoff, binary.BigEndian.Uint64(last))
		if err != nil {
			return err
		}
		meta := btx.Bucket(bucketMeta)
		if n > 0 {
			start = newest + 1
			if err := putHistoryStart(btx, start); err != nil {
				return fmt.Errorf("persist the oplog's history start: %w", err)
			}
		}
		var size int64
		if v := meta.Get(keyOplogBytes); len(v) == 8 {
			size = int64(binary.BigEndian.Uint64(v))
		}
		if err := meta.Put(keyOplogBytes, u64(uint64(max(size-n, 0)))); err != nil {
			return err
		}
		trimmed = true
		if k, _ := btx.Bucket(bucketOplog).Cursor().First(); len(k) == 8 {
			oldest = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trim oplog by age: %w", err)
	}
	if trimmed && oldest != 0 {
		e.dirty.Store(true)
		storeMax(&e.oldestTS, oldest)
	}
	if start != 0 {
		storeMax(&e.historyStart, start)
	}
	return nil
}
