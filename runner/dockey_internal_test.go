package runner

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestDocumentKeyOneAllocation: documentKey is ns followed by the document
// key's bytes, built with one allocation per event (string(ns) +
// string(key) takes two once ns is longer than the 32 bytes the compiler
// converts on the stack, as most namespaces are).
func TestDocumentKeyOneAllocation(t *testing.T) {
	ns, err := bson.Marshal(bson.D{{Key: "db", Value: "inventory"}, {Key: "coll", Value: "orders"}})
	if err != nil {
		t.Fatal(err)
	}
	dk, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := documentKey(ns, dk), string(ns)+string(dk); got != want {
		t.Fatalf("documentKey = %q, want %q", got, want)
	}
	if got := documentKey(nil, nil); got != "" {
		t.Fatalf("documentKey(nil, nil) = %q, want \"\"", got)
	}
	var sink string
	if n := testing.AllocsPerRun(100, func() { sink = documentKey(ns, dk) }); n != 1 {
		t.Errorf("%v allocations per key, want 1", n)
	}
	t.Logf("string(ns) + string(key), ns of %d bytes: %v allocations", len(ns), testing.AllocsPerRun(100, func() { sink = string(ns) + string(dk) }))
	_ = sink
}
