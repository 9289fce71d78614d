package admin

import (
	"context"
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
