package dispatcher

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestCircuitOpenHoldsTheRetriesOfOthers: in a per_document trigger, the
// delivery of a newer event (b) opens the circuit while the oldest event
// (a) is between attempts of its own. While the circuit is open only b's
// probe is sent: a makes no further attempt, and its head of line says so
// (no next attempt; it waits for b's probe), while the circuit names b as
// its probe with b's attempts. Once the probe succeeds, a is delivered;
// nothing is dead-lettered, with or without dead letters.
func TestCircuitOpenHoldsTheRetriesOfOthers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deadLetter bool
	}{
		{"without dead letters", false},
		{"with dead letters", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The handler reads the dispatcher the test creates after
			// the receiver through an atomic pointer: the requests reach
			// it over TCP, no happens-before edge for the race detector.
			var dp atomic.Pointer[Dispatcher]
			type request struct {
				event string // "a" or "b"
				state CircuitState
			}
			var (
				mu       sync.Mutex
				requests []request
				na, nb   int
				probed   = make(chan struct{})
				release  = make(chan struct{})
			)
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				st, _ := dp.Load().Circuit()
				ev := "b"
				if bytes.Contains(body, []byte(`"a"`)) {
					ev = "a"
				}
				mu.Lock()
				requests = append(requests, request{ev, st.State})
				n := 0 // the event's request number
				if ev == "a" {
					na++
					n = na
				} else {
					nb++
					n = nb
				}
				mu.Unlock()
				switch {
				case ev == "a" && n == 1:
					// Answered once b's failures opened the circuit.
					awaitCircuitOpen(t, &dp)
					w.WriteHeader(http.StatusServiceUnavailable)
				case ev == "a":
					if st.State != CircuitClosed {
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					w.WriteHeader(http.StatusNoContent)
				case n <= 3: // b's round: its third failure opens the circuit
					if n == 1 {
						// a's first request is at this handler before the
						// circuit opens: an attempt of a that had not
						// reached it would stay behind the circuit's gate
						// until the probe succeeds, which this test holds.
						waitFor(t, func() bool {
							mu.Lock()
							defer mu.Unlock()
							return na >= 1
						})
					}
					w.WriteHeader(http.StatusServiceUnavailable)
				case n == 4: // b's probe
					close(probed)
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
					w.WriteHeader(http.StatusNoContent)
				default:
					w.WriteHeader(http.StatusNoContent)
				}
			})
			tr := circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: 1, MaxProbeInterval: time.Hour})
			tr.Retry.MaxAttempts = 3
			tr.Ordering, tr.Concurrency, tr.DeadLetter = triggers.PerDocument, 2, tc.deadLetter
			var sink *memSink
			var dlSink DeadLetterSink
			if tc.deadLetter {
				sink = &memSink{}
				dlSink = sink
			}
			d := newTestDispatcher(t, tr, dlSink, WithClock(newFakeClock()))
			dp.Store(d)
			a, b := testEvent(t, 1, "a"), testEvent(t, 2, "b")
			for _, ev := range []Event{a, b} {
				if err := d.Submit(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			<-probed
			waitFor(t, func() bool {
				h, ok := d.HeadOfLine()
				return ok && h.LastStatus == http.StatusServiceUnavailable && h.NextAttemptAt.IsZero()
			})
			aID, bID := WebhookID("orders", a.Token), WebhookID("orders", b.Token)
			h, _ := d.HeadOfLine()
			// a made one attempt that reached the endpoint (more only if
			// an earlier one failed before reaching it, on a loaded machine).
			if h.WebhookID != aID || h.Attempts < 1 || h.WaitsForProbe != bID {
				t.Errorf("head of line %s, %d attempts, waits for probe %q; want %s, an attempt, waiting for %s", h.WebhookID, h.Attempts, h.WaitsForProbe, aID, bID)
			}
			if c, _ := d.Circuit(); c.State == CircuitClosed || c.Probe == nil || *c.Probe != (CircuitProbe{WebhookID: bID, Attempts: 3}) {
				t.Errorf("circuit = %+v; want open, probing with %s after its 3 attempts", c, bID)
			}
			close(release)
			closeWithin(t, d, 10*time.Second)

			if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, b.Token) {
				t.Fatal("the watermark is not the last event: something was not delivered")
			}
			if sink != nil && len(sink.All()) != 0 {
				t.Errorf("%d dead letters, want none", len(sink.All()))
			}
			if c, _ := d.Circuit(); c.State != CircuitClosed || c.Probe != nil {
				t.Errorf("circuit after the probe succeeded = %+v; want closed, no probe", c)
			}
			mu.Lock()
			defer mu.Unlock()
			var as []CircuitState
			for _, r := range requests {
				if r.event == "a" {
					as = append(as, r.state)
				}
			}
			// a's first attempt starts before the circuit opens (its
			// request may reach the endpoint after b's failures did).
			if len(as) != 2 || as[1] != CircuitClosed {
				t.Errorf("a's requests found the circuit %v; want 2, the second closed: none of its attempts starts while it is open", as)
			}
		})
	}
}

// TestCircuitOpenOnlyItsProbeClosesIt: a delivery already under way when
// another one's failures opened the circuit (a, per_document) succeeds
// while the circuit is open. The endpoint answered, but only the probe (b)
// closes the circuit: a's success leaves it open, b's probe goes on (its
// first probe fails, the second succeeds and closes it), and a third event
// (c) held meanwhile starts no attempt while the circuit is open — before,
// a's success closed the circuit under the probe, whose next success then
// closed a closed circuit (a panic) and whose failure left it open with
// nothing to wait on (c retried in a loop without backoff).
func TestCircuitOpenOnlyItsProbeClosesIt(t *testing.T) {
	var dp atomic.Pointer[Dispatcher]
	var (
		mu         sync.Mutex
		counts     = map[string]int{}
		cWhileOpen int // c's requests that found the circuit not closed
		afterA     []CircuitState
		cIn        = make(chan struct{}) // closed once c is submitted
	)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev := "b"
		for _, k := range []string{"a", "c"} {
			if bytes.Contains(body, []byte(`"`+k+`"`)) {
				ev = k
			}
		}
		st, _ := dp.Load().Circuit()
		mu.Lock()
		counts[ev]++
		n := counts[ev]
		if ev == "c" && st.State != CircuitClosed {
			cWhileOpen++
		}
		mu.Unlock()
		switch {
		case ev == "a":
			// Answered 204 once b's failures opened the circuit.
			if !awaitCircuitOpen(t, &dp) {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case ev == "c":
			// Fails until the circuit has closed once.
			mu.Lock()
			closed := counts["b"] >= 5
			mu.Unlock()
			if !closed {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case n <= 3: // b's round: its third failure opens the circuit
			if n == 1 {
				// a's request is under way before the circuit opens.
				waitFor(t, func() bool {
					mu.Lock()
					defer mu.Unlock()
					return counts["a"] == 1
				})
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		case n == 4: // b's first probe, sent after a's success
			// a is acknowledged: the head of the line is b.
			bID := WebhookID("orders", testEvent(t, 2, "b").Token)
			waitFor(t, func() bool { h, ok := dp.Load().HeadOfLine(); return ok && h.EventID == bID })
			mu.Lock()
			afterA = append(afterA, st.State)
			mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
		default: // b's second probe, once c waits behind the circuit
			select {
			case <-cIn:
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	tr := circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: 1, MaxProbeInterval: time.Hour})
	tr.Retry.MaxAttempts = 3
	tr.Ordering, tr.Concurrency, tr.DeadLetter = triggers.PerDocument, 3, true
	sink := &memSink{}
	d := newTestDispatcher(t, tr, sink, WithClock(newFakeClock()))
	dp.Store(d)
	a, b, c := testEvent(t, 1, "a"), testEvent(t, 2, "b"), testEvent(t, 3, "c")
	for _, ev := range []Event{a, b} {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	// c arrives once the circuit is open (b's second probe, which closes
	// it, waits for c): it waits at the gate.
	waitFor(t, func() bool { st, _ := d.Circuit(); return st.State != CircuitClosed })
	if err := d.Submit(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	close(cIn)
	waitFor(t, func() bool { tok, ok := d.Watermark(); return ok && bytes.Equal(tok, c.Token) })
	closeWithin(t, d, 10*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(afterA) != 1 || afterA[0] != CircuitHalfOpen {
		t.Errorf("b's first probe found the circuit %v after a's success; want half_open: only the probe closes it", afterA)
	}
	if counts["a"] != 1 || counts["b"] != 5 {
		t.Errorf("requests a=%d b=%d; want 1 and 5 (b: 3 attempts, 2 probes)", counts["a"], counts["b"])
	}
	if cWhileOpen != 0 {
		t.Errorf("c sent %d requests while the circuit was open; want none", cWhileOpen)
	}
	if n := len(sink.All()); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	if st, _ := d.Circuit(); st.State != CircuitClosed || st.Probe != nil {
		t.Errorf("circuit at the end = %+v; want closed, no probe", st)
	}
}

// awaitCircuitOpen waits, in a receiver's handler, until the dispatcher's
// circuit is no longer closed, polling as nothing signals it; after 10s it
// reports the failure with t.Error (t.Fatal is not for that goroutine) and
// returns false.
func awaitCircuitOpen(t *testing.T, dp *atomic.Pointer[Dispatcher]) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for st, _ := dp.Load().Circuit(); st.State == CircuitClosed; st, _ = dp.Load().Circuit() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Error("the circuit did not open")
			return false
		}
	}
	return true
}
