package dispatcher

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changehook/changehook/triggers"
)

// TestForgetDeletesEverySeries: Forget deletes every series of the
// removed trigger, its partitions' circuits' included (an open circuit left
// exported would keep a "circuit open" alert firing), and leaves the other
// triggers' series as they were.
func TestForgetDeletesEverySeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for _, trigger := range []string{"gone", "kept"} {
		m.Init(trigger)
		m.circuitInit(trigger, "0")
		m.circuitInit(trigger, "1")
		m.circuitTransition(trigger, "1", CircuitOpen)
		m.delivery(trigger, OutcomeDelivered, 0.5)
		m.attempt(trigger, ReasonServerError)
		m.batchSplit(trigger)
		m.deadLetterStoreFailed(trigger, DeadLetterFailUnavailable)
	}
	m.Forget("gone")

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := flatten(fams)
	for k := range series {
		if strings.Contains(k, `trigger="gone"`) {
			t.Errorf("series %s left after Forget", k)
		}
	}
	for k, want := range map[string]float64{
		`changehook_circuit_state{partition="0",trigger="kept"}`:                           0,
		`changehook_circuit_state{partition="1",trigger="kept"}`:                           2,
		`changehook_circuit_transitions_total{to="open",trigger="kept"}`:                   1,
		`changehook_circuit_transitions_total{to="closed",trigger="kept"}`:                 0,
		`changehook_deliveries_total{outcome="delivered",trigger="kept"}`:                  1,
		`changehook_delivery_attempts_total{reason="server_error",trigger="kept"}`:         1,
		`changehook_batch_splits_total{trigger="kept"}`:                                    1,
		`changehook_dead_letter_store_failures_total{reason="unavailable",trigger="kept"}`: 1,
		`changehook_dead_letter_store_failures_total{reason="too_large",trigger="kept"}`:   0,
	} {
		if got, ok := series[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if c := m.Counts("gone"); len(c.Deliveries) != 0 || len(c.Attempts) != 0 || c.BatchSplits != 0 {
		t.Errorf("Counts(gone) = %+v after Forget, want zero", c)
	}
}

// TestCircuitTurnedOffDeletesItsSeries: a trigger whose circuit a reload
// turned off (its new dispatcher has none) exports no circuit state, not
// the last one the old circuit reached.
func TestCircuitTurnedOffDeletesItsSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	on := &triggers.Trigger{Name: "orders", Circuit: triggers.CircuitPolicy{Failures: 3}}
	if newCircuit(on, triggers.RetryPolicy{}, nil, m) == nil {
		t.Fatal("no circuit with failures: 3")
	}
	m.circuitTransition("orders", "0", CircuitOpen)
	if c := newCircuit(&triggers.Trigger{Name: "orders"}, triggers.RetryPolicy{}, nil, m); c != nil {
		t.Fatal("a circuit without failures or open_on")
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for k := range flatten(fams) {
		if strings.HasPrefix(k, "changehook_circuit_") {
			t.Errorf("series %s left after the circuit was turned off", k)
		}
	}
}
