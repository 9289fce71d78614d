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
			{Mode: "strict", Events: ev, Rate: 9000 * scale, CPU: cpu(65)},
			{Mode: "per_document", Events: ev, Rate: 20000 * scale, CPU: cpu(40), HostCPU: cpu(35)},
			{Mode: "none", Events: ev, Rate: 24000 * scale, CPU: cpu(40), HostCPU: cpu(50)},
		},
		Batched: []modeResult{{Mode: "none", Batch: 100, Events: ev, Rate: 85000 * scale, CPU: cpu(5), HostCPU: cpu(8)}},
	}
}

func TestGoals(t *testing.T) {
	gs := testReport(1).goals()
	want := []struct {
		name  string
		value float64
		met   bool
	}{
		{"per_document pipeline CPU/event vs (a)+(b)", 75.0 / 60, true},
		{"per_document events/s vs min(a,b)", 0.5, false},
		{"none pipeline CPU/event vs (a)+(b)", 90.0 / 60, false},
		{"none events/s vs min(a,b)", 0.6, true},
		{"strict events/s vs (b) 1 in flight", 0.45, true},
		{"strict runner CPU/event vs per_document's", 65.0 / 40, false},
		{"none batched (max_events 100) events/s vs (a)", 0.85, true},
	}
	if len(gs) != len(want) {
		t.Fatalf("got %d goals, want %d: %+v", len(gs), len(want), gs)
	}
	for i, w := range want {
		g := gs[i]
		if g.Name != w.name || g.Value < w.value-1e-9 || g.Value > w.value+1e-9 || g.met(g.Value) != w.met {
			t.Errorf("goal %d = %q %.4f met %v; want %q %.4f met %v", i, g.Name, g.Value, g.met(g.Value), w.name, w.value, w.met)
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
