package admin

import (
	"encoding/json"
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

// TestBodyErrorsInAPITerms: a body the API cannot take is refused with 400
// and an error in the API's terms — the field by its JSON name, the type
// by its JSON type, the object wanted — never Go's (a Go type, a struct
// field, io.EOF), the same for every endpoint that takes a body.
func TestBodyErrorsInAPITerms(t *testing.T) {
	ops := &recordingOps{}
	s := startServer(t, Options{Control: ops, DeadLetters: ops, Store: emptyStore{}})
	for _, tc := range []struct {
		name, path, body, want string
	}{
		{"pause, an array", "/api/triggers/a/pause", `[]`,
			`pause: the body must be a JSON object such as {"reason": …}, not an array`},
		{"pause, a number", "/api/triggers/a/pause", `5`,
			`pause: the body must be a JSON object such as {"reason": …}, not a number`},
		{"pause, a number for the reason", "/api/triggers/a/pause", `{"reason": 5}`,
			`pause: reason must be a string, not a number`},
		{"redeliver, an object for since", "/api/triggers/a/redeliver", `{"since": {}}`,
			`redeliver: since must be a string, not an object`},
		{"pause, cut short", "/api/triggers/a/pause", `{"reason": "x"`,
			`pause: the body is not valid JSON: it ends before its value does`},
		{"pause, not JSON", "/api/triggers/a/pause", `{reason}`,
			`pause: the body is not valid JSON: invalid character 'r' looking for beginning of object key string (at byte 2)`},
		{"pause, another control's field", "/api/triggers/a/pause", `{"since": "x"}`,
			`pause: unknown field "since" in the body (its fields: reason)`},
		{"purge, no body", "/api/deadletters/purge", ``,
			`purge: the body is empty: want {"trigger": NAME}, {"ids": [ID, ...]} or {"all": true}`},
		{"replay, white space", "/api/deadletters/replay", " \n",
			`replay: the body is empty: want {"trigger": NAME}, {"ids": [ID, ...]} or {"all": true}`},
		{"purge, an array", "/api/deadletters/purge", `["msg_1"]`,
			`purge: the body must be a JSON object such as {"trigger": NAME}, {"ids": [ID, ...]} or {"all": true}, not an array`},
		{"purge, ids a string", "/api/deadletters/purge", `{"ids": "msg_1"}`,
			`purge: ids must be an array of strings, not a string`},
		{"purge, an id a number", "/api/deadletters/purge", `{"ids": [5]}`,
			`purge: ids must be an array of strings`},
		{"replay, all a string", "/api/deadletters/replay", `{"all": "yes"}`,
			`replay: all must be true or false, not a string`},
		{"replay, an unknown field", "/api/deadletters/replay", `{"trigger": "a", "force": true}`,
			`replay: unknown field "force" in the body (its fields: trigger, ids, all, after)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", s.URL()+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			code, body := send(t, req)
			if calls := ops.take(); len(calls) > 0 {
				t.Errorf("%s %s reached %q", tc.path, tc.body, calls)
			}
			var answer struct{ Error string }
			if err := json.Unmarshal([]byte(body), &answer); err != nil || code != http.StatusBadRequest || answer.Error != tc.want {
				t.Errorf("%s %s: %d %s (%v), want 400 with error %q", tc.path, tc.body, code, body, err, tc.want)
			}
		})
	}
}
