package dispatcher

import (
	"maps"
	"sync"

	"github.com/changehook/changehook/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Delivery outcomes, the values of the outcome label of
// changehook_deliveries_total.
const (
	// OutcomeDelivered: a 2xx response was received.
	OutcomeDelivered = "delivered"
	// OutcomeDeadLettered: the event was given up on and stored as a dead letter.
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeDropped: the endpoint answered a status in retry.drop_on; the
	// event is done without a dead letter.
	OutcomeDropped = "dropped"
	// OutcomeFailed: the delivery ended without success and without a dead
	// letter (Deliver gave up). A delivery cut off by Close (a pause,
	// reload, shutdown or lease loss) records no outcome: its event is
	// delivered later, and counted then.
	OutcomeFailed = "failed"
)

// Metrics holds the dispatcher's Prometheus collectors and the same counters
// per trigger in memory (Counts), for callers that report them without
// reading Prometheus series back. One Metrics is shared by all dispatchers
// of a process; series are labelled by trigger name. A nil *Metrics records
// nothing.
type Metrics struct {
	deliveries  *prometheus.CounterVec
	attempts    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inflight    *prometheus.GaugeVec
	deadLetters *prometheus.CounterVec
	splits      *prometheus.CounterVec
	dlFailures  *prometheus.CounterVec
	circuit     *circuitMetrics // see circuit_metrics.go

	counts sync.Map // trigger name → *triggerCounts
}

// Counts are one trigger's delivery counters since its Metrics were created:
// the values of the trigger's Prometheus series.
type Counts struct {
	// Deliveries counts finished deliveries by outcome (OutcomeDelivered,
	// OutcomeDropped, OutcomeDeadLettered, OutcomeFailed); a delivery
	// canceled by Close is not finished and not counted. Never nil.
	Deliveries map[string]uint64
	// Attempts counts delivery attempts by result: "ok" or the failure
	// reason (see Reason*); never nil.
	Attempts map[string]uint64
	// DeadLetters counts the dead letters stored.
	DeadLetters uint64
	// BatchSplits counts the batch requests refused as too large (413)
	// and sent again as two.
	BatchSplits uint64
	// InFlight is the number of deliveries being attempted now.
	InFlight int64
}

// triggerCounts are one trigger's Counts, updated under mu, and its
// series, each looked up by its labels once (under mu, at its first use):
// a lookup hashes the label values and takes the vector's lock, which per
// event and series adds up. Forget drops them with the counts.
type triggerCounts struct {
	mu sync.Mutex
	c  Counts

	inflight    prometheus.Gauge
	duration    prometheus.Observer
	deadLetters prometheus.Counter
	splits      prometheus.Counter
	deliveries  map[string]prometheus.Counter // by outcome
	attempts    map[string]prometheus.Counter // by reason
	dlFailures  map[string]prometheus.Counter // by DeadLetterFailReason
}

// Counts returns a copy of trigger's counters (all zero for a trigger that
// recorded nothing, or a nil *Metrics).
func (m *Metrics) Counts(trigger string) Counts {
	out := Counts{Deliveries: map[string]uint64{}, Attempts: map[string]uint64{}}
	if m == nil {
		return out
	}
	v, ok := m.counts.Load(trigger)
	if !ok {
		return out
	}
	tc := v.(*triggerCounts)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	maps.Copy(out.Deliveries, tc.c.Deliveries)
	maps.Copy(out.Attempts, tc.c.Attempts)
	out.DeadLetters, out.InFlight, out.BatchSplits = tc.c.DeadLetters, tc.c.InFlight, tc.c.BatchSplits
	return out
}

// of returns trigger's counters and series, created at first use.
func (m *Metrics) of(trigger string) *triggerCounts {
	v, ok := m.counts.Load(trigger)
	if !ok {
		v, _ = m.counts.LoadOrStore(trigger, &triggerCounts{
			c:          Counts{Deliveries: map[string]uint64{}, Attempts: map[string]uint64{}},
			deliveries: map[string]prometheus.Counter{}, attempts: map[string]prometheus.Counter{},
			dlFailures: map[string]prometheus.Counter{},
		})
	}
	return v.(*triggerCounts)
}

// counter returns byLabel[label] (the caller holds the trigger's mu),
// looked up in vec with labels (trigger, label) the first time.
func counter(byLabel map[string]prometheus.Counter, vec *prometheus.CounterVec, trigger, label string) prometheus.Counter {
	c := byLabel[label]
	if c == nil {
		c = vec.WithLabelValues(trigger, label)
		byLabel[label] = c
	}
	return c
}

// NewMetrics creates the dispatcher collectors and registers them with reg
// (nil: not registered). Collectors already registered with reg (a second
// NewMetrics on the same registry) are reused rather than reported as
// errors, so NewMetrics never panics. The series are:
//
//	changehook_deliveries_total{trigger,outcome}     delivered | dropped | dead_lettered | failed
//	changehook_delivery_attempts_total{trigger,reason} "ok" or a failure reason
//	changehook_delivery_duration_seconds{trigger}    histogram, submit → done
//	changehook_inflight{trigger}                     deliveries being attempted
//	changehook_dead_letters_total{trigger}           dead letters stored
//	changehook_batch_splits_total{trigger}           batches refused as too large (413) and sent as two
//	changehook_dead_letter_store_failures_total{trigger,reason} failed tries to store a dead letter, by DeadLetterFailReasons
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_deliveries_total",
			Help: "Events whose delivery ended, by outcome (delivered, dropped, dead_lettered, failed).",
		}, []string{"trigger", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_delivery_attempts_total",
			Help: "HTTP delivery attempts, by result: ok or the failure reason.",
		}, []string{"trigger", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "changehook_delivery_duration_seconds",
			Help:    "Time from an event's submission to the end of its delivery, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}, []string{"trigger"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "changehook_inflight",
			Help: "Deliveries currently being attempted.",
		}, []string{"trigger"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_dead_letters_total",
			Help: "Events stored as dead letters.",
		}, []string{"trigger"}),
		splits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_batch_splits_total",
			Help: "Batch requests the endpoint refused as too large (413) and that were sent again as two requests of half the events each.",
		}, []string{"trigger"}),
		dlFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "changehook_dead_letter_store_failures_total",
			Help: "Failed tries to store a dead letter, by reason (too_large, unavailable, unauthorized, lease_lost, other); the event holds the trigger's checkpoint until its dead letter is stored.",
		}, []string{"trigger", "reason"}),
	}
	m.circuit = newCircuitMetrics(reg)
	if reg == nil {
		return m
	}
	m.deliveries = metrics.Register(reg, m.deliveries)
	m.attempts = metrics.Register(reg, m.attempts)
	m.duration = metrics.Register(reg, m.duration)
	m.inflight = metrics.Register(reg, m.inflight)
	m.deadLetters = metrics.Register(reg, m.deadLetters)
	m.splits = metrics.Register(reg, m.splits)
	m.dlFailures = metrics.Register(reg, m.dlFailures)
	return m
}

func (m *Metrics) delivery(trigger, outcome string, seconds float64) {
	if m == nil {
		return
	}
	tc := m.of(trigger)
	tc.mu.Lock()
	tc.c.Deliveries[outcome]++
	c := counter(tc.deliveries, m.deliveries, trigger, outcome)
	var o prometheus.Observer
	if seconds >= 0 {
		if tc.duration == nil {
			tc.duration = m.duration.WithLabelValues(trigger)
		}
		o = tc.duration
	}
	tc.mu.Unlock()
	c.Inc()
	if o != nil {
		o.Observe(seconds)
	}
}

// deliveryBatch records n finished deliveries of trigger with one outcome (a
// batch's events): the series are looked up once, not per event. Each
// event's duration, when seconds is given, is seconds(i) (skipped when
// negative).
func (m *Metrics) deliveryBatch(trigger, outcome string, n int, seconds func(i int) float64) {
	if m == nil || n <= 0 {
		return
	}
	tc := m.of(trigger)
	tc.mu.Lock()
	tc.c.Deliveries[outcome] += uint64(n)
	c := counter(tc.deliveries, m.deliveries, trigger, outcome)
	if seconds != nil && tc.duration == nil {
		tc.duration = m.duration.WithLabelValues(trigger)
	}
	h := tc.duration
	tc.mu.Unlock()
	c.Add(float64(n))
	if seconds == nil {
		return
	}
	for i := range n {
		if s := seconds(i); s >= 0 {
			h.Observe(s)
		}
	}
}

func (m *Metrics) attempt(trigger, reason string) {
	if m == nil {
		return
	}
	if reason == "" {
		reason = "ok"
	}
	tc := m.of(trigger)
	tc.mu.Lock()
	tc.c.Attempts[reason]++
	c := counter(tc.attempts, m.attempts, trigger, reason)
	tc.mu.Unlock()
	c.Inc()
}

func (m *Metrics) inflightAdd(trigger string, delta float64) {
	if m == nil {
		return
	}
	tc := m.of(trigger)
	tc.mu.Lock()
	tc.c.InFlight += int64(delta)
	if tc.inflight == nil {
		tc.inflight = m.inflight.WithLabelValues(trigger)
	}
	g := tc.inflight
	tc.mu.Unlock()
	g.Add(delta)
}

func (m *Metrics) deadLettered(trigger string) {
	if m == nil {
		return
	}
	tc := m.of(trigger)
	tc.mu.Lock()
	tc.c.DeadLetters++
	if tc.deadLetters == nil {
		tc.deadLetters = m.deadLetters.WithLabelValues(trigger)
	}
	c := tc.deadLetters
	tc.mu.Unlock()
	c.Inc()
}

// deadLetterStoreFailed counts a failed try to store a dead letter of
// trigger, by reason (one of DeadLetterFailReasons).
func (m *Metrics) deadLetterStoreFailed(trigger, reason string) {
	if m == nil {
		return
	}
	tc := m.of(trigger)
	tc.mu.Lock()
	c := counter(tc.dlFailures, m.dlFailures, trigger, reason)
	tc.mu.Unlock()
	c.Inc()
}

// DeadLettered counts one dead letter of trigger stored outside a
// dispatcher (changehook skip): in changehook_dead_letters_total, in
// changehook_deliveries_total{outcome="dead_lettered"} (without a
// duration) and in the trigger's Counts, as a dead letter a dispatcher
// stores is counted.
func (m *Metrics) DeadLettered(trigger string) {
	m.deadLettered(trigger)
	m.delivery(trigger, OutcomeDeadLettered, -1)
}

// batchSplit records a batch request of trigger refused as too large and
// sent again as two.
func (m *Metrics) batchSplit(trigger string) {
	if m == nil {
		return
	}
	tc := m.of(trigger)
	tc.mu.Lock()
	tc.c.BatchSplits++
	if tc.splits == nil {
		tc.splits = m.splits.WithLabelValues(trigger)
	}
	c := tc.splits
	tc.mu.Unlock()
	c.Inc()
}

// initReasons are the reason label values of attempts (besides "ok"):
// every Reason* constant, as README's metrics section lists them.
var initReasons = []string{ReasonClientError, ReasonServerError, ReasonRateLimited, ReasonTimeout, ReasonConnection,
	ReasonRedirect, ReasonCanceled, ReasonPayload, ReasonDropped, ReasonBlocked, ReasonAuth, ReasonTLS}

// Init creates every series of trigger at zero (each outcome, "ok" and each
// failure reason SendOnce records, the duration histogram, in-flight, dead
// letters, batch splits and each reason of failing to store a dead
// letter), so that rates and alerts work before the first delivery.
func (m *Metrics) Init(trigger string) {
	if m == nil {
		return
	}
	for _, o := range []string{OutcomeDelivered, OutcomeDropped, OutcomeDeadLettered, OutcomeFailed} {
		m.deliveries.WithLabelValues(trigger, o)
	}
	m.attempts.WithLabelValues(trigger, "ok")
	for _, r := range initReasons {
		m.attempts.WithLabelValues(trigger, r)
	}
	m.duration.WithLabelValues(trigger)
	m.inflight.WithLabelValues(trigger)
	m.deadLetters.WithLabelValues(trigger)
	m.splits.WithLabelValues(trigger)
	for _, r := range DeadLetterFailReasons {
		m.dlFailures.WithLabelValues(trigger, r)
	}
}

// Forget deletes every series and counter of trigger, its circuit's
// included (a trigger removed from the configuration).
func (m *Metrics) Forget(trigger string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"trigger": trigger}
	m.deliveries.DeletePartialMatch(l)
	m.attempts.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.inflight.DeletePartialMatch(l)
	m.deadLetters.DeletePartialMatch(l)
	m.splits.DeletePartialMatch(l)
	m.dlFailures.DeletePartialMatch(l)
	m.circuitForget(trigger)
	m.counts.Delete(trigger)
}
