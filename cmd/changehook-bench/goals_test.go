package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// testReport is a run whose figures make each goal's ratio easy to check.
func testReport(scale float64) *report {
	ev := 1000
	cpu := func(usPerEvent float64) time.Duration {
		return time.Duration(usPerEvent * scale * float64(ev) * float64(time.Microsecond))
	}
	return &report{
		N: ev, LoadFrom: "0.10 0.20 0.30",
		StreamA: 100000, StreamACPU: 10 * time.Microsecond,
		PostB1: 20000, PostB16: 40000, PostB16CPU: 50 * time.Microsecond,
		Modes: []modeResult{
			{Mode: "strict", Events: ev, Rate: 9000 * scale, CPU: cpu(65), Sys: cpu(35)},
			{Mode: "per_document", Events: ev, Rate: 20000 * scale, CPU: cpu(40), Sys: cpu(15), HostCPU: cpu(35)},
			{Mode: "none", Events: ev, Rate: 24000 * scale, CPU: cpu(40), HostCPU: cpu(50)},
		},
		Batched: []modeResult{{Mode: "none", Batch: 100, Events: ev, Rate: 85000 * scale, CPU: cpu(5), HostCPU: cpu(8)}},
	}
}

// withSameTopology adds same-topology baselines to r: (a′) 80,000/s at
// 15 µs, (b′) 16,000/s (1 in flight, its client 70 µs per request) and
// 32,000/s (16) at 65 µs per event.
func withSameTopology(r *report) *report {
	r.StreamASep, r.StreamASepCPU, r.StreamASepClientCPU = 80000, 15*time.Microsecond, 9*time.Microsecond
	r.PostB1Sep, r.PostB16Sep, r.PostB16SepCPU, r.PostB16SepClientCPU = 16000, 32000, 65*time.Microsecond, 30*time.Microsecond
	r.PostB1SepClientCPU = 70 * time.Microsecond
	return r
}

func TestGoals(t *testing.T) {
	type want struct {
		name  string
		value float64
		met   bool
		same  float64 // ratio against the same-topology baselines; -1: none
	}
	// The issue's goals against (a)+(b) = 10+50 µs, min(a,b) = 40,000/s,
	// (b, 1) = 20,000/s, (a) = 100,000/s.
	issue := []want{
		{"per_document pipeline CPU/event vs (a)+(b)", 75.0 / 60, true, -1},
		{"per_document events/s vs min(a,b)", 0.5, false, -1},
		{"none pipeline CPU/event vs (a)+(b)", 90.0 / 60, false, -1},
		{"none events/s vs min(a,b)", 0.6, true, -1},
		{"strict events/s vs (b) 1 in flight", 0.45, true, -1},
		{"strict runner CPU/event vs per_document's", 65.0 / 40, false, -1},
		{"none batched (max_events 100) events/s vs (a)", 0.85, true, -1},
	}
	// With (a′)+(b′) = 15+65 µs, min(a′,b′) = 32,000/s, (b′, 1) =
	// 16,000/s, (a′) = 80,000/s: the verdicts stay the issue's.
	same := []want{
		{"per_document pipeline CPU/event vs (a)+(b)", 75.0 / 60, true, 75.0 / 80},
		{"per_document events/s vs min(a,b)", 0.5, false, 20000.0 / 32000},
		{"none pipeline CPU/event vs (a)+(b)", 90.0 / 60, false, 90.0 / 80},
		{"none events/s vs min(a,b)", 0.6, true, 24000.0 / 32000},
		{"strict events/s vs (b) 1 in flight", 0.45, true, 9000.0 / 16000},
		// Against the bare client's CPU per request with 1 in flight.
		{"strict runner CPU/event vs per_document's", 65.0 / 40, false, 65.0 / 70},
		{"none batched (max_events 100) events/s vs (a)", 0.85, true, 85000.0 / 80000},
	}
	for _, tc := range []struct {
		name string
		r    *report
		want []want
	}{
		{"issue baselines only", testReport(1), issue},
		{"with same-topology baselines", withSameTopology(testReport(1)), same},
		{"no CPU of (a): no pipeline ratios", func() *report { r := testReport(1); r.StreamACPU = 0; return r }(),
			[]want{issue[1], issue[3], issue[4], issue[5], issue[6]}},
		{"(b′) without CPU: no same-topology pipeline ratio", func() *report {
			r := withSameTopology(testReport(1))
			r.PostB16SepCPU = 0
			return r
		}(), []want{{same[0].name, same[0].value, same[0].met, -1}, same[1], {same[2].name, same[2].value, same[2].met, -1}, same[3], same[4], same[5], same[6]}},
		{"no per_document: no strict CPU ratio", func() *report {
			r := withSameTopology(testReport(1))
			r.Modes = []modeResult{r.Modes[0], r.Modes[2]}
			return r
		}(), []want{same[2], same[3], same[4], same[6]}},
		{"strict alone, no (b, 1)", &report{PostB16: 1000, Modes: []modeResult{{Mode: "strict", Events: 10, Rate: 5}}}, nil},
		{"a mode without events is skipped", func() *report {
			r := testReport(1)
			r.Modes[2].Events = 0
			r.Batched = nil
			return r
		}(), []want{issue[0], issue[1], issue[4], issue[5]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := tc.r.goals()
			if len(gs) != len(tc.want) {
				t.Fatalf("got %d goals, want %d: %+v", len(gs), len(tc.want), gs)
			}
			near := func(a, b float64) bool { return a > b-1e-9 && a < b+1e-9 }
			for i, w := range tc.want {
				g := gs[i]
				if g.Name != w.name || !near(g.Value, w.value) || g.met(g.Value) != w.met {
					t.Errorf("goal %d = %q %.4f met %v; want %q %.4f met %v", i, g.Name, g.Value, g.met(g.Value), w.name, w.value, w.met)
				}
				if g.HasSame != (w.same >= 0) || (g.HasSame && !near(g.Same, w.same)) {
					t.Errorf("goal %d (%s): same-topology ratio %.4f (has %v), want %.4f", i, g.Name, g.Same, g.HasSame, w.same)
				}
			}
		})
	}
}

func TestPrintGoalsSameTopology(t *testing.T) {
	var buf bytes.Buffer
	withSameTopology(testReport(1)).printGoals(&buf)
	out := buf.String()
	for _, line := range []string{
		"per_document pipeline CPU/event vs (a)+(b) ≤ 1.25×: 1.25× — met [vs (a′)+(b′): 0.94×]",
		"none events/s vs min(a,b) ≥ 55%: 60% — met [vs min(a′,b′): 75%]",
		"strict runner CPU/event vs per_document's ≤ 1.30×: 1.62× — MISSED [vs the (b′) 1-in-flight client's CPU/request: 0.93×]\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("goals lack %q:\n%s", line, out)
		}
	}
}

func TestPrintSummaryMedians(t *testing.T) {
	// Three runs scaled 0.9, 1 and 1.5: the medians are the middle run's.
	var buf bytes.Buffer
	printSummary(&buf, []*report{testReport(0.9), testReport(1.5), testReport(1)})
	out := buf.String()
	for _, line := range []string{
		"Summary of 3 runs",
		"| none events/s ",
		"| strict runner µs/event in the kernel       | 31.5, 52.5, 35.0       | 35.0   |",
		"none pipeline CPU/event vs (a)+(b) ≤ 1.25×: 1.50× (runs: 1.35×, 2.25×, 1.50×) — MISSED",
		"none events/s vs min(a,b) ≥ 55%: 60% (runs: 54%, 90%, 60%) — met",
		"none batched (max_events 100) events/s vs (a) ≥ 80%: 85% (runs: 76%, 127%, 85%) — met",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("summary lacks %q:\n%s", line, out)
		}
	}
	buf.Reset()
	printSummary(&buf, []*report{testReport(1)})
	if buf.Len() != 0 {
		t.Errorf("a single run printed a summary:\n%s", buf.String())
	}
}

func TestHaltNote(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rep   func() *report
		halts bool
		want  bool
	}{
		{"halts, strict measured", func() *report { return testReport(1) }, true, true},
		{"polls first", func() *report { return testReport(1) }, false, false},
		{"halts, no strict", func() *report {
			r := testReport(1)
			r.Modes = r.Modes[1:]
			return r
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rep()
			r.HaltsAtOnce = tc.halts
			var one, summary bytes.Buffer
			r.printGoals(&one)
			r2 := tc.rep()
			r2.HaltsAtOnce = tc.halts
			printSummary(&summary, []*report{r, r2})
			for name, out := range map[string]string{"printGoals": one.String(), "printSummary": summary.String()} {
				if got := strings.Count(out, haltNote); got != map[bool]int{true: 1, false: 0}[tc.want] {
					t.Errorf("%s printed the note %d times:\n%s", name, got, out)
				}
			}
		})
	}
}
