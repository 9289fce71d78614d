package runner

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// DefaultDeadLetterRefresh is Options.DeadLetterRefresh when zero.
const DefaultDeadLetterRefresh = 30 * time.Second

// deadLetterRefreshMin spaces the refreshes that RefreshDeadLetters asks
// for: a burst of dead letters costs one count per trigger per second.
const deadLetterRefreshMin = time.Second

// AllStates lists every State, in the order the changehook_trigger_state
// series are exported.
var AllStates = []State{StateStarting, StateRunning, StateRetrying, StatePaused, StateFailed, StateDisabled, StateStandby, StateStopped, StateWaiting}

// stateNames lists AllStates, comma-separated.
func stateNames() string {
	names := make([]string, len(AllStates))
	for i, st := range AllStates {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// deadLetterCounts are the triggers' current dead-letter counts as last
// read from the state database.
type deadLetterCounts struct {
	// countMu is held for a whole count, so counts are stored in the
	// order they started.
	countMu sync.Mutex
	mu      sync.Mutex
	n       map[string]int64
	poke    chan struct{}
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
// housekeeping, not delivery): every Options.DeadLetterRefresh, and at most
// deadLetterRefreshMin after RefreshDeadLetters asks (the runner's own
// dead letters, and any dead letter another process adds, replays or
// purges: see watchDeadLetters).
func (r *Runner) refreshDeadLetters(ctx context.Context) {
	every := r.opts.DeadLetterRefresh
	if every <= 0 {
		every = DefaultDeadLetterRefresh
	}
	failing := false
	for {
		err := r.countDeadLetters(ctx, nil)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			r.log.Warn("cannot count dead letters; the dead-letter gauges keep their last value", "error", err)
		case err == nil && failing:
			r.log.Info("dead letters counted again")
		}
		failing = err != nil
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

// RecountDeadLetters reads the current dead-letter counts of the named
// triggers (every trigger when none is named; names that are not triggers
// of the configuration are ignored) from the state database now and
// returns once TriggerStatus.DeadLettersCurrent and changehook_dead_letters
// show them: the admin API calls it after replaying or purging dead
// letters, so that the response's request cycle already sees the new
// count. Counts never go back to an older reading: a periodic count that
// started before the change finishes first. A trigger whose count failed
// keeps its last value; the first error is returned.
func (r *Runner) RecountDeadLetters(ctx context.Context, triggers ...string) error {
	if len(triggers) == 0 {
		return r.countDeadLetters(ctx, nil)
	}
	var names []string
	for _, name := range triggers {
		if _, ok := r.slotNamed(name); ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return r.countDeadLetters(ctx, names)
}

// countDeadLetters counts the dead letters of names (nil: every trigger of
// the configuration, and the counts of removed triggers are forgotten) and
// stores the counts. Counts are taken one at a time (r.dl.countMu), so a
// count that started before a change never overwrites one taken after it.
func (r *Runner) countDeadLetters(ctx context.Context, names []string) error {
	r.dl.countMu.Lock()
	defer r.dl.countMu.Unlock()
	all := names == nil
	if all {
		r.mu.Lock()
		names = append([]string(nil), r.order...)
		r.mu.Unlock()
	}
	counts := make(map[string]int64, len(names))
	var firstErr error
	for _, name := range names {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := r.store.CountDeadLetters(cctx, name)
		cancel()
		if ctx.Err() != nil {
			return fmt.Errorf("count dead letters: %w", ctx.Err())
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		counts[name] = n
	}
	r.dl.mu.Lock()
	for name, n := range counts {
		r.dl.n[name] = n
	}
	if all {
		for name := range r.dl.n {
			if _, ok := r.slotNamed(name); !ok {
				delete(r.dl.n, name) // removed by a reload
			}
		}
	}
	r.dl.mu.Unlock()
	return firstErr
}

// watchDeadLetters asks for a dead-letter recount (RefreshDeadLetters)
// whenever the deadletters collection changes, until ctx ends: its own
// change stream, reduced to the operation type, so that a replay or purge
// by another process (`changehook dlq replay|purge`, another member's
// admin API) shows in this runner's gauges within deadLetterRefreshMin
// instead of at the next periodic count. A failed stream is reopened with
// backoff; meanwhile the periodic count still runs.
func (r *Runner) watchDeadLetters(ctx context.Context) {
	pipeline := mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "replace", "delete"}}}}}}},
		{{Key: "$project", Value: bson.D{{Key: "operationType", Value: 1}}}},
	}
	coll := r.store.DeadLettersCollection()
	for attempt := 0; ; attempt++ {
		cs, err := coll.Watch(ctx, pipeline)
		if err == nil {
			// Whatever changed before the stream opened is in the next
			// count.
			r.RefreshDeadLetters()
			for cs.Next(ctx) {
				attempt = 0
				r.RefreshDeadLetters()
			}
			err = cs.Err()
			_ = cs.Close(context.WithoutCancel(ctx))
		}
		if ctx.Err() != nil {
			return
		}
		delay := dispatcher.FullJitterBackoff(attempt, DefaultInitialRetryBackoff, DefaultMaxRetryBackoff)
		r.log.Warn("cannot watch the dead letters; their gauges are refreshed periodically meanwhile", "error", err, "retry_in", delay)
		if !sleepReal(ctx, delay) {
			return
		}
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
// current state, 0 for the others), changehook_dead_letters{trigger} (the
// current count, once it was read) and
// changehook_watch_wait_seconds_total{trigger,on} (TriggerStatus.Waits,
// on="stream" or "delivery") from Status at scrape time, so they are never
// stale (a wait still going on counts) and exist for every trigger from
// the start.
type stateCollector struct {
	r                 *Runner
	state, dead, wait *prometheus.Desc
}

func newStateCollector(r *Runner) *stateCollector {
	return &stateCollector{r: r,
		state: prometheus.NewDesc("changehook_trigger_state",
			"1 for the trigger's current state ("+stateNames()+"), 0 for the others.",
			[]string{"trigger", "state"}, nil),
		dead: prometheus.NewDesc("changehook_dead_letters",
			"Dead letters of the trigger in the state database now (replayed and purged ones are gone); refreshed periodically.",
			[]string{"trigger"}, nil),
		wait: prometheus.NewDesc("changehook_watch_wait_seconds_total",
			"Time the trigger's watch loop waited, summed over its partitions: on=\"stream\" for the change stream (for changes, or for the server to return them), on=\"delivery\" for its dispatcher to take an event (backpressure: in-flight limits reached).",
			[]string{"trigger", "on"}, nil),
	}
}

// Describe sends the three descriptors.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.dead
	ch <- c.wait
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
		var w Waits // Status always sets it; zero otherwise
		if st.Waits != nil {
			w = *st.Waits
		}
		ch <- prometheus.MustNewConstMetric(c.wait, prometheus.CounterValue, w.Stream.Seconds(), st.Name, "stream")
		ch <- prometheus.MustNewConstMetric(c.wait, prometheus.CounterValue, w.Delivery.Seconds(), st.Name, "delivery")
	}
}
