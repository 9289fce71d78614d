package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
	"github.com/hashicorp/go-retryablehttp"
)

// TestStockRetryablehttpPolicies plugs go-retryablehttp's own policies into
// a Sender: DefaultRetryPolicy retries the 500, and its (false, nil) answer
// to the 404 is a permanent client_error, not a success; LinearJitterBackoff
// chooses the waits.
func TestStockRetryablehttpPolicies(t *testing.T) {
	tests := []struct {
		name       string
		codes      []int
		wantErr    bool
		wantReason string
		wantN      int
	}{
		{"500 then 200", []int{500, 200}, false, "", 2},
		{"500 then 404", []int{500, 404}, true, ReasonClientError, 2},
		{"429 then 204", []int{429, 204}, false, "", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, statuses(tc.codes...))
			clock := newFakeClock()
			var cr CheckRetry = retryablehttp.DefaultRetryPolicy
			var bo Backoff = retryablehttp.LinearJitterBackoff
			s := newTestSender(t, &triggers.Trigger{
				Webhook: triggers.Webhook{URL: rc.srv.URL},
				Retry:   triggers.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Second, MaxBackoff: 2 * time.Second},
			}, WithClock(clock), WithCheckRetry(cr), WithBackoff(bo))
			res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Deliver error = %v, want error %v", err, tc.wantErr)
			}
			if res.Attempts != tc.wantN || res.Reason != tc.wantReason {
				t.Fatalf("attempts %d reason %q, want %d %q", res.Attempts, res.Reason, tc.wantN, tc.wantReason)
			}
			sl := clock.Sleeps()
			if len(sl) != 1 || sl[0] < time.Second || sl[0] > 2*time.Second {
				t.Fatalf("waits %v, want one LinearJitterBackoff wait in [1s, 2s]", sl)
			}
			if got := len(rc.deliveries()); got != tc.wantN {
				t.Fatalf("receiver saw %d requests, want %d", got, tc.wantN)
			}
		})
	}
}
