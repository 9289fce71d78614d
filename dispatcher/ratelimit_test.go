package dispatcher

import (
	"bytes"
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
	"golang.org/x/time/rate"
)

// TestRateLimitMeasuredOnFakeClock sends as fast as the limiter allows for
// 10 s of fake time and checks the measured rate is within 10% of the limit,
// for a trigger's own limit and for an endpoint limit shared by two
// triggers (their sum is limited).
func TestRateLimitMeasuredOnFakeClock(t *testing.T) {
	const window = 10 * time.Second
	tests := []struct {
		name    string
		own     *triggers.RateLimit
		shared  *triggers.Endpoint
		senders int
		want    float64 // requests per second, all senders together
	}{
		{"own limit", &triggers.RateLimit{PerSecond: 50, Burst: 5}, nil, 1, 50},
		{"fractional", &triggers.RateLimit{PerSecond: 2.5, Burst: 1}, nil, 1, 2.5},
		{"shared endpoint", nil, &triggers.Endpoint{Name: "crm", RateLimit: triggers.RateLimit{PerSecond: 20, Burst: 1}}, 2, 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, statuses(204))
			clock := newFakeClock()
			start := clock.Now()
			lims := NewLimiters()
			var senders []*Sender
			for i := range tc.senders {
				w := triggers.Webhook{URL: rc.srv.URL, RateLimit: tc.own}
				if tc.shared != nil {
					tc.shared.URLPrefix = rc.srv.URL
					w.Endpoint = tc.shared
				}
				senders = append(senders, newTestSender(t, &triggers.Trigger{Name: "t" + string(rune('a'+i)), Webhook: w},
					WithClock(clock), WithLimiters(lims)))
			}
			sent := 0
			for i := 0; clock.Now().Sub(start) < window; i++ {
				s := senders[i%len(senders)]
				res, err := s.Deliver(context.Background(), testEvent(t, i, "k"))
				if err != nil {
					t.Fatalf("Deliver: %v", err)
				}
				if res.FirstAttemptAt.Sub(start) < window {
					sent++
				}
				if i > 100_000 {
					t.Fatal("the limiter never made the clock advance")
				}
			}
			rate := float64(sent) / window.Seconds()
			if math.Abs(rate-tc.want) > 0.1*tc.want {
				t.Fatalf("measured %.2f requests/s over %s of fake time, want %.2f ± 10%%", rate, window, tc.want)
			}
			if got := len(rc.deliveries()); got < sent {
				t.Fatalf("receiver saw %d requests, fewer than the %d sent", got, sent)
			}
		})
	}
}

// TestRateLimitBackpressureNeverDrops submits more events than a limited
// dispatcher can hold: Submit waits, every event is delivered once, and the
// watermark reaches the last one.
func TestRateLimitBackpressureNeverDrops(t *testing.T) {
	rc := newReceiver(t, statuses(200))
	clock := newFakeClock()
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook: triggers.Webhook{URL: rc.srv.URL, RateLimit: &triggers.RateLimit{PerSecond: 5, Burst: 1}},
	}, nil, WithClock(clock))
	const n = 60 // more than the dispatcher's capacity (17 for strict)
	for i := range n {
		if err := d.Submit(context.Background(), testEvent(t, i, "k")); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 30*time.Second)
	if got := len(rc.deliveries()); got != n {
		t.Fatalf("receiver saw %d deliveries, want %d", got, n)
	}
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, testEvent(t, n-1, "k").Token) {
		t.Fatal("watermark did not reach the last event")
	}
	if el := clock.Now().Sub(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)); el < 11*time.Second {
		t.Fatalf("60 events at 5/s took %s of fake time, want about 12s", el)
	}
}

// TestLimitersFollowAReload: asked again for an endpoint whose rate_limit
// changed (a reload), the shared limiter takes the new rate and burst in
// place — the limiter every trigger already holds — and one of the same
// rate is left as it is.
func TestLimitersFollowAReload(t *testing.T) {
	lims := NewLimiters()
	ep := &triggers.Endpoint{Name: "crm", RateLimit: triggers.RateLimit{PerSecond: 1, Burst: 1}}
	held := lims.For(ep)
	if got := lims.For(&triggers.Endpoint{Name: "crm", RateLimit: triggers.RateLimit{PerSecond: 1, Burst: 1}}); got != held {
		t.Fatal("the same endpoint got a second limiter")
	}
	lims.For(&triggers.Endpoint{Name: "crm", RateLimit: triggers.RateLimit{PerSecond: 100, Burst: 20}})
	if held.Limit() != 100 || held.Burst() != 20 {
		t.Fatalf("after the reload the held limiter allows %v/s, burst %d; want 100/s, burst 20", held.Limit(), held.Burst())
	}
	lims.For(&triggers.Endpoint{Name: "crm", RateLimit: triggers.RateLimit{PerSecond: 0.5}})
	if held.Limit() != 0.5 || held.Burst() != 1 {
		t.Fatalf("after a second reload: %v/s, burst %d; want 0.5/s, burst 1", held.Limit(), held.Burst())
	}
}

// TestLimitersRetainConfiguredEndpoints: after a reload, the limiters of
// the endpoints the configuration no longer names are dropped (asked
// again, the name gets a new limiter), and those of the names it keeps
// are the limiters the triggers already hold.
func TestLimitersRetainConfiguredEndpoints(t *testing.T) {
	tests := []struct {
		name string
		kept []string // the endpoints the reloaded configuration names
	}{
		{"one removed", []string{"crm"}},
		{"every one removed", nil},
		{"none removed", []string{"crm", "erp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lims := NewLimiters()
			eps := map[string]*triggers.Endpoint{}
			held := map[string]*rate.Limiter{}
			for _, name := range []string{"crm", "erp"} {
				eps[name] = &triggers.Endpoint{Name: name, RateLimit: triggers.RateLimit{PerSecond: 1, Burst: 1}}
				held[name] = lims.For(eps[name])
			}
			cfg := &triggers.Config{}
			for _, name := range tc.kept {
				cfg.Endpoints = append(cfg.Endpoints, eps[name])
			}
			lims.Retain(cfg)
			if len(lims.m) != len(tc.kept) {
				t.Fatalf("%d limiters after the reload, want %d", len(lims.m), len(tc.kept))
			}
			for name, ep := range eps {
				switch kept, same := slices.Contains(tc.kept, name), lims.For(ep) == held[name]; {
				case kept && !same:
					t.Errorf("%s is still configured, yet asked again it got a new limiter", name)
				case !kept && same:
					t.Errorf("%s was removed, yet asked again it got the limiter it had", name)
				}
			}
		})
	}
}
