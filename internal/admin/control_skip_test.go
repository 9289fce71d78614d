package admin

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

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

// TestControlRefusesAnotherControlsField: a body field of another control
// (pause given "since", redeliver given "webhook_id") is refused with 400
// naming the fields the control takes, not ignored; a control's own fields
// pass, in any letter case as encoding/json matches them.
func TestControlRefusesAnotherControlsField(t *testing.T) {
	ops := skipRecorder{got: make(chan store.ControlRequest, 8)}
	s := startServer(t, Options{Control: ops})
	for _, tc := range []struct {
		kind, body string
		status     int
		message    string
	}{
		{"pause", `{"since": "2025-01-31T12:00:00Z"}`, http.StatusBadRequest, `pause takes no field \"since\" (its fields: reason)`},
		{"resume", `{"reason": "x"}`, http.StatusBadRequest, `resume takes no field \"reason\" (its fields: from)`},
		{"redeliver", `{"since": "2025-01-31T12:00:00Z", "webhook_id": "msg_a"}`, http.StatusBadRequest, `redeliver takes no field \"webhook_id\" (its fields: since)`},
		{"skip", `{"from": "now"}`, http.StatusBadRequest, `skip takes no field \"from\" (its fields: webhook_id)`},
		{"pause", `{"Reason": "maintenance"}`, http.StatusOK, ""},
		{"redeliver", `{"since": "2025-01-31T12:00:00Z"}`, http.StatusOK, ""},
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
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.message) {
			t.Errorf("POST /%s %s: %s %s, want %d with %q", tc.kind, tc.body, resp.Status, body, tc.status, tc.message)
		}
		if tc.status == http.StatusOK {
			<-ops.got
		}
	}
	select {
	case req := <-ops.got:
		t.Errorf("a refused body reached the controller: %+v", req)
	default:
	}
}
