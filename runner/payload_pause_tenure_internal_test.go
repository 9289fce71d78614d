package runner

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/triggers"
)

// newTenureRunner is a started clustered Runner of the one trigger pe2
// (not running: no Run), whose log goes to the returned buffer.
func newTenureRunner(standby bool, want bool, pause *PauseInfo) (*Runner, *slot, *bytes.Buffer) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	r := &Runner{opts: Options{Clustered: true, Standby: func(string) bool { return standby }, Clock: dispatcher.SystemClock{}, Logger: log}, log: log}
	r.started.Store(true)
	s := &slot{t: &triggers.Trigger{Name: "pe2", Enabled: true}, want: want, pause: pause}
	r.slots = map[string]*slot{"pe2": s}
	r.order = []string{"pe2"}
	r.units = map[string][]string{"pe2": {"pe2"}}
	return r, s, &buf
}

// TestPayloadPauseBelongsToTheLeaseTenure: a payload-error pause is this
// member's own and ends with its tenure of the unit: Stop (the lease ended
// or was handed off) drops it, so the unit shows standby, does not hold
// /readyz back and is not held paused when its lease comes back; a pause
// of the controls (an operator's) stays.
func TestPayloadPauseBelongsToTheLeaseTenure(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		by        string
		wantPause bool
		wantState State
		wantLog   string
	}{
		{name: "payload errors", by: PauseByPayloadErrors, wantPause: false, wantState: StateStandby,
			wantLog: `msg="payload-error pause dropped: this member no longer runs the trigger; the member that runs it next pauses it again if its payload still fails" trigger=pe2 paused_since=2026-01-02T03:04:05Z`},
		{name: "operator", by: "cli", wantPause: true, wantState: StatePaused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, s, buf := newTenureRunner(true, true, &PauseInfo{By: tc.by, Reason: "r", Since: since})
			if err := r.Stop(context.Background(), "pe2"); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			paused := s.pause != nil
			s.mu.Unlock()
			if paused != tc.wantPause {
				t.Errorf("paused after Stop = %v, want %v", paused, tc.wantPause)
			}
			st, err := r.TriggerStatus("pe2")
			if err != nil {
				t.Fatal(err)
			}
			if st.State != tc.wantState {
				t.Errorf("state after Stop = %s, want %s", st.State, tc.wantState)
			}
			if !r.Ready() {
				t.Errorf("Ready() = false after Stop: a unit another member runs does not hold /readyz back")
			}
			logged := strings.TrimSpace(buf.String())
			if tc.wantLog == "" && logged != "" || tc.wantLog != "" && !strings.HasSuffix(logged, tc.wantLog) {
				t.Errorf("log = %q, want it to end with %q", logged, tc.wantLog)
			}
		})
	}
}

// TestPayloadPauseOfAUnitNotHeldHere: a payload error of a delivery that
// drains after Stop does not pause the unit here (the next holder pauses
// it if the payload still fails), and a payload-error pause of a unit not
// held here never makes the runner unready; one held here does.
func TestPayloadPauseOfAUnitNotHeldHere(t *testing.T) {
	for _, tc := range []struct {
		name      string
		want      bool
		wantPause bool
		wantReady bool
	}{
		{name: "held here", want: true, wantPause: true, wantReady: false},
		{name: "not held here", want: false, wantPause: false, wantReady: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, s, _ := newTenureRunner(!tc.want, tc.want, nil)
			if err := r.Pause("pe2", "payload error", PauseByPayloadErrors); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			paused := s.pause != nil
			s.mu.Unlock()
			if paused != tc.wantPause {
				t.Errorf("paused = %v, want %v", paused, tc.wantPause)
			}
			s.mu.Lock()
			s.pause = &PauseInfo{By: PauseByPayloadErrors, Reason: "payload error", Since: time.Now()}
			s.mu.Unlock()
			if got := r.Ready(); got != tc.wantReady {
				t.Errorf("Ready() with a payload-error pause = %v, want %v", got, tc.wantReady)
			}
		})
	}
}
