package demo_test

import (
	"bytes"
	"os"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/demo"
	"github.com/changehook/changehook/triggers"
)

// TestEmbeddedConfigIsTheRepositoryFile: the embedded demo configuration
// is byte for byte the commented triggers.yaml at the repository root.
func TestEmbeddedConfigIsTheRepositoryFile(t *testing.T) {
	root, err := os.ReadFile("../../triggers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, demo.Config) {
		t.Fatal("internal/demo/triggers.yaml differs from the repository's triggers.yaml: copy it (cp triggers.yaml internal/demo/)")
	}
}

// TestDemoPayloadGrammar: the demo's message says "1 apple", "7 apples".
func TestDemoPayloadGrammar(t *testing.T) {
	cfg, err := triggers.Parse(demo.ConfigName, demo.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Triggers[0]
	for qty, want := range map[int32]string{1: `{"text":"Only 1 apple left!"}`, 7: `{"text":"Only 7 apples left!"}`} {
		raw, err := bson.Marshal(bson.D{
			{Key: "_id", Value: bson.D{{Key: "_data", Value: "82AB"}}},
			{Key: "operationType", Value: "update"},
			{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: "apples"}, {Key: "type", Value: "apples"}, {Key: "quantity", Value: qty}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := dispatcher.BuildPayload(tr.Webhook, dispatcher.Event{Raw: raw, Token: bson.Raw(raw).Lookup("_id").Value})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("quantity %d: payload %s, want %s", qty, got, want)
		}
	}
}
