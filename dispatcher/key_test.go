package dispatcher

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestDocumentKey: equal ns and documentKey bytes give equal keys, a
// different namespace or document another key, none is NoKey, and a key
// costs no allocation (the watch loop makes one per per_document event).
func TestDocumentKey(t *testing.T) {
	raw := func(d bson.D) []byte {
		t.Helper()
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	orders := raw(bson.D{{Key: "db", Value: "inventory"}, {Key: "coll", Value: "orders"}})
	items := raw(bson.D{{Key: "db", Value: "inventory"}, {Key: "coll", Value: "items"}})
	id1 := raw(bson.D{{Key: "_id", Value: int32(1)}})
	id2 := raw(bson.D{{Key: "_id", Value: int32(2)}})
	id1Long := raw(bson.D{{Key: "_id", Value: int64(1)}})
	sharded := raw(bson.D{{Key: "region", Value: "eu"}, {Key: "_id", Value: int32(1)}})

	k := DocumentKey(orders, id1)
	if again := DocumentKey(append([]byte(nil), orders...), append([]byte(nil), id1...)); again != k {
		t.Errorf("the same ns and documentKey in other buffers: key %x, want %x", again, k)
	}
	others := map[string]Key{
		"another document":               DocumentKey(orders, id2),
		"another collection":             DocumentKey(items, id1),
		"the same _id as an int64":       DocumentKey(orders, id1Long),
		"a shard key before _id":         DocumentKey(orders, sharded),
		"ns and documentKey swapped":     DocumentKey(id1, orders),
		"no ns":                          DocumentKey(nil, id1),
		"neither (never NoKey, see doc)": DocumentKey(nil, nil),
	}
	seen := map[Key]string{k: "the document"}
	for name, o := range others {
		if o == NoKey {
			t.Errorf("%s: NoKey", name)
		}
		if prev, dup := seen[o]; dup {
			t.Errorf("%s: the same key as %s", name, prev)
		}
		seen[o] = name
	}
	if n := testing.AllocsPerRun(100, func() { k = DocumentKey(orders, id1) }); n != 0 {
		t.Errorf("%v allocations per key, want 0", n)
	}
}
