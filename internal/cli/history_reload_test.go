package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestReloadSwapsTheHistoryWriter: a reload that turns the history on puts
// a writer in the runner; one that turns it off takes it out and closes
// it, and by then every record it was given is written (nothing left in
// its queue, nothing lost), it takes no more records (no goroutine left
// behind), and the runner records nothing; a changed max_records replaces
// the writer the same way.
func TestReloadSwapsTheHistoryWriter(t *testing.T) {
	_, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := store.New(client, "chstate")
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := &triggers.Config{History: triggers.HistoryConfig{Enabled: false}}
	rn, err := runner.New(cfg, client, st, runner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rl := newReloader("h.yaml", Env{}, log, cfg, rn, prometheus.NewRegistry())
	rl.st = st
	apply := func(h triggers.HistoryConfig) {
		rl.applyHistory(ctx, h, "test")
		c := *rl.cfg
		c.History = h
		rl.cfg = &c
	}
	writer := func() *store.HistoryWriter {
		w := rn.SetHistory(nil)
		rn.SetHistory(w)
		return w
	}
	observe := rn.HistoryObserver("orders", "", store.KindDelivery, "")
	count := func() int64 {
		n, err := st.CountAttempts(ctx, store.AttemptFilter{Trigger: "orders"})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	attempts := func(from, n int) {
		for i := from; i < from+n; i++ {
			observe(dispatcher.Attempt{WebhookID: fmt.Sprint("msg_", i), Number: 1, Status: 204, Start: time.Now()})
		}
	}

	attempts(0, 5) // off: not recorded anywhere
	if rn.HistoryOn() || writer() != nil {
		t.Fatal("history on before the reload that turns it on")
	}
	on := triggers.HistoryConfig{Enabled: true, Retention: time.Hour, MaxRecords: 1000}
	apply(on)
	first := writer()
	if first == nil || !rn.HistoryOn() {
		t.Fatal("no history writer after the reload that turns it on")
	}
	attempts(100, 50)

	// max_records changed: a new writer; the first one is closed, its
	// records written.
	on.MaxRecords = 2000
	apply(on)
	second := writer()
	if second == nil || second == first {
		t.Fatal("a changed max_records did not replace the writer")
	}
	if n := count(); n != 50 {
		t.Errorf("%d records written when the first writer was replaced, want 50 (it flushes before it closes)", n)
	}
	if first.Record(store.AttemptRecord{Trigger: "orders", WebhookID: "late"}) {
		t.Error("the replaced writer still takes records: it was not closed")
	}
	attempts(200, 30)

	apply(triggers.HistoryConfig{Enabled: false, Retention: time.Hour, MaxRecords: 2000})
	if rn.HistoryOn() || writer() != nil {
		t.Fatal("history still on after the reload that turns it off")
	}
	if n := count(); n != 80 {
		t.Errorf("%d records written when the history was turned off, want 80", n)
	}
	if second.Record(store.AttemptRecord{Trigger: "orders", WebhookID: "late"}) {
		t.Error("the writer of a history turned off still takes records: it was not closed")
	}
	if d := first.Dropped() + second.Dropped(); d != 2 {
		t.Errorf("%d records dropped, want only the 2 given to the closed writers", d)
	}
	attempts(300, 10) // off again: nowhere to go, nothing written
	if n := count(); n != 80 {
		t.Errorf("%d records after attempts with the history off, want 80", n)
	}
}
