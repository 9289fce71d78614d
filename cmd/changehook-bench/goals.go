package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// goal is one target of the throughput work, evaluated on one run.
type goal struct {
	// Name says what is compared, e.g. "none pipeline CPU / ((a)+(b))".
	Name string
	// Value is the measured ratio: a fraction for percentages, a factor
	// for CPU ratios.
	Value float64
	// Target is the bound Value must reach.
	Target float64
	// AtMost reports that Value must not exceed Target (CPU ratios);
	// otherwise it must be at least Target (rates).
	AtMost bool
	// Percent formats Value and Target as percentages instead of factors.
	Percent bool
	// Same is the same ratio against the same-topology baselines ((a′)
	// and (b′), their client in a child process as the runner is) when
	// HasSame; it is printed beside Value, the verdict is Value's alone.
	Same    float64
	HasSame bool
	// SameName names Same's baseline, e.g. "(a′)+(b′)".
	SameName string
}

// withSame returns g with its ratio against a same-topology baseline:
// num/den, when den > 0.
func (g goal) withSame(name string, num, den float64) goal {
	if den > 0 {
		g.Same, g.HasSame, g.SameName = num/den, true, name
	}
	return g
}

// met reports whether v reaches the goal.
func (g goal) met(v float64) bool {
	if g.AtMost {
		return v <= g.Target
	}
	return v >= g.Target
}

// format formats v as the goal's unit.
func (g goal) format(v float64) string {
	if g.Percent {
		return fmt.Sprintf("%.0f%%", 100*v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// bound formats the goal's target with its direction.
func (g goal) bound() string {
	op := "≥"
	if g.AtMost {
		op = "≤"
	}
	return op + " " + g.format(g.Target)
}

// perEvent returns m's runner and devdb+receiver CPU per event.
func perEvent(m modeResult) (runner, host time.Duration) {
	if m.Events == 0 {
		return 0, 0
	}
	return m.CPU / time.Duration(m.Events), m.HostCPU / time.Duration(m.Events)
}

// goals returns the throughput targets this run measured, in a fixed order:
// for per_document and none unbatched, the whole pipeline's CPU per event
// against the unavoidable work ((a) plus (b) with -concurrency in flight,
// each measured with all its parties) and events/s against min(a, b); for
// strict, events/s against (b) with one request in flight and the runner's
// CPU per event against per_document's; for each batched drain, events/s
// against (a). Each ratio is the issue's, against (a) and (b) measured
// in this process; where (a′) and (b′) were measured, the same ratio
// against them is carried beside it (Same).
func (r *report) goals() []goal {
	var gs []goal
	unavoidable := r.StreamACPU + r.PostB16CPU
	if r.StreamACPU == 0 || r.PostB16CPU == 0 {
		unavoidable = 0 // not measured: no ratio against half of it
	}
	minAB := min(r.StreamA, r.PostB16)
	unavoidableSep := float64(r.StreamASepCPU + r.PostB16SepCPU)
	if r.StreamASepCPU == 0 || r.PostB16SepCPU == 0 {
		unavoidableSep = 0
	}
	minABSep := min(r.StreamASep, r.PostB16Sep)
	byMode := map[string]modeResult{}
	for _, m := range r.Modes {
		byMode[m.Mode] = m
	}
	for _, name := range []string{"per_document", "none"} {
		m, ok := byMode[name]
		if !ok || m.Events == 0 {
			continue
		}
		runner, host := perEvent(m)
		if unavoidable > 0 {
			gs = append(gs, goal{Name: name + " pipeline CPU/event vs (a)+(b)", Value: float64(runner+host) / float64(unavoidable), Target: 1.25, AtMost: true}.
				withSame("(a′)+(b′)", float64(runner+host), unavoidableSep))
		}
		if minAB > 0 {
			gs = append(gs, goal{Name: name + " events/s vs min(a,b)", Value: m.Rate / minAB, Target: 0.55, Percent: true}.
				withSame("min(a′,b′)", m.Rate, minABSep))
		}
	}
	if s, ok := byMode["strict"]; ok && s.Events > 0 {
		if r.PostB1 > 0 {
			gs = append(gs, goal{Name: "strict events/s vs (b) 1 in flight", Value: s.Rate / r.PostB1, Target: 0.40, Percent: true}.
				withSame("(b′) 1 in flight", s.Rate, r.PostB1Sep))
		}
		if p, ok := byMode["per_document"]; ok && p.Events > 0 && p.CPU > 0 {
			sr, _ := perEvent(s)
			pr, _ := perEvent(p)
			gs = append(gs, goal{Name: "strict runner CPU/event vs per_document's", Value: float64(sr) / float64(pr), Target: 1.3, AtMost: true}.
				withSame("the (b′) 1-in-flight client's CPU/request", float64(sr), float64(r.PostB1SepClientCPU)))
		}
	}
	for _, m := range r.Batched {
		if r.StreamA > 0 {
			gs = append(gs, goal{Name: fmt.Sprintf("%s batched (max_events %d) events/s vs (a)", m.Mode, m.Batch), Value: m.Rate / r.StreamA, Target: 0.80, Percent: true}.
				withSame("(a′)", m.Rate, r.StreamASep))
		}
	}
	return gs
}

// printGoals writes r's goals with their verdicts.
func (r *report) printGoals(w io.Writer) {
	gs := r.goals()
	if len(gs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThroughput goals of this run ((a)+(b) = %.1f + %.1f µs of CPU per event, the unavoidable work):\n", us(r.StreamACPU), us(r.PostB16CPU))
	if r.StreamASepCPU > 0 && r.PostB16SepCPU > 0 {
		fmt.Fprintf(w, "(verdicts against (a) and (b) as the goals define them; in brackets the same ratio against the same-topology baselines, (a′)+(b′) = %.1f + %.1f µs)\n", us(r.StreamASepCPU), us(r.PostB16SepCPU))
	}
	for _, g := range gs {
		fmt.Fprintf(w, "  %s %s: %s %s%s\n", g.Name, g.bound(), g.format(g.Value), verdict(g.met(g.Value)), g.sameNote(g.Same, g.HasSame))
	}
	printHaltNote(w, r, gs)
}

// haltNote explains strict's verdicts on a machine whose idle vCPUs halt
// at once.
const haltNote = "  (this machine's idle vCPUs halt at once: each of strict's wake-ups across the process boundary, one per event, is a round trip through the hypervisor, and a bare client's too — see (b′) 1 in flight)\n"

// printHaltNote writes haltNote after goals gs of r when r's machine halts
// its idle vCPUs at once and gs carry a strict goal.
func printHaltNote(w io.Writer, r *report, gs []goal) {
	if !r.HaltsAtOnce {
		return
	}
	for _, g := range gs {
		if strings.HasPrefix(g.Name, "strict ") {
			fmt.Fprint(w, haltNote)
			return
		}
	}
}

// sameNote formats a same-topology ratio v beside a verdict ("" when
// there is none).
func (g goal) sameNote(v float64, ok bool) string {
	if !ok {
		return ""
	}
	return fmt.Sprintf(" [vs %s: %s]", g.SameName, g.format(v))
}

// printSummary writes, for several runs of the benchmark, each goal's value
// in every run and its median, the verdict taken on the median, and the
// medians of the figures behind them.
func printSummary(w io.Writer, reps []*report) {
	if len(reps) < 2 {
		return
	}
	fmt.Fprintf(w, "\nSummary of %d runs (load average at the start of each: %s):\n\n", len(reps), strings.Join(loads(reps), "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| figure\t each run\t median\t")
	fmt.Fprintln(tw, "|---\t---\t---\t")
	row := func(name string, f func(*report) (float64, bool), format string) {
		var vals []float64
		var cells []string
		for _, r := range reps {
			v, ok := f(r)
			if !ok {
				cells = append(cells, "-")
				continue
			}
			vals = append(vals, v)
			cells = append(cells, fmt.Sprintf(format, v))
		}
		if len(vals) == 0 {
			return
		}
		fmt.Fprintf(tw, "| %s\t %s\t "+format+"\t\n", name, strings.Join(cells, ", "), median(vals))
	}
	row("(a) events/s", func(r *report) (float64, bool) { return r.StreamA, r.StreamA > 0 }, "%.0f")
	row("(a) CPU µs/event", func(r *report) (float64, bool) { return us(r.StreamACPU), r.StreamACPU > 0 }, "%.1f")
	row("(a) re-read of a backlog events/s (not a baseline)", func(r *report) (float64, bool) { return r.StreamAReread, r.StreamAReread > 0 }, "%.0f")
	row("(b) 1 in flight events/s", func(r *report) (float64, bool) { return r.PostB1, r.PostB1 > 0 }, "%.0f")
	row("(b) 16 in flight events/s", func(r *report) (float64, bool) { return r.PostB16, r.PostB16 > 0 }, "%.0f")
	row("(b) 16 in flight CPU µs/event", func(r *report) (float64, bool) { return us(r.PostB16CPU), r.PostB16CPU > 0 }, "%.1f")
	row("(a′) events/s", func(r *report) (float64, bool) { return r.StreamASep, r.StreamASep > 0 }, "%.0f")
	row("(a′) CPU µs/event", func(r *report) (float64, bool) { return us(r.StreamASepCPU), r.StreamASepCPU > 0 }, "%.1f")
	row("(a′) client process µs/event", func(r *report) (float64, bool) { return us(r.StreamASepClientCPU), r.StreamASepCPU > 0 }, "%.1f")
	row("(b′) 1 in flight events/s", func(r *report) (float64, bool) { return r.PostB1Sep, r.PostB1Sep > 0 }, "%.0f")
	row("(b′) 1 in flight client process µs/event", func(r *report) (float64, bool) { return us(r.PostB1SepClientCPU), r.PostB1SepClientCPU > 0 }, "%.1f")
	row("(b′) 16 in flight events/s", func(r *report) (float64, bool) { return r.PostB16Sep, r.PostB16Sep > 0 }, "%.0f")
	row("(b′) 16 in flight CPU µs/event", func(r *report) (float64, bool) { return us(r.PostB16SepCPU), r.PostB16SepCPU > 0 }, "%.1f")
	row("(b′) 16 in flight client process µs/event", func(r *report) (float64, bool) { return us(r.PostB16SepClientCPU), r.PostB16SepCPU > 0 }, "%.1f")
	modeRow := func(label string, pick func(*report) []modeResult, mode string, f func(modeResult) float64, format string) {
		row(label, func(r *report) (float64, bool) {
			for _, m := range pick(r) {
				if m.Mode == mode && m.Events > 0 {
					return f(m), true
				}
			}
			return 0, false
		}, format)
	}
	plain := func(r *report) []modeResult { return r.Modes }
	batched := func(r *report) []modeResult { return r.Batched }
	for _, m := range reps[0].Modes {
		modeRow(m.Mode+" events/s", plain, m.Mode, func(x modeResult) float64 { return x.Rate }, "%.0f")
		modeRow(m.Mode+" runner µs/event", plain, m.Mode, func(x modeResult) float64 { r, _ := perEvent(x); return us(r) }, "%.0f")
		modeRow(m.Mode+" devdb+receiver µs/event", plain, m.Mode, func(x modeResult) float64 { _, h := perEvent(x); return us(h) }, "%.0f")
		modeRow(m.Mode+" runner µs/event in the kernel", plain, m.Mode, func(x modeResult) float64 { return us(x.Sys / time.Duration(x.Events)) }, "%.1f")
	}
	for _, m := range reps[0].Batched {
		modeRow(m.Mode+" batched events/s", batched, m.Mode, func(x modeResult) float64 { return x.Rate }, "%.0f")
		modeRow(m.Mode+" batched runner µs/event", batched, m.Mode, func(x modeResult) float64 { r, _ := perEvent(x); return us(r) }, "%.1f")
		modeRow(m.Mode+" batched devdb+receiver µs/event", batched, m.Mode, func(x modeResult) float64 { _, h := perEvent(x); return us(h) }, "%.1f")
		modeRow(m.Mode+" batched runner page faults", batched, m.Mode, func(x modeResult) float64 { return float64(x.Faults) }, "%.0f")
		modeRow(m.Mode+" batched runner garbage collections", batched, m.Mode, func(x modeResult) float64 { return float64(x.GCs) }, "%.0f")
		modeRow(m.Mode+" batched runner B allocated/event", batched, m.Mode, func(x modeResult) float64 { return float64(x.Alloc) / float64(max(x.Events, 1)) }, "%.0f")
		modeRow(m.Mode+" batched % waiting for stream", batched, m.Mode, func(x modeResult) float64 { return 100 * x.WaitStream }, "%.0f")
		modeRow(m.Mode+" batched % waiting for delivery", batched, m.Mode, func(x modeResult) float64 { return 100 * x.WaitDelivery }, "%.0f")
		modeRow(m.Mode+" batched CPUs busy", batched, m.Mode, func(x modeResult) float64 { return x.Busy }, "%.2f")
		modeRow(m.Mode+" batched machine CPUs busy", batched, m.Mode, func(x modeResult) float64 { return x.MachineBusy }, "%.2f")
		mode := m.Mode
		row(mode+" batched % of (a) with every CPU busy", func(r *report) (float64, bool) {
			for _, x := range r.Batched {
				if x.Mode == mode && x.Busy > 0 && r.StreamA > 0 {
					return 100 * x.fullRate(r.CPUs) / r.StreamA, true
				}
			}
			return 0, false
		}, "%.0f")
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nGoals on the medians of %d runs:\n", len(reps))
	for _, g := range reps[0].goals() {
		var vals, sames []float64
		var cells []string
		sameName := g.SameName
		for _, r := range reps {
			for _, o := range r.goals() {
				if o.Name == g.Name {
					vals = append(vals, o.Value)
					cells = append(cells, g.format(o.Value))
					if o.HasSame {
						sames, sameName = append(sames, o.Same), o.SameName
					}
				}
			}
		}
		med := median(vals)
		same := ""
		if len(sames) > 0 {
			g.SameName = sameName
			same = g.sameNote(median(sames), true)
		}
		fmt.Fprintf(w, "  %s %s: %s (runs: %s) %s%s\n", g.Name, g.bound(), g.format(med), strings.Join(cells, ", "), verdict(g.met(med)), same)
	}
	printHaltNote(w, reps[0], reps[0].goals())
}

// loads returns each report's load average at its start.
func loads(reps []*report) []string {
	out := make([]string, len(reps))
	for i, r := range reps {
		out[i] = r.LoadFrom
	}
	return out
}
