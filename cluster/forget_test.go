package cluster

import (
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
)

// partitionedConfig is testConfig of the triggers of parts, each with its
// number of partitions (1: not partitioned).
func partitionedConfig(t *testing.T, parts map[string]int) *triggers.Config {
	t.Helper()
	cfg := testConfig(t, slices.Sorted(maps.Keys(parts))...)
	for _, tr := range cfg.Triggers {
		tr.Partitions = parts[tr.Name]
	}
	return cfg
}

// seriesKey names a series of the cluster's metrics by its labels.
type seriesKey struct{ name, trigger, partition, kind string }

// clusterSeries returns every series reg exports, by name and labels.
func clusterSeries(t *testing.T, reg *prometheus.Registry) map[seriesKey]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[seriesKey]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			k := seriesKey{name: f.GetName()}
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "trigger":
					k.trigger = l.GetValue()
				case "partition":
					k.partition = l.GetValue()
				case "kind":
					k.kind = l.GetValue()
				}
			}
			switch {
			case m.Gauge != nil:
				out[k] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[k] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestReloadForgetsLeaseSeries: a reload that removes a trigger deletes its
// lease, transition and drift series, and one that changes a trigger's
// partitions deletes its per-partition series; an ownership released after
// the reload (its lease loop stopped late) does not create them again. The
// series of the units still held are left as they are, and the units a
// reload adds, a trigger added again included, start at zero.
func TestReloadForgetsLeaseSeries(t *testing.T) {
	tests := []struct {
		name          string
		before, after map[string]int // trigger → partitions
		late          bool           // the units gone are released after the reload
	}{
		{"trigger removed", map[string]int{"orders": 1, "users": 1}, map[string]int{"users": 1}, false},
		{"trigger removed, lease released after the reload", map[string]int{"orders": 1, "users": 1}, map[string]int{"users": 1}, true},
		{"partitions reduced", map[string]int{"orders": 4, "users": 1}, map[string]int{"orders": 2, "users": 1}, false},
		{"partitions reduced, leases released after the reload", map[string]int{"orders": 4, "users": 1}, map[string]int{"orders": 2, "users": 1}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			reg := prometheus.NewRegistry()
			before := partitionedConfig(t, tc.before)
			m, err := New(newTestStore(t), before, Options{InstanceID: "a", Clock: newFakeClock(), Registry: reg,
				Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
			if err != nil {
				t.Fatal(err)
			}
			held := map[string]*Ownership{} // key → ownership
			// acquire takes the units of cfg not held yet.
			acquire := func(cfg *triggers.Config) {
				t.Helper()
				type result struct {
					key string
					o   *Ownership
				}
				got := make(chan result, triggers.MaxPartitions*len(cfg.Triggers))
				waiting := 0
				for _, tr := range cfg.Triggers {
					n := max(tr.Partitions, 1)
					for i := range n {
						key := Key(tr.Name, i, n)
						if held[key] != nil {
							continue
						}
						waiting++
						go func() {
							o, _ := m.Await(ctx, tr.Name, i, n)
							got <- result{key, o}
						}()
					}
				}
				waitRegistered(t, m, waiting)
				m.round(ctx)
				for range waiting {
					r := <-got
					if r.o == nil {
						t.Fatalf("%s not acquired", r.key)
					}
					held[r.key] = r.o
				}
			}
			// reload applies cfg as a clustered reload does: the lease
			// loops of the units gone release their leases (or, when
			// late, only after the Manager took the new triggers), then
			// the new units are acquired.
			reload := func(cfg *triggers.Config) {
				t.Helper()
				keep := map[string]bool{}
				for _, tr := range cfg.Triggers {
					for _, u := range tr.Units() {
						keep[u.Key()] = true
					}
				}
				var gone []*Ownership
				for key, o := range held {
					if !keep[key] {
						gone = append(gone, o)
						delete(held, key)
					}
				}
				if !tc.late {
					for _, o := range gone {
						o.Release(ctx)
					}
				}
				m.SetTriggers(cfg)
				if tc.late {
					for _, o := range gone {
						o.Release(ctx)
					}
				}
				acquire(cfg)
			}
			// check: exactly the held units have lease series, each
			// owned and acquired once (nothing counted before a reload
			// that removed the unit survives it), and exactly the
			// configured triggers have a drift series.
			check := func(cfg *triggers.Config) {
				t.Helper()
				want := map[seriesKey]float64{}
				for _, tr := range cfg.Triggers {
					want[seriesKey{"changehook_config_drift", tr.Name, "", ""}] = 0
				}
				for _, o := range held {
					p := strconv.Itoa(o.part)
					want[seriesKey{"changehook_lease_owned", o.trigger, p, ""}] = 1
					want[seriesKey{"changehook_lease_transitions_total", o.trigger, p, "acquired"}] = 1
				}
				got := clusterSeries(t, reg)
				for k, v := range got {
					if k.trigger == "" {
						continue // changehook_members
					}
					if w, ok := want[k]; !ok {
						t.Errorf("%+v = %v left, want no such series", k, v)
					} else if v != w {
						t.Errorf("%+v = %v, want %v", k, v, w)
					}
				}
				for k, w := range want {
					if _, ok := got[k]; !ok {
						t.Errorf("%+v missing, want %v", k, w)
					}
				}
			}

			acquire(before)
			check(before)
			after := partitionedConfig(t, tc.after)
			reload(after)
			check(after)
			// Back to the first configuration: the trigger added again,
			// or partitioned again, starts at zero.
			reload(before)
			check(before)
		})
	}
}

// TestDisabledTriggerHasNoDriftSeries: a reload that disables a trigger
// (still in the file) deletes its drift series: this member announces no
// definition of it, so a drift it had must not stay exported.
func TestDisabledTriggerHasNoDriftSeries(t *testing.T) {
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, "orders", "users")
	m, err := New(newTestStore(t), cfg, Options{InstanceID: "a", Clock: newFakeClock(), Registry: reg,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	m.round(ctx)
	m.met.setDrift("orders", true) // as a round finding the majority elsewhere leaves it
	off := testConfig(t, "orders", "users")
	off.Triggers[0].Enabled = false
	m.SetTriggers(off)
	m.round(ctx)
	got := clusterSeries(t, reg)
	if v, ok := got[seriesKey{"changehook_config_drift", "orders", "", ""}]; ok {
		t.Errorf("drift series of the disabled trigger = %v, want none", v)
	}
	if _, ok := got[seriesKey{"changehook_config_drift", "users", "", ""}]; !ok {
		t.Error("drift series of the enabled trigger missing")
	}
}
