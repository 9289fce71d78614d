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
					// Answered once b's failures opened the circuit:
					// polled, as nothing signals it (t.Fatal is not for
					// this goroutine).
					tick := time.NewTicker(time.Millisecond)
					defer tick.Stop()
					deadline := time.After(10 * time.Second)
					for st, _ := dp.Load().Circuit(); st.State == CircuitClosed; st, _ = dp.Load().Circuit() {
						select {
						case <-tick.C:
						case <-deadline:
							t.Error("the circuit did not open")
							w.WriteHeader(http.StatusServiceUnavailable)
							return
						}
					}
					w.WriteHeader(http.StatusServiceUnavailable)
				case ev == "a":
					if st.State != CircuitClosed {
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					w.WriteHeader(http.StatusNoContent)
				case n <= 3: // b's round: its third failure opens the circuit
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
			if h.WebhookID != aID || h.Attempts != 1 || h.WaitsForProbe != bID {
				t.Errorf("head of line %s, %d attempts, waits for probe %q; want %s, 1 attempt, waiting for %s", h.WebhookID, h.Attempts, h.WaitsForProbe, aID, bID)
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
