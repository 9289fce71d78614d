package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/triggers"
)

func TestFindSeq(t *testing.T) {
	tests := []struct {
		body string
		want int64
		ok   bool
	}{
		{`{"fullDocument":{"_id":12,"seq":12,"sku":"SKU"}}`, 12, true},
		{`{"fullDocument": {"seq" : 4711}}`, 4711, true},
		{"{\"seq\":\n 0}", 0, true},
		{`{"seq":"12"}`, 0, false},
		{`{"seqx":12}`, 0, false},
		{`{"other":1}`, 0, false},
		{`{"seq":1234567890123456789012}`, 0, false},
		{`{"seq":`, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			got, ok := findSeq([]byte(tc.body))
			if got != tc.want || ok != tc.ok {
				t.Errorf("findSeq = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; minflt 1000, utime 250,
	// stime 50 ticks.
	stat := "4242 (change (hook) x) S 1 4242 4242 0 -1 4194560 1000 7 0 0 250 50 0 0 20 0 9 0 100 1000000 5000 18446744073709551615"
	cpu, sys, minflt, err := parseStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 3*time.Second || sys != 500*time.Millisecond || minflt != 1000 {
		t.Errorf("parseStat = %v, %v, %d; want 3s, 500ms, 1000", cpu, sys, minflt)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 ten 12", "1 (x) S 1 2 3 4 5 6 many 8 9 10 11 12"} {
		if _, _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tchangehook\nVmPeak:\t  900000 kB\nVmHWM:\t   30000 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	rss, hwm, err := parseStatusRSS([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if rss != 20480<<10 || hwm != 30000<<10 {
		t.Errorf("parseStatusRSS = %d, %d", rss, hwm)
	}
	if _, _, err := parseStatusRSS([]byte("VmRSS:\t1 kB\n")); err == nil {
		t.Error("parseStatusRSS without VmHWM: no error")
	}
	if _, _, err := parseStatusRSS([]byte("VmRSS:\t1 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("parseStatusRSS with a unit other than kB: no error")
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.HWM < s.RSS || s.MinFlt <= 0 {
		t.Errorf("readProc(self) = %+v: want 0 < RSS ≤ HWM and page faults", s)
	}
}

func TestPercentileAndLatencies(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	acks := []time.Duration{ms(0), ms(10), ms(20), ms(30)}
	receipts := []time.Duration{ms(1), -1, ms(19), ms(35)} // seq 1 never arrived; seq 2 before its ack
	got := latencies(acks, receipts)
	want := []time.Duration{0, ms(1), ms(5)}
	if len(got) != len(want) {
		t.Fatalf("latencies = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("latencies = %v, want %v", got, want)
		}
	}
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = ms(i + 1)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, ms(50)}, {99, ms(99)}, {100, ms(100)}, {1, ms(1)}} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		modes   string
		wantErr bool
	}{
		{nil, "strict,per_document,none", false},
		{[]string{"-modes", "none", "-n", "10"}, "none", false},
		{[]string{"-modes", "fast"}, "", true},
		{[]string{"-n", "1"}, "", true},
		{[]string{"extra"}, "", true},
		{[]string{"-memprofile", "mem.out"}, "", true},
		{[]string{"-cpuprofile", "cpu.out", "-memprofile", "mem.out"}, "strict,per_document,none", false},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, err := parseFlags(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseFlags error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && strings.Join(c.modes, ",") != tc.modes {
				t.Errorf("modes = %v, want %s", c.modes, tc.modes)
			}
		})
	}
}

// TestParseHistoryFlags checks -history-variants (order kept, duplicates
// dropped, unknown names refused) and that -perf-ctl needs -perf-ack.
func TestParseHistoryFlags(t *testing.T) {
	tests := []struct {
		args     []string
		variants string
		wantErr  bool
	}{
		{nil, "off,on,slow", false},
		{[]string{"-history-variants", "on"}, "on", false},
		{[]string{"-history-variants", "on, off,on"}, "on,off", false},
		{[]string{"-history-variants", "fast"}, "", true},
		{[]string{"-history-variants", ","}, "", true},
		{[]string{"-perf-ctl", "ctl"}, "", true},
		{[]string{"-perf-ctl", "ctl", "-perf-ack", "ack"}, "off,on,slow", false},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c, err := parseFlags(tc.args, io.Discard)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseFlags error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var names []string
			for _, v := range c.historyVariants {
				names = append(names, v.Name)
			}
			if got := strings.Join(names, ","); got != tc.variants {
				t.Errorf("history variants = %s, want %s", got, tc.variants)
			}
		})
	}
}

// TestBaselines runs baselines (a) and (b) at a small size against an
// in-process devdb and receiver: every event and request must be counted.
func TestBaselines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	srv, client := devdbtest.Start(t)
	c := newClock()
	b := &bench{cfg: config{n: 300, concurrency: 4}, log: io.Discard, clock: c, db: srv, client: client}
	if err := b.seedOplog(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("a: change stream", func(t *testing.T) {
		a, err := b.baselineA(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r, cpu, reads, reread := a.Rate, a.CPU, a.Reads, a.Reread
		if r <= 0 || cpu < 0 { // CPU time has a 10 ms resolution: 0 is possible
			t.Errorf("rate %v, CPU per event %v", r, cpu)
		}
		// Every read saw the whole backlog, and the rate is their median.
		if len(reads) != streamReads || r != median(reads) {
			t.Errorf("reads %v, rate %v: want %d reads and their median", reads, r, streamReads)
		}
		if reread <= 0 || a.Faults < 0 || a.RereadFaults < 0 {
			t.Errorf("re-read rate %v, page faults per event %v (re-read %v)", reread, a.Faults, a.RereadFaults)
		}
	})
	t.Run("b: POST", func(t *testing.T) {
		bodies, err := eventBodies(50)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := startReceiver(c, len(bodies), 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rec.close)
		r, err := baselinePost(ctx, rec.url(), bodies, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := rec.wait(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := rec.requests.Load(); got != 50 || r <= 0 {
			t.Errorf("receiver got %d requests (want 50), rate %v", got, r)
		}
		if first, last, err := rec.span(); err != nil || last < first {
			t.Errorf("span = %v, %v, %v", first, last, err)
		}
	})
}

func TestReadsNote(t *testing.T) {
	for _, tc := range []struct {
		r    report
		want string
	}{
		{report{}, ""},
		{report{StreamAReads: []float64{250000}, StreamAReread: 400000}, ""},
		{report{StreamAReads: []float64{250000.4, 300000, 275000}},
			"(a) is the median of 3 reads, each of a freshly written backlog as every drain reads one (250000, 300000, 275000 events/s)."},
		{report{StreamAReads: []float64{250000, 300000, 275000}, StreamASepReads: []float64{200000, 210000, 190000},
			StreamAFaults: 0.314, StreamAReread: 500000.2, StreamARereadFaults: 0.04},
			"(a) is the median of 3 reads, each of a freshly written backlog as every drain reads one (250000, 300000, 275000 events/s), (a′) of 3 (200000, 210000, 190000). (a)'s reads took 0.31 page faults per event in this process; a second read of its last backlog took 0.04 and ran at 500000 events/s (not a baseline: no drain reads a backlog twice)."},
	} {
		if got := readsNote(&tc.r); got != tc.want {
			t.Errorf("readsNote = %q, want %q", got, tc.want)
		}
	}
}

func TestParseTriggerCounts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1,50,200", []int{1, 50, 200}, false},
		{" 7 ", []int{7}, false},
		{"1,,2", []int{1, 2}, false},
		{"", nil, true},
		{"0", nil, true},
		{"1001", nil, true},
		{"5x", nil, true},
		{"-3", nil, true},
	}
	for _, tc := range tests {
		got, err := parseTriggerCounts(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseTriggerCounts(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestManyConfigParses checks the many-triggers configuration against the
// configuration parser: N triggers, each on its own collection.
func TestManyConfigParses(t *testing.T) {
	dir := t.TempDir()
	path, err := writeManyConfig(dir, "mongodb://127.0.0.1:1/", stateDB, 3, 16, "http://127.0.0.1:2/hook")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := triggers.Parse(path, data, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", path, err, data)
	}
	if len(cfg.Triggers) != 3 {
		t.Fatalf("%d triggers, want 3", len(cfg.Triggers))
	}
	for i, tr := range cfg.Triggers {
		if tr.Collection != manyColl(i) || tr.Database != benchDB {
			t.Errorf("trigger %d watches %s.%s, want %s.%s", i, tr.Database, tr.Collection, benchDB, manyColl(i))
		}
	}
}

func TestParseStatusSwitches(t *testing.T) {
	status := "Name:\tchangehook\nState:\tS (sleeping)\nThreads:\t9\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n"
	got, err := parseStatusSwitches([]byte(status))
	if err != nil || got != 1290 {
		t.Errorf("parseStatusSwitches = %d, %v; want 1290, nil", got, err)
	}
	for _, bad := range []string{
		"Name:\tx\nvoluntary_ctxt_switches:\t1\n",
		"voluntary_ctxt_switches:\t1\nnonvoluntary_ctxt_switches:\tmany\n",
	} {
		if _, err := parseStatusSwitches([]byte(bad)); err == nil {
			t.Errorf("parseStatusSwitches(%q): no error", bad)
		}
	}
}

func TestReadSwitchesCountsEveryThread(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("no /proc")
	}
	// The sum over the threads, read after it, is at least the main
	// thread's own count (/proc/PID/status is the main thread's).
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	main, err := parseStatusSwitches(status)
	if err != nil {
		t.Fatal(err)
	}
	own, err := readSwitches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if own < main {
		t.Errorf("readSwitches = %d, below the main thread's %d", own, main)
	}
	if _, err := readSwitches(-1); err == nil {
		t.Error("readSwitches(-1): no error")
	}
}

// TestHistoryOverhead checks the history phase's paired and CPU estimates:
// rounds are paired by number, a round without its off drain is left out,
// and the CPU figure adds both processes.
func TestHistoryOverhead(t *testing.T) {
	ms := time.Millisecond
	h := &historyResult{Events: 1000, Runs: []historyRun{
		{Variant: "off", Round: 1, Rate: 1000, CPU: 30 * ms, HostCPU: 30 * ms},
		{Variant: "on", Round: 1, Rate: 900, CPU: 33 * ms, HostCPU: 33 * ms},
		{Variant: "on", Round: 2, Rate: 2000, CPU: 34 * ms, HostCPU: 30 * ms},
		{Variant: "off", Round: 2, Rate: 2000, CPU: 32 * ms, HostCPU: 30 * ms},
		{Variant: "off", Round: 3, Rate: 500, CPU: 31 * ms, HostCPU: 30 * ms},
		{Variant: "on", Round: 3, Rate: 525, CPU: 33 * ms, HostCPU: 30 * ms},
		{Variant: "on", Round: 4, Rate: 100, CPU: 90 * ms, HostCPU: 90 * ms}, // no off drain in round 4
	}}
	o, ok := h.overhead("on")
	if !ok {
		t.Fatal("overhead(on): not estimated")
	}
	if got, want := strings.Join(o.Paired, " "), "-10.0% +0.0% +5.0%"; got != want {
		t.Errorf("paired = %q, want %q", got, want)
	}
	if o.PairedMedian != 0 {
		t.Errorf("paired median = %v, want 0", o.PairedMedian)
	}
	// off: 60, 62, 61 µs/event → 61; on: 66, 64, 63, 180 → 65.
	if o.CPUOff != 61 || o.CPUOn != 65 {
		t.Errorf("CPU off → on = %v → %v, want 61 → 65", o.CPUOff, o.CPUOn)
	}
	if d := o.CPUAdded - 100*4.0/61; d > 1e-9 || d < -1e-9 {
		t.Errorf("CPU added = %v%%, want %v%%", o.CPUAdded, 100*4.0/61)
	}
	if _, ok := h.overhead("slow"); ok {
		t.Error("overhead(slow) estimated without slow drains")
	}
	if _, ok := (&historyResult{Events: 1, Runs: []historyRun{{Variant: "on", Round: 1, Rate: 1}}}).overhead("on"); ok {
		t.Error("overhead(on) estimated without off drains")
	}
}

func TestPrintKernel(t *testing.T) {
	var buf bytes.Buffer
	printKernel(&buf, []modeResult{
		{Mode: "strict", Events: 1000, CPU: 44 * time.Millisecond, Sys: 24 * time.Millisecond},
		{Mode: "none", Events: 1000}, // not read: left out
		{Mode: "per_document", Events: 2000, CPU: 7 * time.Millisecond, Sys: time.Millisecond, Batch: 100},
	})
	want := "Runner CPU µs per event, in the kernel · in user space: strict 24.0 · 20.0; per_document batched 0.5 · 3.0\n"
	if got := buf.String(); got != want {
		t.Errorf("printKernel:\n got %q\nwant %q", got, want)
	}
	buf.Reset()
	printKernel(&buf, nil)
	if buf.Len() != 0 {
		t.Errorf("printKernel without drains wrote %q", buf.String())
	}
}

func TestPrintFaults(t *testing.T) {
	var buf bytes.Buffer
	printFaults(&buf, []modeResult{
		{Mode: "per_document", Events: 1000, Faults: 5000},
		{Mode: "none", Events: 1000, Faults: 0}, // not read: left out
		{Mode: "none", Events: 1000, Faults: 250, Batch: 100},
	})
	want := "Runner page faults, start to last receipt (first touches of its memory, paid once by a new process): per_document 5000 (5.00 per event); none batched 250 (0.25 per event)\n"
	if got := buf.String(); got != want {
		t.Errorf("printFaults:\n got %q\nwant %q", got, want)
	}
	buf.Reset()
	printFaults(&buf, nil)
	if buf.Len() != 0 {
		t.Errorf("printFaults without drains wrote %q", buf.String())
	}
}

func TestPrintGC(t *testing.T) {
	var buf bytes.Buffer
	printGC(&buf, []modeResult{
		{Mode: "per_document", Events: 1000, GCs: 12, Alloc: 2_500_000},
		{Mode: "none", Events: 1000}, // not read: left out
		{Mode: "none", Events: 1000, GCs: 3, Alloc: 800_000, Batch: 100},
	})
	want := "Runner garbage collections, start to last receipt: per_document 12 (2500 B allocated per event); none batched 3 (800 B allocated per event)\n"
	if got := buf.String(); got != want {
		t.Errorf("printGC:\n got %q\nwant %q", got, want)
	}
	buf.Reset()
	printGC(&buf, nil)
	if buf.Len() != 0 {
		t.Errorf("printGC without drains wrote %q", buf.String())
	}
}

// TestParseGCMetrics reads the two series from a Prometheus text
// exposition as the runner's Go collector writes them, and refuses one
// without them or with a value that is not a number.
func TestParseGCMetrics(t *testing.T) {
	const text = `# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds_sum 0.001234
go_gc_duration_seconds_count 17
# HELP go_memstats_alloc_bytes_total Total number of bytes allocated in heap until now, even if released already.
# TYPE go_memstats_alloc_bytes_total counter
go_memstats_alloc_bytes_total 1.23456789e+08
go_memstats_alloc_bytes 4.5e+06
`
	gcs, alloc, err := parseGCMetrics([]byte(text))
	if err != nil || gcs != 17 || alloc != 123456789 {
		t.Errorf("parseGCMetrics = %d, %d, %v; want 17, 123456789, nil", gcs, alloc, err)
	}
	for name, bad := range map[string]string{
		"no alloc":     "go_gc_duration_seconds_count 17\n",
		"no count":     "go_memstats_alloc_bytes_total 5\n",
		"not a number": "go_gc_duration_seconds_count x\ngo_memstats_alloc_bytes_total 5\n",
		"empty":        "",
	} {
		if _, _, err := parseGCMetrics([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestPrintWaits writes each measured drain's wait shares and leaves out
// drains without them.
func TestPrintWaits(t *testing.T) {
	var buf bytes.Buffer
	printWaits(&buf, []modeResult{
		{Mode: "per_document", Events: 1000, WaitStream: 0.684, WaitDelivery: 0.021},
		{Mode: "none", Events: 1000}, // not measured: left out
		{Mode: "none", Events: 1000, WaitStream: 0.05, WaitDelivery: 0.9, Batch: 100},
	})
	want := "Runner's watch loop waiting, first to last receipt, for the stream · for delivery: per_document 68% · 2%; none batched 5% · 90%\n"
	if got := buf.String(); got != want {
		t.Errorf("printWaits:\n got %q\nwant %q", got, want)
	}
}

// TestPrintBusy writes each measured drain's busy CPUs (the machine's
// beside them when measured) and its rate with every CPU busy — scaled by
// the machine's figure when there is one — against (a) when given, and
// leaves out drains without a measurement.
func TestPrintBusy(t *testing.T) {
	modes := []modeResult{
		{Mode: "per_document", Events: 1000, Rate: 150000, Busy: 1.4, MachineBusy: 1.5, Batch: 100},
		{Mode: "none", Events: 1000, Rate: 150000}, // not measured: left out
		{Mode: "strict", Events: 1000, Rate: 10000, Busy: 0.5},
	}
	const head = "CPUs busy, first to last receipt: runner, devdb and receiver (the whole machine), and the rate with all 2 busy: "
	var buf bytes.Buffer
	printBusy(&buf, modes, 2, 250000)
	want := head + "per_document batched 1.40 (1.50) of 2, 200000/s (80% of (a)); strict 0.50 of 2, 40000/s (16% of (a))\n"
	if got := buf.String(); got != want {
		t.Errorf("printBusy:\n got %q\nwant %q", got, want)
	}
	buf.Reset()
	printBusy(&buf, modes[2:], 2, 0)
	if got, want := buf.String(), head+"strict 0.50 of 2, 40000/s\n"; got != want {
		t.Errorf("printBusy without (a):\n got %q\nwant %q", got, want)
	}
	buf.Reset()
	printBusy(&buf, modes[1:2], 2, 250000)
	if buf.Len() != 0 {
		t.Errorf("printBusy with nothing measured wrote %q", buf.String())
	}
}

// TestParseMachineStat sums /proc/stat's cpu line into busy and total
// time (idle and iowait are not busy; guest time, inside user and nice,
// is not counted twice), also from a kernel without steal, and refuses a
// first line that is not the total or a field that is not a count.
func TestParseMachineStat(t *testing.T) {
	for _, c := range []struct {
		name, stat  string
		busy, total time.Duration
	}{
		{"current", "cpu  100 1 20 300 4 0 5 2 50 0\ncpu0 50 0 10 150 2 0 3 1 25 0\n", 1280 * time.Millisecond, 4320 * time.Millisecond},
		{"no steal", "cpu 100 0 20 300 4 0 5\n", 1250 * time.Millisecond, 4290 * time.Millisecond},
	} {
		s, err := parseMachineStat([]byte(c.stat))
		if err != nil || s.Busy != c.busy || s.Total != c.total {
			t.Errorf("%s: parseMachineStat = %+v, %v; want busy %v, total %v", c.name, s, err, c.busy, c.total)
		}
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5\n", "cpu 1 2 3\n", "cpu 1 x 3 4 5\n", "cpu 1 -2 3 4 5\n"} {
		if _, err := parseMachineStat([]byte(bad)); err == nil {
			t.Errorf("parseMachineStat(%q): no error", bad)
		}
	}
}

// TestParseWaitMetrics reads the bench trigger's two wait series from a
// Prometheus text exposition, ignores other triggers', and refuses one
// without both or with a value that is not a number.
func TestParseWaitMetrics(t *testing.T) {
	const text = `# HELP changehook_watch_wait_seconds_total Time the trigger's watch loop waited.
# TYPE changehook_watch_wait_seconds_total counter
changehook_watch_wait_seconds_total{on="delivery",trigger="bench"} 0.25
changehook_watch_wait_seconds_total{on="delivery",trigger="other"} 9
changehook_watch_wait_seconds_total{on="stream",trigger="bench"} 1.5
changehook_watch_wait_seconds_total{on="stream",trigger="other"} 9
`
	w, err := parseWaitMetrics([]byte(text))
	if err != nil || w.Stream != 1.5 || w.Delivery != 0.25 {
		t.Errorf("parseWaitMetrics = %+v, %v; want stream 1.5, delivery 0.25", w, err)
	}
	for name, bad := range map[string]string{
		"no delivery":  `changehook_watch_wait_seconds_total{on="stream",trigger="bench"} 1` + "\n",
		"other only":   `changehook_watch_wait_seconds_total{on="stream",trigger="other"} 1` + "\n" + `changehook_watch_wait_seconds_total{on="delivery",trigger="other"} 1` + "\n",
		"not a number": `changehook_watch_wait_seconds_total{on="stream",trigger="bench"} x` + "\n" + `changehook_watch_wait_seconds_total{on="delivery",trigger="bench"} 1` + "\n",
		"empty":        "",
	} {
		if _, err := parseWaitMetrics([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
