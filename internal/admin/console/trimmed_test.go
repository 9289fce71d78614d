package console

import (
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestTrimmedDeadLetterPages: a dead letter stored without its event
// (too large to keep) says so in the list and on its page, with why it
// cannot be replayed and what delivers the change again, and its page has
// no Replay button; one stored without its response says that.
func TestTrimmedDeadLetterPages(t *testing.T) {
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82AB"}})
	ident, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: uint32(t0.Unix()), I: 1}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(7)}}}})
	full, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "update"}})
	s := &fakeStore{dls: []store.StoredDeadLetter{
		{ID: "msg_big", DeadLetter: dispatcher.DeadLetter{Trigger: "files", WebhookID: "msg_big", Event: ident, Attempts: 1, LastStatus: 413,
			DeadLetteredAt: t0, Trimmed: dispatcher.TrimmedEvent, EventSize: 16<<20 - 64}},
		{ID: "msg_resp", DeadLetter: dispatcher.DeadLetter{Trigger: "files", WebhookID: "msg_resp", Event: full, Attempts: 1, LastStatus: 413,
			DeadLetteredAt: t0, Trimmed: dispatcher.TrimmedResponse}},
	}}
	c := newTestConsole(t, &fakeRunner{sts: []runner.TriggerStatus{{Name: "files", State: runner.StateRunning}}}, s, nil)
	c.opts.DeadLetterControls = true
	checks := []struct {
		path          string
		want, notWant []string
	}{
		{"/deadletters", []string{"event too large, not kept", "response not kept"}, nil},
		{"/deadletters/msg_big", []string{`id="dl-trimmed"`, "event: its change event (16.0 MiB) did not fit in a dead letter", "cannot be replayed",
			"changehook redeliver files --since 2026-03-01T12:00:00Z", "changehook dlq purge msg_big --yes", "Event (not kept: only its identity)"},
			[]string{`data-dlq="replay"`, "changehook dlq replay msg_big"}},
		{"/deadletters/msg_resp", []string{"response: it did not fit whole in a dead letter", `data-dlq="replay" data-id="msg_resp"`}, []string{"not kept: only its identity"}},
	}
	for _, ck := range checks {
		code, body := get(t, c, ck.path)
		if code != 200 {
			t.Errorf("GET %s = %d", ck.path, code)
		}
		for _, w := range ck.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q:\n%s", ck.path, w, body)
			}
		}
		for _, w := range ck.notWant {
			if strings.Contains(body, w) {
				t.Errorf("GET %s has %q:\n%s", ck.path, w, body)
			}
		}
	}
}

// TestDeadLetterFailureShown: a trigger whose dead letter cannot be stored
// shows it on the overview and on its page, with the way out.
func TestDeadLetterFailureShown(t *testing.T) {
	r := &fakeRunner{sts: []runner.TriggerStatus{{Name: "stuck", State: runner.StateRetrying, Retrying: true, Since: t0,
		LastError: "store dead letter msg_x: put dead letter msg_x: Document failed validation", WayOut: "make the state database take the write",
		HeadOfLine: &runner.HeadOfLine{WebhookID: "msg_x", Attempts: 1, LastStatus: 422, LastReason: "client_error",
			DeadLetter: &runner.DeadLetterFailure{WebhookID: "msg_x", Error: "put dead letter msg_x: Document failed validation", Reason: "other",
				Since: t0, Tries: 3, NextTryAt: t0.Add(time.Second)}}}}}
	c := newTestConsole(t, r, &fakeStore{}, nil)
	for path, wants := range map[string][]string{
		"/":               {"its dead letter cannot be stored (other; failed tries: 3)", "way out: make the state database take the write"},
		"/triggers/stuck": {"given up on, but its dead letter msg_x cannot be stored (other; failed tries since 2026-03-01 12:00:00Z: 3): put dead letter msg_x: Document failed validation", "next try 2026-03-01 12:00:01Z", "make the state database take the write"},
	} {
		_, body := get(t, c, path)
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q:\n%s", path, w, body)
			}
		}
	}
}
