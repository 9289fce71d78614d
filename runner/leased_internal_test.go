package runner

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// switchLease is a Lease whose validity the test switches.
type switchLease struct{ valid atomic.Bool }

func (*switchLease) Key() string         { return "t" }
func (*switchLease) Fence() store.Fence  { return store.Fence{} }
func (*switchLease) Deadline() time.Time { return time.Now().Add(time.Hour) }
func (l *switchLease) Valid() bool       { return l.valid.Load() }
func (*switchLease) Lost(error)          {}
func (l *switchLease) set(v bool)        { l.valid.Store(v) }
func (l *switchLease) String() string    { return "switchLease" }

// roundTripFunc is an http.RoundTripper calling itself.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (rt roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return rt(r) }

// TestGateTransportSendCheck: the lease gate's check right before the
// write (plain http, the direct transport) refuses a request whose lease
// ended after RoundTrip's own check, also when the request's context is
// one the gate already derived its send-check context from; requests
// with other contexts get a context derived from theirs.
func TestGateTransportSendCheck(t *testing.T) {
	var mu sync.Mutex
	received := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	l := new(switchLease)
	l.set(true)
	endLease := atomic.Bool{} // the next request ends the lease after the gate's first check
	type key struct{}
	var seen []any // key's value in each context the gate passed on
	s, err := dispatcher.NewSender(&triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: srv.URL}},
		dispatcher.WithTransportWrapper(func(next http.RoundTripper) http.RoundTripper {
			return newGateTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				seen = append(seen, r.Context().Value(key{}))
				if endLease.Load() {
					l.set(false)
				}
				return next.RoundTrip(r)
			}), l)
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctxA := context.WithValue(context.Background(), key{}, "a")
	ctxB := context.WithValue(context.Background(), key{}, "b")
	for i, c := range []struct {
		ctx     context.Context
		endNext bool
		wantErr error
	}{
		{ctxA, false, nil},
		{ctxA, false, nil},
		{ctxB, false, nil},
		{ctxA, false, nil},
		{ctxA, true, ErrFenced},
	} {
		endLease.Store(c.endNext)
		_, _, err := s.SendOnce(c.ctx, "msg_1", []byte(`{}`), 1)
		if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
			t.Fatalf("request %d: error %v, want %v", i+1, err, c.wantErr)
		}
	}
	want := []any{"a", "a", "b", "a", "a"}
	for i := range want {
		if i >= len(seen) || seen[i] != want[i] {
			t.Fatalf("contexts passed on carried %v, want %v", seen, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if received != 4 {
		t.Fatalf("server received %d requests, want 4 (the fenced one not sent)", received)
	}
}
