package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/changehook/changehook/runner"
)

type reloadFunc func(ctx context.Context, why string) (runner.ReloadResult, error)

func (f reloadFunc) Reload(ctx context.Context, why string) (runner.ReloadResult, error) {
	return f(ctx, why)
}

// TestAPINotFoundAnswersJSON: a request under /api/ that no route takes is
// answered in JSON, as every API answer, not with the console's HTML page:
// 405 with Allow for a path that takes other methods, 404 otherwise, saying
// why for an API this process leaves out.
func TestAPINotFoundAnswersJSON(t *testing.T) {
	s := startServer(t, Options{Reload: reloadFunc(func(context.Context, string) (runner.ReloadResult, error) {
		return runner.ReloadResult{}, nil
	})})
	for _, tc := range []struct {
		method, path string
		code         int
		allow, error string
	}{
		{"GET", "/api/cluster", 404, "", "GET /api/cluster: this process is not a cluster member (changehook run is; dev is not)"},
		{"GET", "/api/history", 404, "", "GET /api/history: the delivery history is off here (history.enabled: false, or no state database)"},
		{"GET", "/api/nope", 404, "", "GET /api/nope: no such API endpoint (the README lists them under Operations, \"Admin endpoints\")"},
		{"POST", "/api/triggers/t/pause", 404, "", "POST /api/triggers/t/pause: this process takes no control requests"},
		{"GET", "/api/reload", 405, "POST", "GET /api/reload: method not allowed; /api/reload takes POST"},
		{"DELETE", "/api/triggers", 405, "GET", "DELETE /api/triggers: method not allowed; /api/triggers takes GET"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, s.URL()+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Error string }
			derr := json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.code || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || derr != nil ||
				body.Error != tc.error || resp.Header.Get("Allow") != tc.allow {
				t.Errorf("%s %s = %d %q (Allow %q), error %q (decode: %v); want %d, JSON, Allow %q, error %q",
					tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Allow"), body.Error, derr,
					tc.code, tc.allow, tc.error)
			}
		})
	}
	// The console's pages stay HTML.
	resp, err := http.Get(s.URL() + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /nope = %d %q, want the console's HTML 404", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
