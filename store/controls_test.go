package store_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// TestRecordUnitApplied: each unit records its result of the newest
// request once; a result for a replaced request is dropped; a new request
// starts with no unit results.
func TestRecordUnitApplied(t *testing.T) {
	st, _ := newStore(t)
	ctx := t.Context()
	id, err := st.RequestControl(ctx, "orders", "", store.ControlRequest{Kind: store.RequestRedeliver})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		res      store.UnitResult
		recorded bool
		done     []string
	}{
		{"first partition", store.UnitResult{Key: "orders/p0of2", ID: id, By: "m1", Message: "ok"}, true, []string{"orders/p0of2"}},
		{"same partition again", store.UnitResult{Key: "orders/p0of2", ID: id, By: "m2", Message: "again"}, false, nil},
		{"a replaced request", store.UnitResult{Key: "orders/p1of2", ID: "old", By: "m2"}, false, nil},
		{"second partition", store.UnitResult{Key: "orders/p1of2", ID: id, By: "m2", Error: "boom"}, true, []string{"orders/p0of2", "orders/p1of2"}},
	}
	for _, s := range steps {
		c, ok, err := st.RecordUnitApplied(ctx, "orders", s.res)
		if err != nil || ok != s.recorded {
			t.Fatalf("%s: recorded %v, %v; want %v", s.name, ok, err, s.recorded)
		}
		if !ok {
			continue
		}
		done := c.UnitsDone()
		if len(done) != len(s.done) {
			t.Fatalf("%s: units done %v, want %v", s.name, done, s.done)
		}
		for _, k := range s.done {
			if _, ok := done[k]; !ok {
				t.Fatalf("%s: units done %v, want %v", s.name, done, s.done)
			}
		}
		if !c.Pending() {
			t.Errorf("%s: unit results alone must not mark the request applied", s.name)
		}
	}
	c, _, err := st.LoadControl(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if u := c.UnitsDone()["orders/p0of2"]; u.By != "m1" || u.Message != "ok" {
		t.Errorf("partition 0's result %+v, want the first one recorded (m1)", u)
	}
	if err := st.MarkControlApplied(ctx, "orders", store.ControlResult{ID: id, Message: "both"}); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := st.LoadControl(ctx, "orders"); c.Pending() {
		t.Error("still pending after MarkControlApplied")
	}
	// A new request forgets the old results.
	id2, err := st.RequestControl(ctx, "orders", "", store.ControlRequest{Kind: store.RequestPause})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ = st.LoadControl(ctx, "orders")
	if !c.Pending() || len(c.UnitsDone()) != 0 || len(c.Units) != 0 || c.Request.ID != id2 {
		t.Errorf("after a new request: pending %v, units %+v", c.Pending(), c.Units)
	}
	if _, _, err := st.RecordUnitApplied(ctx, "orders", store.UnitResult{ID: id2}); err == nil {
		t.Error("a result without a unit key was accepted")
	}
}

// TestCheckpointNamesTheRewrite: a checkpoint written by a control's
// rewrite names the request until another rewrite replaces it; ordinary
// saves, fenced or not, keep it.
func TestCheckpointNamesTheRewrite(t *testing.T) {
	st, _ := newStore(t)
	ctx := t.Context()
	control := func(want string) {
		t.Helper()
		cp, ok, err := st.LoadCheckpoint(ctx, "orders")
		if err != nil || !ok || cp.Control != want {
			t.Fatalf("checkpoint %+v, %v, %v; want control %q", cp, ok, err, want)
		}
	}
	if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: token(t, "01"), Control: "r1"}); err != nil {
		t.Fatal(err)
	}
	control("r1")
	if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: token(t, "02")}); err != nil {
		t.Fatal(err)
	}
	control("r1")
	f := store.Fence{Owner: "m1", Epoch: 1}
	cp, _, err := st.ClaimCheckpoint(ctx, "orders", f)
	if err != nil || cp.Control != "r1" {
		t.Fatalf("claim: %+v, %v", cp, err)
	}
	if err := st.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: token(t, "03")}, f); err != nil {
		t.Fatal(err)
	}
	control("r1")
	if err := st.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: token(t, "04"), Control: "r2"}, f); err != nil {
		t.Fatal(err)
	}
	control("r2")
}

// TestLoadControls: LoadControls reads the documents of the keys asked for
// (trigger names and partition keys), ordered by key, and no other; keys
// without a document are left out, and no keys read nothing.
func TestLoadControls(t *testing.T) {
	st, _ := newStore(t)
	ctx := t.Context()
	for _, key := range []string{"orders", "orders/p1of2", "removed", "users"} {
		if _, err := st.RequestControl(ctx, key, "maintenance", store.ControlRequest{Kind: store.RequestPause}); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := st.LoadControls(ctx, []string{"users", "orders/p1of2", "orders", "never-controlled"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		if !c.Paused || c.Request == nil || c.Request.Kind != store.RequestPause {
			t.Errorf("%s: document %+v, want the pause", c.Trigger, c)
		}
		got = append(got, c.Trigger)
	}
	if want := []string{"orders", "orders/p1of2", "users"}; !slices.Equal(got, want) {
		t.Errorf("loaded %v, want %v", got, want)
	}
	if cs, err := st.LoadControls(ctx, nil); err != nil || len(cs) != 0 {
		t.Errorf("no keys: %d documents, %v; want none", len(cs), err)
	}
	if all, err := st.ListControls(ctx); err != nil || len(all) != 4 {
		t.Errorf("ListControls: %d documents, %v; want all 4 kept", len(all), err)
	}
}

// TestRequestControlKeepsAPendingRewrite: a redeliver, a skip or a resume
// from a position that is still pending (no process applied it yet) is
// never replaced by the trigger's next request, which is refused naming
// it, and nothing is recorded; once it is applied, the next request is
// recorded. A pending pause or resume from the checkpoint is replaced.
func TestRequestControlKeepsAPendingRewrite(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)
	pause := store.ControlRequest{Kind: store.RequestPause, By: "cli"}
	for _, tc := range []struct {
		name    string
		pending store.ControlRequest
		refused string // "": the next request replaces it
	}{
		{"redeliver", store.ControlRequest{Kind: store.RequestRedeliver, Since: since, By: "cli", At: at},
			`orders has a request still pending, redeliver --since 2026-01-02T03:04:05Z (asked by cli at 2026-01-02T04:00:00Z)`},
		{"skip", store.ControlRequest{Kind: store.RequestSkip, WebhookID: "msg_1", By: "api", At: at},
			"orders has a request still pending, skip --webhook-id msg_1 (asked by api at 2026-01-02T04:00:00Z)"},
		{"skip of any event", store.ControlRequest{Kind: store.RequestSkip, At: at},
			"orders has a request still pending, skip (asked at 2026-01-02T04:00:00Z)"},
		{"resume from a position", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "cli", At: at},
			"orders has a request still pending, resume --from now (asked by cli at 2026-01-02T04:00:00Z)"},
		{"resume from the checkpoint", store.ControlRequest{Kind: store.RequestResume, By: "cli", At: at}, ""},
		{"pause", store.ControlRequest{Kind: store.RequestPause, By: "cli", At: at}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := newStore(t)
			ctx := t.Context()
			id, err := st.RequestControl(ctx, "orders", "", tc.pending)
			if err != nil {
				t.Fatal(err)
			}
			next, err := st.RequestControl(ctx, "orders", "hold on", pause)
			c, _, lerr := st.LoadControl(ctx, "orders")
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tc.refused == "" {
				if err != nil || c.Request == nil || c.Request.ID != next || !c.Paused {
					t.Fatalf("pause after a pending %s: %v; request now %+v, want the pause recorded", tc.name, err, c.Request)
				}
				return
			}
			var pe *store.PendingRequestError
			if !errors.As(err, &pe) || pe.Pending.ID != id || !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("pause after a pending %s: %v; want a *store.PendingRequestError containing %q", tc.name, err, tc.refused)
			}
			if c.Request == nil || c.Request.ID != id || c.Paused {
				t.Fatalf("after the refused pause: request %+v, paused %v; want the pending %s kept and nothing else changed", c.Request, c.Paused, tc.name)
			}
			// Applied: the next request is recorded.
			if err := st.MarkControlApplied(ctx, "orders", store.ControlResult{ID: id}); err != nil {
				t.Fatal(err)
			}
			if next, err = st.RequestControl(ctx, "orders", "hold on", pause); err != nil {
				t.Fatalf("pause after the %s was applied: %v", tc.name, err)
			}
			if c, _, _ := st.LoadControl(ctx, "orders"); c.Request == nil || c.Request.ID != next || !c.Paused {
				t.Errorf("after the %s was applied, pause not recorded: request %+v, paused %v", tc.name, c.Request, c.Paused)
			}
		})
	}
}

// TestResumeClearsThePartitionsPauses: a resume of a trigger's name
// resumes every partition, so it clears the pauses stored under its
// partitions' keys too (else the next process reading them pauses the
// partition again); a resume of one partition's key clears only its own,
// and other triggers' documents are left as they are.
func TestResumeClearsThePartitionsPauses(t *testing.T) {
	for _, tc := range []struct {
		resume string
		paused []string // the keys still paused after it
	}{
		{"orders", []string{"orders-eu/p0of2"}},
		{"orders/p0of2", []string{"orders-eu/p0of2", "orders/p1of2"}},
		{"orders-eu", []string{"orders/p0of2", "orders/p1of2"}},
	} {
		t.Run(tc.resume, func(t *testing.T) {
			st, _ := newStore(t)
			ctx := t.Context()
			keys := []string{"orders/p0of2", "orders/p1of2", "orders-eu/p0of2"}
			for _, key := range keys {
				if _, err := st.RequestControl(ctx, key, "one partition", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.RequestControl(ctx, tc.resume, "", store.ControlRequest{Kind: store.RequestResume, By: "cli"}); err != nil {
				t.Fatal(err)
			}
			var paused []string
			for _, key := range keys {
				c, _, err := st.LoadControl(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if c.Paused {
					paused = append(paused, key)
				}
			}
			slices.Sort(paused)
			if !slices.Equal(paused, tc.paused) {
				t.Errorf("after resume %s, paused %v; want %v", tc.resume, paused, tc.paused)
			}
		})
	}
}

// TestPauseSupersedesThePartitionsResumes: a pause of a trigger's name
// holds every partition, so it marks the resumes stored under its
// partitions' keys as superseded (a process reading them later must not
// lift the pause with them), not its partitions' other requests nor other
// triggers' documents; the partition's next request clears the mark. A
// resume of one partition's key while its trigger's document says paused
// is refused and records nothing; once the trigger is resumed it is
// recorded.
func TestPauseSupersedesThePartitionsResumes(t *testing.T) {
	st, _ := newStore(t)
	ctx := t.Context()
	for _, key := range []string{"orders/p0of2", "orders-eu/p0of2"} {
		if _, err := st.RequestControl(ctx, key, "", store.ControlRequest{Kind: store.RequestResume, By: "cli"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.RequestControl(ctx, "orders/p1of2", "one partition", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RequestControl(ctx, "orders", "whole trigger", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key        string
		superseded bool
	}{
		{"orders/p0of2", true},
		{"orders/p1of2", false}, // a pause: nothing to supersede
		{"orders-eu/p0of2", false},
		{"orders", false},
	} {
		if c, _, err := st.LoadControl(ctx, tc.key); err != nil || c.ResumeSuperseded != tc.superseded {
			t.Errorf("%s after pause orders: resumeSuperseded %v (%v); want %v", tc.key, c.ResumeSuperseded, err, tc.superseded)
		}
	}

	_, err := st.RequestControl(ctx, "orders/p0of2", "", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "api"})
	var tp *store.TriggerPausedError
	if !errors.As(err, &tp) || tp.Trigger != "orders" || !strings.Contains(err.Error(), "`changehook resume orders`") {
		t.Errorf("resume orders/p0of2 under pause orders: %v; want a TriggerPausedError naming `changehook resume orders`", err)
	}
	if c, _, err := st.LoadControl(ctx, "orders/p0of2"); err != nil || c.Request.From != "" || !c.ResumeSuperseded {
		t.Errorf("orders/p0of2 after the refused resume: %+v (%v); want its earlier resume, superseded, kept", c, err)
	}

	if _, err := st.RequestControl(ctx, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RequestControl(ctx, "orders/p0of2", "", store.ControlRequest{Kind: store.RequestResume, By: "api"}); err != nil {
		t.Fatalf("resume orders/p0of2 once orders is resumed: %v", err)
	}
	if c, _, err := st.LoadControl(ctx, "orders/p0of2"); err != nil || c.ResumeSuperseded {
		t.Errorf("orders/p0of2 after its next request: resumeSuperseded %v (%v); want it cleared", c.ResumeSuperseded, err)
	}
}
