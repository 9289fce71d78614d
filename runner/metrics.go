package runner

import (
	"strconv"

	"github.com/changehook/changehook/internal/metrics"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the watch loop's Prometheus metrics, labelled by trigger and
// partition ("0" for an unpartitioned trigger):
// changehook_events_received_total, changehook_events_reassembled_total,
// changehook_checkpoint_lag_seconds, changehook_trigger_up and
// changehook_checkpoint_save_failures_total (also by reason,
// CheckpointFailReasons). A nil *Metrics records nothing.
type Metrics struct {
	eventsReceived    *prometheus.CounterVec
	eventsReassembled *prometheus.CounterVec
	checkpointLag     *prometheus.GaugeVec
	up                *prometheus.GaugeVec
	saveFailures      *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered). Registering twice with the same registry reuses the
// collectors already registered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		eventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_events_received_total",
			Help: "Change events read from the trigger's change stream and handed to its dispatcher.",
		}, []string{"trigger", "partition"}),
		eventsReassembled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_events_reassembled_total",
			Help: "Change events larger than 16 MiB read in fragments ($changeStreamSplitLargeEvent) and reassembled; each also counts in changehook_events_received_total.",
		}, []string{"trigger", "partition"}),
		checkpointLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "changehook_checkpoint_lag_seconds",
			Help: "Age of the oldest received event not yet covered by the trigger's saved checkpoint (0: caught up, or not running here; paused: the value at the pause).",
		}, []string{"trigger", "partition"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "changehook_trigger_up",
			Help: "1 while the trigger's change stream is open, 0 otherwise.",
		}, []string{"trigger", "partition"}),
		saveFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_checkpoint_save_failures_total",
			Help: "Failed checkpoint saves, by reason (unavailable, unauthorized, lease_lost, other); deliveries go on, but a restart delivers again every event since the last successful save.",
		}, []string{"trigger", "partition", "reason"}),
	}
	if reg != nil {
		m.eventsReceived = metrics.Register(reg, m.eventsReceived)
		m.eventsReassembled = metrics.Register(reg, m.eventsReassembled)
		m.checkpointLag = metrics.Register(reg, m.checkpointLag)
		m.up = metrics.Register(reg, m.up)
		m.saveFailures = metrics.Register(reg, m.saveFailures)
	}
	return m
}

// partitionLabel is the partition label of t: its index, "0" when it is
// not partitioned.
func partitionLabel(t *triggers.Trigger) string {
	i, _ := t.PartitionIndex()
	return strconv.Itoa(i)
}

// metricCounter is one series of a counter, looked up once (nil: none).
type metricCounter struct{ c prometheus.Counter }

// Inc adds one.
func (c metricCounter) Inc() {
	if c.c != nil {
		c.c.Inc()
	}
}

// metricGauge is one series of a gauge, looked up once (nil: none).
type metricGauge struct{ g prometheus.Gauge }

// Set sets the gauge.
func (g metricGauge) Set(v float64) {
	if g.g != nil {
		g.g.Set(v)
	}
}

// series returns t's events-received counter, checkpoint-lag gauge and
// events-reassembled counter, for a watch loop to update per event without
// a label lookup each time.
// (A reload that removes the trigger deletes the series after its watcher
// stopped; a watcher of the same name started later looks them up again.)
func (m *Metrics) series(t *triggers.Trigger) (metricCounter, metricGauge, metricCounter) {
	if m == nil {
		return metricCounter{}, metricGauge{}, metricCounter{}
	}
	p := partitionLabel(t)
	return metricCounter{m.eventsReceived.WithLabelValues(t.Name, p)}, metricGauge{m.checkpointLag.WithLabelValues(t.Name, p)},
		metricCounter{m.eventsReassembled.WithLabelValues(t.Name, p)}
}

func (m *Metrics) setUp(t *triggers.Trigger, up bool) {
	if m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.up.WithLabelValues(t.Name, partitionLabel(t)).Set(v)
	}
}

// initTrigger creates the series of t (a trigger, or one partition) at
// zero.
func (m *Metrics) initTrigger(t *triggers.Trigger) {
	if m != nil {
		m.eventsReceived.WithLabelValues(t.Name, partitionLabel(t))
		m.eventsReassembled.WithLabelValues(t.Name, partitionLabel(t))
		m.checkpointLag.WithLabelValues(t.Name, partitionLabel(t))
		m.up.WithLabelValues(t.Name, partitionLabel(t))
		for _, reason := range CheckpointFailReasons {
			m.saveFailures.WithLabelValues(t.Name, partitionLabel(t), reason)
		}
	}
}

// checkpointSaveFailed counts a failed checkpoint save of t by reason.
func (m *Metrics) checkpointSaveFailed(t *triggers.Trigger, reason string) {
	if m != nil {
		m.saveFailures.WithLabelValues(t.Name, partitionLabel(t), reason).Inc()
	}
}

// forget deletes trigger's series (a trigger removed by a reload).
func (m *Metrics) forget(trigger string) {
	if m != nil {
		l := prometheus.Labels{"trigger": trigger}
		m.eventsReceived.DeletePartialMatch(l)
		m.eventsReassembled.DeletePartialMatch(l)
		m.checkpointLag.DeletePartialMatch(l)
		m.up.DeletePartialMatch(l)
		m.saveFailures.DeletePartialMatch(l)
	}
}
