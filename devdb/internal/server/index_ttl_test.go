package server

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
)

func TestTTLPass(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	old := bson.NewDateTimeFromTime(now.Add(-2 * time.Hour))
	fresh := bson.NewDateTimeFromTime(now)
	err = s.store.Update(func(tx *storage.Tx) error {
		c, err := tx.EnsureCollection("db", "sessions")
		if err != nil {
			return err
		}
		if _, err := tx.CreateIndex(c, storage.IndexSpec{Name: "at_1", Key: bson.D{{Key: "at", Value: int32(1)}},
			Extra: bson.D{{Key: "expireAfterSeconds", Value: int32(3600)}}}); err != nil {
			return err
		}
		docs := []bson.D{
			{{Key: "_id", Value: "old"}, {Key: "at", Value: old}},
			{{Key: "_id", Value: "fresh"}, {Key: "at", Value: fresh}},
			{{Key: "_id", Value: "array"}, {Key: "at", Value: bson.A{fresh, old}}},
			{{Key: "_id", Value: "string"}, {Key: "at", Value: "yesterday"}},
			{{Key: "_id", Value: "missing"}},
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
	n, err := s.ttlPass(ctx, now)
	if err != nil || n != 2 {
		t.Fatalf("ttlPass deleted %d (%v), want 2", n, err)
	}
	var left []any
	err = s.store.View(func(tx *storage.Tx) error {
		c, err := tx.Collection("db", "sessions")
		if err != nil {
			return err
		}
		return tx.Scan(c, 0, func(_ storage.RecordID, raw bson.Raw) (bool, error) {
			left = append(left, raw.Lookup("_id").StringValue())
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"fresh", "string", "missing"}
	if len(left) != len(want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	for i := range want {
		if left[i] != want[i] {
			t.Fatalf("left %v, want %v", left, want)
		}
	}
}
