package storage

import (
	"errors"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// pending reports (and consumes) a wake-up of w. notify runs inside Update
// before it returns, so no wait is needed.
func pending(w *Waiter) bool {
	select {
	case <-w.C():
		return true
	default:
		return false
	}
}

func TestWaiterWokenOnlyByInterestingCommits(t *testing.T) {
	e := openTest(t, Options{})
	next := int32(0)
	insert := func(coll string, n int) {
		t.Helper()
		if err := e.Update(func(tx *Tx) error {
			c, err := tx.EnsureCollection("db", coll)
			if err != nil {
				return err
			}
			for range n {
				next++
				if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: next}}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []OplogEntry
	onA := e.Wait(func(h *OplogEntry) bool { seen = append(seen, *h); return h.DB == "db" && h.Coll == "a" })
	all := e.Wait(nil)
	defer all.Close()

	insert("b", 3)
	if pending(onA) {
		t.Error("a waiter for db.a was woken by a write to db.b")
	}
	if !pending(all) {
		t.Error("a waiter for everything was not woken")
	}
	// The create entry and three inserts into b: two distinct headers.
	if len(seen) != 2 || seen[0].Op != "create" || seen[1].Op != "insert" || seen[1].Coll != "b" || seen[1].TS.IsZero() {
		t.Errorf("interest saw %+v, want one create and one insert header for db.b", seen)
	}
	insert("a", 2)
	insert("a", 1)
	if !pending(onA) {
		t.Error("a waiter for db.a was not woken by writes to db.a")
	}
	if pending(onA) {
		t.Error("more than one wake-up pending")
	}
	onA.Close()
	onA.Close()
	insert("a", 1)
	if pending(onA) {
		t.Error("a closed waiter was woken")
	}
	_ = pending(all) // the writes above
	// A failed transaction wakes nobody.
	_ = e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", "a")
		if err != nil {
			return err
		}
		if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: "x"}}); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	if pending(all) {
		t.Error("woken by a rolled-back transaction")
	}
}

func TestOplogRawAfterInCopiesOnlyWantedEntries(t *testing.T) {
	e := openTest(t, Options{})
	start := e.LastOpTime()
	for _, coll := range []string{"a", "b", "a"} {
		if err := e.Update(func(tx *Tx) error {
			c, err := tx.EnsureCollection("db", coll)
			if err != nil {
				return err
			}
			_, err = tx.Insert(c, bson.D{{Key: "_id", Value: e.LastOpTime().I}, {Key: "coll", Value: coll}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	onA := func(h *OplogEntry) bool { return h.Coll == "a" && h.Op == "insert" }
	if err := e.OplogRawAfterIn(start, onA, func(r *RawOplogEntry) bool {
		desc := r.Op + " " + r.Coll
		if r.Raw != nil {
			desc += " raw"
			if _, err := r.Decode(); err != nil {
				t.Errorf("decode %s: %v", desc, err)
			}
		}
		got = append(got, desc)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"create a", "insert a raw", "insert b", "insert a raw"} // create b and insert b: a run of skipped entries, reported as its last
	if !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
}
