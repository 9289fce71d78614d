package runner_test

import (
	"context"
	"fmt"
	"github.com/changehook/changehook/internal/syncbuf"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestPauseOfAPausedTriggerShowsTheNewPause: pausing a trigger the
// controls paused already shows the new pause's reason, by and time in the
// running process's status (as a restart would, reading the control
// document), and the request's result says it was paused already and what
// changed. Alike for every partition, and for the lease holder in a
// cluster. A payload-error pause, the process's own, stays shown (it keeps
// /readyz failing until a resume) and the result says so.
func TestPauseOfAPausedTriggerShowsTheNewPause(t *testing.T) {
	t.Parallel()
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	again := `already paused (by cli since 2026-01-02T03:04:05Z: "maintenance"); now paused by api since 2026-01-02T03:05:05Z: "upgrade"`
	for _, tc := range []struct {
		name          string
		partitions    int
		clustered     bool
		payloadErrors bool // the first pause is the payload-error limit's
		want          string
		shows         runner.PauseInfo
	}{
		{name: "trigger", want: again, shows: runner.PauseInfo{Reason: "upgrade", By: "api", Since: t2}},
		{name: "partitions", partitions: 2, want: again + " (all 2 partitions)", shows: runner.PauseInfo{Reason: "upgrade", By: "api", Since: t2}},
		{name: "lease holder", clustered: true, want: again, shows: runner.PauseInfo{Reason: "upgrade", By: "api", Since: t2}},
		{name: "payload errors", payloadErrors: true,
			want: "already paused by payload_errors since %s" +
				", which stays shown (and /readyz failing) until a resume; this pause is recorded too and holds after a restart",
			shows: runner.PauseInfo{Reason: "bad payload", By: runner.PauseByPayloadErrors}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			r := startOrdersForControls(t, client, recv, tc.partitions, tc.clustered)
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			if tc.payloadErrors {
				if err := r.Pause("orders", "bad payload", runner.PauseByPayloadErrors); err != nil {
					t.Fatal(err)
				}
			} else if msg, err := runner.RequestControl(ctx, st, "orders", "maintenance", store.ControlRequest{Kind: store.RequestPause, By: "cli", At: t1}); err != nil {
				t.Fatalf("first pause = %q, %v", msg, err)
			}
			waitFor(t, "trigger paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
			want, shows := tc.want, tc.shows
			if tc.payloadErrors {
				// Paused at the runner's clock's time.
				shows.Since = statusOf(t, r, "orders").Paused.Since
				want = fmt.Sprintf(want, shows.Since.UTC().Format(time.RFC3339))
			}

			msg, err := runner.RequestControl(ctx, st, "orders", "upgrade", store.ControlRequest{Kind: store.RequestPause, By: "api", At: t2})
			if err != nil || msg != want {
				t.Errorf("pause again = %q, %v;\nwant %q", msg, err, want)
			}
			check := func(when string) {
				t.Helper()
				s := statusOf(t, r, "orders")
				if s.State != runner.StatePaused || s.Paused == nil || !s.Paused.Since.Equal(shows.Since) ||
					s.Paused.Reason != shows.Reason || s.Paused.By != shows.By {
					t.Errorf("%s: status %s, paused %+v; want paused %+v", when, s.State, s.Paused, shows)
				}
				for _, p := range s.Partitions {
					if p.State != runner.StatePaused {
						t.Errorf("%s: partition %s is %s, want paused", when, p.Key, p.State)
					}
				}
			}
			check("after the second pause")
			// Reading the control documents again changes nothing.
			if err := r.ReadControlsNow(ctx); err != nil {
				t.Fatal(err)
			}
			check("after the controls were read again")

			// A resume lifts it.
			if msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "test"}); err != nil {
				t.Fatalf("resume = %q, %v", msg, err)
			}
			waitFor(t, "trigger running again", func() bool { return statusOf(t, r, "orders").State == runner.StateRunning })
		})
	}
}

// TestPausesReadAtStartShowTheNewestWithoutPausedAgain: a partition paused
// both by its trigger's document and, later, by its own shows its own,
// newer pause from the start, without the "paused again" warning a real
// second pause logs; the other partition shows the trigger's pause.
func TestPausesReadAtStartShowTheNewestWithoutPausedAgain(t *testing.T) {
	t.Parallel()
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	for _, p := range []struct {
		key, reason string
		at          time.Time
	}{{"orders", "maintenance", t1}, {"orders/p1of2", "one partition", t2}} {
		if _, err := st.RequestControl(ctx, p.key, p.reason, store.ControlRequest{Kind: store.RequestPause, By: "cli", At: p.at}); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncbuf.Buffer
	r := startRunner(t, parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    partitions: 2
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL), client, runner.Options{Controls: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitFor(t, "trigger paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
	want := map[string]runner.PauseInfo{
		"orders/p0of2": {Reason: "maintenance", By: "cli", Since: t1},
		"orders/p1of2": {Reason: "one partition", By: "cli", Since: t2},
	}
	for key, w := range want {
		if p, ok, err := r.Paused(key); err != nil || !ok || p != w {
			t.Errorf("partition %s paused %+v (%v, %v), want %+v", key, p, ok, err, w)
		}
	}
	if strings.Contains(logs.String(), "paused again") {
		t.Errorf("the pauses read at start were logged as a second pause:\n%s", logs.String())
	}
}
