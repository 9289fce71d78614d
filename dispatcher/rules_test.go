package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestStatusCheckRetryRules checks each status rule on its own: what
// success_on, drop_on and retry_on (statuses, classes, timeout,
// connection) decide, and that an unlisted failure is permanent.
func TestStatusCheckRetryRules(t *testing.T) {
	resp := func(code int) *http.Response { return &http.Response{StatusCode: code, Header: http.Header{}} }
	tests := []struct {
		name       string
		policy     triggers.RetryPolicy
		resp       *http.Response
		err        error
		wantRetry  bool
		wantReason string // "" = success
	}{
		{"default 2xx success", triggers.RetryPolicy{}, resp(202), nil, false, ""},
		{"default 404 permanent", triggers.RetryPolicy{}, resp(404), nil, false, ReasonClientError},
		{"default 503 retried", triggers.RetryPolicy{}, resp(503), nil, true, ReasonServerError},
		{"default 429 retried", triggers.RetryPolicy{}, resp(429), nil, true, ReasonRateLimited},
		{"default timeout retried", triggers.RetryPolicy{}, nil, timeoutErr{}, true, ReasonTimeout},
		{"default connection retried", triggers.RetryPolicy{}, nil, errors.New("connection refused"), true, ReasonConnection},
		{"success_on 202 only: 200 fails permanently", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"202"}}, resp(200), nil, false, ReasonServerError},
		{"success_on 202 only: 202 succeeds", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"202"}}, resp(202), nil, false, ""},
		{"success_on 3xx", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"2xx", "3xx"}}, resp(302), nil, false, ""},
		{"drop_on 409", triggers.RetryPolicy{DropOn: triggers.StatusRules{"409"}}, resp(409), nil, false, ReasonDropped},
		{"drop_on 409 leaves 410", triggers.RetryPolicy{DropOn: triggers.StatusRules{"409"}}, resp(410), nil, false, ReasonClientError},
		{"drop_on class", triggers.RetryPolicy{DropOn: triggers.StatusRules{"4xx"}}, resp(422), nil, false, ReasonDropped},
		{"retry_on 404", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"404"}}, resp(404), nil, true, ReasonClientError},
		{"retry_on 404: 503 permanent", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"404"}}, resp(503), nil, false, ReasonServerError},
		{"retry_on without timeout", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"5xx"}}, nil, timeoutErr{}, false, ReasonTimeout},
		{"retry_on without connection", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"timeout"}}, nil, errors.New("refused"), false, ReasonConnection},
		{"retry_on empty", triggers.RetryPolicy{RetryOn: triggers.StatusRules{}}, resp(500), nil, false, ReasonServerError},
		{"blocked is permanent", triggers.RetryPolicy{}, nil, &BlockedError{Rule: "network.deny 10.0.0.0/8"}, false, ReasonBlocked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			retry, err := StatusCheckRetry(tc.policy)(context.Background(), tc.resp, tc.err)
			if retry != tc.wantRetry {
				t.Errorf("retry = %v, want %v", retry, tc.wantRetry)
			}
			var ae *AttemptError
			switch {
			case tc.wantReason == "" && err != nil:
				t.Errorf("err = %v, want success", err)
			case tc.wantReason != "" && !errors.As(err, &ae):
				t.Errorf("err = %v, want an *AttemptError", err)
			case tc.wantReason != "" && ae.Reason != tc.wantReason:
				t.Errorf("reason = %q, want %q", ae.Reason, tc.wantReason)
			}
		})
	}
}

// TestStatusCheckRetryMostSpecificRule checks that a status listed by its
// code in one of success_on, drop_on and retry_on beats its class in
// another, whichever two lists they are and whether set or default: a
// drop_on: [4xx] must not swallow the 429 that retry_on lists (a lost
// event), nor success_on's default 2xx a 202 that retry_on lists.
func TestStatusCheckRetryMostSpecificRule(t *testing.T) {
	rules := func(r ...triggers.StatusRule) triggers.StatusRules { return r }
	tests := []struct {
		name       string
		policy     triggers.RetryPolicy
		code       int
		wantRetry  bool
		wantReason string // "" = success
	}{
		// retry_on's code over drop_on's class, and back.
		{"drop 4xx, retry 429: 429 retried", triggers.RetryPolicy{DropOn: rules("4xx"), RetryOn: rules("429", "5xx")}, 429, true, ReasonRateLimited},
		{"drop 4xx, retry 429: 404 dropped", triggers.RetryPolicy{DropOn: rules("4xx"), RetryOn: rules("429", "5xx")}, 404, false, ReasonDropped},
		{"drop 4xx, default retry: 408 retried", triggers.RetryPolicy{DropOn: rules("4xx")}, 408, true, ReasonTimeout},
		{"drop 4xx, default retry: 429 retried", triggers.RetryPolicy{DropOn: rules("4xx")}, 429, true, ReasonRateLimited},
		{"drop 4xx and 429, default retry: 429 dropped", triggers.RetryPolicy{DropOn: rules("4xx", "429")}, 429, false, ReasonDropped},
		{"drop 429, retry 4xx: 429 dropped", triggers.RetryPolicy{DropOn: rules("429"), RetryOn: rules("4xx")}, 429, false, ReasonDropped},
		{"drop 429, retry 4xx: 404 retried", triggers.RetryPolicy{DropOn: rules("429"), RetryOn: rules("4xx")}, 404, true, ReasonClientError},
		{"drop 503, default retry: 503 dropped", triggers.RetryPolicy{DropOn: rules("503")}, 503, false, ReasonDropped},
		{"drop 503, default retry: 500 retried", triggers.RetryPolicy{DropOn: rules("503")}, 500, true, ReasonServerError},
		{"drop 5xx, retry 503: 503 retried", triggers.RetryPolicy{DropOn: rules("5xx"), RetryOn: rules("503")}, 503, true, ReasonServerError},
		{"drop 5xx, retry 503: 500 dropped", triggers.RetryPolicy{DropOn: rules("5xx"), RetryOn: rules("503")}, 500, false, ReasonDropped},
		// success_on and retry_on.
		{"default success, retry 202: 202 retried", triggers.RetryPolicy{RetryOn: rules("202", "5xx")}, 202, true, ReasonServerError},
		{"default success, retry 202: 200 success", triggers.RetryPolicy{RetryOn: rules("202", "5xx")}, 200, false, ""},
		{"success 2xx and 4xx, default retry: 429 retried", triggers.RetryPolicy{SuccessOn: rules("2xx", "4xx")}, 429, true, ReasonRateLimited},
		{"success 2xx and 4xx, default retry: 404 success", triggers.RetryPolicy{SuccessOn: rules("2xx", "4xx")}, 404, false, ""},
		{"success 503, default retry: 503 success", triggers.RetryPolicy{SuccessOn: rules("2xx", "503")}, 503, false, ""},
		{"success 429, default retry: 429 success", triggers.RetryPolicy{SuccessOn: rules("2xx", "429")}, 429, false, ""},
		// success_on and drop_on.
		{"default success, drop 204: 204 dropped", triggers.RetryPolicy{DropOn: rules("204")}, 204, false, ReasonDropped},
		{"default success, drop 204: 200 success", triggers.RetryPolicy{DropOn: rules("204")}, 200, false, ""},
		{"success 409, drop 4xx: 409 success", triggers.RetryPolicy{SuccessOn: rules("2xx", "409"), DropOn: rules("4xx")}, 409, false, ""},
		{"success 409, drop 4xx: 410 dropped", triggers.RetryPolicy{SuccessOn: rules("2xx", "409"), DropOn: rules("4xx")}, 410, false, ReasonDropped},
		// A class only: as before.
		{"drop 4xx, default retry: 404 dropped", triggers.RetryPolicy{DropOn: rules("4xx")}, 404, false, ReasonDropped},
		{"success 2xx, retry 5xx: 500 retried", triggers.RetryPolicy{RetryOn: rules("5xx")}, 500, true, ReasonServerError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.code, Header: http.Header{}}
			retry, err := StatusCheckRetry(tc.policy)(context.Background(), resp, nil)
			if retry != tc.wantRetry {
				t.Errorf("retry = %v, want %v", retry, tc.wantRetry)
			}
			var ae *AttemptError
			switch {
			case tc.wantReason == "" && err != nil:
				t.Errorf("err = %v, want success", err)
			case tc.wantReason != "" && !errors.As(err, &ae):
				t.Errorf("err = %v, want an *AttemptError", err)
			case tc.wantReason != "" && ae.Reason != tc.wantReason:
				t.Errorf("reason = %q, want %q", ae.Reason, tc.wantReason)
			}
		})
	}
}

// TestDropOnAcknowledgesWithoutDeadLetter checks that a drop_on status ends
// the delivery at once, stores no dead letter, moves the watermark and
// counts the "dropped" outcome.
func TestDropOnAcknowledgesWithoutDeadLetter(t *testing.T) {
	rc := newReceiver(t, statuses(409))
	sink := &memSink{}
	m := NewMetrics(nil)
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:    triggers.Webhook{URL: rc.srv.URL},
		Retry:      triggers.RetryPolicy{MaxAttempts: 5, DropOn: triggers.StatusRules{"409"}},
		DeadLetter: true,
	}, sink, WithClock(newFakeClock()), WithMetrics(m))
	ev := testEvent(t, 4, "k")
	if err := d.Submit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, d, 10*time.Second)
	if n := len(sink.All()); n != 0 {
		t.Fatalf("%d dead letters, want none", n)
	}
	if n := len(rc.deliveries()); n != 1 {
		t.Fatalf("%d requests, want 1 (a dropped event is not retried)", n)
	}
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev.Token) {
		t.Fatalf("Watermark = %v, %v; a dropped event is done", tok, ok)
	}
	c := m.Counts("orders")
	if c.Deliveries[OutcomeDropped] != 1 || c.Attempts[ReasonDropped] != 1 {
		t.Fatalf("counts %+v, want one dropped delivery and attempt", c)
	}
}

// TestRetryOnRetriesAListedClientError: retry_on [404] retries a 404 up to
// max_attempts, then dead-letters it.
func TestRetryOnRetriesAListedClientError(t *testing.T) {
	rc := newReceiver(t, statuses(404, 404, 200))
	s := newTestSender(t, &triggers.Trigger{
		Webhook: triggers.Webhook{URL: rc.srv.URL},
		Retry:   triggers.RetryPolicy{MaxAttempts: 3, RetryOn: triggers.StatusRules{"404"}},
	}, WithClock(newFakeClock()))
	res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
	if err != nil || res.Attempts != 3 {
		t.Fatalf("Deliver = %+v, %v; want success on the third attempt", res, err)
	}
}
