package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// controlsReads records how many control documents each find on the
// controls collection returned.
type controlsReads struct {
	mu   sync.Mutex
	find map[int64]bool // request ids of the finds on controls
	docs []int          // documents each returned
}

func (c *controlsReads) started(_ context.Context, e *event.CommandStartedEvent) {
	if e.CommandName != "find" {
		return
	}
	if coll, ok := e.Command.Lookup("find").StringValueOK(); ok && coll == store.ControlsCollection {
		c.mu.Lock()
		c.find[e.RequestID] = true
		c.mu.Unlock()
	}
}

func (c *controlsReads) succeeded(_ context.Context, e *event.CommandSucceededEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.find[e.RequestID] {
		return
	}
	delete(c.find, e.RequestID)
	batch, err := e.Reply.LookupErr("cursor", "firstBatch")
	if err != nil {
		return
	}
	vals, _ := batch.Array().Values()
	c.docs = append(c.docs, len(vals))
}

// reset forgets the reads so far.
func (c *controlsReads) reset() {
	c.mu.Lock()
	c.docs = nil
	c.mu.Unlock()
}

// most returns the most documents one find returned, and how many finds
// there were.
func (c *controlsReads) most() (most, finds int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.docs {
		most = max(most, n)
	}
	return most, len(c.docs)
}

// TestControlsOfRemovedTriggersStayBounded: triggers added by a reload,
// paused (by name, or one partition by its key) and removed again leave
// their control documents in the state database — a trigger added back is
// paused again — but the runner neither reads them at every reload (only
// the configuration's documents) nor remembers a request of each in
// ctlSeen, which held one entry per trigger ever controlled.
func TestControlsOfRemovedTriggersStayBounded(t *testing.T) {
	reads := &controlsReads{find: map[int64]bool{}}
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetMonitor(&event.CommandMonitor{Started: reads.started, Succeeded: reads.succeeded}))
	st := store.New(client, "chstate")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	config := func(extra ...string) *triggers.Config {
		var b strings.Builder
		b.WriteString("triggers:\n  - { name: keep, database: shop, collection: keep, webhook: { url: \"http://127.0.0.1:9/hook\" } }\n")
		for _, name := range extra {
			parts := ""
			if strings.HasSuffix(name, "_p") {
				parts = ", ordering: per_document, partitions: 2"
			}
			fmt.Fprintf(&b, "  - { name: %s, database: shop, collection: %s%s, webhook: { url: \"http://127.0.0.1:9/hook\" } }\n", name, name, parts)
		}
		cfg, err := triggers.Parse("t.yaml", []byte(b.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	r, err := New(config(), client, st, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Controls: true, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	var runErr error
	stopRun := sync.OnceFunc(func() {
		stop()
		runErr = <-done
	})
	defer stopRun()
	const removed = 6
	for i := range removed {
		name, target := fmt.Sprintf("tmp%d", i), fmt.Sprintf("tmp%d", i)
		if i%2 == 1 {
			name += "_p"
			target = triggers.PartitionKey(name, 1, 2)
		}
		if _, err := r.Reload(ctx, config(name)); err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := r.RequestControl(cctx, target, "maintenance", store.ControlRequest{Kind: store.RequestPause, By: "test"})
		ccancel()
		if err != nil {
			t.Fatalf("pause %s: %v", target, err)
		}
		if _, err := r.Reload(ctx, config()); err != nil {
			t.Fatal(err)
		}
	}
	if all, err := st.ListControls(ctx); err != nil || len(all) != removed {
		t.Fatalf("%d control documents (%v), want the %d of the removed triggers kept", len(all), err, removed)
	}

	// Adding one back reads its document, and no other, and pauses it.
	reads.reset()
	if _, err := r.Reload(ctx, config("tmp0")); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("tmp0 paused again", func() bool {
		for _, s := range r.Status() {
			if s.Name == "tmp0" {
				return s.State == StatePaused
			}
		}
		return false
	})
	if most, finds := reads.most(); finds == 0 || most > 1 {
		t.Errorf("reload: %d reads of the controls, the largest %d documents; want only tmp0's document read (1), not every removed trigger's", finds, most)
	}
	if _, err := r.Reload(ctx, config()); err != nil {
		t.Fatal(err)
	}
	stopRun()
	if runErr != nil {
		t.Fatal(runErr)
	}
	// Run has returned: no goroutine of r uses ctlSeen any more.
	if len(r.ctlSeen) > 1 {
		t.Errorf("ctlSeen holds %d entries %v after %d triggers were controlled and removed; want at most keep's", len(r.ctlSeen), r.ctlSeen, removed)
	}
}
