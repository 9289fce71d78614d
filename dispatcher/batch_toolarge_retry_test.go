package dispatcher

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
// round would waste retries on a body that cannot pass. An event refused
// alone with 413 keeps retry_on's meaning: it is retried, then
// dead-lettered.
func TestBatchTooLargeSplitBeforeRetryOn(t *testing.T) {
	const events, maxEvents = 16, 8
	const tries = 3 // retry.max_attempts
	for _, tc := range []struct {
		name       string
		retryOn    triggers.StatusRules
		deadLetter bool
		circuit    triggers.CircuitPolicy
		refuse     int // an event refused even alone (-1: none)
	}{
		{"413 retried, no dead letters, no circuit", triggers.StatusRules{"413"}, false, triggers.CircuitPolicy{}, -1},
		{"4xx retried, no dead letters, no circuit", triggers.StatusRules{"4xx"}, false, triggers.CircuitPolicy{}, -1},
		{"413 retried, no dead letters, circuit", triggers.StatusRules{"413"}, false, triggers.CircuitPolicy{Failures: 100}, -1},
		{"413 retried, dead letters", triggers.StatusRules{"413"}, true, triggers.CircuitPolicy{}, -1},
		{"413 retried, dead letters, one event refused alone", triggers.StatusRules{"413"}, true, triggers.CircuitPolicy{}, 11},
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
			d := newTestDispatcher(t, &triggers.Trigger{
				Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
				Ordering: triggers.Strict, Concurrency: 1, DeadLetter: tc.deadLetter,
				Retry: triggers.RetryPolicy{
					MaxAttempts: tries, RetryOn: tc.retryOn,
					InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
				},
				Circuit: tc.circuit,
				Batch:   &triggers.BatchPolicy{MaxEvents: maxEvents, MaxWait: time.Millisecond},
			}, sink)
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
			dls := sink.All()
			if tc.refuse < 0 {
				if len(dls) != 0 {
					t.Errorf("%d dead letters, want none", len(dls))
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
