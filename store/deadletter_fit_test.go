package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// bigEvent returns an insert event of exactly size bytes (its fullDocument
// padded) and its resume token, whose _data is data.
func bigEvent(t *testing.T, data string, size int) (ev, tok bson.Raw) {
	t.Helper()
	tok = token(t, data)
	build := func(pad int) bson.Raw {
		raw, err := bson.Marshal(bson.D{
			{Key: "_id", Value: tok},
			{Key: "operationType", Value: "insert"},
			{Key: "clusterTime", Value: bson.Timestamp{T: 1760000000, I: 7}},
			{Key: "wallTime", Value: bson.DateTime(1760000000123)},
			{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: int32(42)}, {Key: "blob", Value: strings.Repeat("x", pad)}}},
			{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "files"}}},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(42)}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	ev = build(size - len(build(0)))
	if len(ev) != size {
		t.Fatalf("event of %d bytes, want %d", len(ev), size)
	}
	return ev, tok
}

// TestPutDeadLetterTooLargeIsTrimmed: a dead letter that does not fit in
// a 16 MiB document is stored anyway, as little trimmed as it needs: an
// event of 16 MiB less 3 KiB with a 4 KiB response loses the response and
// most of its long error but keeps the whole event; an event a few bytes
// under 16 MiB (which a change stream returns) keeps only its identity,
// and says how large it was. A dead letter that fits is stored whole.
func TestPutDeadLetterTooLargeIsTrimmed(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	longErr := "HTTP 413: " + strings.Repeat("e", 8<<10)
	response := strings.Repeat("<!-- padding -->", 256) // 4 KiB
	cases := []struct {
		name      string
		size      int
		trimmed   string
		wholeBody bool
	}{
		{"fits", 1 << 20, "", true},
		{"response dropped", 16<<20 - 3<<10, dispatcher.TrimmedResponse, true},
		{"event identity only", 16<<20 - 100, dispatcher.TrimmedEvent, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, tok := bigEvent(t, "8266A1B2C3"+strings.ReplaceAll(c.name, " ", ""), c.size)
			id := dispatcher.WebhookID("big", tok)
			dl := dispatcher.DeadLetter{Trigger: "big", WebhookID: id, Event: ev, Token: tok, Attempts: 1, LastStatus: 413,
				LastReason: dispatcher.ReasonClientError, LastError: longErr, LastResponse: response,
				FirstAttemptAt: time.Now(), DeadLetteredAt: time.Now()}
			if err := s.PutDeadLetter(ctx, dl); err != nil {
				t.Fatalf("PutDeadLetter: %v", err)
			}
			got, ok, err := s.GetDeadLetter(ctx, id)
			if err != nil || !ok {
				t.Fatalf("GetDeadLetter = ok %v, err %v", ok, err)
			}
			if got.Trimmed != c.trimmed {
				t.Fatalf("trimmed %q, want %q", got.Trimmed, c.trimmed)
			}
			if !bytes.Equal(got.Token, tok) || got.LastStatus != 413 || got.Attempts != 1 || got.LastReason != dispatcher.ReasonClientError {
				t.Errorf("token, status, attempts or reason not kept: %+v", got.DeadLetter)
			}
			switch c.trimmed {
			case "":
				if got.LastError != textcut.Marked(longErr, dispatcher.MaxErrorText) || got.LastResponse != response || got.EventSize != 0 {
					t.Errorf("a dead letter that fits lost its error or response (%d, %d bytes) or has event size %d", len(got.LastError), len(got.LastResponse), got.EventSize)
				}
			default:
				if got.LastResponse != "" || len(got.LastError) > 1<<10+len("…") || !strings.HasPrefix(got.LastError, "HTTP 413: eee") {
					t.Errorf("trimmed dead letter: response of %d bytes, error %.40q… of %d bytes; want no response and the error's first KiB", len(got.LastResponse), got.LastError, len(got.LastError))
				}
			}
			if c.wholeBody {
				if !bytes.Equal(got.Event, ev) {
					t.Errorf("event not stored whole (%d bytes of %d)", len(got.Event), len(ev))
				}
				return
			}
			if got.EventSize != len(ev) {
				t.Errorf("event size %d, want %d", got.EventSize, len(ev))
			}
			var keys []string
			elems, err := got.Event.Elements()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range elems {
				keys = append(keys, e.Key())
			}
			if want := "_id operationType clusterTime wallTime ns documentKey"; strings.Join(keys, " ") != want {
				t.Errorf("kept event fields %v, want %s", keys, want)
			}
			if v, _ := got.Event.Lookup("documentKey", "_id").Int32OK(); v != 42 {
				t.Errorf("document key not kept: %v", got.Event.Lookup("documentKey"))
			}
			if !bytes.Equal(got.Event.Lookup("_id").Document(), tok) {
				t.Errorf("event _id not the resume token")
			}
			// A listing shows it trimmed too.
			list, err := s.ListDeadLetters(ctx, store.DeadLetterFilter{IDs: []string{id}, Summary: true})
			if err != nil || len(list) != 1 {
				t.Fatalf("ListDeadLetters = %d, %v", len(list), err)
			}
			if list[0].Trimmed != dispatcher.TrimmedEvent || list[0].EventSize != len(ev) {
				t.Errorf("summary: trimmed %q, event size %d", list[0].Trimmed, list[0].EventSize)
			}
		})
	}
}

// TestPutDeadLetterTrimmedEventKeepsTheGivenSize: a dead letter the
// caller starts at TrimmedEvent with the event's size (one a change
// stream could not return whole: what is left of it is small) keeps
// that size, not the size of what is left, and only the event's identity.
func TestPutDeadLetterTrimmedEventKeepsTheGivenSize(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		given, want int // 0 given: the size of what is left
	}{
		{name: "size given", given: 18 << 20, want: 18 << 20},
		{name: "no size given", given: 0, want: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, tok := bigEvent(t, "8266A1B2D4"+strings.ReplaceAll(tc.name, " ", ""), 1<<10)
			id := dispatcher.WebhookID("big", tok)
			dl := dispatcher.DeadLetter{Trigger: "big", WebhookID: id, Event: ev, Token: tok, LastReason: "skipped",
				Trimmed: dispatcher.TrimmedEvent, EventSize: tc.given, FirstAttemptAt: time.Now(), DeadLetteredAt: time.Now()}
			if err := s.PutDeadLetter(ctx, dl); err != nil {
				t.Fatalf("PutDeadLetter: %v", err)
			}
			got, ok, err := s.GetDeadLetter(ctx, id)
			if err != nil || !ok {
				t.Fatalf("GetDeadLetter = ok %v, err %v", ok, err)
			}
			want := tc.want
			if want < 0 {
				want = len(ev)
			}
			if got.Trimmed != dispatcher.TrimmedEvent || got.EventSize != want {
				t.Errorf("trimmed %q, event size %d; want %q, %d", got.Trimmed, got.EventSize, dispatcher.TrimmedEvent, want)
			}
			if _, err := got.Event.LookupErr("fullDocument"); err == nil {
				t.Errorf("the event's fullDocument was kept: %s", got.Event)
			}
		})
	}
}

// TestRecordReplayFailureOfANearLimitDeadLetter: a replay failure whose
// response would take a dead letter stored whole over 16 MiB is recorded
// without the response, and the dead letter is then marked trimmed.
func TestRecordReplayFailureOfANearLimitDeadLetter(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	ev, tok := bigEvent(t, "8266A1B2C301", 16<<20-2<<10)
	id := dispatcher.WebhookID("big", tok)
	if err := s.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "big", WebhookID: id, Event: ev, Token: tok, Attempts: 1, LastStatus: 500}); err != nil {
		t.Fatal(err)
	}
	if dl, _, _ := s.GetDeadLetter(ctx, id); dl.Trimmed != "" {
		t.Fatalf("stored trimmed %q; the test needs it whole", dl.Trimmed)
	}
	res := dispatcher.Result{Attempts: 2, Status: 413, Reason: dispatcher.ReasonClientError, Body: strings.Repeat("b", 4<<10)}
	found, err := s.RecordReplayFailure(ctx, id, res, errors.New("HTTP 413: "+strings.Repeat("e", 4<<10)))
	if err != nil || !found {
		t.Fatalf("RecordReplayFailure = found %v, err %v", found, err)
	}
	dl, _, err := s.GetDeadLetter(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Attempts != 3 || dl.LastStatus != 413 || dl.LastResponse != "" || dl.Trimmed != dispatcher.TrimmedResponse || !bytes.Equal(dl.Event, ev) ||
		!strings.HasPrefix(dl.LastError, "HTTP 413: eee") || len(dl.LastError) > 1<<10+len("…") {
		t.Errorf("after the replay failure: attempts %d, status %d, response of %d bytes, trimmed %q, event whole %v, error of %d bytes",
			dl.Attempts, dl.LastStatus, len(dl.LastResponse), dl.Trimmed, bytes.Equal(dl.Event, ev), len(dl.LastError))
	}
}

// TestPutDeadLetterRefusedSaysWhy: a dead letter the state database
// refuses (here: a validator on the collection) is an error that says why,
// as the dispatcher's status and metric need it.
func TestPutDeadLetterRefusedSaysWhy(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	db := client.Database("changehook_state")
	if err := db.CreateCollection(ctx, store.DeadLettersCollection); err != nil {
		t.Fatal(err)
	}
	if err := db.RunCommand(ctx, bson.D{{Key: "collMod", Value: store.DeadLettersCollection},
		{Key: "validator", Value: bson.D{{Key: "never", Value: bson.D{{Key: "$exists", Value: true}}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	ev, tok := bigEvent(t, "8266A1B2C302", 1<<10)
	err := s.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "x", Event: ev, Token: tok})
	var se *dispatcher.DeadLetterStoreError
	if !errors.As(err, &se) || se.Reason != dispatcher.DeadLetterFailOther || !strings.Contains(err.Error(), "put dead letter msg_") {
		t.Fatalf("PutDeadLetter = %v; want a DeadLetterStoreError (reason other) naming the dead letter", err)
	}
	if n, _ := s.CountDeadLettersMatching(ctx, store.DeadLetterFilter{}); n != 0 {
		t.Errorf("%d dead letters stored", n)
	}
}
