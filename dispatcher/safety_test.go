package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// concatNumber is finding 2's payload: $concat with a number, an error on
// every event.
func concatNumber(t *testing.T) *mql.Expr {
	t.Helper()
	e, err := mql.CompileExpr(bson.D{{Key: "text", Value: bson.D{{Key: "$concat", Value: bson.A{"Order total: ", "$fullDocument.seq"}}}}})
	if err != nil {
		t.Fatalf("CompileExpr: %v", err)
	}
	return e
}

// pauses records WithPayloadErrorPause calls.
type pauses struct {
	mu      sync.Mutex
	reasons []string
}

func (p *pauses) pause(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reasons = append(p.reasons, reason)
}

func (p *pauses) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.reasons...)
}

// TestPayloadErrorsPauseAfterMaxConsecutive: the first max-1 payload errors
// are dead-lettered with reason payload_error and counted as attempts; the
// max-th pauses the trigger once and is held (neither dead-lettered nor
// passed by the watermark), and nothing after it is attempted.
func TestPayloadErrorsPauseAfterMaxConsecutive(t *testing.T) {
	rc := newReceiver(t, nil)
	sink := &memSink{}
	var p pauses
	m := NewMetrics(prometheus.NewRegistry())
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:       triggers.Webhook{URL: rc.srv.URL, Payload: concatNumber(t)},
		DeadLetter:    true,
		PayloadErrors: triggers.PayloadErrorPolicy{MaxConsecutive: 3},
	}, sink, WithPayloadErrorPause(p.pause), WithMetrics(m), WithClock(newFakeClock()))
	evs := make([]Event, 6)
	for i := range evs {
		evs[i] = testEvent(t, i+1, "k")
		if err := d.Submit(context.Background(), evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 10*time.Second)

	dls := sink.All()
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want the 2 events before the limit", len(dls))
	}
	for i, dl := range dls {
		if dl.LastReason != ReasonPayload || !bytes.Equal(dl.Token, evs[i].Token) || dl.Attempts != 0 {
			t.Errorf("dead letter %d = reason %q attempts %d, want payload_error, 0, event %d", i, dl.LastReason, dl.Attempts, i+1)
		}
		if strings.Count(dl.LastError, "build payload") != 1 {
			t.Errorf("dead letter error %q does not say build payload exactly once", dl.LastError)
		}
	}
	got := p.all()
	if len(got) != 1 {
		t.Fatalf("pause called %d times (%q), want once", len(got), got)
	}
	reason := got[0]
	for _, want := range []string{"3 consecutive payload errors", "payload_errors.max_consecutive is 3", "$concat"} {
		if !strings.Contains(reason, want) {
			t.Errorf("pause reason %q does not contain %q", reason, want)
		}
	}
	if strings.Count(reason, "build payload") != 1 || strings.Contains(reason, "deliver msg_") {
		t.Errorf("pause reason %q says a thing twice", reason)
	}
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, evs[1].Token) {
		t.Fatalf("watermark = %v, %v; want the second event's token (the third is held)", tok, ok)
	}
	if !d.Halted() || d.Idle() {
		t.Fatalf("Halted = %v, Idle = %v after the limit; a halted dispatcher is never idle (the stream position must not be checkpointed past the held event)", d.Halted(), d.Idle())
	}
	if n := m.Counts("orders").Attempts[ReasonPayload]; n != 3 {
		t.Fatalf("payload_error attempts = %d, want 3 (nothing after the pause is attempted)", n)
	}
	if n := len(rc.deliveries()); n != 0 {
		t.Fatalf("the receiver got %d requests", n)
	}
}

// TestPayloadErrorStreakResets: a good payload between bad ones resets the
// count, so non-consecutive errors never pause.
func TestPayloadErrorStreakResets(t *testing.T) {
	rc := newReceiver(t, nil)
	sink := &memSink{}
	var p pauses
	// $concat of a string field: fails when fullDocument._id is missing.
	e, err := mql.CompileExpr(bson.D{{Key: "t", Value: bson.D{{Key: "$concat", Value: bson.A{"k:", "$fullDocument.seq"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:       triggers.Webhook{URL: rc.srv.URL, Payload: e},
		DeadLetter:    true,
		PayloadErrors: triggers.PayloadErrorPolicy{MaxConsecutive: 2},
	}, sink, WithPayloadErrorPause(p.pause), WithClock(newFakeClock()))
	for i := range 6 {
		ev := testEvent(t, i+1, "k")
		if i%2 == 1 { // every other event has a string seq: a good payload
			ev = eventWithSeq(t, i+1, "s")
		}
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 10*time.Second)
	if got := p.all(); len(got) != 0 {
		t.Fatalf("paused (%q) though no two payload errors were consecutive", got)
	}
	if len(sink.All()) != 3 || len(rc.deliveries()) != 3 {
		t.Fatalf("%d dead letters, %d deliveries; want 3 and 3", len(sink.All()), len(rc.deliveries()))
	}
}

// eventWithSeq is testEvent with fullDocument.seq set to seq.
func eventWithSeq(t *testing.T, n int, seq any) Event {
	t.Helper()
	ev := testEvent(t, n, "k")
	var doc bson.D
	if err := bson.Unmarshal(ev.Raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc[4].Value = bson.D{{Key: "_id", Value: "k"}, {Key: "seq", Value: seq}}
	ev.Raw = mustMarshal(t, doc)
	return ev
}

// TestPayloadErrorWithoutDeadLettersPausesAtOnce: without dead letters
// nothing can be dead-lettered, so the first payload error pauses and holds
// its event.
func TestPayloadErrorWithoutDeadLettersPausesAtOnce(t *testing.T) {
	rc := newReceiver(t, nil)
	var p pauses
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:       triggers.Webhook{URL: rc.srv.URL, Payload: concatNumber(t)},
		PayloadErrors: triggers.PayloadErrorPolicy{MaxConsecutive: 10},
	}, nil, WithPayloadErrorPause(p.pause), WithClock(newFakeClock()))
	for i := range 3 {
		if err := d.Submit(context.Background(), testEvent(t, i+1, "k")); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 10*time.Second)
	if got := p.all(); len(got) != 1 || !strings.Contains(got[0], "payload error without dead letters") {
		t.Fatalf("pauses = %q, want one naming the missing dead letters", got)
	}
	if tok, ok := d.Watermark(); ok {
		t.Fatalf("watermark = %v; the first event is held", tok)
	}
}

// circuitTrigger is a trigger with dead letters, one attempt per delivery
// and the given circuit.
func circuitTrigger(url string, c triggers.CircuitPolicy) *triggers.Trigger {
	return &triggers.Trigger{
		Webhook:    triggers.Webhook{URL: url},
		Retry:      triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Second, MaxBackoff: time.Second},
		DeadLetter: true,
		Circuit:    c,
	}
}

// TestCircuitOpenHalfOpenClose: after circuit.failures consecutive failed
// deliveries the circuit opens; the delivery that opened it is probed alone
// at doubling intervals (capped), is never dead-lettered, and closes the
// circuit when it succeeds; then the rest flows. Nothing is lost.
func TestCircuitOpenHalfOpenClose(t *testing.T) {
	// The handler reads the dispatcher the test creates after the
	// receiver: through an atomic pointer, as the requests reach the
	// handler over TCP (no happens-before edge for the race detector).
	var dp atomic.Pointer[Dispatcher]
	var statesMu sync.Mutex
	var states []CircuitState // the circuit's state as each request arrives
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		st, _ := dp.Load().Circuit()
		statesMu.Lock()
		states = append(states, st.State)
		statesMu.Unlock()
		if n <= 6 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	sink := &memSink{}
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	d := newTestDispatcher(t, circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: 3, MaxProbeInterval: 3 * time.Second}),
		sink, WithClock(clock), WithMetrics(NewMetrics(reg)))
	dp.Store(d)
	evs := make([]Event, 6)
	for i := range evs {
		evs[i] = testEvent(t, i+1, "k")
		if err := d.Submit(context.Background(), evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 10*time.Second)

	dls := sink.All()
	if len(dls) != 2 || !bytes.Equal(dls[0].Token, evs[0].Token) || !bytes.Equal(dls[1].Token, evs[1].Token) {
		t.Fatalf("%d dead letters, want events 1 and 2 (before the circuit opened)", len(dls))
	}
	// Requests: 1-3 the three failures (the third opens), 4-6 failed probes,
	// 7 the successful probe (event 3), 8-10 events 4-6.
	got := rc.deliveries()
	if len(got) != 10 {
		t.Fatalf("%d requests, want 10", len(got))
	}
	for i := 2; i < 7; i++ {
		if got[i].header.Get("webhook-id") != WebhookID("orders", evs[2].Token) {
			t.Fatalf("request %d is not event 3: the probe must be the delivery that opened the circuit", i+1)
		}
	}
	for i, ev := range evs[3:] {
		if seqOf(t, got[7+i].body) != seqOf(t, mustBody(t, ev)) {
			t.Fatalf("request %d is not event %d", 8+i, 4+i)
		}
	}
	wantStates := []CircuitState{"closed", "closed", "closed", "half_open", "half_open", "half_open", "half_open", "closed", "closed", "closed"}
	statesMu.Lock()
	if strings.Join(statesStrings(states), ",") != strings.Join(statesStrings(wantStates), ",") {
		t.Errorf("states at each request = %v, want %v", states, wantStates)
	}
	statesMu.Unlock()
	// Probe intervals double from retry.initial_backoff, capped at
	// max_probe_interval: 1s, 2s, 3s, 3s.
	if s := fmtDurations(clock.Sleeps()); s != "1s 2s 3s 3s" {
		t.Errorf("sleeps = %s, want 1s 2s 3s 3s", s)
	}
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, evs[5].Token) {
		t.Fatal("watermark is not the last event: something was lost")
	}
	if st, ok := d.Circuit(); !ok || st.State != CircuitClosed || st.Failures != 0 {
		t.Fatalf("circuit = %+v, %v; want closed, 0 failures", st, ok)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := flatten(fams)
	for k, v := range map[string]float64{
		`changehook_circuit_state{partition="0",trigger="orders"}`:              0,
		`changehook_circuit_transitions_total{to="open",trigger="orders"}`:      4,
		`changehook_circuit_transitions_total{to="half_open",trigger="orders"}`: 4,
		`changehook_circuit_transitions_total{to="closed",trigger="orders"}`:    1,
	} {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

func statesStrings(s []CircuitState) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}

func fmtDurations(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return strings.Join(out, " ")
}

// mustBody is the relaxed Extended JSON of ev, as delivered.
func mustBody(t *testing.T, ev Event) []byte {
	t.Helper()
	b, err := BuildPayload(triggers.Webhook{}, ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCircuitOpensAtOnceOn410: a status in circuit.open_on opens the
// circuit on the first failure; that event is not dead-lettered but probed
// and delivered when the endpoint is back.
func TestCircuitOpensAtOnceOn410(t *testing.T) {
	rc := newReceiver(t, statuses(http.StatusGone, http.StatusNoContent))
	sink := &memSink{}
	reg := prometheus.NewRegistry()
	d := newTestDispatcher(t, circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: 5, OpenOn: triggers.StatusRules{"410"}}),
		sink, WithClock(newFakeClock()), WithMetrics(NewMetrics(reg)))
	evs := []Event{testEvent(t, 1, "k"), testEvent(t, 2, "k")}
	for _, ev := range evs {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 10*time.Second)
	if n := len(sink.All()); n != 0 {
		t.Fatalf("%d dead letters; a 410 must open the circuit, not dead-letter", n)
	}
	got := rc.deliveries()
	if len(got) != 3 || got[0].header.Get("webhook-id") != got[1].header.Get("webhook-id") {
		t.Fatalf("%d requests; want the 410, the probe of the same event, then event 2", len(got))
	}
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, evs[1].Token) {
		t.Fatal("watermark is not the last event")
	}
	fams, _ := reg.Gather()
	if v := flatten(fams)[`changehook_circuit_transitions_total{to="open",trigger="orders"}`]; v != 1 {
		t.Fatalf("open transitions = %v, want 1", v)
	}
}

// TestCircuitOpenBlocksAndBackpressures: while the circuit is open no other
// delivery starts and no event is dead-lettered; the dispatcher fills up and
// Submit blocks (the stream is read no further). When the probe succeeds
// everything is delivered.
func TestCircuitOpenBlocksAndBackpressures(t *testing.T) {
	var healthy sync.Mutex
	down := true
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		healthy.Lock()
		defer healthy.Unlock()
		if down {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	sink := &memSink{}
	clock := newFakeClock()
	probing := make(chan struct{})
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseProbe := func() { releaseOnce.Do(func() { close(release) }) }
	var once sync.Once
	clock.onSleep = func(int) {
		// The first probe wait: hold it until the test releases it.
		once.Do(func() { close(probing); <-release })
	}
	tr := circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: 1})
	tr.Ordering, tr.Concurrency = triggers.None, 2
	d := newTestDispatcher(t, tr, sink, WithClock(clock))
	t.Cleanup(releaseProbe) // runs before the dispatcher's Close (LIFO), on any failure
	// One event opens the circuit (failures: 1); the others come after.
	submitted := 1
	if err := d.Submit(context.Background(), testEvent(t, submitted, "")); err != nil {
		t.Fatal(err)
	}
	<-probing
	if st, _ := d.Circuit(); st.State != CircuitOpen || st.LastStatus != http.StatusBadGateway {
		t.Fatalf("circuit = %+v, want open after a 502", st)
	}
	before := len(rc.deliveries())
	// Fill the dispatcher until Submit blocks.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := d.Submit(ctx, testEvent(t, submitted+1, ""))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		submitted++
		if submitted > 1000 {
			t.Fatal("Submit never blocked while the circuit was open")
		}
	}
	if after := len(rc.deliveries()); after != before {
		t.Fatalf("%d requests started while the circuit was open", after-before)
	}
	if n := len(sink.All()); n != 0 {
		t.Fatalf("%d dead letters while the circuit was open", n)
	}
	healthy.Lock()
	down = false
	healthy.Unlock()
	releaseProbe()
	closeWithin(t, d, 10*time.Second)
	if n := len(sink.All()); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	ids := map[string]bool{}
	for _, dv := range rc.deliveries() {
		ids[dv.header.Get("webhook-id")] = true
	}
	if len(ids) != submitted {
		t.Fatalf("%d distinct events reached the endpoint, want all %d", len(ids), submitted)
	}
	if st, _ := d.Circuit(); st.State != CircuitClosed {
		t.Fatalf("circuit = %s after the probe succeeded", st.State)
	}
}

// TestCircuitWithoutDeadLetters: without dead letters a failed round of
// retry.max_attempts attempts counts as a failed delivery; the circuit
// opens and closes the same way and the event is delivered. The attempts
// are numbered on across the rounds and the probes, as the delivery
// history and the head of line show them: one event's attempt 2 is its
// second request, never a second "attempt 1".
func TestCircuitWithoutDeadLetters(t *testing.T) {
	rc := newReceiver(t, statuses(500, 500, 500, 500, 204))
	clock := newFakeClock()
	tr := circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: 2})
	tr.DeadLetter = false
	var mu sync.Mutex
	var numbers []int
	d := newTestDispatcher(t, tr, nil, WithClock(clock), WithObserver(func(a Attempt) {
		mu.Lock()
		numbers = append(numbers, a.Number)
		mu.Unlock()
	}))
	ev := testEvent(t, 1, "k")
	if err := d.Submit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, d, 10*time.Second)
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev.Token) {
		t.Fatal("the event was not delivered")
	}
	if st, _ := d.Circuit(); st.State != CircuitClosed {
		t.Fatalf("circuit = %s", st.State)
	}
	if n := len(rc.deliveries()); n != 5 {
		t.Fatalf("%d requests, want 5 (2 rounds, 2 failed probes, 1 success)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(numbers) != "[1 2 3 4 5]" {
		t.Errorf("attempt numbers %v, want [1 2 3 4 5]", numbers)
	}
}

// TestPayloadErrorStreakResetByFailedDelivery: an event whose payload was
// built breaks the streak of payload errors also when its delivery fails
// (dead-lettered, or opening the circuit and delivered as its probe), batched
// as unbatched: two payload errors around it are not consecutive.
func TestPayloadErrorStreakResetByFailedDelivery(t *testing.T) {
	// $toInt of the documentKey: "x" cannot be converted, "1" can.
	expr, err := mql.CompileExpr(bson.D{{Key: "n", Value: bson.D{{Key: "$toInt", Value: "$documentKey._id"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		batched bool
		circuit triggers.CircuitPolicy
		status  []int // the endpoint's answers to event 1's requests, in order
		dls     int   // dead letters: the payload errors and a refused event
	}{
		{"unbatched, dead-lettered", false, triggers.CircuitPolicy{}, []int{http.StatusUnprocessableEntity}, 3},
		{"batched, dead-lettered", true, triggers.CircuitPolicy{}, []int{http.StatusUnprocessableEntity}, 3},
		{"unbatched, probe", false, triggers.CircuitPolicy{Failures: 1, MaxProbeInterval: time.Millisecond}, []int{http.StatusServiceUnavailable, http.StatusNoContent}, 2},
		{"batched, probe", true, triggers.CircuitPolicy{Failures: 1, MaxProbeInterval: time.Millisecond}, []int{http.StatusServiceUnavailable, http.StatusNoContent}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Events 0 and 2: payload errors; event 1: built, and failed
			// once (refused, or answered 503 and probed).
			evs := batchEvents(t, 3, func(i int) string {
				if i%2 == 0 {
					return "x"
				}
				return fmt.Sprint(i)
			})
			rc := newReceiver(t, statuses(tc.status...))
			cfg := &triggers.Trigger{
				Webhook:  triggers.Webhook{URL: rc.srv.URL, Payload: expr},
				Ordering: triggers.Strict, Concurrency: 1, DeadLetter: true,
				Retry:         triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
				Circuit:       tc.circuit,
				PayloadErrors: triggers.PayloadErrorPolicy{MaxConsecutive: 2},
			}
			if tc.batched {
				cfg.Batch = &triggers.BatchPolicy{MaxEvents: 10, MaxWait: time.Millisecond}
			}
			sink := &memSink{}
			var p pauses
			d := newTestDispatcher(t, cfg, sink, WithPayloadErrorPause(p.pause))
			submitAndClose(t, d, evs, 10*time.Second)
			if got := p.all(); len(got) != 0 {
				t.Errorf("paused (%q) on payload errors that were not consecutive", got)
			}
			if n := len(sink.All()); n != tc.dls {
				t.Errorf("%d dead letters, want %d", n, tc.dls)
			}
			if n := len(rc.deliveries()); n != len(tc.status) {
				t.Errorf("%d requests, want %d", n, len(tc.status))
			}
		})
	}
}
