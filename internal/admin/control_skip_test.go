package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// skipRecorder is a Controller recording the skip requests it gets.
type skipRecorder struct{ got chan store.ControlRequest }

func (o skipRecorder) RequestControl(_ context.Context, _, _ string, req store.ControlRequest) (string, error) {
	o.got <- req
	return "skipped", nil
}

// TestSkipCarriesTheWebhookID: POST /skip's webhook_id is the request's
// WebhookID (the event the skip is meant for); without it, any.
func TestSkipCarriesTheWebhookID(t *testing.T) {
	ops := skipRecorder{got: make(chan store.ControlRequest, 2)}
	s := startServer(t, Options{Control: ops})
	for _, tc := range []struct{ body, want string }{
		{`{"webhook_id": "msg_abc"}`, "msg_abc"},
		{``, ""},
	} {
		req, err := http.NewRequest("POST", "http://"+s.Addr()+"/api/triggers/orders/skip", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /skip %s: %s", tc.body, resp.Status)
		}
		if got := <-ops.got; got.Kind != store.RequestSkip || got.WebhookID != tc.want {
			t.Errorf("POST /skip %s: request %+v, want a skip of %q", tc.body, got, tc.want)
		}
	}
}

// TestControlRefusesAnotherControlsField: each control decodes its body
// into its own type, once: a field of another control (pause given
// "since", redeliver given "webhook_id") or of none is refused with 400
// naming the field, the control and the fields it takes, not ignored; a
// control's own fields pass, in any letter case as encoding/json matches
// them, and reach the request; an empty body is no field; a body larger
// than 64 KiB is refused with 413.
func TestControlRefusesAnotherControlsField(t *testing.T) {
	ops := skipRecorder{got: make(chan store.ControlRequest, 8)}
	s := startServer(t, Options{Control: ops})
	for _, tc := range []struct {
		kind, body string
		status     int
		message    string
		want       store.ControlRequest // the request the controller gets (status 200)
	}{
		{kind: "pause", body: `{"since": "2025-01-31T12:00:00Z"}`, status: http.StatusBadRequest,
			message: `pause: unknown field "since" in the body (its fields: reason)`},
		{kind: "resume", body: `{"reason": "x"}`, status: http.StatusBadRequest,
			message: `resume: unknown field "reason" in the body (its fields: from)`},
		{kind: "redeliver", body: `{"since": "2025-01-31T12:00:00Z", "webhook_id": "msg_a"}`, status: http.StatusBadRequest,
			message: `redeliver: unknown field "webhook_id" in the body (its fields: since)`},
		{kind: "skip", body: `{"from": "now"}`, status: http.StatusBadRequest,
			message: `skip: unknown field "from" in the body (its fields: webhook_id)`},
		{kind: "skip", body: `{"webhook_id": "msg_a", "force": true}`, status: http.StatusBadRequest,
			message: `skip: unknown field "force" in the body (its fields: webhook_id)`},
		{kind: "pause", body: `{"reason": 5}`, status: http.StatusBadRequest,
			message: `pause: reason must be a string, not a number`},
		{kind: "pause", body: `{"reason": "x"`, status: http.StatusBadRequest,
			message: `pause: the body is not valid JSON: it ends before its value does`},
		{kind: "pause", body: `{"reason": "` + strings.Repeat("x", 64<<10) + `"}`, status: http.StatusRequestEntityTooLarge,
			message: `body larger than 64 KiB`},
		{kind: "pause", body: `{"Reason": "maintenance"}`, status: http.StatusOK, want: store.ControlRequest{Kind: store.RequestPause}},
		{kind: "resume", body: `{"FROM": "now"}`, status: http.StatusOK, want: store.ControlRequest{Kind: store.RequestResume, From: "now"}},
		{kind: "resume", body: " \n", status: http.StatusOK, want: store.ControlRequest{Kind: store.RequestResume}},
		{kind: "skip", body: `{"webhook_id": "msg_a"}`, status: http.StatusOK, want: store.ControlRequest{Kind: store.RequestSkip, WebhookID: "msg_a"}},
		{kind: "redeliver", body: `{"since": "2025-01-31T12:00:00Z"}`, status: http.StatusOK,
			want: store.ControlRequest{Kind: store.RequestRedeliver, Since: time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC)}},
	} {
		req, err := http.NewRequest("POST", "http://"+s.Addr()+"/api/triggers/orders/"+tc.kind, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var answer struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &answer)
		if resp.StatusCode != tc.status || tc.message != "" && !strings.HasPrefix(answer.Error, tc.message) {
			t.Errorf("POST /%s %.80s: %s %s, want %d with %q", tc.kind, tc.body, resp.Status, body, tc.status, tc.message)
		}
		if tc.status != http.StatusOK {
			continue
		}
		got := <-ops.got
		if got.Kind != tc.want.Kind || got.From != tc.want.From || got.WebhookID != tc.want.WebhookID || !got.Since.Equal(tc.want.Since) || got.By != "api" {
			t.Errorf("POST /%s %s: request %+v, want %+v by api", tc.kind, tc.body, got, tc.want)
		}
	}
	select {
	case req := <-ops.got:
		t.Errorf("a refused body reached the controller: %+v", req)
	default:
	}
}
