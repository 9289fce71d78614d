package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/changehook/changehook/runner"
)

type problemsError struct{ problems []string }

func (e problemsError) Error() string         { return "configuration rejected" }
func (e problemsError) ProblemList() []string { return e.problems }

// TestReloadAnswers: POST /api/reload's body lists what the reload did as
// arrays, never null, with the settings waiting for a restart; a rejected
// file's answer carries the problems and no lists (nothing was done); a
// reload that failed while applying says what it set out to do.
func TestReloadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  runner.ReloadResult
		err  error
		code int
		body string
	}{
		{"success", runner.ReloadResult{Changed: []string{"orders"}, Unchanged: []string{"sales"}, RestartNeeded: []string{"admin"}}, nil, 200,
			`{"result":"success","added":[],"removed":[],"changed":["orders"],"unchanged":["sales"],"restart_needed":["admin"]}`},
		{"nothing to do", runner.ReloadResult{}, nil, 200,
			`{"result":"success","added":[],"removed":[],"changed":[],"unchanged":[]}`},
		{"rejected", runner.ReloadResult{}, problemsError{[]string{"t.yaml:3:5: bad"}}, 422,
			`{"result":"failure","error":"configuration rejected","problems":["t.yaml:3:5: bad"]}`},
		{"did not finish", runner.ReloadResult{Removed: []string{"old"}, Changed: []string{"orders"}}, errors.New("reload: stop changed trigger orders: context deadline exceeded"), 500,
			`{"result":"failure","added":[],"removed":["old"],"changed":["orders"],"unchanged":[],"error":"reload: stop changed trigger orders: context deadline exceeded"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Reload: reloadFunc(func(context.Context, string) (runner.ReloadResult, error) { return tc.res, tc.err })})
			req, _ := http.NewRequest("POST", s.URL()+"/api/reload", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if got := compactJSON(t, b); resp.StatusCode != tc.code || got != tc.body {
				t.Errorf("POST /api/reload = %d %s\nwant %d %s", resp.StatusCode, got, tc.code, tc.body)
			}
		})
	}
}

// compactJSON is b without insignificant white space.
func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return out.String()
}

// TestReloadLongerThanTheWriteTimeoutIsAnswered: a reload may take longer
// than admin.write_timeout (stopping a changed trigger waits up to --grace
// for its deliveries in flight); its answer still reaches the client,
// which otherwise sees the connection closed and cannot tell whether the
// configuration was applied.
func TestReloadLongerThanTheWriteTimeoutIsAnswered(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	s := startServer(t, Options{WriteTimeout: writeTimeout, Reload: reloadFunc(func(ctx context.Context, _ string) (runner.ReloadResult, error) {
		// The reload outlasts the write timeout: time passing is what
		// is tested, not a synchronisation.
		select {
		case <-time.After(3 * writeTimeout):
		case <-ctx.Done():
			return runner.ReloadResult{}, ctx.Err()
		}
		return runner.ReloadResult{Changed: []string{"orders"}}, nil
	})})
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(s.URL()+"/api/reload", "application/json", nil)
	if err != nil {
		t.Fatalf("no answer to a reload longer than the write timeout (%s): %v", writeTimeout, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if got := compactJSON(t, b); resp.StatusCode != http.StatusOK || got != `{"result":"success","added":[],"removed":[],"changed":["orders"],"unchanged":[]}` {
		t.Errorf("POST /api/reload = %d %s, want 200 with changed [orders]", resp.StatusCode, got)
	}
}
