package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestNoSniffAndNoListing: every answer, the API's, the probes' and the
// assets' included, says X-Content-Type-Options: nosniff, and /assets/
// lists nothing.
func TestNoSniffAndNoListing(t *testing.T) {
	s := startServer(t, Options{Control: &recordingOps{}})
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/api/triggers", "", 200},
		{"/api/nope", "", 404},
		{"/readyz", "", 200},
		{"/healthz", "", 200},
		{"/metrics", "", 200},
		{"/", "", 200},
		{"/assets/console.js", "", 200},
		{"/assets/console.css", "", 200},
		{"/assets/", "", 404},
		{"/assets", "", 404},
		{"/api/triggers", "evil.example", 403},
	} {
		req, _ := http.NewRequest("GET", s.URL()+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s (Host %q): %d, want %d", tc.path, tc.host, resp.StatusCode, tc.want)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s (Host %q): X-Content-Type-Options %q, want nosniff", tc.path, tc.host, got)
		}
		if strings.Contains(string(b), "console.css</a>") {
			t.Errorf("GET %s lists the assets: %.300s", tc.path, b)
		}
	}
}
