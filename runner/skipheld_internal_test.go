package runner

import (
	"strings"
	"testing"

	"github.com/changehook/changehook/dispatcher"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestHeldEventCheck: the events read after the checkpoint are
// dead-lettered only if they are the ones the unit was stuck on: the
// event itself; for a too-large event, the one whose resume token the
// server's error named (never another event, even read normally); for a
// batch, exactly its events, as many as it has, its first and last giving
// its id.
func TestHeldEventCheck(t *testing.T) {
	tok := func(data string) bson.Raw {
		b, err := bson.Marshal(bson.D{{Key: "_data", Value: data}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const trigger = "orders"
	a, b, c, d := tok("82AA"), tok("82BB"), tok("82CC"), tok("82DD")
	id := func(token bson.Raw) string { return dispatcher.WebhookID(trigger, token) }
	batch := heldBatch{id: dispatcher.BatchWebhookID(trigger, a, c), events: 3, from: 0, n: 3}
	for _, tc := range []struct {
		name   string
		held   heldEvent
		tokens []bson.Raw
		want   string
		err    string // "": accepted
	}{
		{"the event", heldEvent{eventID: id(a)}, []bson.Raw{a}, "", ""},
		{"the event delivered meanwhile", heldEvent{eventID: id(a)}, []bson.Raw{b}, "",
			"the event it was stuck on, " + id(a) + ", was delivered or dead-lettered meanwhile"},
		{"the too-large event", heldEvent{tooLarge: true, tooLargeData: "82aa"}, []bson.Raw{a}, "", ""},
		{"the too-large event, named", heldEvent{tooLarge: true, tooLargeData: "82AA"}, []bson.Raw{a}, id(a), ""},
		{"the too-large event, another named", heldEvent{tooLarge: true, tooLargeData: "82AA"}, []bson.Raw{a}, id(b),
			"stuck on event " + id(a) + " (too large to read), not on " + id(b)},
		{"an event before the too-large one", heldEvent{tooLarge: true, tooLargeData: "82BB"}, []bson.Raw{a}, "",
			"it failed on a change event too large to read, but the first event after the checkpoint, " + id(a) + ", is not that event, so nothing was skipped: " +
				"the events before the large one are not all delivered. Run `changehook resume orders/p0of2`: it delivers them and fails on the large event again; then skip it"},
		{"a too-large event the error did not name", heldEvent{tooLarge: true}, []bson.Raw{a}, "",
			"is not that event"},
		{"the batch", heldEvent{eventID: id(a), batch: batch}, []bson.Raw{a, b, c}, "", ""},
		{"the batch delivered meanwhile", heldEvent{eventID: id(a), batch: batch}, []bson.Raw{d}, "",
			"the batch it was stuck on, " + batch.id + ", was delivered or dead-lettered meanwhile"},
		{"fewer events than the batch", heldEvent{eventID: id(a), batch: batch}, []bson.Raw{a, b}, "",
			"batch " + batch.id + " has 3 events, but only 2 follow the checkpoint"},
		{"another range from the batch's first event", heldEvent{eventID: id(a), batch: batch}, []bson.Raw{a, b, d}, "",
			"the 3 events after the checkpoint are not batch " + batch.id},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.held.check(trigger, "orders/p0of2", tc.tokens, tc.want)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("check = %v, want it accepted", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("check = %v, want an error with %q", err, tc.err)
			}
		})
	}
}

// TestHeadHeld: a head of line that starts a batch is held as the batch
// (the part the endpoint refused, when it is sent in parts), and a request
// naming an event is refused unless it names the batch's id.
func TestHeadHeld(t *testing.T) {
	h := dispatcher.HeadOfLine{WebhookID: "batch_1", EventID: "msg_1", Events: 5, PartFrom: 2, PartEvents: 1, LastReason: "client_error"}
	held, err := headHeld(h, "batch_1")
	if err != nil || held != (heldEvent{eventID: "msg_1", batch: heldBatch{id: "batch_1", events: 5, from: 2, n: 1}, hol: h}) {
		t.Fatalf("headHeld = %+v, %v", held, err)
	}
	if _, err := headHeld(h, "msg_1"); err == nil || !strings.Contains(err.Error(), "stuck on batch batch_1 (5 events), not on msg_1") {
		t.Fatalf("headHeld naming the batch's first event = %v, want it refused", err)
	}
	one := dispatcher.HeadOfLine{WebhookID: "msg_1", EventID: "msg_1", Events: 1, PartEvents: 1, LastReason: "client_error"}
	if held, err := headHeld(one, ""); err != nil || held != (heldEvent{eventID: "msg_1", hol: one}) {
		t.Fatalf("headHeld of an event = %+v, %v", held, err)
	}
}

// TestHeldEventAttempts: a skip's dead letter of an event takes the
// attempts from the stopped watcher's head of line when it describes a
// failed attempt of a request carrying the event — its newest attempts —
// and otherwise what the skip saw when it looked: another event or batch
// at the head, no failed attempt yet (a part not attempted yet), a part
// that does not carry the event.
func TestHeldEventAttempts(t *testing.T) {
	looked := dispatcher.HeadOfLine{WebhookID: "batch_1", EventID: "msg_1", Events: 5, PartFrom: 0, PartEvents: 5,
		Attempts: 2, LastStatus: 500, LastReason: "server_error"}
	held, err := headHeld(looked, "")
	if err != nil {
		t.Fatal(err)
	}
	// The part of events 3 to 5 (from index 2), refused after the skip
	// looked.
	later := dispatcher.HeadOfLine{WebhookID: "batch_1", EventID: "msg_1", Events: 5, PartFrom: 2, PartEvents: 3,
		Attempts: 4, LastStatus: 503, LastReason: "server_error"}
	for _, tc := range []struct {
		name    string
		stopped dispatcher.HeadOfLine
		ok      bool
		i       int
		want    dispatcher.HeadOfLine
	}{
		{"none held", dispatcher.HeadOfLine{}, false, 2, looked},
		{"the part carrying the event", later, true, 2, later},
		{"the part's last event", later, true, 4, later},
		{"a part without the event", later, true, 1, looked},
		{"the part, not attempted yet", dispatcher.HeadOfLine{WebhookID: "batch_1", EventID: "msg_1", Events: 5, PartFrom: 2, PartEvents: 3}, true, 2, looked},
		{"another batch", dispatcher.HeadOfLine{WebhookID: "batch_2", EventID: "msg_1", Events: 5, PartEvents: 5, LastReason: "server_error"}, true, 2, looked},
		{"another event", dispatcher.HeadOfLine{WebhookID: "batch_1", EventID: "msg_6", Events: 5, PartEvents: 5, LastReason: "server_error"}, true, 2, looked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := held.attempts(tc.stopped, tc.ok, tc.i); got != tc.want {
				t.Errorf("attempts = %+v, want %+v", got, tc.want)
			}
		})
	}
	// An event alone: its own id, not a batch's.
	one := dispatcher.HeadOfLine{WebhookID: "msg_1", EventID: "msg_1", Events: 1, PartEvents: 1, Attempts: 1, LastStatus: 400, LastReason: "client_error"}
	held, err = headHeld(one, "")
	if err != nil {
		t.Fatal(err)
	}
	newer := one
	newer.Attempts = 3
	if got := held.attempts(newer, true, 0); got != newer {
		t.Errorf("attempts of an event alone = %+v, want the stopped watcher's %+v", got, newer)
	}
	if got := (heldEvent{tooLarge: true}).attempts(dispatcher.HeadOfLine{}, false, 0); got.LastReason != "" || got.Attempts != 0 {
		t.Errorf("attempts of an event too large to read = %+v, want none", got)
	}
}
