package dispatcher

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changehook/changehook/triggers"
)

// TestCircuitStatePerPartition: each partition of a partitioned trigger
// has its own dispatcher and circuit, and its own changehook_circuit_state
// series (partition "0" for an unpartitioned trigger). Another partition's
// circuit starting (its dispatcher starts: a lease regained, a resume, a
// reload), probing or closing leaves an open circuit's series at 2; with
// one series per trigger, the last writer won and the trigger showed
// closed while one of its partitions' circuits was open. The transitions
// counter adds up the partitions.
func TestCircuitStatePerPartition(t *testing.T) {
	policy := triggers.CircuitPolicy{Failures: 5, OpenOn: triggers.StatusRules{"410"}}
	orders := &triggers.Trigger{Name: "orders", Partitions: 2, Circuit: policy}
	single := &triggers.Trigger{Name: "single", Circuit: policy}
	open := func(t *testing.T, c *circuit) {
		t.Helper()
		if !c.failed(410, "HTTP 410 Gone", "msg_probe", nil, 0) {
			t.Fatal("a 410 did not open the circuit")
		}
	}
	for _, tc := range []struct {
		name string
		// run starts circuits with start (unit: the trigger's partition,
		// or the trigger itself when it is not partitioned) and moves them.
		run func(t *testing.T, start func(unit *triggers.Trigger) *circuit)
		// trigger and worst: the highest changehook_circuit_state of
		// trigger's series (max by (trigger), what an alert reads).
		trigger string
		worst   float64
		want    map[string]float64
	}{
		{
			name: "another partition starts", trigger: "orders", worst: 2,
			run: func(t *testing.T, start func(*triggers.Trigger) *circuit) {
				open(t, start(orders.Partition(0)))
				start(orders.Partition(1))
			},
			want: map[string]float64{
				`changehook_circuit_state{partition="0",trigger="orders"}`:              2,
				`changehook_circuit_state{partition="1",trigger="orders"}`:              0,
				`changehook_circuit_transitions_total{to="open",trigger="orders"}`:      1,
				`changehook_circuit_transitions_total{to="closed",trigger="orders"}`:    0,
				`changehook_circuit_transitions_total{to="half_open",trigger="orders"}`: 0,
			},
		},
		{
			name: "another partition's circuit probes", trigger: "orders", worst: 2,
			run: func(t *testing.T, start func(*triggers.Trigger) *circuit) {
				c0, c1 := start(orders.Partition(0)), start(orders.Partition(1))
				open(t, c0)
				open(t, c1)
				c1.halfOpen()
			},
			want: map[string]float64{
				`changehook_circuit_state{partition="0",trigger="orders"}`:              2,
				`changehook_circuit_state{partition="1",trigger="orders"}`:              1,
				`changehook_circuit_transitions_total{to="open",trigger="orders"}`:      2,
				`changehook_circuit_transitions_total{to="half_open",trigger="orders"}`: 1,
			},
		},
		{
			name: "another partition's circuit closes", trigger: "orders", worst: 2,
			run: func(t *testing.T, start func(*triggers.Trigger) *circuit) {
				c0, c1 := start(orders.Partition(0)), start(orders.Partition(1))
				open(t, c1)
				open(t, c0)
				c1.halfOpen()
				c1.probeSucceeded()
			},
			want: map[string]float64{
				`changehook_circuit_state{partition="0",trigger="orders"}`:              2,
				`changehook_circuit_state{partition="1",trigger="orders"}`:              0,
				`changehook_circuit_transitions_total{to="open",trigger="orders"}`:      2,
				`changehook_circuit_transitions_total{to="half_open",trigger="orders"}`: 1,
				`changehook_circuit_transitions_total{to="closed",trigger="orders"}`:    1,
			},
		},
		{
			name: "the open partition's circuit closes", trigger: "orders", worst: 0,
			run: func(t *testing.T, start func(*triggers.Trigger) *circuit) {
				c0, _ := start(orders.Partition(0)), start(orders.Partition(1))
				open(t, c0)
				c0.halfOpen()
				c0.probeSucceeded()
			},
			want: map[string]float64{
				`changehook_circuit_state{partition="0",trigger="orders"}`: 0,
				`changehook_circuit_state{partition="1",trigger="orders"}`: 0,
			},
		},
		{
			name: "unpartitioned trigger", trigger: "single", worst: 2,
			run: func(t *testing.T, start func(*triggers.Trigger) *circuit) {
				open(t, start(single))
			},
			want: map[string]float64{
				`changehook_circuit_state{partition="0",trigger="single"}`:         2,
				`changehook_circuit_transitions_total{to="open",trigger="single"}`: 1,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			clock := newFakeClock()
			tc.run(t, func(unit *triggers.Trigger) *circuit {
				c := newCircuit(unit, triggers.RetryPolicy{InitialBackoff: 1}, clock, m)
				if c == nil {
					t.Fatal("no circuit with open_on: [410]")
				}
				return c
			})
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := flatten(fams)
			worst, series := -1.0, 0
			for k, v := range got {
				if strings.HasPrefix(k, "changehook_circuit_state{") && strings.Contains(k, `trigger="`+tc.trigger+`"`) {
					worst, series = max(worst, v), series+1
				}
			}
			if worst != tc.worst {
				t.Errorf("highest changehook_circuit_state of %s = %v over %d series, want %v", tc.trigger, worst, series, tc.worst)
			}
			for k, want := range tc.want {
				if v, ok := got[k]; !ok || v != want {
					t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
				}
			}
		})
	}
}

// TestForgetCircuitState: ForgetCircuitState of a partition deletes that
// partition's changehook_circuit_state alone, of the trigger as configured
// every partition's (or the one series of an unpartitioned trigger); the
// transitions counter and the other triggers' series stay.
func TestForgetCircuitState(t *testing.T) {
	policy := triggers.CircuitPolicy{Failures: 5, OpenOn: triggers.StatusRules{"410"}}
	orders := &triggers.Trigger{Name: "orders", Partitions: 2, Circuit: policy}
	single := &triggers.Trigger{Name: "single", Circuit: policy}
	all := []*triggers.Trigger{orders.Partition(0), orders.Partition(1), single}
	for _, tc := range []struct {
		name   string
		forget *triggers.Trigger
		gone   []string // the changehook_circuit_state series deleted
	}{
		{"a partition", orders.Partition(1), []string{`{partition="1",trigger="orders"}`}},
		{"a partitioned trigger", orders, []string{`{partition="0",trigger="orders"}`, `{partition="1",trigger="orders"}`}},
		{"an unpartitioned trigger", single, []string{`{partition="0",trigger="single"}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			for _, unit := range all {
				c := newCircuit(unit, triggers.RetryPolicy{InitialBackoff: 1}, newFakeClock(), m)
				if !c.failed(410, "HTTP 410 Gone", "msg_probe", nil, 0) {
					t.Fatal("a 410 did not open the circuit")
				}
			}
			m.ForgetCircuitState(tc.forget)
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := flatten(fams)
			for _, unit := range all {
				k := `{partition="` + circuitPartition(unit) + `",trigger="` + unit.Name + `"}`
				_, present := got["changehook_circuit_state"+k]
				if want := !slices.Contains(tc.gone, k); present != want {
					t.Errorf("changehook_circuit_state%s present = %v, want %v", k, present, want)
				}
			}
			for _, trigger := range []string{"orders", "single"} {
				k := `changehook_circuit_transitions_total{to="open",trigger="` + trigger + `"}`
				if _, ok := got[k]; !ok {
					t.Errorf("%s deleted; the transitions count since the process started", k)
				}
			}
		})
	}
}
