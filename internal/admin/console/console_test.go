package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

type fakeRunner struct{ sts []runner.TriggerStatus }

func (f *fakeRunner) Status() []runner.TriggerStatus { return f.sts }

type fakeStore struct {
	cps map[string]store.Checkpoint
	dls []store.StoredDeadLetter
	err error
}

func (f *fakeStore) LoadCheckpoint(_ context.Context, trigger string) (store.Checkpoint, bool, error) {
	cp, ok := f.cps[trigger]
	return cp, ok, f.err
}

func (f *fakeStore) ListDeadLetters(_ context.Context, flt store.DeadLetterFilter) ([]store.StoredDeadLetter, error) {
	var out []store.StoredDeadLetter
	for _, d := range f.dls {
		if flt.Trigger == "" || d.Trigger == flt.Trigger {
			out = append(out, d)
		}
	}
	if flt.Limit > 0 && len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, f.err
}

func (f *fakeStore) GetDeadLetter(_ context.Context, id string) (store.StoredDeadLetter, bool, error) {
	for _, d := range f.dls {
		if d.ID == id {
			return d, true, f.err
		}
	}
	return store.StoredDeadLetter{}, false, f.err
}

type fakeOplog struct {
	oldest time.Time
	err    error
}

func (f fakeOplog) OldestEntry(context.Context) (time.Time, error) { return f.oldest, f.err }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestConsole(t *testing.T, r Runner, s Store, o Oplog) *Console {
	t.Helper()
	now := t0
	c, err := New(Options{Runner: r, Store: s, Oplog: o, Samples: 4, Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestPages(t *testing.T) {
	r := &fakeRunner{sts: []runner.TriggerStatus{
		{Name: "orders", Namespace: "shop.orders", State: runner.StateRunning, StreamOpen: true, Since: t0.Add(-time.Minute),
			EventsReceived: 12, Deliveries: map[string]uint64{"delivered": 10, "dead_lettered": 2}, Attempts: map[string]uint64{"ok": 10, "client_error": 2}, InFlight: 3, BatchSplits: 4,
			Waits: &runner.Waits{Stream: time.Second, Delivery: 3 * time.Second, DeliverySince: t0.Add(-2 * time.Second)}},
		{Name: "held", Namespace: "shop.held", State: runner.StatePaused, Paused: &runner.PauseInfo{Reason: "endpoint maintenance", By: "cli", Since: t0}},
		{Name: "broken", State: runner.StateFailed, LastError: "history lost: <script>alert(1)</script>", LastErrorAt: t0},
		{Name: "planned", Namespace: "shop.planned", State: runner.StateWaiting, Since: t0, StartsAt: t0.Add(48 * time.Hour)},
		{Name: "probing", Namespace: "shop.probing", State: runner.StateRetrying, Retrying: true, Since: t0,
			HeadOfLine: &runner.HeadOfLine{WebhookID: "msg_a", Attempts: 1, LastStatus: 503, LastReason: "server_error", WaitsForProbe: "msg_b"}},
	}}
	event, _ := bson.Marshal(bson.D{{Key: "operationType", Value: "insert"}, {Key: "fullDocument", Value: bson.D{{Key: "sku", Value: "apple"}}}})
	s := &fakeStore{
		cps: map[string]store.Checkpoint{"orders": {Trigger: "orders", ClusterTime: bson.Timestamp{T: uint32(t0.Add(-10 * time.Second).Unix())}, UpdatedAt: t0}},
		dls: []store.StoredDeadLetter{{ID: "msg_1", DeadLetter: dispatcher.DeadLetter{Trigger: "orders", Event: event, Attempts: 2, LastStatus: 410, LastResponse: "gone for good", DeadLetteredAt: t0}}},
	}
	c := newTestConsole(t, r, s, fakeOplog{oldest: t0.Add(-2 * time.Hour)})
	for _, tc := range []struct {
		path string
		code int
		want []string
	}{
		{"/", 200, []string{`<main id="main"`, `href="/triggers/orders"`, "shop.orders", "whole deployment", "state-failed", "by cli: endpoint maintenance",
			"history lost: &lt;script&gt;alert(1)&lt;/script&gt;", `<th scope="col">`, "not enough samples yet", "starts at 2026-03-03 12:00:00Z",
			"head of line: 1 attempt, HTTP 503, waits for the circuit's probe msg_b"}},
		{"/triggers/orders", 200, []string{"Trigger orders", "dead_lettered", "client_error", "2026-03-01 11:59:50Z",
			"2h0m0s ahead of the oldest oplog entry (2026-03-01 10:00:00Z)",
			"4 batch requests refused as too large (HTTP 413)</span> and sent again in halves since start: set <code>batch.max_bytes</code> below",
			`<dt>Waiting</dt><dd>not enough samples yet; <span class="err">waiting for delivery since 2026-03-01 11:59:58Z</span>`}},
		{"/triggers/broken", 200, []string{"No checkpoint saved yet"}},
		{"/triggers/planned", 200, []string{"state-waiting", "<dt>Starts at</dt><dd>2026-03-03 12:00:00Z (its start_at): nothing is read"}},
		{"/triggers/held", 200, []string{"state-paused", "by cli since 2026-03-01 12:00:00Z: endpoint maintenance"}},
		{"/triggers/probing", 200, []string{"event msg_a, read 0s ago; 1 attempt, last HTTP 503; no attempt until the circuit's probe, msg_b, succeeds"}},
		{"/triggers/nope", 404, []string{`There is no trigger named &#34;nope&#34;`}},
		{"/deadletters", 200, []string{`href="/deadletters/msg_1"`, "HTTP 410", `<label for="trigger">`}},
		{"/deadletters?trigger=broken", 200, []string{"No dead letters for trigger broken."}},
		{"/deadletters/msg_1", 200, []string{"gone for good", `&#34;sku&#34;: &#34;apple&#34;`, "changehook dlq replay msg_1"}},
		{"/deadletters/msg_2", 404, []string{"There is no dead letter"}},
		{"/nowhere", 404, []string{"There is no page at &#34;/nowhere&#34;."}},
		{"/assets/console.js", 200, []string{"autorefresh"}},
		{"/assets/console.css", 200, []string{"--fg"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, body := get(t, c, tc.path)
			if code != tc.code {
				t.Errorf("GET %s = %d, want %d\n%s", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s lacks %q:\n%s", tc.path, w, body)
				}
			}
		})
	}
}

func TestCheckpointOplogDistance(t *testing.T) {
	r := &fakeRunner{sts: []runner.TriggerStatus{{Name: "a", State: runner.StateRunning}}}
	cp := map[string]store.Checkpoint{"a": {Trigger: "a", ClusterTime: bson.Timestamp{T: uint32(t0.Unix())}, UpdatedAt: t0}}
	for _, tc := range []struct {
		name  string
		store Store
		oplog Oplog
		want  string
	}{
		{"ahead", &fakeStore{cps: cp}, fakeOplog{oldest: t0.Add(-30 * time.Minute)}, "30m0s ahead of the oldest oplog entry"},
		{"lost", &fakeStore{cps: cp}, fakeOplog{oldest: t0.Add(time.Minute)}, "1m0s older than the oldest oplog entry (2026-03-01 12:01:00Z): its history is lost"},
		{"oplog unreadable", &fakeStore{cps: cp}, fakeOplog{err: errors.New("not authorized")}, "The oldest oplog entry is not available (not authorized)."},
		{"no oplog", &fakeStore{cps: cp}, nil, "not known to the console"},
		// An idle checkpoint (or a reset's) records no cluster time: its
		// resume token places it.
		{"token only", &fakeStore{cps: map[string]store.Checkpoint{"a": {Trigger: "a", Token: tokenAt(t, t0), UpdatedAt: t0}}},
			fakeOplog{oldest: t0.Add(-30 * time.Minute)}, "2026-03-01 12:00:00Z (from its resume token)"},
		{"token only distance", &fakeStore{cps: map[string]store.Checkpoint{"a": {Trigger: "a", Token: tokenAt(t, t0), UpdatedAt: t0}}},
			fakeOplog{oldest: t0.Add(-30 * time.Minute)}, "30m0s ahead of the oldest oplog entry"},
		{"store error", &fakeStore{err: errors.New("no reachable servers")}, nil, "The checkpoint could not be read: no reachable servers"},
		{"no store", nil, nil, "The state database is not available to the console."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, body := get(t, newTestConsole(t, r, tc.store, tc.oplog), "/triggers/a")
			if !strings.Contains(body, tc.want) {
				t.Errorf("trigger page lacks %q:\n%s", tc.want, body)
			}
		})
	}
}

// tokenAt is a resume token opening with cluster time at, as MongoDB's
// and devdb's do.
func tokenAt(t *testing.T, at time.Time) bson.Raw {
	t.Helper()
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X000000012B0229296E04", at.Unix())}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSamplerBoundedRates(t *testing.T) {
	s := newSampler(3)
	st := func(name string, events, delivered uint64) runner.TriggerStatus {
		return runner.TriggerStatus{Name: name, EventsReceived: events, Deliveries: map[string]uint64{"delivered": delivered, "failed": 1}}
	}
	s.record(t0, []runner.TriggerStatus{st("a", 0, 0), st("gone", 0, 0)})
	s.record(t0.Add(2*time.Second), []runner.TriggerStatus{st("a", 10, 4)})
	s.record(t0.Add(4*time.Second), []runner.TriggerStatus{st("a", 30, 8)})
	s.record(t0.Add(6*time.Second), []runner.TriggerStatus{st("a", 2, 0)}) // restarted: counters went down
	if _, ok := s.rings["gone"]; ok {
		t.Error("a trigger no longer reported keeps its ring")
	}
	if n := len(s.rings["a"].buf); n != 3 {
		t.Errorf("ring size %d, want 3", n)
	}
	ev, dl := s.rates("a")
	if want := []float64{10, 0}; !equal(ev, want) {
		t.Errorf("event rates %v, want %v (the oldest sample dropped)", ev, want)
	}
	if want := []float64{2, 0}; !equal(dl, want) {
		t.Errorf("delivery rates %v, want %v", dl, want)
	}
	if ev, _ := s.rates("nope"); ev != nil {
		t.Errorf("rates of an unknown trigger = %v", ev)
	}
}

// TestSamplerWaitShares: the shares of the time the watch loop waited,
// from a trigger's oldest sample to its newest; none with fewer than two
// samples, without waits reported, or after a figure went down.
func TestSamplerWaitShares(t *testing.T) {
	s := newSampler(3)
	st := func(name string, stream, delivery time.Duration) runner.TriggerStatus {
		return runner.TriggerStatus{Name: name, Waits: &runner.Waits{Stream: stream, Delivery: delivery}}
	}
	s.record(t0, []runner.TriggerStatus{st("a", time.Second, 0), st("b", 0, 0)})
	if _, ok := s.waitShares("a"); ok {
		t.Error("shares from one sample")
	}
	s.record(t0.Add(2*time.Second), []runner.TriggerStatus{st("a", 1500*time.Millisecond, time.Second), st("b", 0, 0)})
	s.record(t0.Add(4*time.Second), []runner.TriggerStatus{st("a", 2*time.Second, 3*time.Second), st("b", 0, 0)})
	w, ok := s.waitShares("a")
	if !ok || w.Over != 4*time.Second || w.Stream != 0.25 || w.Delivery != 0.75 {
		t.Errorf("shares of a = %+v, %v; want over 4s, stream 0.25, delivery 0.75", w, ok)
	}
	s.record(t0.Add(6*time.Second), []runner.TriggerStatus{st("a", 0, 0), {Name: "b"}}) // a repartitioned; b without waits
	if w, ok := s.waitShares("a"); ok {
		t.Errorf("shares across a figure that went down = %+v", w)
	}
	if w, ok := s.waitShares("b"); !ok || w.Stream != 0 || w.Delivery != 0 {
		t.Errorf("shares of b = %+v, %v; want 0, 0", w, ok)
	}
	if _, ok := s.waitShares("nope"); ok {
		t.Error("shares of an unknown trigger")
	}
}

// TestSamplerCPUUse gives the process's CPU use from the oldest CPU sample
// to the newest, near all of its CPUs from nine tenths, and none from one
// sample or across CPU time that went down.
func TestSamplerCPUUse(t *testing.T) {
	s := newSampler(3)
	s.recordCPU(t0, time.Second)
	if _, ok := s.cpuUse(2); ok {
		t.Error("CPU use from one sample")
	}
	s.recordCPU(t0.Add(2*time.Second), 2*time.Second)
	s.recordCPU(t0.Add(4*time.Second), 3*time.Second)
	u, ok := s.cpuUse(2)
	if !ok || u.Over != 4*time.Second || u.Used != 0.5 || u.Of != 2 || u.Near() {
		t.Errorf("cpuUse = %+v, %v (near %v); want over 4s, 0.5 of 2, not near", u, ok, u.Near())
	}
	s.recordCPU(t0.Add(6*time.Second), 6800*time.Millisecond) // the ring of 3 drops t0: 4.8 s over 4 s
	if u, ok := s.cpuUse(2); !ok || u.Used != 1.2 || u.Near() {
		t.Errorf("cpuUse = %+v, %v; want 1.2 of 2, not near", u, ok)
	}
	s.recordCPU(t0.Add(8*time.Second), 11*time.Second) // 8 s over 4 s
	if u, ok := s.cpuUse(2); !ok || u.Used != 2 || !u.Near() {
		t.Errorf("cpuUse = %+v, %v; want 2 of 2, near", u, ok)
	}
	s.recordCPU(t0.Add(10*time.Second), time.Second)
	if u, ok := s.cpuUse(2); ok {
		t.Errorf("cpuUse across CPU time that went down = %+v", u)
	}
}

// TestConsoleCPU shows the process's CPU use on the overview and the
// trigger page once two samples exist, warns when it is near all the CPUs
// the process may use, and shows nothing without Options.CPU.
func TestConsoleCPU(t *testing.T) {
	r := &fakeRunner{sts: []runner.TriggerStatus{{Name: "orders", State: runner.StateRunning}}}
	var now time.Time
	var used time.Duration
	console := func(o Options) *Console {
		t.Helper()
		now, used = t0, 0
		o.Runner, o.Now = r, func() time.Time { return now }
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		c.Sample()
		return c
	}
	cpu := func() time.Duration { return used }
	c := console(Options{CPUs: 2, CPU: cpu})
	if _, body := get(t, c, "/"); strings.Contains(body, `id="cpu"`) {
		t.Errorf("CPU use shown from one sample:\n%s", body)
	}
	now, used = now.Add(10*time.Second), 5*time.Second
	c.Sample()
	want := "changehook kept 0.50 of the 2 CPUs it may use busy over the last 10s"
	for _, path := range []string{"/", "/triggers/orders"} {
		if _, body := get(t, c, path); !strings.Contains(body, want) || strings.Contains(body, "close to all of them") {
			t.Errorf("GET %s: want %q and no warning:\n%s", path, want, body)
		}
	}
	now, used = now.Add(10*time.Second), 24*time.Second
	c.Sample()
	if _, body := get(t, c, "/triggers/orders"); !strings.Contains(body, `<dt>CPU</dt><dd>changehook kept 1.20 of the 2 CPUs it may use busy over the last 20s</dd>`) {
		t.Errorf("trigger page at 1.2 of 2:\n%s", body)
	}
	now, used = now.Add(10*time.Second), 57*time.Second
	c.Sample()
	if _, body := get(t, c, "/"); !strings.Contains(body, `changehook kept 1.90 of the 2 CPUs it may use busy over the last 30s: <span class="err">close to all of them`) {
		t.Errorf("no warning at 1.9 of 2:\n%s", body)
	}

	c = console(Options{CPUs: 1, CPU: cpu})
	now, used = now.Add(10*time.Second), 50*time.Millisecond
	c.Sample()
	if _, body := get(t, c, "/"); !strings.Contains(body, "changehook kept under 0.01 of the 1 CPU it may use busy over the last 10s") {
		t.Errorf("an idle process's CPU use:\n%s", body)
	}

	c = console(Options{})
	now = now.Add(10 * time.Second)
	c.Sample()
	if _, body := get(t, c, "/triggers/orders"); strings.Contains(body, "<dt>CPU</dt>") {
		t.Errorf("CPU shown without Options.CPU:\n%s", body)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSparkline(t *testing.T) {
	for _, tc := range []struct {
		vals   []float64
		points string
		label  string
	}{
		{nil, "", "x: not enough samples yet"},
		{[]float64{3}, "", "x: not enough samples yet"},
		{[]float64{0, 0}, "0.0,23.0 120.0,23.0", "x: now 0/s, peak 0/s over the last 2 samples"},
		{[]float64{0, 5, 10}, "0.0,23.0 60.0,12.0 120.0,1.0", "x: now 10/s, peak 10/s over the last 3 samples"},
	} {
		sp := sparkline("x", tc.vals)
		if sp.Points != tc.points || sp.Label != tc.label {
			t.Errorf("sparkline(%v) = %q %q, want %q %q", tc.vals, sp.Points, sp.Label, tc.points, tc.label)
		}
	}
}

func TestControlButtons(t *testing.T) {
	r := &fakeRunner{sts: []runner.TriggerStatus{
		{Name: "run", State: runner.StateRunning},
		{Name: "held", State: runner.StatePaused, Paused: &runner.PauseInfo{By: "api"}},
		{Name: "off", State: runner.StateDisabled},
	}}
	c := newTestConsole(t, r, nil, nil)
	if _, body := get(t, c, "/"); strings.Contains(body, "data-action") || strings.Contains(body, "token-dialog") {
		t.Errorf("buttons shown without Controls:\n%s", body)
	}
	c.opts.Controls = true
	_, body := get(t, c, "/")
	for _, want := range []string{
		`data-action="pause" data-trigger="run" aria-label="Pause run"`,
		`data-action="resume" data-trigger="held" aria-label="Resume held"`,
		`<label for="admin-token">`, `role="status"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(body, `data-action="pause" data-trigger="off"`) {
		t.Error("a disabled trigger has a control button")
	}
	if _, body := get(t, c, "/triggers/held"); !strings.Contains(body, `data-action="resume" data-trigger="held"`) {
		t.Errorf("trigger page lacks the resume button:\n%s", body)
	}
}

// fakeHistory serves fixed history records and records the filter asked.
type fakeHistory struct {
	recs []store.AttemptRecord
	got  store.AttemptFilter
	err  error
}

func (f *fakeHistory) ListAttempts(_ context.Context, flt store.AttemptFilter) ([]store.AttemptRecord, string, error) {
	f.got = flt
	return f.recs, "", f.err
}

// TestRecentAttempts: the trigger page lists the trigger's latest history
// records (a failure with its error, a success, a skipped range), and says
// so when the history cannot be read.
func TestRecentAttempts(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := &fakeRunner{sts: []runner.TriggerStatus{{Name: "a", State: runner.StateRunning}}}
	dk := bson.Raw(must(bson.Marshal(bson.D{{Key: "_id", Value: int32(7)}})))
	h := &fakeHistory{recs: []store.AttemptRecord{
		{Kind: store.KindSkipped, Trigger: "a", Reason: "resumed from now", SkippedFrom: t0.Add(-time.Minute), SkippedTo: t0, At: t0.Add(3 * time.Second)},
		{Kind: store.KindDelivery, Trigger: "a", WebhookID: "batch_1", Attempt: 1, Status: 200, Events: 3, DocumentKey: dk, At: t0.Add(2500 * time.Millisecond)},
		{Kind: store.KindDelivery, Trigger: "a", WebhookID: "msg_1", Attempt: 2, Status: 200, LatencyMS: 3.25, DocumentKey: dk, At: t0.Add(2 * time.Second)},
		{Kind: store.KindDelivery, Trigger: "a", WebhookID: "msg_1", Attempt: 1, Status: 500, Failed: true, Reason: "server_error",
			Error: "server_error: HTTP 500 Internal Server Error", LatencyMS: 1.5, DocumentKey: dk, At: t0.Add(time.Second)},
	}}
	c, err := New(Options{Runner: r, History: h})
	if err != nil {
		t.Fatal(err)
	}
	_, body := get(t, c, "/triggers/a")
	for _, want := range []string{"Recent attempts", "The latest 4 delivery history records", "msg_1", "3.2 ms", `class="err">server_error: HTTP 500 Internal Server Error`,
		"{&#34;_id&#34;:7}", "{&#34;_id&#34;:7} (first of 3 events)", "resumed from now: checkpoint moved from 2026-03-01 11:59:00Z to 2026-03-01 12:00:00Z, changes not delivered by then left undelivered (not dead-lettered)"} {
		if !strings.Contains(body, want) {
			t.Errorf("trigger page lacks %q:\n%s", want, body)
		}
	}
	if h.got.Trigger != "a" || h.got.Limit != recentAttempts {
		t.Errorf("history asked with %+v, want trigger a, limit %d", h.got, recentAttempts)
	}
	h.err = errors.New("no reachable servers")
	if _, body := get(t, c, "/triggers/a"); !strings.Contains(body, "The history could not be read: no reachable servers") {
		t.Errorf("history error not shown:\n%s", body)
	}
	c, _ = New(Options{Runner: r})
	if _, body := get(t, c, "/triggers/a"); strings.Contains(body, "Recent attempts") {
		t.Error("recent attempts shown without a history")
	}
}

// fakeCluster serves a fixed cluster overview.
type fakeCluster struct {
	st    cluster.Status
	other int64
	err   error
}

func (f *fakeCluster) Overview(context.Context) (cluster.Overview, error) {
	return cluster.Overview{Status: f.st, OtherLeases: f.other}, f.err
}

// TestClusterMembers: the overview lists the live members (this instance
// marked), the unexpired leases each holds (a partition's linking to its
// trigger), a member whose configuration differs, leases no live member
// holds, how many leases of other triggers are kept and this instance's
// drift; an error is shown; without a cluster there is no section.
func TestClusterMembers(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r := &fakeRunner{sts: []runner.TriggerStatus{{Name: "orders", State: runner.StateRunning}}}
	fc := &fakeCluster{st: cluster.Status{InstanceID: "node-a", LeaseTTL: "10s", ConfigHash: "h1",
		Members: []store.Member{
			{ID: "node-a", Host: "host-a", PID: 11, Version: "1.2.0", ConfigHash: "h1", Started: now.Add(-time.Hour), Heartbeat: now.Add(-2 * time.Second), RemainingMS: 8000},
			{ID: "node-b", Host: "host-b", PID: 22, Version: "1.2.0", ConfigHash: "h2", Started: now.Add(-time.Minute), Heartbeat: now.Add(-time.Second), RemainingMS: 9000},
		},
		Leases: []store.Lease{
			{Key: "orders/p0of2", Owner: "node-a", RemainingMS: 5000},
			{Key: "orders/p1of2", Owner: "node-b", RemainingMS: 5000},
			{Key: "users", Owner: "node-b", RemainingMS: -10}, // expired
			{Key: "audit", Owner: "node-gone", RemainingMS: 3000},
		},
		Drift: []string{"billing"},
	}, other: 1}
	c, err := New(Options{Runner: r, Cluster: fc, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	_, body := get(t, c, "/")
	for _, want := range []string{
		"Cluster members", "lease TTL 10s",
		`<tr data-member="node-a">`, `node-a <span class="muted">(this instance)</span>`, "host-a <span class=\"muted\">pid 11</span>", "1h0m0s ago", "expires in 8s",
		`<a href="/triggers/orders">orders/p0of2</a>`, `<a href="/triggers/orders">orders/p1of2</a>`,
		`<span class="err">differs from this instance's</span>`,
		"Not held by a live member: users, audit.", "differs from the majority's: billing.",
		"1 lease of triggers not in this configuration",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, `>users</a>`) {
		t.Error("an expired lease is shown as held")
	}
	if i := strings.Index(body, `id="live"`); i < 0 || i > strings.Index(body, `id="cluster"`) {
		t.Error("the cluster section is outside the refreshed live region")
	}
	fc.other = cluster.OverviewCountLimit
	if _, body := get(t, c, "/"); !strings.Contains(body, "At least 1000 leases of triggers not in this configuration") {
		t.Errorf("a count at its limit is not said to be one:\n%s", body)
	}
	fc.err = errors.New("state database unreachable")
	if _, body := get(t, c, "/"); !strings.Contains(body, "The cluster&#39;s members could not be read: state database unreachable") {
		t.Errorf("cluster error not shown:\n%s", body)
	}
	c, _ = New(Options{Runner: r})
	if _, body := get(t, c, "/"); strings.Contains(body, "Cluster members") {
		t.Error("cluster members shown without a cluster")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestDeadLettersTriggerQueryCut: /deadletters?trigger= shows a value
// longer than textcut.QuoteLimit cut and quoted with its length, as the
// rest of the admin server names a client's input, however long it was, so
// that the page does not grow with the request; a real trigger's name
// still selects its dead letters, its option and its buttons.
func TestDeadLettersTriggerQueryCut(t *testing.T) {
	event, _ := bson.Marshal(bson.D{{Key: "operationType", Value: "insert"}})
	s := &fakeStore{dls: []store.StoredDeadLetter{{ID: "msg_1", DeadLetter: dispatcher.DeadLetter{Trigger: "orders", Event: event, Attempts: 1,
		LastStatus: 410, DeadLetteredAt: t0}}}}
	c := newTestConsole(t, &fakeRunner{sts: []runner.TriggerStatus{{Name: "orders", State: runner.StateRunning}}}, s, nil)
	c.opts.DeadLetterControls = true
	long := strings.Repeat("x", 100000)
	_, empty := get(t, c, "/deadletters?trigger=none")
	for _, tc := range []struct {
		name, trigger string
		want, notWant []string
	}{
		{"a trigger's name", "orders", []string{`<option value="orders" selected>`, `href="/deadletters/msg_1"`, "Dead letters of trigger orders, oldest first",
			`data-dlq="replay" data-trigger="orders"`, "Replay all of orders's dead letters"}, nil},
		{"a long value", long, []string{"No dead letters for trigger &#34;" + strings.Repeat("x", 200) + "&#34;… (100000 bytes)."},
			[]string{strings.Repeat("x", 201), " selected>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, c, "/deadletters?trigger="+tc.trigger)
			if code != http.StatusOK {
				t.Errorf("GET = %d, want 200", code)
			}
			if len(body) > len(empty)+1000 {
				t.Errorf("a page of %d bytes (one without dead letters: %d) for a query value of %d bytes", len(body), len(empty), len(tc.trigger))
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("the page lacks %q:\n%.3000s", w, body)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(body, w) {
					t.Errorf("the page has %.300q:\n%.3000s", w, body)
				}
			}
		})
	}
}

// TestPartitionedTriggerCheckpoints: a partitioned trigger saves one
// checkpoint per partition, under NAME/p<i>of<N>, and none under its name:
// its page shows one row per partition, each with its position, its lag
// and its distance to the oldest oplog entry (not "No checkpoint saved
// yet", which it said for every partitioned trigger), and says which
// partition has none yet.
func TestPartitionedTriggerCheckpoints(t *testing.T) {
	k0, k1, k2 := triggers.PartitionKey("orders", 0, 3), triggers.PartitionKey("orders", 1, 3), triggers.PartitionKey("orders", 2, 3)
	r := &fakeRunner{sts: []runner.TriggerStatus{{Name: "orders", Namespace: "shop.orders", State: runner.StateRunning, StreamOpen: true,
		Since: t0.Add(-time.Hour), CheckpointTime: t0,
		Partitions: []runner.PartitionStatus{
			{Partition: 0, Key: k0, State: runner.StateRunning, StreamOpen: true, CheckpointTime: t0, CheckpointLag: 3 * time.Second},
			{Partition: 1, Key: k1, State: runner.StateRunning, StreamOpen: true, CheckpointTime: t0},
			{Partition: 2, Key: k2, State: runner.StateStarting},
		}}}}
	s := &fakeStore{cps: map[string]store.Checkpoint{
		k0: {Trigger: k0, ClusterTime: bson.Timestamp{T: uint32(t0.Add(-10 * time.Minute).Unix())}, UpdatedAt: t0},
		k1: {Trigger: k1, ClusterTime: bson.Timestamp{T: uint32(t0.Add(-90 * time.Minute).Unix())}, UpdatedAt: t0},
	}}
	code, body := get(t, newTestConsole(t, r, s, fakeOplog{oldest: t0.Add(-2 * time.Hour)}), "/triggers/orders")
	if code != 200 {
		t.Fatalf("GET /triggers/orders = %d", code)
	}
	for _, want := range []string{
		"<h2 id=\"cp-h\">Checkpoints</h2>",
		"<th scope=\"row\"><code>orders/p0of3</code></th><td>2026-03-01 12:00:00Z</td><td>2026-03-01 11:50:00Z</td><td class=\"num\">3s</td>" +
			"<td>1h50m0s ahead of the oldest oplog entry (2026-03-01 10:00:00Z): the oplog can roll over that much before this partition&#39;s history is lost.</td>",
		"<th scope=\"row\"><code>orders/p1of3</code></th><td>2026-03-01 12:00:00Z</td><td>2026-03-01 10:30:00Z</td>",
		"<td>30m0s ahead of the oldest oplog entry (2026-03-01 10:00:00Z)",
		"<th scope=\"row\"><code>orders/p2of3</code></th><td colspan=\"4\">No checkpoint saved yet: the partition starts at the trigger&#39;s start_at position.</td>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page of a partitioned trigger lacks %q", want)
		}
	}
	if strings.Contains(body, "No checkpoint saved yet: the trigger starts") {
		t.Errorf("page of a partitioned trigger says the trigger has no checkpoint")
	}
}
