package runner_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

const statusTriggersYAML = `
defaults:
  database: shop
  retry: { initial_backoff: 20ms, max_backoff: 40ms }
triggers:
  - name: flaky
    collection: a
    webhook: { url: "${HOOK_URL}/flaky" }
    dead_letter: false
  - name: gone
    collection: b
    webhook: { url: "${HOOK_URL}/gone" }
    dead_letter: false
  - name: rejected
    collection: c
    webhook: { url: "${HOOK_URL}/rejected" }
    retry: { max_attempts: 1 }
  - name: fine
    collection: d
    webhook: { url: "${HOOK_URL}/fine" }
`

// TestStatusTellsTheTruth drives one trigger per state through real
// deliveries: an endpoint answering 503 makes its trigger retrying with the
// head-of-line delivery's attempts, status, error and next attempt; one
// answering 410 to a trigger without dead letters makes it failed with a
// way out; a 400 with dead letters stores one, counted by
// dead_letters_current and changehook_dead_letters until it is purged.
// Every per-trigger series exists before the first event.
func TestStatusTellsTheTruth(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	var flakyUp atomic.Bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if !flakyUp.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		case "/gone":
			w.WriteHeader(http.StatusGone)
			return
		case "/rejected":
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	cfg := parseTrigger(t, statusTriggersYAML, hook.URL)
	reg := prometheus.NewRegistry()
	st := store.New(client, stateDB)
	r := startRunner(t, cfg, client, runner.Options{Registry: reg, DeadLetterRefresh: time.Hour})
	waitFor(t, "runner ready", r.Ready)

	// Zero series from the start, before any event.
	for _, series := range []string{
		`changehook_deliveries_total{outcome="dead_lettered",trigger="fine"} 0`,
		`changehook_delivery_attempts_total{reason="server_error",trigger="fine"} 0`,
		`changehook_dead_letters_total{trigger="fine"} 0`,
		`changehook_events_received_total{partition="0",trigger="fine"} 0`,
		`changehook_dead_letters{trigger="fine"} 0`,
		`changehook_trigger_state{state="running",trigger="fine"} 1`,
		`changehook_trigger_state{state="failed",trigger="fine"} 0`,
	} {
		if !strings.Contains(gather(t, reg), series) {
			t.Errorf("metrics lack %s", series)
		}
	}
	// The state metric's help names every state.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "changehook_trigger_state" {
			continue
		}
		for _, state := range runner.AllStates {
			if !strings.Contains(mf.GetHelp(), string(state)) {
				t.Errorf("changehook_trigger_state's help does not name state %q: %s", state, mf.GetHelp())
			}
		}
	}

	db := client.Database("shop")
	for _, c := range []string{"a", "b", "c"} {
		insert(t, db.Collection(c), bson.D{{Key: "_id", Value: int32(1)}})
	}

	waitFor(t, "flaky retrying with head-of-line info", func() bool {
		s := statusOf(t, r, "flaky")
		h := s.HeadOfLine
		return s.State == runner.StateRetrying && h != nil && h.Attempts >= 2 && h.LastStatus == 503 && !h.NextAttemptAt.IsZero()
	})
	s := statusOf(t, r, "flaky")
	if !strings.Contains(s.LastError, "HTTP 503") || !strings.HasPrefix(s.HeadOfLine.WebhookID, "msg_") ||
		s.HeadOfLine.LastReason != "server_error" || s.HeadOfLine.Permanent || s.Since.IsZero() || s.WayOut != "" {
		t.Errorf("flaky status = %+v, head of line %+v", s, *s.HeadOfLine)
	}
	since := s.Since
	waitFor(t, "more attempts, same since", func() bool {
		s := statusOf(t, r, "flaky")
		return s.HeadOfLine != nil && s.HeadOfLine.Attempts >= 4 && s.Since.Equal(since)
	})

	waitFor(t, "gone failed with a way out", func() bool {
		s := statusOf(t, r, "gone")
		return s.State == runner.StateFailed && s.HeadOfLine != nil && s.HeadOfLine.Permanent
	})
	s = statusOf(t, r, "gone")
	if !strings.Contains(s.WayOut, "changehook skip gone") || !strings.Contains(s.WayOut, "HTTP 410") || !s.StreamOpen {
		t.Errorf("gone status = %+v", s)
	}
	if !strings.Contains(gather(t, reg), `changehook_trigger_state{state="failed",trigger="gone"} 1`) {
		t.Error("changehook_trigger_state does not show gone failed")
	}

	waitFor(t, "rejected dead-lettered and counted", func() bool {
		return statusOf(t, r, "rejected").DeadLettersCurrent == 1
	})
	if !strings.Contains(gather(t, reg), `changehook_dead_letters{trigger="rejected"} 1`) {
		t.Error("changehook_dead_letters{trigger=rejected} is not 1")
	}
	// The count is read from the state database, where the dead letter
	// is before the event it holds is resolved and leaves the head of line.
	waitFor(t, "rejected running with nothing held after its dead letter", func() bool {
		s := statusOf(t, r, "rejected")
		return s.State == runner.StateRunning && s.HeadOfLine == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := st.PurgeDeadLetters(ctx, store.DeadLetterFilter{Trigger: "rejected"}); err != nil {
		t.Fatal(err)
	}
	r.RefreshDeadLetters()
	waitFor(t, "purged dead letters counted", func() bool { return statusOf(t, r, "rejected").DeadLettersCurrent == 0 })
	if s := statusOf(t, r, "rejected"); s.DeadLetters != 1 {
		t.Errorf("dead_letters (stored since start) = %d, want 1", s.DeadLetters)
	}

	flakyUp.Store(true)
	waitFor(t, "flaky running again", func() bool {
		s := statusOf(t, r, "flaky")
		return s.State == runner.StateRunning && s.HeadOfLine == nil
	})
}

func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(mf.GetName())
			b.WriteString("{")
			for i, l := range m.GetLabel() {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
			}
			b.WriteString("} ")
			switch {
			case m.Counter != nil:
				b.WriteString(trimFloat(m.GetCounter().GetValue()))
			case m.Gauge != nil:
				b.WriteString(trimFloat(m.GetGauge().GetValue()))
			default:
				b.WriteString("-")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
