package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// slowInsert is how long the "slow" history variant's fail point blocks
// every insert the runner sends (only the history writer inserts).
const slowInsert = 200 * time.Millisecond

// historyVariant is one way the history phase configures the runner.
type historyVariant struct {
	// Name is off, on or slow.
	Name string
	// History is the configuration's history section.
	History string
	// Slow blocks every insert of the runner's connection for slowInsert
	// (devdb's failCommand fail point, filtered by the runner's appName): a
	// history writer that cannot keep up.
	Slow bool
}

var historyVariants = []historyVariant{
	{Name: "off", History: "{ enabled: false }"},
	{Name: "on", History: "{ enabled: true }"},
	{Name: "slow", History: "{ enabled: true }", Slow: true},
}

// historyRun is one drain of the history phase.
type historyRun struct {
	Variant string
	Round   int
	Rate    float64       // events/s, first to last receipt
	CPU     time.Duration // runner process, start to last receipt
	HostCPU time.Duration // this process (devdb and the receiver), runner start to last receipt
	Written float64       // changehook_history_written_total at the last receipt
	Dropped float64       // changehook_history_dropped_total at the last receipt
}

// historyResult is the history phase's runs.
type historyResult struct {
	Events, Concurrency, Rounds int
	Runs                        []historyRun
	LoadFrom, LoadTo            string
}

// historyPhase drains a backlog of -n inserts (mode none, the fastest, so the
// history's share of the work is largest) with the history off, on, and on
// with a writer slowed by a fail point (the variants -history-variants
// names), -history-rounds times after one uncounted warm-up drain; the order of the variants rotates each round so
// that a drift of the machine's load does not favour one.
func (b *bench) historyPhase(ctx context.Context) (*historyResult, error) {
	res := &historyResult{Events: b.cfg.n, Concurrency: b.cfg.concurrency, Rounds: b.cfg.historyRounds, LoadFrom: loadavg()}
	// One drain that is not counted first: the first drain of a fresh
	// devdb and runner binary (cold caches, a growing data file) is the
	// slowest of all, and would otherwise count against whichever variant
	// comes first.
	variants := b.cfg.historyVariants
	b.logf("history warm-up (not counted): drain a backlog of %d", b.cfg.n)
	if _, err := b.historyDrain(ctx, variants[0], -1); err != nil {
		return nil, err
	}
	for round := range b.cfg.historyRounds {
		for k := range variants {
			v := variants[(k+round)%len(variants)]
			b.logf("history %s, round %d: drain a backlog of %d", v.Name, round+1, b.cfg.n)
			run, err := b.historyDrain(ctx, v, round)
			if err != nil {
				return nil, err
			}
			res.Runs = append(res.Runs, run)
		}
	}
	res.LoadTo = loadavg()
	return res, nil
}

// historyDrain drains one backlog with variant v.
func (b *bench) historyDrain(ctx context.Context, v historyVariant, round int) (historyRun, error) {
	run := historyRun{Variant: v.Name, Round: round + 1}
	coll := fmt.Sprintf("hist_%s_%d", v.Name, round)
	startAt, _, err := b.backlog(ctx, coll, b.cfg.n)
	if err != nil {
		return run, err
	}
	rec, err := startReceiver(b.clock, b.cfg.n, 0)
	if err != nil {
		return run, err
	}
	defer rec.close()
	if v.Slow {
		if err := b.blockRunnerInserts(ctx, true); err != nil {
			return run, err
		}
		defer func() { _ = b.blockRunnerInserts(context.WithoutCancel(ctx), false) }()
	}
	host0, err := readProc(os.Getpid())
	if err != nil {
		return run, err
	}
	if round >= 0 {
		if err := b.perfControl("enable"); err != nil {
			return run, err
		}
	}
	p, err := b.startRunnerFor(triggerSpec{Mode: "none", Concurrency: b.cfg.concurrency, Database: benchDB,
		Collection: coll, URL: rec.url(), StartAt: startAt, History: v.History})
	if err != nil {
		return run, err
	}
	waitErr := p.waitDelivered(ctx, rec, b.cfg.timeout)
	if round >= 0 {
		if err := b.perfControl("disable"); err != nil {
			return run, err
		}
	}
	s, sErr := p.sample(b.clock)
	host1, hErr := readProc(os.Getpid())
	if sErr == nil {
		sErr = hErr
	}
	run.HostCPU = host1.CPU - host0.CPU
	run.Written, run.Dropped = historyCounters(ctx, p.admin)
	_, _, stopErr := p.stop(stopGrace)
	if waitErr != nil {
		return run, fmt.Errorf("history %s: %w\nrunner output:\n%s", v.Name, waitErr, p.stderr)
	}
	if sErr != nil {
		return run, sErr
	}
	if stopErr != nil {
		return run, stopErr
	}
	first, last, err := rec.span()
	if err != nil {
		return run, err
	}
	run.Rate, run.CPU = rate(b.cfg.n, first, last), s.CPU
	return run, nil
}

// perfControl sends cmd (enable or disable) to the perf record whose
// control FIFOs -perf-ctl and -perf-ack name, and waits for its
// acknowledgement; without -perf-ctl it does nothing.
func (b *bench) perfControl(cmd string) error {
	if b.cfg.perfCtl == "" {
		return nil
	}
	ctl, err := os.OpenFile(b.cfg.perfCtl, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("perf control: %w", err)
	}
	defer func() { _ = ctl.Close() }()
	ack, err := os.Open(b.cfg.perfAck)
	if err != nil {
		return fmt.Errorf("perf control: %w", err)
	}
	defer func() { _ = ack.Close() }()
	if _, err := io.WriteString(ctl, cmd+"\n"); err != nil {
		return fmt.Errorf("perf control %s: %w", cmd, err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(ack, buf); err != nil {
		return fmt.Errorf("perf control %s: read the acknowledgement: %w", cmd, err)
	}
	return nil
}

// blockRunnerInserts turns devdb's failCommand fail point on (every insert
// from a connection whose appName is changehook's waits slowInsert before it
// runs) or off.
func (b *bench) blockRunnerInserts(ctx context.Context, on bool) error {
	cmd := bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "off"}}
	if on {
		cmd = bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "alwaysOn"},
			{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"insert"}}, {Key: "blockConnection", Value: true},
				{Key: "blockTimeMS", Value: int32(slowInsert / time.Millisecond)}, {Key: "appName", Value: "changehook"}}}}
	}
	if err := b.client.Database("admin").RunCommand(ctx, cmd).Err(); err != nil {
		return fmt.Errorf("configure the slow-insert fail point: %w", err)
	}
	return nil
}

// historyCounters reads changehook_history_written_total and
// changehook_history_dropped_total from the runner's /metrics (-1 when
// absent: history disabled, or the runner could not be asked).
func historyCounters(ctx context.Context, admin string) (written, dropped float64) {
	written, dropped = -1, -1
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "changehook_history_written_total":
			written = f
		case "changehook_history_dropped_total":
			dropped = f
		}
	}
	return
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// print writes the history phase as a Markdown table and its verdicts.
func (h *historyResult) print(w io.Writer) {
	fmt.Fprintf(w, "\nHistory overhead (mode none, concurrency %d, backlog %d per drain, %d rounds after one uncounted warm-up drain, variant order rotated each round; load average at start %s, at end %s):\n\n",
		h.Concurrency, h.Events, h.Rounds, h.LoadFrom, h.LoadTo)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| history\t events/s by round\t median events/s\t vs off\t median runner µs/event\t median devdb+receiver µs/event\t written / dropped (each round)\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t")
	med := map[string]float64{}
	for _, v := range historyVariants {
		var rates, cpus, hosts []float64
		var rounds, counts []string
		for _, r := range h.Runs {
			if r.Variant != v.Name {
				continue
			}
			rates = append(rates, r.Rate)
			cpus = append(cpus, float64(r.CPU.Microseconds())/float64(h.Events))
			hosts = append(hosts, float64(r.HostCPU.Microseconds())/float64(h.Events))
			rounds = append(rounds, fmt.Sprintf("%.0f", r.Rate))
			if r.Written < 0 {
				counts = append(counts, "-")
			} else {
				counts = append(counts, fmt.Sprintf("%.0f / %.0f", r.Written, r.Dropped))
			}
		}
		if len(rates) == 0 {
			continue // not drained (-history-variants)
		}
		med[v.Name] = median(rates)
		label := v.Name
		if v.Slow {
			label = fmt.Sprintf("slow (every history insert blocked %v)", slowInsert)
		}
		vs := "-"
		if v.Name != "off" && med["off"] > 0 {
			vs = fmt.Sprintf("%+.1f%%", 100*(med[v.Name]-med["off"])/med["off"])
		}
		fmt.Fprintf(tw, "| %s\t %s\t %.0f\t %s\t %.0f\t %.0f\t %s\t\n", label, strings.Join(rounds, ", "), med[v.Name], vs, median(cpus), median(hosts), strings.Join(counts, ", "))
	}
	_ = tw.Flush()
	if med["off"] <= 0 {
		return
	}
	fmt.Fprintln(w)
	for _, name := range []string{"on", "slow"} {
		if med[name] <= 0 {
			continue
		}
		loss := 100 * (med["off"] - med[name]) / med["off"]
		fmt.Fprintf(w, "  history %s costs < 5%% of events/s: %.1f%% %s\n", name, loss, verdict(loss < 5))
		if o, ok := h.overhead(name); ok {
			fmt.Fprintf(w, "    paired by round (each round's %s drain against its off drain, adjacent in time): median %+.1f%% (%s)\n",
				name, o.PairedMedian, strings.Join(o.Paired, ", "))
			fmt.Fprintf(w, "    CPU per event, off → %s (runner + devdb/receiver, medians): %.1f → %.1f µs (%+.1f%%): what it costs a CPU-bound machine\n",
				name, o.CPUOff, o.CPUOn, o.CPUAdded)
		}
	}
}

// historyOverhead is a history variant's cost against off, estimated two
// ways that are steadier than the ratio of the medians: the median of the
// rounds' paired ratios (a round's two drains are adjacent in time, so a
// drift of the machine's speed cancels out) and the median CPU per event
// of both processes.
type historyOverhead struct {
	// Paired is each round's change of events/s against off, formatted.
	Paired []string
	// PairedMedian is the median of the rounds' changes, in percent
	// (negative: slower than off).
	PairedMedian float64
	// CPUOff and CPUOn are the medians of runner + devdb/receiver CPU µs
	// per event; CPUAdded is CPUOn's change against CPUOff, in percent.
	CPUOff, CPUOn, CPUAdded float64
}

// overhead estimates variant name's cost against off; false when either
// was not drained.
func (h *historyResult) overhead(name string) (historyOverhead, bool) {
	var o historyOverhead
	off := map[int]historyRun{}
	var cpuOff, cpuOn, changes []float64
	for _, r := range h.Runs {
		if r.Variant == "off" {
			off[r.Round] = r
			cpuOff = append(cpuOff, float64((r.CPU+r.HostCPU).Microseconds())/float64(h.Events))
		}
	}
	for _, r := range h.Runs {
		if r.Variant != name {
			continue
		}
		cpuOn = append(cpuOn, float64((r.CPU+r.HostCPU).Microseconds())/float64(h.Events))
		if b, ok := off[r.Round]; ok && b.Rate > 0 {
			c := 100 * (r.Rate - b.Rate) / b.Rate
			changes = append(changes, c)
			o.Paired = append(o.Paired, fmt.Sprintf("%+.1f%%", c))
		}
	}
	if len(changes) == 0 || len(cpuOff) == 0 {
		return o, false
	}
	o.PairedMedian = median(changes)
	o.CPUOff, o.CPUOn = median(cpuOff), median(cpuOn)
	if o.CPUOff > 0 {
		o.CPUAdded = 100 * (o.CPUOn - o.CPUOff) / o.CPUOff
	}
	return o, true
}

// runHistoryOnly runs only the history phase (-history-only) and prints it.
func (b *bench) runHistoryOnly(ctx context.Context, w io.Writer) error {
	h, err := b.historyPhase(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "changehook history overhead benchmark, %s\nmachine: %s\n", time.Now().UTC().Format(time.RFC3339), machine())
	h.print(w)
	return nil
}
