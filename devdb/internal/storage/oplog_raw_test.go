package storage

import (
	"bytes"
	"reflect"
	"testing"

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
