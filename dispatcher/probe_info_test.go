package dispatcher

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/triggers"
)

// attemptLog is an observer keeping a copy of every attempt it sees.
type attemptLog struct {
	mu  sync.Mutex
	got []Attempt
}

func (l *attemptLog) observe(a Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a.DocumentKey = append(bson.Raw(nil), a.DocumentKey...) // it aliases the event
	l.got = append(l.got, a)
}

func (l *attemptLog) all() []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Attempt(nil), l.got...)
}

// endlessLongSleeps is a fakeClock whose sleeps of at least long last
// until their context ends.
type endlessLongSleeps struct {
	*fakeClock
	long time.Duration
}

func (c endlessLongSleeps) Sleep(ctx context.Context, d time.Duration) error {
	if d >= c.long {
		<-ctx.Done()
		return ctx.Err()
	}
	return c.fakeClock.Sleep(ctx, d)
}

// TestEveryAttemptCarriesTheEvent: every attempt the observers (the
// delivery history) see names its event's documentKey and operationType,
// whichever path sent it: a circuit probe of an event (the failed ones and
// the one that delivers it), a batch and its probe, the parts of a batch
// sent in halves after a 413. A probe also sends the very request its
// delivery sent: the same body, and for CloudEvents the same envelope or
// ce-* headers.
func TestEveryAttemptCarriesTheEvent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		format   string
		batch    bool
		statuses []int
		keys     []string // the events' document keys, in order
		wantKeys []string // the document key each attempt names
	}{
		{"probe", triggers.FormatJSON, false, []int{503, 503, 204}, []string{"k"}, []string{"k", "k", "k"}},
		{"probe cloudevents", triggers.FormatCloudEvents, false, []int{503, 503, 204}, []string{"k"}, []string{"k", "k", "k"}},
		{"probe cloudevents-binary", triggers.FormatCloudEventsBinary, false, []int{503, 503, 204}, []string{"k"}, []string{"k", "k", "k"}},
		// The batch cases first send an event "p" alone, answered 204
		// once the batch's events are submitted: with a request in
		// flight, the batch is sealed full, not with its first event.
		{"batch probe", triggers.FormatJSON, true, []int{204, 503, 503, 204}, []string{"p", "a", "b"}, []string{"p", "a", "a", "a"}},
		{"batch split after 413", triggers.FormatJSON, true, []int{204, 413, 204}, []string{"p", "a", "b"}, []string{"p", "a", "a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			respond := statuses(tc.statuses...)
			first, release := make(chan struct{}), make(chan struct{})
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if tc.batch && n == 1 {
					close(first)
					<-release
				}
				respond(n, w, r)
			})
			var log attemptLog
			trig := circuitTrigger(rc.srv.URL, triggers.CircuitPolicy{Failures: 1})
			trig.Webhook.Format = tc.format
			var clock Clock = newFakeClock()
			if tc.batch {
				trig.Batch = &triggers.BatchPolicy{MaxEvents: len(tc.keys) - 1, MaxWait: time.Hour}
				// The fake clock would end max_wait at once.
				clock = endlessLongSleeps{clock.(*fakeClock), 30 * time.Minute}
			}
			d := newTestDispatcher(t, trig, &memSink{}, WithClock(clock), WithObserver(log.observe))
			for i, k := range tc.keys {
				if err := d.Submit(context.Background(), testEvent(t, i+1, k)); err != nil {
					t.Fatal(err)
				}
				if tc.batch && i == 0 {
					<-first
				}
			}
			close(release)
			closeWithin(t, d, 10*time.Second)

			got := log.all()
			if len(got) != len(tc.wantKeys) {
				t.Fatalf("%d attempts observed, want %d: %+v", len(got), len(tc.wantKeys), got)
			}
			for i, a := range got {
				want := mustMarshal(t, bson.D{{Key: "_id", Value: tc.wantKeys[i]}})
				if !bytes.Equal(a.DocumentKey, want) || a.Operation != "insert" {
					t.Errorf("attempt %d (HTTP %d) has document key %v and operation %q, want %v and insert",
						i+1, a.Status, a.DocumentKey, a.Operation, bson.Raw(want))
				}
			}
			if got[len(got)-1].Status != http.StatusNoContent {
				t.Errorf("the last attempt observed is HTTP %d, want the delivery (204)", got[len(got)-1].Status)
			}
			if slices.Contains(tc.statuses, http.StatusRequestEntityTooLarge) { // halves, not probes
				return
			}
			reqs := rc.deliveries()
			if tc.batch {
				reqs = reqs[1:] // "p"
			}
			for i, r := range reqs[1:] {
				if !bytes.Equal(r.body, reqs[0].body) {
					t.Errorf("probe %d sent\n%s\nwant the delivery's body\n%s", i+1, r.body, reqs[0].body)
				}
				for _, h := range []string{"Content-Type", "Ce-Id", "Ce-Type", "Ce-Source", "webhook-id"} {
					if r.header.Get(h) != reqs[0].header.Get(h) {
						t.Errorf("probe %d: %s %q, want the delivery's %q", i+1, h, r.header.Get(h), reqs[0].header.Get(h))
					}
				}
			}
		})
	}
}
