package dispatcher

import (
	"context"
	"sync"

	"github.com/changehook/changehook/triggers"
	"golang.org/x/time/rate"
)

// Limiters holds the rate limiters of the configuration's endpoints, shared
// by every Sender given it (WithLimiters): the triggers whose webhook
// matches one endpoint draw from one bucket. Safe for concurrent use.
type Limiters struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter // endpoint name → limiter
}

// NewLimiters returns an empty set of shared limiters.
func NewLimiters() *Limiters { return &Limiters{m: map[string]*rate.Limiter{}} }

// For returns ep's shared limiter, creating it on first use. A limiter
// whose rate or burst differs from ep's (the endpoint's rate_limit changed
// by a reload) takes ep's in place, so that every trigger drawing from it,
// restarted by the reload or not, follows the new limit at once.
func (l *Limiters) For(ep *triggers.Endpoint) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[ep.Name]
	if !ok {
		lim = newLimiter(ep.RateLimit)
		l.m[ep.Name] = lim
		return lim
	}
	if limit := rate.Limit(ep.RateLimit.PerSecond); lim.Limit() != limit {
		lim.SetLimit(limit)
	}
	if burst := max(ep.RateLimit.Burst, 1); lim.Burst() != burst {
		lim.SetBurst(burst)
	}
	return lim
}

// Retain drops the limiters of the endpoints that cfg no longer names (a
// reload removed them), so that the set does not grow with every name ever
// configured. The limiters of the names cfg keeps stay as they are, with
// their tokens; For brings them to a changed rate_limit.
func (l *Limiters) Retain(cfg *triggers.Config) {
	keep := make(map[string]bool, len(cfg.Endpoints))
	for _, ep := range cfg.Endpoints {
		keep[ep.Name] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.m {
		if !keep[name] {
			delete(l.m, name)
		}
	}
}

// WithLimiters shares the endpoints' rate limiters through l (a Runner
// passes one to every dispatcher). Without it a Sender whose webhook
// matches an endpoint gets a limiter of its own with the endpoint's rate.
func WithLimiters(l *Limiters) Option { return func(o *options) { o.limiters = l } }

// newLimiter returns the token bucket of rl.
func newLimiter(rl triggers.RateLimit) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(rl.PerSecond), max(rl.Burst, 1))
}

// waitRate takes one token from each of the Sender's limiters, waiting on
// the Sender's Clock (so a fake clock drives it in tests). The wait is the
// backpressure: the worker does not send, so the tracker fills and Submit,
// and with it the stream reading, slows down. Nothing is dropped. It
// returns ctx's error when ctx ends first (the reservation is returned).
func (s *Sender) waitRate(ctx context.Context) error {
	for _, lim := range s.limiters {
		now := s.clock.Now()
		r := lim.ReserveN(now, 1)
		if !r.OK() {
			continue // burst ≥ 1 always admits one token
		}
		if d := r.DelayFrom(now); d > 0 {
			if err := s.clock.Sleep(ctx, d); err != nil {
				r.CancelAt(s.clock.Now())
				return err
			}
		}
	}
	return nil
}
