package storage

import (
	"bytes"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestGetRawMatchesGet checks that GetRaw finds the same documents as Get
// (numerically equal _id values of other types included) and returns the
// bytes of the document Get decodes.
func TestGetRawMatchesGet(t *testing.T) {
	e := openTest(t, Options{})
	docs := []bson.D{
		{{Key: "_id", Value: int32(1)}, {Key: "v", Value: "a"}, {Key: "n", Value: bson.D{{Key: "x", Value: bson.A{1.5, nil}}}}},
		{{Key: "_id", Value: "s"}, {Key: "v", Value: bson.Binary{Subtype: 2, Data: []byte{1}}}},
	}
	err := e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", "c")
		if err != nil {
			return err
		}
		for _, d := range docs {
			if _, err := tx.Insert(c, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = e.View(func(tx *Tx) error {
		c, err := tx.Collection("db", "c")
		if err != nil || c == nil {
			t.Fatalf("collection: %v %v", c, err)
		}
		for _, id := range []any{int32(1), int64(1), 1.0, "s", "missing", int32(2)} {
			_, doc, ok, err := tx.Get(c, id)
			if err != nil {
				t.Fatal(err)
			}
			raw, rok, err := tx.GetRaw(c, id)
			if err != nil {
				t.Fatal(err)
			}
			if rok != ok {
				t.Fatalf("_id %v: GetRaw found %v, Get %v", id, rok, ok)
			}
			if !ok {
				continue
			}
			want, err := bson.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, want) {
				t.Errorf("_id %v: GetRaw %v, Get %v", id, raw, bson.Raw(want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A collection without data: nothing found.
	err = e.View(func(tx *Tx) error {
		_, ok, err := tx.GetRaw(&Collection{DB: "db", Name: "none"}, int32(1))
		if ok || err != nil {
			t.Errorf("GetRaw on a missing collection: %v %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCollectionCached checks that CollectionCached returns what Collection
// does, also after the entry changed (collMod, drop and re-create, another
// collection) and for a missing collection.
func TestCollectionCached(t *testing.T) {
	e := openTest(t, Options{})
	var cache CollectionCache
	check := func(step, db, coll string) {
		t.Helper()
		err := e.View(func(tx *Tx) error {
			want, err := tx.Collection(db, coll)
			if err != nil {
				return err
			}
			for i := 0; i < 2; i++ { // decoded, then from the cache
				got, err := tx.CollectionCached(db, coll, &cache)
				if err != nil {
					return err
				}
				if (got == nil) != (want == nil) || got != nil && fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *want) {
					t.Errorf("%s: CollectionCached %+v, Collection %+v", step, got, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	update := func(fn func(tx *Tx) error) {
		t.Helper()
		if err := e.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	check("missing", "db", "c")
	update(func(tx *Tx) error { _, err := tx.EnsureCollection("db", "c"); return err })
	check("created", "db", "c")
	update(func(tx *Tx) error {
		_, err := tx.ModifyCollection("db", "c", bson.D{{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}})
		return err
	})
	check("modified", "db", "c")
	update(func(tx *Tx) error { _, err := tx.EnsureCollection("db", "other"); return err })
	check("another collection", "db", "other")
	check("back", "db", "c")
	update(func(tx *Tx) error {
		if _, err := tx.DropCollection("db", "c"); err != nil {
			return err
		}
		_, err := tx.EnsureCollection("db", "c")
		return err
	})
	check("re-created", "db", "c")
	update(func(tx *Tx) error { _, err := tx.DropCollection("db", "c"); return err })
	check("dropped", "db", "c")
}
