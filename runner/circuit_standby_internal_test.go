package runner

import (
	"testing"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/triggers"
)

// TestClusterStateShowsNoCircuitOfAUnitNotRunHere: a clustered unit whose
// watcher still runs on a lease that is no longer valid (a member woken
// after its lease expired, until its lease driver stops the unit) shows
// standby, or starting while this member waits for the lease, without the
// open circuit of that watcher: no delivery or probe may start under the
// lapsed lease, and the member that runs the unit now has its own
// circuit. A unit run under a valid lease keeps its circuit.
func TestClusterStateShowsNoCircuitOfAUnitNotRunHere(t *testing.T) {
	for _, tc := range []struct {
		name        string
		valid       bool // the lease
		standby     bool // another member is meant to run the unit
		wantState   State
		wantCircuit bool
	}{
		{name: "lease lapsed, another member runs it", standby: true, wantState: StateStandby},
		{name: "lease lapsed, this member waits for it", wantState: StateStarting},
		{name: "lease valid", valid: true, wantState: StateRetrying, wantCircuit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := new(switchLease)
			l.set(tc.valid)
			r := &Runner{opts: Options{Clustered: true, Standby: func(string) bool { return tc.standby }}}
			s := &slot{t: &triggers.Trigger{Name: "t"}, lease: l}
			st := r.clusterState(s, TriggerStatus{Name: "t", State: StateRetrying, Retrying: true,
				Circuit: &dispatcher.CircuitStatus{State: dispatcher.CircuitOpen}})
			if st.State != tc.wantState || (st.Circuit != nil) != tc.wantCircuit {
				t.Errorf("state %s, circuit %+v; want %s, circuit shown %v", st.State, st.Circuit, tc.wantState, tc.wantCircuit)
			}
		})
	}
}
