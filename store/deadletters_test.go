package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// putDeadLetters stores n dead letters per trigger with events of size
// bytes, dead-lettered one millisecond apart (some at the same time, to
// exercise the id tie-breaker), and returns their ids in the dead-letter
// order.
func putDeadLetters(t testing.TB, s *store.Store, triggersN []string, n, size int) []string {
	t.Helper()
	ctx := context.Background()
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	pad := make([]byte, size)
	var ids []string
	for _, trig := range triggersN {
		for i := range n {
			tok, err := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("%s%08d", trig, i)}})
			if err != nil {
				t.Fatal(err)
			}
			ev, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
				{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int64(i)}}},
				{Key: "fullDocument", Value: bson.D{{Key: "pad", Value: bson.Binary{Data: pad}}}}})
			if err != nil {
				t.Fatal(err)
			}
			dl := dispatcher.DeadLetter{Trigger: trig, WebhookID: dispatcher.WebhookID(trig, tok), Event: ev, Token: tok,
				Attempts: 1, LastStatus: 400, DeadLetteredAt: base.Add(time.Duration(i/2) * time.Millisecond)}
			if err := s.PutDeadLetter(ctx, dl); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, dl.WebhookID)
		}
	}
	return ids
}

// TestDeadLetterPages reads dead letters page by page after a cursor, and
// checks that pages cover every dead letter once, in the index order, while
// dead letters are deleted between pages.
func TestDeadLetterPages(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	all := putDeadLetters(t, s, []string{"b", "a"}, 7, 10)
	// Expected order: trigger a first, then b; within a trigger by time then id.
	want := slices.Clone(all)
	got, err := s.ListDeadLetters(ctx, store.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d, want %d", len(got), len(want))
	}
	for i := 1; i < len(got); i++ {
		p, c := got[i-1], got[i]
		if p.Trigger > c.Trigger || p.Trigger == c.Trigger && (p.DeadLetteredAt.After(c.DeadLetteredAt) ||
			p.DeadLetteredAt.Equal(c.DeadLetteredAt) && p.ID >= c.ID) {
			t.Fatalf("dead letters %d and %d out of order: %+v then %+v", i-1, i, p.Cursor(), c.Cursor())
		}
	}
	order := make([]string, len(got))
	for i, dl := range got {
		order[i] = dl.ID
	}

	for _, tc := range []struct {
		name    string
		trigger string
		limit   int
	}{{"all triggers, pages of 3", "", 3}, {"one trigger, pages of 2", "b", 2}, {"pages of 1", "", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			var wantIDs []string
			for _, dl := range got {
				if tc.trigger == "" || dl.Trigger == tc.trigger {
					wantIDs = append(wantIDs, dl.ID)
				}
			}
			var seen []string
			f := store.DeadLetterFilter{Trigger: tc.trigger, Limit: tc.limit, Summary: true}
			for {
				page, err := s.ListDeadLetters(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, dl := range page {
					seen = append(seen, dl.ID)
					if op, _ := dl.Event.Lookup("operationType").StringValueOK(); op != "insert" || dl.Token != nil {
						t.Fatalf("summary event = %s, token %v; want operationType only, no token", dl.Event, dl.Token)
					}
					if dl.Event.Lookup("fullDocument").Type != 0 {
						t.Fatalf("summary carries the full document: %s", dl.Event)
					}
				}
				if len(page) < tc.limit {
					break
				}
				// The cursor survives as a string.
				c, err := store.ParseDeadLetterCursor(page[len(page)-1].Cursor().String())
				if err != nil {
					t.Fatal(err)
				}
				f.After = c
			}
			if !slices.Equal(seen, wantIDs) {
				t.Fatalf("pages = %v\nwant    %v", seen, wantIDs)
			}
		})
	}

	t.Run("each, deleting as it goes", func(t *testing.T) {
		var seen []string
		err := s.EachDeadLetter(ctx, store.DeadLetterFilter{Trigger: "a"}, func(dl store.StoredDeadLetter) error {
			seen = append(seen, dl.ID)
			if len(dl.Event) < 10 || dl.Token == nil {
				t.Fatalf("EachDeadLetter gave a partial dead letter: %+v", dl)
			}
			_, err := s.DeleteDeadLetter(ctx, dl.ID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seen, order[:7]) {
			t.Fatalf("each = %v, want %v", seen, order[:7])
		}
		if n, err := s.CountDeadLettersMatching(ctx, store.DeadLetterFilter{}); err != nil || n != 7 {
			t.Fatalf("count after deleting trigger a = %d, %v; want 7", n, err)
		}
	})
	t.Run("purge by ids, then all", func(t *testing.T) {
		if n, err := s.PurgeDeadLetters(ctx, store.DeadLetterFilter{IDs: order[7:9]}); err != nil || n != 2 {
			t.Fatalf("purge 2 ids = %d, %v", n, err)
		}
		if n, err := s.PurgeDeadLetters(ctx, store.DeadLetterFilter{}); err != nil || n != 5 {
			t.Fatalf("purge all = %d, %v; want 5", n, err)
		}
	})
	if _, err := store.ParseDeadLetterCursor("msg_abc"); err == nil {
		t.Fatal("a dead letter id parsed as a cursor")
	}
}
