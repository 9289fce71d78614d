package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// newStore starts an embedded devdb and returns a Store on a fresh database
// and the client (to inspect the raw documents).
func newStore(t *testing.T) (*store.Store, *mongo.Client) {
	t.Helper()
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	return store.New(client, "changehook_state"), client
}

// token returns a resume token in MongoDB's shape with a field order and
// types that a re-encoding through a Go map would not preserve.
func token(t *testing.T, data string) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "_data", Value: data}, {Key: "_typeBits", Value: bson.Binary{Subtype: 0, Data: []byte{0x81}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckpoints(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()

	if _, ok, err := s.LoadCheckpoint(ctx, "orders"); err != nil || ok {
		t.Fatalf("LoadCheckpoint before any save = ok %v, err %v; want none", ok, err)
	}
	tok1, tok2 := token(t, "8263A1"), token(t, "8263A2")
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	steps := []struct {
		name string
		cp   store.Checkpoint
	}{
		{"insert", store.Checkpoint{Trigger: "orders", Token: tok1, UpdatedAt: at}},
		{"replace", store.Checkpoint{Trigger: "orders", Token: tok2, ClusterTime: bson.Timestamp{T: 1700000000, I: 3}, UpdatedAt: at.Add(time.Second)}},
		{"other trigger", store.Checkpoint{Trigger: "audit", Token: tok1}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := s.SaveCheckpoint(ctx, st.cp); err != nil {
				t.Fatalf("SaveCheckpoint: %v", err)
			}
			got, ok, err := s.LoadCheckpoint(ctx, st.cp.Trigger)
			if err != nil || !ok {
				t.Fatalf("LoadCheckpoint = ok %v, err %v", ok, err)
			}
			if !bytes.Equal(got.Token, st.cp.Token) {
				t.Fatalf("token %v, want the exact bytes %v", got.Token, st.cp.Token)
			}
			if got.ClusterTime != st.cp.ClusterTime {
				t.Fatalf("clusterTime %v, want %v", got.ClusterTime, st.cp.ClusterTime)
			}
			if st.cp.UpdatedAt.IsZero() {
				if got.UpdatedAt.IsZero() {
					t.Fatal("UpdatedAt not set on save")
				}
			} else if !got.UpdatedAt.Equal(st.cp.UpdatedAt) {
				t.Fatalf("UpdatedAt %v, want %v", got.UpdatedAt, st.cp.UpdatedAt)
			}
		})
	}

	// The stored document has the documented shape.
	var raw bson.Raw
	if err := client.Database("changehook_state").Collection("checkpoints").
		FindOne(ctx, bson.D{{Key: "_id", Value: "orders"}}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if v := raw.Lookup("token"); v.Type != bson.TypeEmbeddedDocument || !bytes.Equal(v.Value, tok2) {
		t.Fatalf("stored token %v, want the embedded document as given", v)
	}
	if raw.Lookup("updatedAt").Type != bson.TypeDateTime {
		t.Fatalf("stored updatedAt is not a date: %v", raw)
	}

	list, err := s.ListCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Trigger != "audit" || list[1].Trigger != "orders" {
		t.Fatalf("ListCheckpoints = %+v, want audit and orders in name order", list)
	}
	if err := s.DeleteCheckpoint(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCheckpoint(ctx, "orders"); err != nil {
		t.Fatalf("deleting a missing checkpoint: %v", err)
	}
	if _, ok, err := s.LoadCheckpoint(ctx, "orders"); err != nil || ok {
		t.Fatalf("LoadCheckpoint after delete = ok %v, err %v", ok, err)
	}

	for _, bad := range []store.Checkpoint{{Token: tok1}, {Trigger: "x"}, {Trigger: "x", Token: bson.Raw{1, 2}}} {
		if err := s.SaveCheckpoint(ctx, bad); err == nil {
			t.Errorf("SaveCheckpoint(%+v) succeeded, want an error", bad)
		}
	}
}

func TestDeadLetters(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	mk := func(trigger, data string, at time.Time) dispatcher.DeadLetter {
		tok := token(t, data)
		ev, err := bson.Marshal(bson.D{{Key: "_id", Value: tok}, {Key: "operationType", Value: "insert"},
			{Key: "fullDocument", Value: bson.D{{Key: "n", Value: int64(1)}, {Key: "d", Value: bson.Decimal128{}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return dispatcher.DeadLetter{
			Trigger: trigger, WebhookID: dispatcher.WebhookID(trigger, tok), Event: ev, Token: tok,
			Attempts: 3, LastStatus: 400, LastReason: dispatcher.ReasonClientError,
			LastError: "client_error: HTTP 400 Bad Request", LastResponse: `{"error":"bad"}`,
			FirstAttemptAt: at.Add(-time.Minute), DeadLetteredAt: at,
		}
	}
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	a1, a2, b1 := mk("orders", "01", base), mk("orders", "02", base.Add(time.Second)), mk("stock", "01", base.Add(2*time.Second))
	for _, dl := range []dispatcher.DeadLetter{a2, a1, b1} {
		if err := s.PutDeadLetter(ctx, dl); err != nil {
			t.Fatalf("PutDeadLetter: %v", err)
		}
	}
	// Idempotent: the same event dead-lettered again (after a crash), even
	// concurrently, stays one document and keeps the first record.
	again := a1
	again.Attempts = 99
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- s.PutDeadLetter(ctx, again) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("repeated PutDeadLetter: %v", err)
		}
	}

	tests := []struct {
		name   string
		filter store.DeadLetterFilter
		want   []string
	}{
		{"all, oldest first", store.DeadLetterFilter{}, []string{a1.WebhookID, a2.WebhookID, b1.WebhookID}},
		{"one trigger", store.DeadLetterFilter{Trigger: "orders"}, []string{a1.WebhookID, a2.WebhookID}},
		{"limit", store.DeadLetterFilter{Limit: 1}, []string{a1.WebhookID}},
		{"unknown trigger", store.DeadLetterFilter{Trigger: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListDeadLetters(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d dead letters, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].ID != tt.want[i] {
					t.Fatalf("dead letter %d is %s, want %s", i, got[i].ID, tt.want[i])
				}
			}
		})
	}

	got, ok, err := s.GetDeadLetter(ctx, a1.WebhookID)
	if err != nil || !ok {
		t.Fatalf("GetDeadLetter = ok %v, err %v", ok, err)
	}
	if got.Attempts != 3 || got.Trigger != "orders" || got.WebhookID != a1.WebhookID ||
		!bytes.Equal(got.Event, a1.Event) || !bytes.Equal(got.Token, a1.Token) ||
		got.LastStatus != 400 || got.LastReason != a1.LastReason || got.LastError != a1.LastError ||
		got.LastResponse != a1.LastResponse || !got.FirstAttemptAt.Equal(a1.FirstAttemptAt) || !got.DeadLetteredAt.Equal(a1.DeadLetteredAt) {
		t.Fatalf("GetDeadLetter = %+v, want %+v", got, a1)
	}
	if _, ok, err := s.GetDeadLetter(ctx, "msg_missing"); err != nil || ok {
		t.Fatalf("GetDeadLetter(missing) = ok %v, err %v", ok, err)
	}
	if deleted, err := s.DeleteDeadLetter(ctx, a2.WebhookID); err != nil || !deleted {
		t.Fatalf("DeleteDeadLetter = %v, %v", deleted, err)
	}
	if deleted, err := s.DeleteDeadLetter(ctx, a2.WebhookID); err != nil || deleted {
		t.Fatalf("DeleteDeadLetter again = %v, %v; want false, nil", deleted, err)
	}
	if n, err := s.PurgeDeadLetters(ctx, store.DeadLetterFilter{Trigger: "orders"}); err != nil || n != 1 {
		t.Fatalf("PurgeDeadLetters(orders) = %d, %v; want 1", n, err)
	}
	if n, err := s.PurgeDeadLetters(ctx, store.DeadLetterFilter{}); err != nil || n != 1 {
		t.Fatalf("PurgeDeadLetters(all) = %d, %v; want 1", n, err)
	}
	if err := s.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "x"}); err == nil {
		t.Fatal("PutDeadLetter without a token succeeded")
	}
}

// TestDeadLetterErrorBounded: the error a dead letter keeps, as stored and
// as a failed replay records it, is at most dispatcher.MaxErrorText bytes,
// marked as cut.
func TestDeadLetterErrorBounded(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	huge := strings.Repeat("x", 100<<10)
	tok := token(t, "01")
	dl := dispatcher.DeadLetter{Trigger: "orders", WebhookID: dispatcher.WebhookID("orders", tok), Event: tok, Token: tok,
		Attempts: 1, LastReason: dispatcher.ReasonClientError, LastError: huge}
	bounded := func(what, got string) {
		t.Helper()
		if len(got) > dispatcher.MaxErrorText || !strings.HasPrefix(got, "xxxx") || !strings.Contains(got, "…[truncated: ") {
			t.Errorf("%s: lastError is %d bytes, want at most %d, marked as cut: …%q", what, len(got), dispatcher.MaxErrorText, got[max(0, len(got)-60):])
		}
	}
	for _, tc := range []struct {
		name   string
		record func() error
	}{
		{"put", func() error { return s.PutDeadLetter(ctx, dl) }},
		{"replay failure", func() error {
			_, err := s.RecordReplayFailure(ctx, dl.WebhookID, dispatcher.Result{Attempts: 1}, errors.New(huge))
			return err
		}},
	} {
		if err := tc.record(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, ok, err := s.GetDeadLetter(ctx, dl.WebhookID)
		if err != nil || !ok {
			t.Fatalf("%s: GetDeadLetter = ok %v, err %v", tc.name, ok, err)
		}
		bounded(tc.name, got.LastError)
	}
}
