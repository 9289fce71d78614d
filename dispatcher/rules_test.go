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
