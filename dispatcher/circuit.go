package dispatcher

import (
	"context"
	"sync"
	"time"

	"github.com/changehook/changehook/triggers"
)

// CircuitState is the state of a trigger's endpoint circuit.
type CircuitState string

// Circuit states: the values of CircuitStatus.State and of the to label of
// changehook_circuit_transitions_total.
const (
	// CircuitClosed: deliveries flow.
	CircuitClosed CircuitState = "closed"
	// CircuitOpen: no delivery starts, and no attempt of one under way
	// (a retry) either; the delivery that opened the circuit waits for its
	// next probe (CircuitStatus.Probe).
	CircuitOpen CircuitState = "open"
	// CircuitHalfOpen: the probe is being sent.
	CircuitHalfOpen CircuitState = "half_open"
)

// gaugeValue is the value of changehook_circuit_state for s.
func (s CircuitState) gaugeValue() float64 {
	switch s {
	case CircuitOpen:
		return 2
	case CircuitHalfOpen:
		return 1
	}
	return 0
}

// CircuitStatus is a snapshot of a trigger's circuit (Dispatcher.Circuit).
type CircuitStatus struct {
	// State is closed, open or half_open.
	State CircuitState `json:"state"`
	// Since is when State was entered (zero: closed since the dispatcher
	// started). Each probe cycle (open → half_open → open) moves it.
	Since time.Time `json:"since,omitzero"`
	// OpenedAt is when the circuit last left closed: the failure that
	// opened it. Probe cycles (open ↔ half_open) do not move it; it is
	// zero while the circuit is closed.
	OpenedAt time.Time `json:"opened_at,omitzero"`
	// Failures is the number of consecutive failed deliveries counted
	// towards circuit.failures.
	Failures int `json:"failures"`
	// NextProbeAt is when the held delivery is tried again (open only).
	NextProbeAt time.Time `json:"next_probe_at,omitzero"`
	// LastStatus is the HTTP status of the failure that opened the circuit
	// or of the last failed probe (0: no response).
	LastStatus int `json:"last_status,omitempty"`
	// LastError is that failure's error (never secrets).
	LastError string `json:"last_error,omitempty"`
	// Probe is, while the circuit is not closed, the delivery whose
	// failure opened it: the one request sent while it is open, at
	// NextProbeAt (nil while closed). Every other held delivery waits
	// until a probe succeeds; none of their attempts starts meanwhile.
	Probe *CircuitProbe `json:"probe,omitempty"`
}

// CircuitProbe is the delivery an open circuit probes the endpoint with.
type CircuitProbe struct {
	// WebhookID is the webhook-id its requests carry: the event's, a
	// batch's, or the part's of a batch sent in parts.
	WebhookID string `json:"webhook_id"`
	// Attempts is the number of attempts it made so far, those before the
	// circuit opened included (the attempt numbers its requests carry).
	Attempts int `json:"attempts"`
}

// circuit is a trigger's circuit breaker: a small state machine of its own
// rather than sony/gobreaker. gobreaker's open state rejects calls
// (ErrOpenState), which for a change stream would mean skipping or
// dead-lettering events, and its half-open state admits requests after a
// fixed timeout. Here an open circuit must block instead (workers wait at
// gate before any attempt, so the dispatcher's tracker fills and Submit
// applies backpressure to the stream), and the probe must be the very
// delivery that opened the circuit, retried at doubling intervals up to
// circuit.max_probe_interval, so that nothing is skipped, reordered or
// dead-lettered while the endpoint is down. Both fit in a few dozen lines
// on the dispatcher's injectable Clock, which also makes them testable
// without sleeping.
//
// Only the worker whose failure opened the circuit probes (see
// Dispatcher.probe); the other workers wait at gate and redeliver their
// events after the circuit closes. A nil *circuit is disabled: gate returns
// at once and nothing is counted.
type circuit struct {
	trigger   string
	partition string // its partition label (circuitPartition)
	policy    triggers.CircuitPolicy
	initial   time.Duration // first probe interval (retry.initial_backoff)
	clock     Clock
	metrics   *Metrics
	mu        sync.Mutex
	st        CircuitStatus
	interval  time.Duration // current probe interval
	closedCh  chan struct{} // closed when the circuit closes; nil while closed
	probeID   string        // the probe's webhook-id (CircuitStatus.Probe); "" while closed
	probe     *progress     // the probe's progress record, for its attempts (nil: none)
}

// newCircuit returns t's circuit, nil when t's circuit section cannot open
// it (a hand-built trigger's zero value).
func newCircuit(t *triggers.Trigger, retry triggers.RetryPolicy, clock Clock, m *Metrics) *circuit {
	if !t.Circuit.Enabled() {
		// A reload that turned the circuit off: its last state (open,
		// say) must not stay exported.
		m.circuitForget(t.Name)
		return nil
	}
	p := t.Circuit
	if p.MaxProbeInterval <= 0 {
		p.MaxProbeInterval = triggers.DefaultCircuitMaxProbeInterval
	}
	c := &circuit{trigger: t.Name, partition: circuitPartition(t), policy: p, initial: min(retry.InitialBackoff, p.MaxProbeInterval),
		clock: clock, metrics: m, st: CircuitStatus{State: CircuitClosed}}
	m.circuitInit(c.trigger, c.partition)
	return c
}

// status returns a snapshot (zero State for a nil circuit).
func (c *circuit) status() CircuitStatus {
	if c == nil {
		return CircuitStatus{}
	}
	c.mu.Lock()
	st, id, prog := c.st, c.probeID, c.probe
	c.mu.Unlock()
	if id != "" {
		st.Probe = &CircuitProbe{WebhookID: id, Attempts: prog.snapshot().Attempts}
	}
	return st
}

// probing returns the webhook-id and progress record of the delivery the
// circuit probes the endpoint with; id is "" while the circuit is closed
// (or disabled).
func (c *circuit) probing() (id string, prog *progress) {
	if c == nil {
		return "", nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probeID, c.probe
}

// gate returns at once while the circuit is closed; otherwise it waits until
// it closes or ctx ends (ctx's error).
func (c *circuit) gate(ctx context.Context) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	ch := c.closedCh
	c.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// succeeded records a successful delivery other than the probe's: it
// resets the count of consecutive failures while the circuit is closed.
// It never closes an open circuit: a delivery already under way when the
// circuit opened may still succeed, but only the probe closes the circuit
// (probeSucceeded), so that the probe is never left probing a circuit that
// closed under it (which would send it, and every held retry, in a loop).
func (c *circuit) succeeded() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.State == CircuitClosed {
		c.st.Failures = 0
	}
}

// probeSucceeded closes the circuit after its probe succeeded (or the
// endpoint answered it, see probeLoop): the held deliveries go on.
func (c *circuit) probeSucceeded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Failures = 0
	if c.st.State == CircuitClosed {
		return
	}
	c.st.NextProbeAt, c.st.LastStatus, c.st.LastError = time.Time{}, 0, ""
	c.probeID, c.probe = "", nil
	c.transition(CircuitClosed)
	close(c.closedCh)
	c.closedCh = nil
}

// opensOn reports whether status (0: no response) opens the circuit at
// once: circuit.open_on lists it.
func (c *circuit) opensOn(status int) bool {
	return status > 0 && c.policy.OpenOn.MatchStatus(status)
}

// failed records a failed delivery (status 0: no response) and reports
// whether this failure opened the circuit, so that the caller's delivery
// becomes the probe: id is its webhook-id, prog its progress record (nil:
// none), which CircuitStatus.Probe shows. after is the wait the failed
// attempt's Retry-After asks for (Sender.retryAfter): the first probe
// waits for the longer of it and the probe interval. When the circuit is
// already open, it reports false and counts nothing: the caller holds its
// event and waits at gate.
func (c *circuit) failed(status int, msg, id string, prog *progress, after time.Duration) (opened bool) {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.State != CircuitClosed {
		return false
	}
	c.st.Failures++
	if !c.opensOn(status) && (c.policy.Failures == 0 || c.st.Failures < c.policy.Failures) {
		return false
	}
	c.interval = c.initial
	c.st.NextProbeAt = c.clock.Now().Add(max(c.interval, after))
	c.st.LastStatus, c.st.LastError = status, msg
	c.probeID, c.probe = id, prog
	c.closedCh = make(chan struct{})
	c.transition(CircuitOpen)
	return true
}

// open reports whether the circuit is not closed.
func (c *circuit) open() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.State != CircuitClosed
}

// nextProbe returns how long to wait before the next probe.
func (c *circuit) nextProbe() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.NextProbeAt.Sub(c.clock.Now())
}

// halfOpen marks the probe as being sent. The circuit is open: only the
// probe, which calls it, closes it.
func (c *circuit) halfOpen() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.State != CircuitClosed {
		c.transition(CircuitHalfOpen)
	}
}

// probeFailed reopens the circuit after a failed probe, doubling the
// interval up to circuit.max_probe_interval; the next probe waits for the
// longer of that interval and after, the wait the probe's Retry-After asks
// for (Sender.retryAfter). A Retry-After lengthens one wait, never the
// interval the doubling goes on from.
func (c *circuit) probeFailed(status int, msg string, after time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.State == CircuitClosed {
		return // not opened (gate would not hold anything): nothing to reopen
	}
	c.interval = min(2*c.interval, c.policy.MaxProbeInterval)
	c.st.NextProbeAt = c.clock.Now().Add(max(c.interval, after))
	c.st.LastStatus, c.st.LastError = status, msg
	c.transition(CircuitOpen)
}

// transition enters state to, and sets OpenedAt when the circuit leaves
// closed (clearing it when it closes again); c.mu must be held.
func (c *circuit) transition(to CircuitState) {
	if c.st.State == to {
		return
	}
	now := c.clock.Now()
	switch {
	case to == CircuitClosed:
		c.st.OpenedAt = time.Time{}
	case c.st.State == CircuitClosed:
		c.st.OpenedAt = now
	}
	c.st.State, c.st.Since = to, now
	c.metrics.circuitTransition(c.trigger, c.partition, to)
}
