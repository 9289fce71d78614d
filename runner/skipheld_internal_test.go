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
	if err != nil || held != (heldEvent{eventID: "msg_1", batch: heldBatch{id: "batch_1", events: 5, from: 2, n: 1}}) {
		t.Fatalf("headHeld = %+v, %v", held, err)
	}
	if _, err := headHeld(h, "msg_1"); err == nil || !strings.Contains(err.Error(), "stuck on batch batch_1 (5 events), not on msg_1") {
		t.Fatalf("headHeld naming the batch's first event = %v, want it refused", err)
	}
	one := dispatcher.HeadOfLine{WebhookID: "msg_1", EventID: "msg_1", Events: 1, PartEvents: 1, LastReason: "client_error"}
	if held, err := headHeld(one, ""); err != nil || held != (heldEvent{eventID: "msg_1"}) {
		t.Fatalf("headHeld of an event = %+v, %v", held, err)
	}
}
