package storage

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// docsOf returns db.c's documents by _id as the transaction sees them.
func docsOf(t *testing.T, tx *Tx) map[int32]int32 {
	t.Helper()
	c, err := tx.Collection("db", "c")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int32{}
	if c == nil {
		return out
	}
	err = tx.Scan(c, 0, func(_ RecordID, raw bson.Raw) (bool, error) {
		out[raw.Lookup("_id").Int32()] = raw.Lookup("n").Int32()
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setN sets n of the document with _id id of db.c (inserting it if missing).
func setN(tx *Tx, id, n int32) error {
	c, err := tx.EnsureCollection("db", "c")
	if err != nil {
		return err
	}
	doc := bson.D{{Key: "_id", Value: id}, {Key: "n", Value: n}}
	rid, _, ok, err := tx.Get(c, id)
	if err != nil {
		return err
	}
	if !ok {
		_, err = tx.Insert(c, doc)
		return err
	}
	return tx.Replace(c, rid, doc, "replace")
}

func TestShadowSeesSnapshotAndCommitsAtomically(t *testing.T) {
	e := openTest(t, Options{})
	if err := e.Update(func(tx *Tx) error {
		for id := int32(1); id <= 3; id++ {
			if err := setN(tx, id, 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	snap := &Snapshot{At: e.LastOpTime()}
	// Committed after the snapshot: 1 changed, 2 deleted, 4 inserted.
	if err := e.Update(func(tx *Tx) error {
		c, _ := tx.Collection("db", "c")
		rid, _, _, _ := tx.Get(c, int32(2))
		if _, err := tx.Delete(c, rid); err != nil {
			return err
		}
		if err := setN(tx, 1, 10); err != nil {
			return err
		}
		return setN(tx, 4, 40)
	}); err != nil {
		t.Fatal(err)
	}
	ops, err := e.InShadow(snap, func(tx *Tx) error {
		if got := docsOf(t, tx); len(got) != 3 || got[1] != 0 || got[2] != 0 || got[4] != 0 {
			t.Errorf("snapshot = %v, want 1, 2, 3 as they were", got)
		}
		if err := setN(tx, 1, 11); !isCode(err, mongoerr.WriteConflict) {
			t.Errorf("write of a document changed after the snapshot: %v, want WriteConflict", err)
		}
		return setN(tx, 3, 33)
	})
	if err != nil || len(ops) != 1 {
		t.Fatalf("shadow: ops %v, err %v", ops, err)
	}
	snap.Ops = ops
	// The next statement sees its own write; nothing is visible outside.
	if _, err := e.InShadow(snap, func(tx *Tx) error {
		if got := docsOf(t, tx); got[3] != 33 {
			t.Errorf("own write not seen: %v", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = e.View(func(tx *Tx) error {
		if got := docsOf(t, tx); got[3] != 0 {
			t.Errorf("uncommitted write visible outside: %v", got)
		}
		return nil
	})

	// A commit whose document was changed meanwhile applies nothing.
	before := len(collectOplog(t, e, bson.Timestamp{}))
	if err := e.Update(func(tx *Tx) error { return setN(tx, 3, 30) }); err != nil {
		t.Fatal(err)
	}
	_, err = e.CommitTxn(snap.At, ops, &TxnInfo{LSID: bson.D{{Key: "id", Value: "s"}}, TxnNumber: 7}, nil)
	if !isCode(err, mongoerr.WriteConflict) {
		t.Fatalf("conflicting commit: %v, want WriteConflict", err)
	}
	if n := len(collectOplog(t, e, bson.Timestamp{})); n != before+1 {
		t.Errorf("oplog grew by %d entries, want only the outside write's", n-before)
	}

	// A commit without conflict: every write and its oplog entry, with lsid
	// and txnNumber, in one storage transaction.
	snap2 := &Snapshot{At: e.LastOpTime()}
	ops, err = e.InShadow(snap2, func(tx *Tx) error {
		if err := setN(tx, 3, 31); err != nil {
			return err
		}
		return setN(tx, 5, 50)
	})
	if err != nil {
		t.Fatal(err)
	}
	at := e.LastOpTime()
	commit, err := e.CommitTxn(snap2.At, ops, &TxnInfo{LSID: bson.D{{Key: "id", Value: "s"}}, TxnNumber: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ents := collectOplog(t, e, at)
	if len(ents) != 2 || ents[0].TxnNumber != 8 || ents[1].TxnNumber != 8 || ents[0].LSID == nil {
		t.Fatalf("commit's oplog entries = %+v, want 2 with txnNumber 8 and lsid", ents)
	}
	// The commit's time is its first entry's, which both carry.
	for _, ent := range ents {
		if commit != ents[0].TS || ent.CommitTS == nil || *ent.CommitTS != commit {
			t.Fatalf("commit time %v, entry %v with CommitTS %v; want the first entry's time everywhere", commit, ent.TS, ent.CommitTS)
		}
	}
	_ = e.View(func(tx *Tx) error {
		if got := docsOf(t, tx); got[3] != 31 || got[5] != 50 {
			t.Errorf("after commit: %v", got)
		}
		return nil
	})
}

func isCode(err error, code mongoerr.Code) bool {
	var ce *mongoerr.Error
	return errors.As(err, &ce) && ce.Code == code
}
