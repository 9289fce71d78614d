package dispatcher

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestCircuitOpenOnEndsTheRound: a failure whose status circuit.open_on
// lists opens the circuit at once, also when the retry policy retries that
// status: the round of attempts ends there and the delivery becomes the
// probe (before, the circuit learnt of the failure only after the whole
// round, and never when a later attempt of it succeeded). A status
// open_on does not list is retried within the round as before.
func TestCircuitOpenOnEndsTheRound(t *testing.T) {
	probed := []CircuitState{CircuitClosed, CircuitHalfOpen, CircuitHalfOpen, CircuitHalfOpen}
	for _, tc := range []struct {
		name       string
		openOn     triggers.StatusRules
		deadLetter bool
		batched    bool
		want       []CircuitState // the circuit's state as each request arrives
	}{
		{"listed", triggers.StatusRules{"503"}, true, false, probed},
		{"listed by its class", triggers.StatusRules{"5xx"}, true, false, probed},
		{"listed, without dead letters", triggers.StatusRules{"503"}, false, false, probed},
		{"listed, batched", triggers.StatusRules{"503"}, true, true, probed},
		{"listed, batched without dead letters", triggers.StatusRules{"503"}, false, true, probed},
		{"not listed", triggers.StatusRules{"410"}, true, false,
			[]CircuitState{CircuitClosed, CircuitClosed, CircuitClosed, CircuitClosed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dp atomic.Pointer[Dispatcher]
			var mu sync.Mutex
			var states []CircuitState
			answer := statuses(503, 503, 503, http.StatusNoContent)
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				st, _ := dp.Load().Circuit()
				mu.Lock()
				states = append(states, st.State)
				mu.Unlock()
				answer(n, w, r)
			})
			tr := circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{OpenOn: tc.openOn})
			tr.Retry.MaxAttempts, tr.DeadLetter = 5, tc.deadLetter
			if tc.batched {
				tr.Batch = &triggers.BatchPolicy{MaxEvents: 2, MaxWait: time.Millisecond}
			}
			var sink *memSink
			var dlSink DeadLetterSink
			if tc.deadLetter {
				sink = &memSink{}
				dlSink = sink
			}
			var numbers []int
			d := newTestDispatcher(t, tr, dlSink, WithClock(newFakeClock()), WithObserver(func(a Attempt) {
				mu.Lock()
				numbers = append(numbers, a.Number)
				mu.Unlock()
			}))
			dp.Store(d)
			ev := testEvent(t, 1, "k")
			if err := d.Submit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			closeWithin(t, d, 10*time.Second)

			if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev.Token) {
				t.Fatal("the event was not delivered")
			}
			if sink != nil && len(sink.All()) != 0 {
				t.Errorf("%d dead letters, want none", len(sink.All()))
			}
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(states) != fmt.Sprint(tc.want) {
				t.Errorf("the circuit at each request: %v, want %v", states, tc.want)
			}
			if fmt.Sprint(numbers) != "[1 2 3 4]" {
				t.Errorf("attempt numbers %v, want [1 2 3 4]", numbers)
			}
		})
	}
}
