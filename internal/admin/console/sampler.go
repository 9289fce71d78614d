package console

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/runner"
)

// sample is one reading of a trigger's cumulative counters.
type sample struct {
	at                      time.Time
	events                  uint64
	deliveries              uint64
	waitStream, waitDeliver time.Duration // runner.Waits (0: none reported)
}

// cpuSample is one reading of the process's CPU time.
type cpuSample struct {
	at   time.Time
	used time.Duration
}

// ring holds the newest samples of one series (a trigger's, the
// process's CPU time); it never grows past its capacity.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](size int) *ring[T] { return &ring[T]{buf: make([]T, size)} }

func (r *ring[T]) add(s T) {
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// ordered returns the samples oldest first.
func (r *ring[T]) ordered() []T {
	if !r.full {
		return append([]T(nil), r.buf[:r.next]...)
	}
	return append(append([]T(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// sampler keeps a bounded ring of counter samples per trigger — at most
// one ring per trigger the runner reports, each of at most size samples —
// and one of the process's CPU time.
type sampler struct {
	size  int
	mu    sync.Mutex
	rings map[string]*ring[sample]
	cpu   *ring[cpuSample]
}

func newSampler(size int) *sampler {
	return &sampler{size: size, rings: map[string]*ring[sample]{}, cpu: newRing[cpuSample](size)}
}

// recordCPU adds a sample of the process's CPU time used so far, taken at
// now.
func (s *sampler) recordCPU(now time.Time, used time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cpu.add(cpuSample{at: now, used: used})
}

// CPUUse is how much CPU the process used over the console's samples.
type CPUUse struct {
	// Over is the time the samples span.
	Over time.Duration
	// Used is the CPUs the process kept busy on average over Over (CPU
	// time over wall time), Of the CPUs it may use (GOMAXPROCS).
	Used float64
	Of   int
}

// Near reports whether Used is at least nine tenths of Of: the process
// may then be short of CPU, whatever its triggers' waits say.
func (u CPUUse) Near() bool { return u.Used >= 0.9*float64(u.Of) }

// cpuUse returns the process's CPU use from its oldest CPU sample to its
// newest, of the of CPUs it may use; ok is false with fewer than two
// samples or when the CPU time went down in between.
func (s *sampler) cpuUse(of int) (u CPUUse, ok bool) {
	s.mu.Lock()
	smp := s.cpu.ordered()
	s.mu.Unlock()
	if len(smp) < 2 {
		return u, false
	}
	first, last := smp[0], smp[len(smp)-1]
	u.Over, u.Of = last.at.Sub(first.at), of
	if u.Over <= 0 || last.used < first.used {
		return CPUUse{}, false
	}
	u.Used = (last.used - first.used).Seconds() / u.Over.Seconds()
	return u, true
}

// record adds one sample per trigger in sts, taken at now, and forgets the
// triggers that are no longer reported.
func (s *sampler) record(now time.Time, sts []runner.TriggerStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(sts))
	for _, st := range sts {
		seen[st.Name] = true
		r := s.rings[st.Name]
		if r == nil {
			r = newRing[sample](s.size)
			s.rings[st.Name] = r
		}
		var d uint64
		for _, n := range st.Deliveries {
			d += n
		}
		smp := sample{at: now, events: st.EventsReceived, deliveries: d}
		if w := st.Waits; w != nil {
			smp.waitStream, smp.waitDeliver = w.Stream, w.Delivery
		}
		r.add(smp)
	}
	for name := range s.rings {
		if !seen[name] {
			delete(s.rings, name)
		}
	}
}

// samples returns a copy of trigger's samples, oldest first (nil when it
// has none).
func (s *sampler) samples(trigger string) []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rings[trigger]; r != nil {
		return r.ordered()
	}
	return nil
}

// rates returns the events/s and deliveries/s between consecutive samples
// of trigger, oldest first (nil with fewer than two samples). A counter that
// went down (the trigger restarted) counts as 0 for that interval.
func (s *sampler) rates(trigger string) (events, deliveries []float64) {
	smp := s.samples(trigger)
	for i := 1; i < len(smp); i++ {
		dt := smp[i].at.Sub(smp[i-1].at).Seconds()
		if dt <= 0 {
			continue
		}
		events = append(events, rate(smp[i-1].events, smp[i].events, dt))
		deliveries = append(deliveries, rate(smp[i-1].deliveries, smp[i].deliveries, dt))
	}
	return events, deliveries
}

// WaitShares is the share of the time a trigger's watch loop waited for
// the change stream and for delivery (runner.Waits) over the console's
// samples of it.
type WaitShares struct {
	// Over is the time the samples span.
	Over time.Duration
	// Stream and Delivery are the shares of Over, 0 to 1.
	Stream, Delivery float64
}

// waitShares returns trigger's wait shares from its oldest sample to its
// newest; ok is false with fewer than two samples, or when a figure went
// down in between (the trigger was repartitioned).
func (s *sampler) waitShares(trigger string) (w WaitShares, ok bool) {
	smp := s.samples(trigger)
	if len(smp) < 2 {
		return w, false
	}
	first, last := smp[0], smp[len(smp)-1]
	w.Over = last.at.Sub(first.at)
	if w.Over <= 0 || last.waitStream < first.waitStream || last.waitDeliver < first.waitDeliver {
		return WaitShares{}, false
	}
	share := func(d time.Duration) float64 { return min(1, d.Seconds()/w.Over.Seconds()) }
	w.Stream, w.Delivery = share(last.waitStream-first.waitStream), share(last.waitDeliver-first.waitDeliver)
	return w, true
}

func rate(before, after uint64, dt float64) float64 {
	if after < before {
		return 0
	}
	return float64(after-before) / dt
}

// Sparkline is a small line chart of a rate series, drawn as inline SVG.
type Sparkline struct {
	// Points is the SVG polyline's points attribute ("" with fewer than two
	// values).
	Points string
	// Current is the newest value, Max the largest one.
	Current, Max float64
	// Label describes the chart for assistive technology.
	Label string
}

// Sparkline geometry (SVG user units).
const (
	sparkWidth  = 120
	sparkHeight = 24
)

func sparkline(what string, vals []float64) Sparkline {
	sp := Sparkline{}
	for _, v := range vals {
		sp.Max = max(sp.Max, v)
	}
	if len(vals) > 0 {
		sp.Current = vals[len(vals)-1]
	}
	sp.Label = fmt.Sprintf("%s: now %s, peak %s over the last %d samples", what, formatRate(sp.Current), formatRate(sp.Max), len(vals))
	if len(vals) < 2 {
		sp.Label = what + ": not enough samples yet"
		return sp
	}
	top := sp.Max
	if top == 0 {
		top = 1
	}
	var b strings.Builder
	step := float64(sparkWidth) / float64(len(vals)-1)
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(' ')
		}
		y := float64(sparkHeight-1) - v/top*float64(sparkHeight-2)
		fmt.Fprintf(&b, "%.1f,%.1f", float64(i)*step, y)
	}
	sp.Points = b.String()
	return sp
}

func formatRate(v float64) string {
	switch {
	case v == 0:
		return "0/s"
	case v < 10:
		return fmt.Sprintf("%.1f/s", v)
	default:
		return fmt.Sprintf("%.0f/s", v)
	}
}
