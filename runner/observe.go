package runner

import (
	"context"
	"sync"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultDeadLetterRefresh is Options.DeadLetterRefresh when zero.
const DefaultDeadLetterRefresh = 30 * time.Second

// deadLetterRefreshMin spaces the refreshes that RefreshDeadLetters asks
// for: a burst of dead letters costs one count per trigger per second.
const deadLetterRefreshMin = time.Second

// AllStates lists every State, in the order the changehook_trigger_state
// series are exported.
var AllStates = []State{StateStarting, StateRunning, StateRetrying, StatePaused, StateFailed, StateDisabled, StateStandby, StateStopped}

// deadLetterCounts are the triggers' current dead-letter counts as last
// read from the state database.
type deadLetterCounts struct {
	mu   sync.Mutex
	n    map[string]int64
	poke chan struct{}
}

// get returns trigger's count, -1 when it was never read.
func (c *deadLetterCounts) get(trigger string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.n[trigger]; ok {
		return n
	}
	return -1
}

// RefreshDeadLetters asks for the current dead-letter counts
// (TriggerStatus.DeadLettersCurrent, changehook_dead_letters) to be read
// again soon, without waiting: call it after replaying or purging dead
// letters. Run also refreshes them every Options.DeadLetterRefresh and after
// every dead letter it stores.
func (r *Runner) RefreshDeadLetters() {
	select {
	case r.dl.poke <- struct{}{}:
	default:
	}
}

// refreshDeadLetters counts the dead letters of every trigger of the
// configuration until ctx ends (real time, not Options.Clock: it is
// housekeeping, not delivery).
func (r *Runner) refreshDeadLetters(ctx context.Context) {
	every := r.opts.DeadLetterRefresh
	if every <= 0 {
		every = DefaultDeadLetterRefresh
	}
	failing := false
	for {
		r.mu.Lock()
		names := append([]string(nil), r.order...)
		r.mu.Unlock()
		counts := make(map[string]int64, len(names))
		var firstErr error
		for _, name := range names {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			n, err := r.store.CountDeadLetters(cctx, name)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				firstErr = err
				continue
			}
			counts[name] = n
		}
		r.dl.mu.Lock()
		for name, n := range counts {
			r.dl.n[name] = n
		}
		for name := range r.dl.n {
			if _, ok := r.slotNamed(name); !ok {
				delete(r.dl.n, name) // removed by a reload
			}
		}
		r.dl.mu.Unlock()
		switch {
		case firstErr != nil && !failing:
			r.log.Warn("cannot count dead letters; the dead-letter gauges keep their last value", "error", firstErr)
		case firstErr == nil && failing:
			r.log.Info("dead letters counted again")
		}
		failing = firstErr != nil
		if !sleepReal(ctx, deadLetterRefreshMin) {
			return
		}
		t := time.NewTimer(every - deadLetterRefreshMin)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.dl.poke:
		case <-t.C:
		}
		t.Stop()
	}
}

// slotNamed reports whether name is a trigger of the current configuration.
func (r *Runner) slotNamed(name string) (*slot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys, ok := r.units[name]
	if !ok {
		return nil, false
	}
	return r.slots[keys[0]], true
}

// sleepReal waits d of real time; false when ctx ended first.
func sleepReal(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// refreshingSink asks for a dead-letter count refresh after each dead letter
// it stores.
type refreshingSink struct {
	dispatcher.DeadLetterSink
	r *Runner
}

// PutDeadLetter stores dl and asks for a refresh.
func (s refreshingSink) PutDeadLetter(ctx context.Context, dl dispatcher.DeadLetter) error {
	err := s.DeadLetterSink.PutDeadLetter(ctx, dl)
	if err == nil {
		s.r.RefreshDeadLetters()
	}
	return err
}

// stateCollector exports changehook_trigger_state{trigger,state} (1 for the
// current state, 0 for the others) and changehook_dead_letters{trigger}
// (the current count, once it was read) from Status at scrape time, so they
// are never stale and exist for every trigger from the start.
type stateCollector struct {
	r           *Runner
	state, dead *prometheus.Desc
}

func newStateCollector(r *Runner) *stateCollector {
	return &stateCollector{r: r,
		state: prometheus.NewDesc("changehook_trigger_state",
			"1 for the trigger's current state (starting, running, retrying, paused, failed, disabled, standby, stopped), 0 for the others.",
			[]string{"trigger", "state"}, nil),
		dead: prometheus.NewDesc("changehook_dead_letters",
			"Dead letters of the trigger in the state database now (replayed and purged ones are gone); refreshed periodically.",
			[]string{"trigger"}, nil),
	}
}

// Describe sends the two descriptors.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.dead
}

// Collect sends every trigger's state series and dead-letter gauge.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.r.Status() {
		for _, s := range AllStates {
			v := 0.0
			if st.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, st.Name, string(s))
		}
		n := max(st.DeadLettersCurrent, 0) // 0 until first read: the series exists from the start
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(n), st.Name)
	}
}
