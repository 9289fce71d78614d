package storage

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestOplogRawAfterMatchesOplogAfter checks that OplogRawAfter reports the
// entries OplogAfter decodes: the same header fields, the same decoded
// entry, and Lookup values equal to a scan of the encoded entry.
func TestOplogRawAfterMatchesOplogAfter(t *testing.T) {
	e := openTest(t, Options{})
	err := e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", "a")
		if err != nil {
			return err
		}
		rid, err := tx.Insert(c, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: "y"}})
		if err != nil {
			return err
		}
		if err := tx.Replace(c, rid, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: "z"}}, "update"); err != nil {
			return err
		}
		if _, err := tx.Delete(c, rid); err != nil {
			return err
		}
		return tx.RenameCollection("db", "a", "db2", "b", false)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := collectOplog(t, e, bson.Timestamp{})
	var got []RawOplogEntry
	if err := e.OplogRawAfter(bson.Timestamp{}, func(r *RawOplogEntry) bool { got = append(got, *r); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(got) < 6 {
		t.Fatalf("got %d raw entries, want %d", len(got), len(want))
	}
	for i, r := range got {
		w := want[i]
		if !r.parsed {
			t.Errorf("entry %d: not parsed", i)
		}
		if r.TS != w.TS || r.Op != w.Op || r.DB != w.DB || r.Coll != w.Coll || r.ToDB != w.ToDB || r.ToColl != w.ToColl {
			t.Errorf("entry %d: header %+v, want %+v", i, r, w)
		}
		dec, err := r.Decode()
		if err != nil || !reflect.DeepEqual(dec, w) {
			t.Errorf("entry %d: Decode = %+v, %v; want %+v", i, dec, err, w)
		}
		for _, f := range append(rawFields[:], "op", "nope") {
			v, ok := r.Lookup(f)
			wv, err := bson.Raw(r.Raw).LookupErr(f)
			if ok != (err == nil) || (ok && (byte(v.Type) != byte(wv.Type) || !bytes.Equal(v.Data, wv.Value))) {
				t.Errorf("entry %d: Lookup(%q) = %v %v, want %v %v", i, f, v, ok, wv, err)
			}
		}
	}
}

// oplogAfter, the decoding reference OplogRawAfter is checked against, calls fn for every retained entry with TS > after, in order,
// until fn returns false or the committed end is reached. fn runs outside any
// storage transaction, so it may block or call the engine.
func (e *Engine) oplogAfter(after bson.Timestamp, fn func(*OplogEntry) bool) error {
	start := packTS(after) + 1
	if packTS(after) == ^uint64(0) {
		return nil
	}
	for {
		batch := make([]*OplogEntry, 0, 64)
		err := e.db.View(func(btx *bolt.Tx) error {
			c := btx.Bucket(bucketOplog).Cursor()
			for k, v := c.Seek(u64(start)); k != nil && len(batch) < oplogChunk; k, v = c.Next() {
				v, err := cursorValue(btx.Bucket(bucketOplog), k, v)
				if err != nil {
					return fmt.Errorf("read oplog entry %x: %w", k, err)
				}
				ent := new(OplogEntry)
				if err := bson.Unmarshal(v, ent); err != nil {
					return fmt.Errorf("decode oplog entry %x: %w", k, err)
				}
				batch = append(batch, ent)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read oplog: %w", err)
		}
		for _, ent := range batch {
			if !fn(ent) {
				return nil
			}
		}
		if len(batch) < oplogChunk {
			return nil
		}
		start = packTS(batch[len(batch)-1].TS) + 1
	}
}

// TestOplogRawBeforeIsOplogRawAfterBackwards checks that OplogRawBefore
// reads what OplogRawAfter reads, newest first, across several chunks,
// from a position and stopping when fn says so.
func TestOplogRawBeforeIsOplogRawAfterBackwards(t *testing.T) {
	e := openTest(t, Options{})
	n := 2*oplogChunk + 7
	err := e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", "a")
		if err != nil {
			return err
		}
		for i := range n {
			if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: i}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var fwd, back []bson.Timestamp
	if err := e.OplogRawAfter(bson.Timestamp{}, func(r *RawOplogEntry) bool { fwd = append(fwd, r.TS); return true }); err != nil {
		t.Fatal(err)
	}
	if err := e.OplogRawBefore(bson.Timestamp{}, func(r *RawOplogEntry) bool {
		if r.Raw == nil || !r.parsed {
			t.Fatalf("entry %v: not parsed", r.TS)
		}
		back = append(back, r.TS)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(fwd) < n {
		t.Fatalf("forward read %d entries, want at least %d", len(fwd), n)
	}
	for i := range fwd {
		if back[len(back)-1-i] != fwd[i] {
			t.Fatalf("backward read %v, want the forward %v reversed", back, fwd)
		}
	}
	// From the middle, and stopping after three.
	mid := fwd[len(fwd)/2]
	var got []bson.Timestamp
	if err := e.OplogRawBefore(mid, func(r *RawOplogEntry) bool { got = append(got, r.TS); return len(got) < 3 }); err != nil {
		t.Fatal(err)
	}
	if want := []bson.Timestamp{fwd[len(fwd)/2-1], fwd[len(fwd)/2-2], fwd[len(fwd)/2-3]}; !reflect.DeepEqual(got, want) {
		t.Fatalf("before %v: %v, want %v", mid, got, want)
	}
}
