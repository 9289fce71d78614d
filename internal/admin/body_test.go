package admin

import (
	"net/http"
	"strings"
	"testing"
)

// TestBodyTrailingData: a body with anything but white space after its
// JSON value is refused with 400 by every call that takes a body, and
// nothing is applied: {"all": true} {"trigger": "x"} must not purge every
// dead letter.
func TestBodyTrailingData(t *testing.T) {
	ops := &recordingOps{}
	s := startServer(t, Options{Control: ops, DeadLetters: ops, Store: emptyStore{}})
	for _, tc := range []struct {
		name, path, body string
		want             int
		wantCall         string // the call that reached ops ("" none)
	}{
		{"pause, a second object", "/api/triggers/a/pause", `{"reason":"x"} {"since":"junk"}`, 400, ""},
		{"pause, garbage", "/api/triggers/a/pause", `{"reason":"x"} trailing garbage`, 400, ""},
		{"pause, a second null", "/api/triggers/a/pause", `{"reason":"x"}null`, 400, ""},
		{"pause, trailing white space", "/api/triggers/a/pause", "{\"reason\":\"x\"} \r\n\t ", 200, "pause a"},
		{"redeliver, a second object", "/api/triggers/a/redeliver", `{"since":"2026-01-01T00:00:00Z"}{"since":"2020-01-01T00:00:00Z"}`, 400, ""},
		{"purge all, then a trigger", "/api/deadletters/purge", `{"all":true} {"trigger":"x"}`, 400, ""},
		{"replay all, then garbage", "/api/deadletters/replay", `{"all":true} ]`, 400, ""},
		{"purge, trailing white space", "/api/deadletters/purge", "{\"ids\":[\"msg_1\"]}\n", 200, "purge {Trigger: IDs:[msg_1] All:false After:}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", s.URL()+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			code, body := send(t, req)
			calls := ops.take()
			if code != tc.want {
				t.Errorf("%s %s: %d, want %d: %s", tc.path, tc.body, code, tc.want, body)
			}
			if tc.want == 400 && !strings.Contains(body, "trailing data after the JSON body") {
				t.Errorf("%s: error does not name the trailing data: %s", tc.path, body)
			}
			if got := strings.Join(calls, "; "); got != tc.wantCall {
				t.Errorf("%s %s: calls %q, want %q", tc.path, tc.body, got, tc.wantCall)
			}
		})
	}
}
