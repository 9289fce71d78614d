package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/changehook/changehook/triggers"
)

// TestWithheldRequestIsNoAttempt: a transport wrapper that refuses to send
// (the runner's lease gate, ErrWithheld) ends the delivery at once as
// canceled, with no request counted, no retry and the event not failed
// (so never dead-lettered), with dead letters and without.
func TestWithheldRequestIsNoAttempt(t *testing.T) {
	var reached atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name    string
		deliver func(*Sender, context.Context, Event) (Result, error)
	}{
		{"dead letters", (*Sender).Deliver},
		{"until success", (*Sender).DeliverUntilSuccess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			gate := WithTransportWrapper(func(http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					calls.Add(1)
					if r.Body != nil {
						_ = r.Body.Close()
					}
					return nil, fmt.Errorf("gate: %w", ErrWithheld)
				})
			})
			var seen []Attempt
			obs := WithObserver(func(a Attempt) { seen = append(seen, a) })
			s, err := NewSender(&triggers.Trigger{Name: "t", Retry: triggers.RetryPolicy{MaxAttempts: 5},
				Webhook: triggers.Webhook{URL: srv.URL}}, gate, obs, WithClock(newFakeClock()))
			if err != nil {
				t.Fatal(err)
			}
			res, err := tc.deliver(s, t.Context(), testEvent(t, 1, "a"))
			if !errors.Is(err, ErrWithheld) || res.Reason != ReasonCanceled || res.Attempts != 0 {
				t.Errorf("withheld delivery: res %+v, err %v; want reason %q, 0 attempts, ErrWithheld", res, err, ReasonCanceled)
			}
			if calls.Load() != 1 || reached.Load() != 0 {
				t.Errorf("the gate was asked %d times and the endpoint reached %d times, want 1 and 0: no retry", calls.Load(), reached.Load())
			}
			if len(seen) != 1 || seen[0].Reason != ReasonCanceled {
				t.Errorf("observed %+v, want one canceled attempt", seen)
			}
		})
	}
}
