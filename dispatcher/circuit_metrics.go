package dispatcher

import (
	"strconv"

	"github.com/changehook/changehook/internal/metrics"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
)

// circuitMetrics are the circuit breaker's collectors:
//
//	changehook_circuit_state{trigger,partition}     0 closed, 1 half_open, 2 open
//	changehook_circuit_transitions_total{trigger,to} transitions into each state
//
// Each partition of a partitioned trigger has its own dispatcher and so its
// own circuit: the state is labelled by partition ("0" for an unpartitioned
// trigger), like the runner's per-partition series, so that one
// partition's circuit starting or closing does not overwrite another's.
// The transitions counter adds up the trigger's partitions: it continues
// across a change of their number, as the delivery counters do.
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
			Help: "State of the endpoint circuit of the trigger's partition (\"0\" when not partitioned): 0 closed, 1 half_open, 2 open.",
		}, []string{"trigger", "partition"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_circuit_transitions_total",
			Help: "Transitions of the trigger's endpoint circuits (its partitions' added up), by the state entered.",
		}, []string{"trigger", "to"}),
	}
	if reg != nil {
		c.state = metrics.Register(reg, c.state)
		c.transitions = metrics.Register(reg, c.transitions)
	}
	return c
}

// circuitPartition is the partition label of t's circuit state: its
// partition's index, "0" when it is not partitioned (as the runner labels
// its per-partition series).
func circuitPartition(t *triggers.Trigger) string {
	i, _ := t.PartitionIndex()
	return strconv.Itoa(i)
}

// circuitInit creates the circuit series of trigger's partition (state
// closed, zero transitions), so that they exist before the first
// transition.
func (m *Metrics) circuitInit(trigger, partition string) {
	if m == nil {
		return
	}
	m.circuit.state.WithLabelValues(trigger, partition).Set(CircuitClosed.gaugeValue())
	for _, to := range []CircuitState{CircuitClosed, CircuitOpen, CircuitHalfOpen} {
		m.circuit.transitions.WithLabelValues(trigger, string(to)).Add(0)
	}
}

// circuitTransition records the circuit of trigger's partition entering to.
func (m *Metrics) circuitTransition(trigger, partition string, to CircuitState) {
	if m == nil {
		return
	}
	m.circuit.state.WithLabelValues(trigger, partition).Set(to.gaugeValue())
	m.circuit.transitions.WithLabelValues(trigger, string(to)).Inc()
}

// circuitForget deletes trigger's circuit series, every partition's
// (Forget, and a circuit a reload turned off): a removed trigger's open
// circuit must not stay exported.
func (m *Metrics) circuitForget(trigger string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"trigger": trigger}
	m.circuit.state.DeletePartialMatch(l)
	m.circuit.transitions.DeletePartialMatch(l)
}

// ForgetCircuitState deletes the changehook_circuit_state series of t: of
// its partition when t is one (triggers.Trigger.Partition), of every
// partition when t is the trigger as configured. A unit whose dispatcher
// no longer runs in this process (stopped, handed to another cluster
// member, its trigger repartitioned) has no circuit here, and its last
// state must not stay exported. The transitions counter is kept: it counts
// since the process started. Call it only once the unit's dispatcher is
// closed: its next transition would create the series again.
func (m *Metrics) ForgetCircuitState(t *triggers.Trigger) {
	if m == nil {
		return
	}
	if _, ok := t.PartitionIndex(); ok {
		m.circuit.state.DeleteLabelValues(t.Name, circuitPartition(t))
		return
	}
	m.circuit.state.DeletePartialMatch(prometheus.Labels{"trigger": t.Name})
}
