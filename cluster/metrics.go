package cluster

import (
	"strconv"

	"github.com/changehook/changehook/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// clusterMetrics are the cluster's Prometheus metrics: changehook_lease_owned,
// changehook_lease_transitions_total, changehook_members and
// changehook_config_drift. They always record; they are exported only when
// a registry was given.
type clusterMetrics struct {
	leaseOwned  *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	members     prometheus.Gauge
	drift       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *clusterMetrics {
	m := &clusterMetrics{
		leaseOwned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "changehook_lease_owned",
			Help: "1 while this instance holds the lease of the trigger partition, 0 otherwise.",
		}, []string{"trigger", "partition"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_lease_transitions_total",
			Help: "Lease changes of this instance by kind: acquired, released, handoff (asked to drain for the preferred member), lost (self-fenced).",
		}, []string{"trigger", "partition", "kind"}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "changehook_members",
			Help: "Live cluster members (instances heartbeating on this state database) as last seen by this instance.",
		}),
		drift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "changehook_config_drift",
			Help: "1 when this instance's definition of the trigger differs from the majority of live members (it then does not run it).",
		}, []string{"trigger"}),
	}
	if reg != nil {
		m.leaseOwned = metrics.Register(reg, m.leaseOwned)
		m.transitions = metrics.Register(reg, m.transitions)
		m.members = metrics.Register(reg, m.members)
		m.drift = metrics.Register(reg, m.drift)
	}
	return m
}

func (m *clusterMetrics) owned(trigger string, partition int, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.leaseOwned.WithLabelValues(trigger, strconv.Itoa(partition)).Set(v)
}

func (m *clusterMetrics) transition(trigger string, partition int, kind string) {
	m.transitions.WithLabelValues(trigger, strconv.Itoa(partition), kind).Inc()
}

func (m *clusterMetrics) setDrift(trigger string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.drift.WithLabelValues(trigger).Set(v)
}

// forget deletes trigger's series (a trigger a reload removed).
func (m *clusterMetrics) forget(trigger string) {
	m.forgetPartitions(trigger)
	m.forgetDrift(trigger)
}

// forgetDrift deletes trigger's drift series (a trigger a reload removed
// or disabled: this member announces no definition of it).
func (m *clusterMetrics) forgetDrift(trigger string) {
	m.drift.DeleteLabelValues(trigger)
}

// forgetPartitions deletes trigger's per-partition series (a reload changed
// its partitions): partition "0" of the new partitioning is another unit
// than partition "0" of the old one, so its series start at zero.
func (m *clusterMetrics) forgetPartitions(trigger string) {
	l := prometheus.Labels{"trigger": trigger}
	m.leaseOwned.DeletePartialMatch(l)
	m.transitions.DeletePartialMatch(l)
}
