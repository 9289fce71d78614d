package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// Multi-document transactions.
//
// A transaction reads a snapshot of the data as of its snapshot time and
// keeps its own writes to itself until it commits. Each statement of a
// transaction runs in a bbolt read-write transaction that is always rolled
// back (a shadow transaction): it first rewinds the documents to the
// snapshot by undoing, newest first, every document write committed after it
// (each oplog entry keeps the pre-image it needs), then re-applies the
// transaction's own earlier writes, then runs the statement. The writes the
// statement makes are captured as oplog entries instead of being stored.
// Commit applies the captured writes again, for real and in order, in one
// bbolt transaction after checking that no document they touch was written
// by anyone else since the snapshot (WriteConflict), so a crash leaves
// either all of a transaction or none of it.
//
// A shadow transaction holds bbolt's single writer lock only while one
// statement runs: an open transaction never blocks other writers between
// its statements.

// TxnInfo identifies the transaction whose commit writes an oplog entry:
// its session and transaction number, reported by change events.
type TxnInfo struct {
	// LSID is the session id document {id: UUID, uid: BinData}.
	LSID bson.D
	// TxnNumber is the transaction's number within the session.
	TxnNumber int64
}

// Snapshot describes an open transaction for InShadow.
type Snapshot struct {
	// At is the snapshot time: the transaction sees the writes committed at
	// or before it and none committed later.
	At bson.Timestamp
	// Ops are the transaction's own writes so far, in order (what InShadow
	// returned for its earlier statements).
	Ops []*OplogEntry
	// Check, when not nil, is called with DocKey of every document the
	// statement is about to insert, update or delete; an error fails that
	// write (another open transaction holding the document).
	Check func(key string) error
}

// shadowState is the state of a shadow transaction (Tx.shadow).
type shadowState struct {
	// quiet is set while the snapshot is rebuilt: writes are neither
	// checked nor captured.
	quiet bool
	// changed holds DocKey of every document written after the snapshot.
	changed map[string]bool
	check   func(key string) error
	// captured are the statement's writes.
	captured []*OplogEntry
}

// errShadowDone rolls a shadow transaction back after its statement
// succeeded.
var errShadowDone = errors.New("shadow transaction finished")

// DocKey returns the key under which write conflicts on the document with
// _id id of db.coll are detected.
func DocKey(db, coll string, id any) string {
	return db + "." + coll + "\x00" + string(KeyString(id))
}

// entryKey returns DocKey of the document a document-write entry touches,
// or "" for any other entry.
func entryKey(ent *OplogEntry) string {
	switch ent.Op {
	case "insert", "update", "replace", "delete":
		id, _ := lookupField(ent.DocumentKey, "_id")
		return DocKey(ent.DB, ent.Coll, id)
	}
	return ""
}

// WriteConflictError is MongoDB's WriteConflict (112) as a transaction's
// statement or commit reports it.
func WriteConflictError() error {
	return mongoerr.Errorf(mongoerr.WriteConflict, "WriteConflict error: this operation conflicted with another operation. Please retry your operation or multi-document transaction.")
}

// InShadow runs fn in a read-write transaction that is always rolled back,
// on the data as of snap.At with snap.Ops applied, and returns the writes fn
// made, in order, as oplog entries (without cluster times). Writes to a
// document that another writer changed after snap.At fail with
// WriteConflict, as do those snap.Check refuses. A snapshot after which
// retention removed an entry is SnapshotTooOld (239).
func (e *Engine) InShadow(snap *Snapshot, fn func(*Tx) error) ([]*OplogEntry, error) {
	var captured []*OplogEntry
	tx := &Tx{e: e}
	err := e.update(tx, func(tx *Tx) error {
		st := &shadowState{quiet: true}
		tx.shadow = st
		changed, err := tx.rewind(packTS(snap.At))
		if err != nil {
			return err
		}
		tx.skipValidation = true
		for _, op := range snap.Ops {
			if err := tx.applyOp(op); err != nil {
				return fmt.Errorf("re-apply the transaction's writes: %w", err)
			}
		}
		tx.skipValidation = false
		st.quiet, st.changed, st.check = false, changed, snap.Check
		if err := fn(tx); err != nil {
			return err
		}
		captured = st.captured
		return errShadowDone
	})
	if errors.Is(err, errShadowDone) {
		return captured, nil
	}
	return nil, err
}

// CommitTxn applies a transaction's writes ops (as InShadow captured them)
// in one storage transaction, each as an oplog entry carrying info, after
// checking that no document they write was written by another writer after
// at: otherwise nothing is applied and the error is WriteConflict (112).
// record, when not nil, runs last in the same storage transaction (the
// session table's commit record). A transaction without writes stores
// nothing. It returns the commit's cluster time: its first entry's, which
// every entry carries as CommitTS and its change events report (zero
// without writes).
func (e *Engine) CommitTxn(at bson.Timestamp, ops []*OplogEntry, info *TxnInfo, record func(*Tx) error) (bson.Timestamp, error) {
	if len(ops) == 0 {
		return bson.Timestamp{}, nil
	}
	var commit bson.Timestamp
	err := e.Update(func(tx *Tx) error {
		changed, err := tx.changedSince(packTS(at))
		if err != nil {
			return err
		}
		for _, op := range ops {
			if k := entryKey(op); k != "" && changed[k] {
				return WriteConflictError()
			}
		}
		tx.txn = info
		tx.skipValidation = true
		for _, op := range ops {
			if err := tx.applyOp(op); err != nil {
				var ce *mongoerr.Error
				var de *DuplicateKeyError
				if errors.As(err, &de) || errors.As(err, &ce) && (ce.Code == mongoerr.NamespaceExists || ce.Code == mongoerr.WriteConflict) {
					// Another writer created the collection or took a
					// unique key after the snapshot.
					return WriteConflictError()
				}
				return err
			}
		}
		tx.txn, tx.skipValidation = nil, false
		commit = tx.txnTS
		if record != nil {
			return record(tx)
		}
		return nil
	})
	if err != nil {
		return bson.Timestamp{}, err
	}
	return commit, nil
}

// checkWrite is called by the document write methods before they change the
// document with _id id of c: in a shadow transaction it refuses (with
// WriteConflict) a document written by another writer after the snapshot or
// held by another open transaction.
func (t *Tx) checkWrite(c *Collection, id any) error {
	if t.shadow == nil || t.shadow.quiet {
		return nil
	}
	key := DocKey(c.DB, c.Name, id)
	if t.shadow.changed[key] {
		return WriteConflictError()
	}
	if t.shadow.check != nil {
		return t.shadow.check(key)
	}
	return nil
}

// capture records ent as a write of the shadow transaction's statement
// (a deep copy: callers may reuse the documents they passed).
func (t *Tx) capture(ent *OplogEntry) error {
	if t.shadow.quiet {
		return nil
	}
	raw, err := marshalEntry(ent)
	if err != nil {
		return fmt.Errorf("record transaction write: %w", err)
	}
	cp := new(OplogEntry)
	if err := bson.Unmarshal(raw, cp); err != nil {
		return fmt.Errorf("record transaction write: %w", err)
	}
	t.shadow.captured = append(t.shadow.captured, cp)
	return nil
}

// laterDocEntries returns the document-write oplog entries committed after
// at, oldest first. A snapshot after which retention removed an entry is
// SnapshotTooOld; one whose own entry alone was removed (the oplog's
// newest entry, trimmed by age at the next write, a periodic no-op
// included) has lost nothing after it.
func (t *Tx) laterDocEntries(at uint64) ([]*OplogEntry, error) {
	var out []*OplogEntry
	oplog := t.tx.Bucket(bucketOplog)
	cur := oplog.Cursor()
	// The history start as this transaction sees it: the published
	// HistoryStart may still lag a trim the previous writer committed.
	if start := historyStartIn(t.tx); start > at+1 {
		oldest := start
		if k, _ := cur.First(); len(k) == 8 {
			oldest = binary.BigEndian.Uint64(k)
		}
		return nil, mongoerr.Errorf(mongoerr.SnapshotTooOld, "Read timestamp %v is older than the oldest available timestamp %v", unpackTS(at), unpackTS(oldest))
	}
	for k, v := cur.Seek(u64(at + 1)); k != nil; k, v = cur.Next() {
		if v == nil {
			var err error
			if v, err = cursorValue(oplog, k, v); err != nil {
				return nil, &DamagedError{Dir: t.e.dir, Err: fmt.Errorf("oplog entry %v: %w", unpackTS(binary.BigEndian.Uint64(k)), err)}
			}
		}
		var op string
		var ts bson.Timestamp
		var db, coll, toDB, toColl string
		if !walkOplogEntry(v, oplogHeader{ts: &ts, op: &op, db: &db, coll: &coll, toDB: &toDB, toColl: &toColl}, nil) {
			return nil, fmt.Errorf("read oplog entry %v: malformed entry", unpackTS(binary.BigEndian.Uint64(k)))
		}
		switch op {
		case "insert", "update", "replace", "delete":
		default:
			continue
		}
		ent := new(OplogEntry)
		if err := bson.Unmarshal(v, ent); err != nil {
			return nil, fmt.Errorf("decode oplog entry %v: %w", ts, err)
		}
		out = append(out, ent)
	}
	return out, nil
}

// changedSince returns DocKey of every document written after at.
func (t *Tx) changedSince(at uint64) (map[string]bool, error) {
	ents, err := t.laterDocEntries(at)
	if err != nil {
		return nil, err
	}
	changed := make(map[string]bool, len(ents))
	for _, ent := range ents {
		changed[entryKey(ent)] = true
	}
	return changed, nil
}

// rewind undoes, newest first, every document write committed after at and
// returns DocKey of the documents it restored. Writes to collections that
// were dropped or renamed since are skipped (their documents are gone).
func (t *Tx) rewind(at uint64) (map[string]bool, error) {
	ents, err := t.laterDocEntries(at)
	if err != nil {
		return nil, err
	}
	changed := make(map[string]bool, len(ents))
	t.skipValidation = true
	defer func() { t.skipValidation = false }()
	for i := len(ents) - 1; i >= 0; i-- {
		ent := ents[i]
		changed[entryKey(ent)] = true
		c, err := t.Collection(ent.DB, ent.Coll)
		if err != nil {
			return nil, err
		}
		if c == nil || !bytes.Equal(c.UUID.Data, ent.UUID.Data) {
			continue
		}
		id, _ := lookupField(ent.DocumentKey, "_id")
		rid, _, ok, err := t.Get(c, id)
		if err != nil {
			return nil, err
		}
		switch {
		case ent.Op == "insert" && ok:
			_, err = t.Delete(c, rid)
		case (ent.Op == "update" || ent.Op == "replace") && ok && ent.Pre != nil:
			err = t.Replace(c, rid, ent.Pre, ent.Op)
		case ent.Op == "delete" && !ok && ent.Pre != nil:
			_, err = t.Insert(c, ent.Pre)
		}
		if err != nil {
			return nil, fmt.Errorf("rebuild the snapshot: undo %s of %v in %s.%s: %w", ent.Op, id, ent.DB, ent.Coll, err)
		}
	}
	return changed, nil
}

// applyOp performs the write ent records (as InShadow captured it): a
// create, createIndexes or document write. A document an update or delete
// refers to that no longer exists is WriteConflict.
func (t *Tx) applyOp(ent *OplogEntry) error {
	if ent.Op == "create" {
		opts := ent.Extra
		if len(opts) > 0 && opts[0].Key == "idIndex" {
			opts = opts[1:]
		}
		if len(opts) == 0 {
			opts = nil
		}
		_, err := t.CreateCollection(ent.DB, ent.Coll, opts)
		return err
	}
	c, err := t.Collection(ent.DB, ent.Coll)
	if err != nil {
		return err
	}
	if c == nil {
		return WriteConflictError()
	}
	switch ent.Op {
	case "createIndexes":
		v, _ := lookupField(ent.Extra, "indexes")
		specs, _ := v.(bson.A)
		for _, s := range specs {
			d, _ := s.(bson.D)
			if _, err := t.CreateIndex(c, indexSpecFromDoc(d)); err != nil {
				return err
			}
		}
		return nil
	case "insert":
		_, err := t.Insert(c, ent.Doc)
		return err
	case "update", "replace", "delete":
		id, _ := lookupField(ent.DocumentKey, "_id")
		rid, _, ok, err := t.Get(c, id)
		if err != nil {
			return err
		}
		if !ok {
			return WriteConflictError()
		}
		if ent.Op == "delete" {
			_, err = t.Delete(c, rid)
			return err
		}
		return t.ReplaceDiff(c, rid, ent.Doc, ent.Op, ent.Diff)
	}
	return mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "cannot apply a %s in a transaction", ent.Op)
}

// indexSpecFromDoc is the inverse of indexSpecDoc.
func indexSpecFromDoc(d bson.D) IndexSpec {
	var spec IndexSpec
	for _, e := range d {
		switch e.Key {
		case "v":
		case "key":
			spec.Key, _ = e.Value.(bson.D)
		case "name":
			spec.Name, _ = e.Value.(string)
		case "unique":
			spec.Unique, _ = e.Value.(bool)
		case "sparse":
			spec.Sparse, _ = e.Value.(bool)
		case "partialFilterExpression":
			spec.PartialFilter, _ = e.Value.(bson.D)
		default:
			spec.Extra = append(spec.Extra, e)
		}
	}
	return spec
}
