package dispatcher

import (
	"github.com/changehook/changehook/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// circuitMetrics are the circuit breaker's collectors:
//
//	changehook_circuit_state{trigger}               0 closed, 1 half_open, 2 open
//	changehook_circuit_transitions_total{trigger,to} transitions into each state
type circuitMetrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
}

// newCircuitMetrics creates the circuit collectors and registers them with
// reg (nil: not registered), reusing collectors already registered.
func newCircuitMetrics(reg prometheus.Registerer) *circuitMetrics {
	c := &circuitMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "changehook_circuit_state",
			Help: "State of the trigger's endpoint circuit: 0 closed, 1 half_open, 2 open.",
		}, []string{"trigger"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_circuit_transitions_total",
			Help: "Transitions of the trigger's endpoint circuit, by the state entered.",
		}, []string{"trigger", "to"}),
	}
	if reg != nil {
		c.state = metrics.Register(reg, c.state)
		c.transitions = metrics.Register(reg, c.transitions)
	}
	return c
}

// circuitInit creates trigger's circuit series (state closed, zero
// transitions), so that they exist before the first transition.
func (m *Metrics) circuitInit(trigger string) {
	if m == nil {
		return
	}
	m.circuit.state.WithLabelValues(trigger).Set(CircuitClosed.gaugeValue())
	for _, to := range []CircuitState{CircuitClosed, CircuitOpen, CircuitHalfOpen} {
		m.circuit.transitions.WithLabelValues(trigger, string(to)).Add(0)
	}
}

// circuitTransition records trigger's circuit entering to.
func (m *Metrics) circuitTransition(trigger string, to CircuitState) {
	if m == nil {
		return
	}
	m.circuit.state.WithLabelValues(trigger).Set(to.gaugeValue())
	m.circuit.transitions.WithLabelValues(trigger, string(to)).Inc()
}

// circuitForget deletes trigger's circuit series (Forget, and a circuit a
// reload turned off): a removed trigger's open circuit must not stay
// exported.
func (m *Metrics) circuitForget(trigger string) {
	if m == nil {
		return
	}
	m.circuit.state.DeleteLabelValues(trigger)
	m.circuit.transitions.DeletePartialMatch(prometheus.Labels{"trigger": trigger})
}
