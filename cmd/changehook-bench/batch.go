package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// batchedDrains drains per_document and none (those of -modes) again with
// batch.max_events -batch, and with -steady measures their latency at the
// steady rate, appending the results to rep.Batched.
func (b *bench) batchedDrains(ctx context.Context, rep *report) error {
	if b.cfg.batch == 0 {
		return nil
	}
	for _, m := range b.cfg.modes {
		if m == "strict" {
			continue
		}
		b.logf("runner %s batched (max_events %d): drain a backlog of %d", m, b.cfg.batch, b.cfg.n)
		r, err := b.drain(ctx, m, false, b.cfg.batch)
		if err != nil {
			return err
		}
		if b.cfg.steady > 0 {
			b.logf("runner %s batched: %d inserts/s for %v", m, b.cfg.steadyRate, b.cfg.steady)
			if err := b.steadyRun(ctx, m, &r); err != nil {
				return err
			}
		}
		rep.Batched = append(rep.Batched, r)
	}
	return nil
}

// printBatched writes the batched drains' table and goals.
func (r *report) printBatched(w io.Writer, cfg config) {
	if len(r.Batched) == 0 {
		return
	}
	plain := map[string]modeResult{}
	for _, m := range r.Modes {
		plain[m.Mode] = m
	}
	fmt.Fprintf(w, "\nBatched drains (same backlog of %d; batch: {max_events: %d}, max_bytes and max_wait default; concurrency %d):\n\n", r.N, cfg.batch, cfg.concurrency)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| mode\t batch\t events/s\t vs (a)\t requests\t events/request\t runner µs/event\t devdb+receiver µs/event\t peak RSS MB\t p50 ms\t p99 ms\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, m := range r.Batched {
		for _, x := range []modeResult{plain[m.Mode], m} {
			if x.Events == 0 {
				continue
			}
			batch := "-"
			if x.Batch > 0 {
				batch = fmt.Sprint(x.Batch)
			}
			fmt.Fprintf(tw, "| %s\t %s\t %.0f\t %.0f%%\t %d\t %.1f\t %.1f\t %.1f\t %.1f\t %s\t %s\t\n", x.Mode, batch, x.Rate, 100*x.Rate/r.StreamA,
				x.Requests, float64(x.Events)/float64(max(x.Requests, 1)), float64(x.CPU.Microseconds())/float64(x.Events),
				float64(x.HostCPU.Microseconds())/float64(x.Events), mb(x.PeakRSS), msOrDash(x.Steady, 50), msOrDash(x.Steady, 99))
		}
	}
	_ = tw.Flush()
	printKernel(w, r.Batched)
	printFaults(w, r.Batched)
	printGC(w, r.Batched)
	printWaits(w, r.Batched)
	printBusy(w, r.Batched, r.CPUs, r.StreamA)
	for _, m := range r.Batched {
		fmt.Fprintf(w, "  %s batched (max_events %d) ≥ 80%% of (a): %.0f%% %s\n", m.Mode, m.Batch, 100*m.Rate/r.StreamA, verdict(m.Rate >= 0.8*r.StreamA))
		if len(m.Steady) > 0 {
			p99 := percentile(m.Steady, 99)
			fmt.Fprintf(w, "  %s batched p99 < 25 ms at %d/s: %s ms %s\n", m.Mode, cfg.steadyRate, ms(p99), verdict(p99 < 25*time.Millisecond))
		}
	}
}
