package runner

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
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

// fenceLease is a Lease of unit pe2 with a fixed fence.
type fenceLease struct{ fence store.Fence }

func (fenceLease) Key() string          { return "pe2" }
func (l fenceLease) Fence() store.Fence { return l.fence }
func (fenceLease) Deadline() time.Time  { return time.Now().Add(time.Hour) }
func (fenceLease) Valid() bool          { return true }
func (fenceLease) Lost(error)           {}
func (l fenceLease) String() string     { return "fenceLease" }

// TestPayloadPauseBelongsToTheLeaseTenure: a payload-error pause is this
// member's own and belongs to its tenure of the unit. Stop keeps it (the
// cluster driver stops and starts a unit under the same lease for a
// reload, which must not lift it: README's Safety section), as does a
// start under the same lease; a start under a new lease (the unit came
// back after another member may have run it) drops it, logs so, and holds
// the unit until the controls are read again (an operator's pause there
// then holds it). A pause of the controls (an operator's) always stays.
func TestPayloadPauseBelongsToTheLeaseTenure(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := fenceLease{store.Fence{Owner: "a", Epoch: 1}}
	for _, tc := range []struct {
		name       string
		by         string
		next       Lease
		wantPause  bool
		wantUnread bool
		wantLog    string
	}{
		{name: "payload errors, same lease", by: PauseByPayloadErrors, next: first, wantPause: true},
		{name: "payload errors, new lease", by: PauseByPayloadErrors, next: fenceLease{store.Fence{Owner: "a", Epoch: 3}}, wantUnread: true,
			wantLog: `msg="payload-error pause of an earlier lease dropped: the unit's payload is tried again under the new lease" trigger=pe2 paused_since=2026-01-02T03:04:05Z`},
		{name: "operator, new lease", by: "cli", next: fenceLease{store.Fence{Owner: "a", Epoch: 3}}, wantPause: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, s, buf := newTenureRunner(true, true, &PauseInfo{By: tc.by, Reason: "r", Since: since})
			r.opts.Controls = true
			s.lease = first
			s.pauseLeased, s.pauseLease = tc.by == PauseByPayloadErrors, first.fence // set under the first lease
			if err := r.Stop(context.Background(), "pe2"); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			paused := s.pause != nil
			s.mu.Unlock()
			if !paused {
				t.Fatal("Stop dropped the pause")
			}
			if !r.Ready() {
				t.Errorf("Ready() = false after Stop: a unit another member runs does not hold /readyz back")
			}
			wantState := StateStandby // the payload-error pause belongs to the lease
			if tc.by != PauseByPayloadErrors {
				wantState = StatePaused
			}
			if st, err := r.TriggerStatus("pe2"); err != nil || st.State != wantState {
				t.Errorf("state after Stop = %s (%v), want %s", st.State, err, wantState)
			}
			if err := r.StartLeased("pe2", tc.next); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			paused, unread := s.pause != nil, s.unread
			s.mu.Unlock()
			if paused != tc.wantPause || unread != tc.wantUnread {
				t.Errorf("after StartLeased: paused %v, waiting for the controls %v; want %v, %v", paused, unread, tc.wantPause, tc.wantUnread)
			}
			logged := strings.TrimSpace(buf.String())
			if tc.wantLog == "" && logged != "" || tc.wantLog != "" && !strings.HasSuffix(logged, tc.wantLog) {
				t.Errorf("log = %q, want it to end with %q", logged, tc.wantLog)
			}
		})
	}
}

// TestPayloadPauseOfAUnitNotHeldHere: a payload error does not pause a
// unit not held here (another partition's, or a delivery draining after
// Stop), and a payload-error pause of a unit not held here never makes the
// runner unready; one held here does.
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
