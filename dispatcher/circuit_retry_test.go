package dispatcher

import (
	"bytes"
	"context"
	"fmt"
	"io"
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

// answer is a scripted response: a status and a Retry-After value ("":
// none).
type answer struct {
	status     int
	retryAfter string
}

// answers answers the n-th request with as[n-1] (the last one after the
// script ends).
func answers(as ...answer) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		a := as[min(n, len(as))-1]
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
	}
}

// TestCircuitWaitsForRetryAfter: the Retry-After of the failure that
// opened the circuit, or of a failed probe, lengthens the wait before the
// next probe (the later of it and the probe interval, a Retry-After capped
// at retry.max_backoff; the interval doubles on as before), and so does
// the Retry-After of the last failure of a round between two rounds
// without dead letters. Before, the probe waited for the interval alone
// and the rounds for the backoff alone.
func TestCircuitWaitsForRetryAfter(t *testing.T) {
	// The clock's start (newFakeClock) and 45 s later, as an HTTP date.
	date := newFakeClock().Now().Add(45 * time.Second).Format(http.TimeFormat)
	for _, tc := range []struct {
		name       string
		failures   int // circuit.failures
		deadLetter bool
		batched    bool
		answers    []answer
		want       string // the waits on the clock
	}{
		{"opened by a 429 asking for 30s", 1, true, false, []answer{{429, "30"}, {204, ""}}, "30s"},
		{"opened, Retry-After over max_backoff", 1, true, false, []answer{{503, "120"}, {204, ""}}, "1m0s"},
		{"opened, Retry-After: 0", 1, true, false, []answer{{503, "0"}, {204, ""}}, "1s"},
		{"opened, Retry-After as a date", 1, true, false, []answer{{503, date}, {204, ""}}, "45s"},
		{"a failed probe asking for 45s", 1, true, false, []answer{{503, ""}, {503, "45"}, {503, ""}, {204, ""}}, "1s 45s 4s"},
		{"a failed probe asking for less than the interval", 1, true, false, []answer{{503, ""}, {503, "1"}, {204, ""}}, "1s 2s"},
		{"opened without dead letters", 1, false, false, []answer{{429, "30"}, {204, ""}}, "30s"},
		{"batched, opened", 1, true, true, []answer{{429, "30"}, {204, ""}}, "30s"},
		{"batched, a failed probe", 1, true, true, []answer{{503, ""}, {503, "45"}, {204, ""}}, "1s 45s"},
		{"between rounds without dead letters", 5, false, false, []answer{{429, "30"}, {204, ""}}, "30s"},
		{"batched, between rounds without dead letters", 5, false, true, []answer{{429, "30"}, {204, ""}}, "30s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			// A batch's max_wait timer sleeps on the clock once, when the
			// batch opens: the first request is answered after that
			// sleep, so that every later one is the delivery's.
			timerSlept := make(chan struct{})
			if tc.batched {
				clock.onSleep = func(n int) {
					if n == 1 {
						close(timerSlept)
					}
				}
			}
			answer := answers(tc.answers...)
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if tc.batched && n == 1 {
					select {
					case <-timerSlept:
					case <-r.Context().Done():
						return
					}
				}
				answer(n, w, r)
			})
			tr := circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: tc.failures, MaxProbeInterval: time.Minute})
			tr.Retry.MaxBackoff, tr.DeadLetter = time.Minute, tc.deadLetter
			if tc.batched {
				tr.Batch = &triggers.BatchPolicy{MaxEvents: 2, MaxWait: time.Millisecond}
			}
			var sink *memSink
			var dlSink DeadLetterSink
			if tc.deadLetter {
				sink = &memSink{}
				dlSink = sink
			}
			d := newTestDispatcher(t, tr, dlSink, WithClock(clock))
			ev := testEvent(t, 1, "k")
			if err := d.Submit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			closeWithin(t, d, 10*time.Second)

			if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev.Token) {
				t.Fatal("the event was not delivered")
			}
			if n := len(rc.deliveries()); n != len(tc.answers) {
				t.Errorf("%d requests, want %d", n, len(tc.answers))
			}
			sleeps := clock.Sleeps()
			if tc.batched && len(sleeps) > 0 {
				sleeps = sleeps[1:] // the batch's max_wait
			}
			if got := fmtDurations(sleeps); got != tc.want {
				t.Errorf("waits %s, want %s", got, tc.want)
			}
		})
	}
}

// TestCircuitHoldKeepsMaxAttempts: an event whose round of attempts is
// held while another delivery's failure has the circuit open goes on,
// once the circuit closes, with the attempts retry.max_attempts leaves it
// (before, it got a new round of retry.max_attempts): with dead letters it
// is dead-lettered after retry.max_attempts attempts in all, at once when
// its last attempt failed while the circuit was open; without, the held
// round and its continuation are one round, which opens the circuit
// (circuit.failures: 1) after retry.max_attempts attempts. The attempts
// are numbered on across the hold.
func TestCircuitHoldKeepsMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		name        string
		deadLetter  bool
		maxAttempts int
		failures    int            // circuit.failures
		fail        int            // event 1's requests answered 500 (then 204)
		want        []CircuitState // the circuit as event 1's requests arrive
		dlAttempts  int            // event 1's dead letter's attempts (0: none)
	}{
		{"a retry held", true, 2, 0, 100,
			[]CircuitState{CircuitClosed, CircuitClosed}, 2},
		{"the last attempt failed while open", true, 1, 0, 100,
			[]CircuitState{CircuitClosed}, 1},
		{"without dead letters", false, 3, 1, 3,
			[]CircuitState{CircuitClosed, CircuitClosed, CircuitClosed, CircuitHalfOpen}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dp atomic.Pointer[Dispatcher]
			ev1, ev2 := testEvent(t, 1, "a"), testEvent(t, 2, "b")
			id1 := WebhookID("orders", ev1.Token)
			var (
				mu      sync.Mutex
				states  []CircuitState
				n1, n2  int
				first1  = make(chan struct{}) // event 1's first request arrived
				numbers []int                 // event 1's attempt numbers
			)
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				st, _ := dp.Load().Circuit()
				mu.Lock()
				n := 0
				if bytes.Contains(body, []byte(`"a"`)) { // event 1
					states = append(states, st.State)
					n1++
					n = n1
				} else {
					n2++
					n = -n2
				}
				mu.Unlock()
				switch {
				case n == 1:
					// Answered once event 2's 410 opened the circuit.
					close(first1)
					awaitCircuitOpen(t, &dp)
					w.WriteHeader(http.StatusInternalServerError)
				case n > 0 && n <= tc.fail:
					w.WriteHeader(http.StatusInternalServerError)
				case n == -1:
					// Event 2 opens the circuit (open_on) while event 1's
					// first request is under way.
					select {
					case <-first1:
					case <-r.Context().Done():
						return
					}
					w.WriteHeader(http.StatusGone)
				case n == -2:
					// Event 2's probe closes the circuit once event 1's
					// failed attempt is held.
					awaitCond(t, "event 1 held at the circuit", func() bool {
						h, ok := dp.Load().HeadOfLine()
						return ok && h.WebhookID == id1 && h.Attempts == 1 && h.LastStatus == http.StatusInternalServerError && h.NextAttemptAt.IsZero()
					})
					w.WriteHeader(http.StatusNoContent)
				default:
					w.WriteHeader(http.StatusNoContent)
				}
			})
			tr := &triggers.Trigger{
				Webhook:     triggers.Webhook{URL: rc.srv.URL},
				Ordering:    triggers.None,
				Concurrency: 2,
				DeadLetter:  tc.deadLetter,
				Retry:       triggers.RetryPolicy{MaxAttempts: tc.maxAttempts, InitialBackoff: time.Second, MaxBackoff: time.Second},
				Circuit:     triggers.CircuitPolicy{Failures: tc.failures, OpenOn: triggers.StatusRules{"410"}, MaxProbeInterval: time.Second},
			}
			var sink *memSink
			var dlSink DeadLetterSink
			if tc.deadLetter {
				sink = &memSink{}
				dlSink = sink
			}
			d := newTestDispatcher(t, tr, dlSink, WithClock(newFakeClock()), WithObserver(func(a Attempt) {
				if a.WebhookID == id1 {
					mu.Lock()
					numbers = append(numbers, a.Number)
					mu.Unlock()
				}
			}))
			dp.Store(d)
			for _, ev := range []Event{ev1, ev2} {
				if err := d.Submit(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			closeWithin(t, d, 10*time.Second)

			if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev2.Token) {
				t.Fatal("the watermark is not the last event")
			}
			if sink != nil {
				dls := sink.All()
				if len(dls) != 1 || dls[0].WebhookID != id1 || dls[0].Attempts != tc.dlAttempts {
					t.Errorf("dead letters %+v, want event 1's after %d attempts", dls, tc.dlAttempts)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(states) != fmt.Sprint(tc.want) {
				t.Errorf("the circuit at event 1's requests: %v, want %v", states, tc.want)
			}
			var want []int
			for i := range tc.want {
				want = append(want, i+1)
			}
			if fmt.Sprint(numbers) != fmt.Sprint(want) {
				t.Errorf("event 1's attempt numbers %v, want %v", numbers, want)
			}
		})
	}
}

// awaitCond waits, in a receiver's handler, until cond holds, polling as
// nothing signals it; after 10s it reports the failure with t.Error
// (t.Fatal is not for that goroutine) and returns false.
func awaitCond(t *testing.T, what string, cond func() bool) bool {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Errorf("%s: not within 10s", what)
			return false
		}
	}
	return true
}

// heldRun is what runHeld saw of event 1.
type heldRun struct {
	numbers []int        // its attempt numbers
	at      []time.Time  // when its requests arrived, on the clock
	dls     []DeadLetter // the dead letters (nil without dead letters)
	circuit CircuitState // the circuit once every event is done
}

// runHeld runs tr (its webhook URL set here; ordering none, concurrency
// 2, circuit.open_on [410], retry.initial_backoff 1s and max_backoff 1m),
// batched in requests of one event or not, on the fake clock: event 1
// ("a") is sent first; while its first request is under way, event 2's
// ("b") is answered 410, which opens the circuit; event 1's first request
// is then answered first, its later ones later. Event 2's probe closes
// the circuit once event 1's failed attempt is held at it (no next
// attempt scheduled while the circuit is open).
func runHeld(t *testing.T, tr *triggers.Trigger, batched bool, first, later answer) heldRun {
	t.Helper()
	var dp atomic.Pointer[Dispatcher]
	clock := newFakeClock()
	ev1, ev2 := testEvent(t, 1, "a"), testEvent(t, 2, "b")
	id1 := WebhookID("orders", ev1.Token)
	if batched {
		id1 = BatchWebhookID("orders", ev1.Token, ev1.Token)
	}
	var (
		mu     sync.Mutex
		run    heldRun
		n1, n2 int
		first1 = make(chan struct{}) // event 1's first request arrived
	)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n := 0
		if bytes.Contains(body, []byte(`"a"`)) { // event 1
			n1++
			n = n1
			run.at = append(run.at, clock.Now())
		} else {
			n2++
			n = -n2
		}
		mu.Unlock()
		a := answer{status: http.StatusNoContent}
		switch {
		case n == 1:
			close(first1)
			awaitCircuitOpen(t, &dp)
			a = first
		case n > 1:
			a = later
		case n == -1:
			a = answer{status: http.StatusGone}
		case n == -2:
			awaitCond(t, "event 1 held at the circuit", func() bool {
				h, ok := dp.Load().HeadOfLine()
				return ok && h.WebhookID == id1 && h.Attempts == 1 && h.LastStatus == first.status && h.NextAttemptAt.IsZero()
			})
		}
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
	})
	tr.Webhook.URL = rc.srv.URL
	tr.Ordering, tr.Concurrency = triggers.None, 2
	tr.Retry.InitialBackoff, tr.Retry.MaxBackoff = time.Second, time.Minute
	tr.Circuit.OpenOn, tr.Circuit.MaxProbeInterval = triggers.StatusRules{"410"}, time.Minute
	if batched {
		tr.Batch = &triggers.BatchPolicy{MaxEvents: 2, MaxWait: time.Millisecond}
	}
	var sink *memSink
	var dlSink DeadLetterSink
	if tr.DeadLetter {
		sink = &memSink{}
		dlSink = sink
	}
	d := newTestDispatcher(t, tr, dlSink, WithClock(clock), WithObserver(func(a Attempt) {
		if a.WebhookID == id1 {
			mu.Lock()
			run.numbers = append(run.numbers, a.Number)
			mu.Unlock()
		}
	}))
	dp.Store(d)
	if err := d.Submit(context.Background(), ev1); err != nil {
		t.Fatal(err)
	}
	<-first1 // event 2 goes in a request of its own
	if err := d.Submit(context.Background(), ev2); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, d, 10*time.Second)

	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev2.Token) {
		t.Fatal("the watermark is not the last event")
	}
	if sink != nil {
		run.dls = sink.All()
	}
	st, _ := d.Circuit()
	run.circuit = st.State
	mu.Lock()
	defer mu.Unlock()
	return run
}

// TestCircuitHoldKeepsBackoff: a retry held while another delivery's
// failure has the circuit open is sent, once the circuit closes, no
// sooner than its backoff would have let it: here the 30s the answer's
// Retry-After asks for, although the probe closed the circuit after 1s
// (before, it was sent at once, 1s after that answer). Without dead
// letters a round whose last attempt failed while the circuit was open
// waits likewise for the wait between rounds before the next round
// begins.
func TestCircuitHoldKeepsBackoff(t *testing.T) {
	for _, tc := range []struct {
		name        string
		deadLetter  bool
		maxAttempts int
		batched     bool
		first       answer // event 1's first answer, while the circuit is open
	}{
		{"a retry held", true, 5, false, answer{429, "30"}},
		{"a retry held, without dead letters", false, 5, false, answer{429, "30"}},
		{"a round used up, without dead letters", false, 1, false, answer{503, "30"}},
		{"batched, a retry held", true, 5, true, answer{429, "30"}},
		{"batched, a round used up, without dead letters", false, 1, true, answer{503, "30"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &triggers.Trigger{DeadLetter: tc.deadLetter, Retry: triggers.RetryPolicy{MaxAttempts: tc.maxAttempts}}
			run := runHeld(t, tr, tc.batched, tc.first, answer{status: http.StatusNoContent})

			if fmt.Sprint(run.numbers) != "[1 2]" {
				t.Fatalf("event 1's attempt numbers %v, want [1 2]", run.numbers)
			}
			if len(run.dls) != 0 {
				t.Errorf("dead letters %+v, want none", run.dls)
			}
			if gap := run.at[1].Sub(run.at[0]); gap < 30*time.Second {
				t.Errorf("event 1 sent again %s after the answer asking for 30s (Retry-After), want at least 30s", gap)
			}
		})
	}
}

// TestCircuitHoldPermanentFailure: an event whose attempt the endpoint
// answered, while another delivery's failure had the circuit open, with a
// status the retry policy never retries (400; 410, which circuit.open_on
// lists too) has made its last attempt: with dead letters it is
// dead-lettered once the circuit closes, without another request, and
// does not reopen the circuit (before, it was sent again, and its 410
// opened the circuit anew). Without dead letters the next request is a
// new round's, after the wait between rounds.
func TestCircuitHoldPermanentFailure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deadLetter bool
		batched    bool
		first      answer // event 1's first answer, while the circuit is open
		later      answer // its later ones
		numbers    string // its attempt numbers
		wait       time.Duration
	}{
		{"dead-lettered", true, false, answer{400, ""}, answer{400, ""}, "[1]", 0},
		{"a status open_on lists, dead-lettered", true, false, answer{410, ""}, answer{410, ""}, "[1]", 0},
		{"without dead letters, a new round", false, false, answer{400, "30"}, answer{204, ""}, "[1 2]", 30 * time.Second},
		{"batched, dead-lettered", true, true, answer{400, ""}, answer{400, ""}, "[1]", 0},
		{"batched, without dead letters, a new round", false, true, answer{400, "30"}, answer{204, ""}, "[1 2]", 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &triggers.Trigger{DeadLetter: tc.deadLetter, Retry: triggers.RetryPolicy{MaxAttempts: 3}}
			run := runHeld(t, tr, tc.batched, tc.first, tc.later)

			if fmt.Sprint(run.numbers) != tc.numbers {
				t.Fatalf("event 1's attempt numbers %v, want %s", run.numbers, tc.numbers)
			}
			if tc.deadLetter {
				if len(run.dls) != 1 || run.dls[0].Attempts != 1 || run.dls[0].LastStatus != tc.first.status {
					t.Errorf("dead letters %+v, want event 1's after 1 attempt answered %d", run.dls, tc.first.status)
				}
			} else if gap := run.at[1].Sub(run.at[0]); gap < tc.wait {
				t.Errorf("event 1's new round began %s after the answer asking for %s (Retry-After), want at least that", gap, tc.wait)
			}
			if run.circuit != CircuitClosed {
				t.Errorf("the circuit is %s, want closed", run.circuit)
			}
		})
	}
}
