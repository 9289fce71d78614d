package runner_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// circuitStoppedYAML: a 503 opens the circuit at once, and its probe
// comes a minute later, after every test below is over.
const circuitStoppedYAML = `
triggers:
  - name: held
    database: shop
    collection: a
    enabled: true
    partitions: 1
    retry: { max_attempts: 1, initial_backoff: 1m, max_backoff: 1m }
    circuit: { open_on: [503], max_probe_interval: 1m }
    webhook: { url: "${HOOK_URL}" }
`

// downHook is an endpoint answering 503 until up is set, then 204.
func downHook(t *testing.T) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	up := new(atomic.Bool)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if up.Load() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(hook.Close)
	return hook, up
}

// TestCircuitShownOnlyWhileRunningHere: a trigger whose circuit is open
// (changehook_circuit_state 2, status circuit open) and that then stops
// running here — disabled by a reload, stopped (what a cluster member does
// when it hands the trigger to another member or loses its lease), paused
// — shows no circuit and exports no circuit state: its dispatcher is
// closed, no probe is sent, and an alert on an open circuit must not fire
// for good on a member that no longer runs it. Run again, it starts with a
// closed circuit: the held event is sent at once, not at the old
// circuit's next probe (a minute later).
func TestCircuitShownOnlyWhileRunningHere(t *testing.T) {
	t.Parallel()
	reload := func(t *testing.T, r *runner.Runner, url string, enabled bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		yaml := circuitStoppedYAML
		if !enabled {
			yaml = strings.Replace(yaml, "enabled: true", "enabled: false", 1)
		}
		if _, err := r.Reload(ctx, parseTrigger(t, yaml, url)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		stop  func(t *testing.T, r *runner.Runner, url string)
		state runner.State
		again func(t *testing.T, r *runner.Runner, url string)
	}{
		{
			name:  "disabled by a reload",
			stop:  func(t *testing.T, r *runner.Runner, url string) { reload(t, r, url, false) },
			state: runner.StateDisabled,
			again: func(t *testing.T, r *runner.Runner, url string) { reload(t, r, url, true) },
		},
		{
			name: "stopped",
			stop: func(t *testing.T, r *runner.Runner, _ string) {
				ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
				defer cancel()
				if err := r.Stop(ctx, "held"); err != nil {
					t.Fatal(err)
				}
			},
			state: runner.StateStopped,
			again: func(t *testing.T, r *runner.Runner, _ string) {
				if err := r.Start("held"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "paused",
			stop: func(t *testing.T, r *runner.Runner, _ string) {
				if err := r.Pause("held", "endpoint down", "test"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "paused watcher stopped", func() bool { return !statusOf(t, r, "held").StreamOpen })
			},
			state: runner.StatePaused,
			again: func(t *testing.T, r *runner.Runner, _ string) {
				if _, err := r.Resume(t.Context(), "held", runner.ResumeFrom{}); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			hook, up := downHook(t)
			reg := prometheus.NewRegistry()
			r := startRunner(t, parseTrigger(t, circuitStoppedYAML, hook.URL), client, runner.Options{Registry: reg, ShutdownGrace: 50 * time.Millisecond})
			waitFor(t, "runner ready", r.Ready)
			insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
			gauge := func() (float64, bool) {
				return metricValue(t, reg, "changehook_circuit_state", map[string]string{"trigger": "held", "partition": "0"})
			}
			waitFor(t, "circuit open", func() bool {
				c := statusOf(t, r, "held").Circuit
				v, _ := gauge()
				return c != nil && c.State == dispatcher.CircuitOpen && v == 2
			})

			tc.stop(t, r, hook.URL)
			waitFor(t, string(tc.state), func() bool { return statusOf(t, r, "held").State == tc.state })
			// Stop and Reload return once the watcher ended; a pause does
			// not wait for it.
			waitFor(t, "changehook_circuit_state{trigger=held} deleted (the trigger no longer runs here)", func() bool { _, ok := gauge(); return !ok })
			if st := statusOf(t, r, "held"); st.Circuit != nil {
				t.Errorf("%s trigger shows circuit %+v; want none", st.State, *st.Circuit)
			}

			up.Store(true)
			tc.again(t, r, hook.URL)
			waitFor(t, "the held event delivered by a new circuit", func() bool {
				st := statusOf(t, r, "held")
				v, ok := gauge()
				return st.Deliveries[dispatcher.OutcomeDelivered] == 1 && st.Circuit != nil && st.Circuit.State == dispatcher.CircuitClosed && ok && v == 0
			})
		})
	}
}

// TestCircuitOfAPartitionStoppedHere: a partitioned trigger shows the most
// open circuit of its partitions, but only of those that run here: once
// the partition whose circuit is open stops here (its lease handed to
// another member), the trigger shows the running partition's closed
// circuit, not the stopped one's, and that partition's
// changehook_circuit_state series is deleted while the other's stays.
func TestCircuitOfAPartitionStoppedHere(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	hook, _ := downHook(t)
	reg := prometheus.NewRegistry()
	yaml := strings.Replace(circuitStoppedYAML, "partitions: 1", "partitions: 2\n    ordering: per_document", 1)
	r := startRunner(t, parseTrigger(t, yaml, hook.URL), client, runner.Options{Registry: reg, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "runner ready", r.Ready)
	// One event: one partition's circuit opens, the other's stays closed.
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	open := -1
	waitFor(t, "a partition's circuit open", func() bool {
		for i, p := range statusOf(t, r, "held").Partitions {
			if p.Circuit != nil && p.Circuit.State == dispatcher.CircuitOpen {
				open = i
				return true
			}
		}
		return false
	})
	other := 1 - open
	gauge := func(p int) (float64, bool) {
		return metricValue(t, reg, "changehook_circuit_state", map[string]string{"trigger": "held", "partition": strconv.Itoa(p)})
	}
	if v, ok := gauge(open); !ok || v != 2 {
		t.Fatalf("changehook_circuit_state of the open partition %d = %v (present %v), want 2", open, v, ok)
	}

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := r.Stop(ctx, triggers.PartitionKey("held", open, 2)); err != nil {
		t.Fatal(err)
	}
	st := statusOf(t, r, "held")
	if st.Circuit == nil || st.Circuit.State != dispatcher.CircuitClosed {
		t.Errorf("trigger circuit = %+v after its open partition %d stopped here; want partition %d's, closed", st.Circuit, open, other)
	}
	if p := st.Partitions[open]; p.State != runner.StateStopped || p.Circuit != nil {
		t.Errorf("stopped partition %d: state %s, circuit %+v; want stopped without a circuit", open, p.State, p.Circuit)
	}
	if v, ok := gauge(open); ok {
		t.Errorf("changehook_circuit_state of the stopped partition %d = %v; want no series", open, v)
	}
	if v, ok := gauge(other); !ok || v != 0 {
		t.Errorf("changehook_circuit_state of the running partition %d = %v (present %v), want 0", other, v, ok)
	}
}
