package dispatcher

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestBatchTooLargeSplitBeforeRetryOn: a batch request the endpoint refuses
// as too large (413) is split at once, also when retry.retry_on lists 413:
// without dead letters and without a circuit, retrying it as it is would
// go on forever and hold the trigger behind it; with either, every bounded
// round would waste retries on a body that cannot pass. Nor is it dropped
// or delivered when retry.drop_on or success_on lists 413: the endpoint
// refused the request's size, and none of its events was received. An
// event refused alone with 413 keeps the rules' meaning: retried, then
// dead-lettered (retry_on), dropped (drop_on) or delivered (success_on),
// 413 listed by itself beating a 4xx in another list.
func TestBatchTooLargeSplitBeforeRetryOn(t *testing.T) {
	const events, maxEvents = 16, 8
	const tries = 3 // retry.max_attempts
	for _, tc := range []struct {
		name       string
		retry      triggers.RetryPolicy // status rules
		deadLetter bool
		circuit    triggers.CircuitPolicy
		refuse     int    // an event refused even alone (-1: none)
		alone      string // the outcome of the event refused alone
	}{
		{"413 retried, no dead letters, no circuit", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"413"}}, false, triggers.CircuitPolicy{}, -1, ""},
		{"4xx retried, no dead letters, no circuit", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"4xx"}}, false, triggers.CircuitPolicy{}, -1, ""},
		{"413 retried, no dead letters, circuit", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"413"}}, false, triggers.CircuitPolicy{Failures: 100}, -1, ""},
		{"413 retried, dead letters", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"413"}}, true, triggers.CircuitPolicy{}, -1, ""},
		{"413 retried, dead letters, one event refused alone", triggers.RetryPolicy{RetryOn: triggers.StatusRules{"413"}}, true, triggers.CircuitPolicy{}, 11, OutcomeDeadLettered},
		{"4xx dropped, dead letters", triggers.RetryPolicy{DropOn: triggers.StatusRules{"4xx"}, RetryOn: triggers.StatusRules{"5xx"}}, true, triggers.CircuitPolicy{}, -1, ""},
		{"413 dropped, no dead letters, circuit", triggers.RetryPolicy{DropOn: triggers.StatusRules{"413"}}, false, triggers.CircuitPolicy{Failures: 100}, -1, ""},
		{"4xx dropped, dead letters, one event refused alone", triggers.RetryPolicy{DropOn: triggers.StatusRules{"4xx"}, RetryOn: triggers.StatusRules{"5xx"}}, true, triggers.CircuitPolicy{}, 11, OutcomeDropped},
		// A code beats a class (RetryPolicy.ListOf), in a batch as alone.
		{"4xx dropped but 413 retried, dead letters, one event refused alone", triggers.RetryPolicy{DropOn: triggers.StatusRules{"4xx"}, RetryOn: triggers.StatusRules{"413", "5xx"}}, true, triggers.CircuitPolicy{}, 11, OutcomeDeadLettered},
		{"4xx success but 413 dropped, dead letters, one event refused alone", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"2xx", "4xx"}, DropOn: triggers.StatusRules{"413"}}, true, triggers.CircuitPolicy{}, 11, OutcomeDropped},
		{"4xx retried but 413 success, no dead letters, one event refused alone", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"2xx", "413"}, RetryOn: triggers.StatusRules{"4xx"}}, false, triggers.CircuitPolicy{}, 11, OutcomeDelivered},
		{"413 success, dead letters", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"2xx", "413"}}, true, triggers.CircuitPolicy{}, -1, ""},
		{"413 success, no dead letters, one event refused alone", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"2xx", "413"}}, false, triggers.CircuitPolicy{}, 11, OutcomeDelivered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := batchEvents(t, events, func(int) string { return "" })
			// stop ends the grace period of Close early once a refused
			// batch was sent again as it is: without the fix, without
			// dead letters, it would be sent again forever.
			stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var mu sync.Mutex
			var requests [][]int // seqs of every request, in arrival order
			sent := map[string]int{}
			accepted := map[int]int{}
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				seqs := checkBatchRequest(t, evs, r.Header, body, maxEvents)
				mu.Lock()
				defer mu.Unlock()
				requests = append(requests, seqs)
				key := fmt.Sprint(seqs)
				sent[key]++
				if len(seqs) > 1 && sent[key] > tries {
					cancel() // retried as it is, round after round
				}
				if len(seqs) > 1 || slices.Contains(seqs, tc.refuse) {
					w.WriteHeader(http.StatusRequestEntityTooLarge)
					return
				}
				accepted[seqs[0]]++
				w.WriteHeader(http.StatusNoContent)
			})
			sink := &memSink{}
			m := NewMetrics(nil)
			retry := tc.retry
			retry.MaxAttempts, retry.InitialBackoff, retry.MaxBackoff = tries, time.Millisecond, time.Millisecond
			d := newTestDispatcher(t, &triggers.Trigger{
				Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
				Ordering: triggers.Strict, Concurrency: 1, DeadLetter: tc.deadLetter,
				Retry:   retry,
				Circuit: tc.circuit,
				Batch:   &triggers.BatchPolicy{MaxEvents: maxEvents, MaxWait: time.Millisecond},
			}, sink, WithMetrics(m))
			for _, ev := range evs {
				if err := d.Submit(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			cerr := d.Close(stop)
			mu.Lock()
			defer mu.Unlock()
			reported := map[string]bool{}
			for _, seqs := range requests {
				key := fmt.Sprint(seqs)
				if n := sent[key]; len(seqs) > 1 && n > 1 && !reported[key] {
					reported[key] = true
					t.Errorf("batch %s sent %d times, want once, then split", key, n)
				}
			}
			if cerr != nil {
				t.Fatalf("Close: %v (requests %v)", cerr, requests[:min(len(requests), 8)])
			}
			for i := range events {
				want := 1
				if i == tc.refuse {
					want = 0
				}
				if accepted[i] != want {
					t.Errorf("event %d accepted %d times, want %d", i, accepted[i], want)
				}
			}
			if tok, _ := d.Watermark(); !bytes.Equal(tok, evs[events-1].Token) {
				t.Error("watermark did not reach the last event")
			}
			// Every event's outcome: delivered, but the one refused alone.
			want := map[string]uint64{OutcomeDelivered: events}
			if tc.refuse >= 0 {
				want[OutcomeDelivered]--
				want[tc.alone]++
			}
			if got := m.Counts("orders").Deliveries; !maps.Equal(got, want) {
				t.Errorf("deliveries by outcome %v, want %v", got, want)
			}
			dls := sink.All()
			if tc.alone != OutcomeDeadLettered {
				if len(dls) != 0 {
					t.Errorf("%d dead letters, want none", len(dls))
				}
				if n := sent[fmt.Sprint([]int{tc.refuse})]; tc.refuse >= 0 && n != 1 {
					t.Errorf("event %d, refused alone, sent %d times, want once (%s)", tc.refuse, n, tc.alone)
				}
				return
			}
			if n := sent[fmt.Sprint([]int{tc.refuse})]; n != tries {
				t.Errorf("event %d, refused alone, sent %d times, want %d (retry_on lists 413)", tc.refuse, n, tries)
			}
			if len(dls) != 1 || dls[0].WebhookID != WebhookID("orders", evs[tc.refuse].Token) ||
				dls[0].LastStatus != http.StatusRequestEntityTooLarge || dls[0].Attempts != tries {
				t.Errorf("dead letters %+v, want event %d's alone, after %d attempts of 413", dls, tc.refuse, tries)
			}
		})
	}
}
