// Package connendpoint is a webhook endpoint for tests about connections:
// it answers 204 to every request and counts the requests and the
// connections open as the server sees them, so a test can tell whether a
// client left keep-alive connections behind.
package connendpoint

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Endpoint is a started httptest server answering 204 (closed at the
// test's cleanup) with its counts.
type Endpoint struct {
	*httptest.Server
	open, received atomic.Int64
}

// Start starts an Endpoint and closes it when t's test ends.
func Start(t testing.TB) *Endpoint {
	t.Helper()
	e := &Endpoint{}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		e.received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	e.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			e.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			e.open.Add(-1)
		}
	}
	e.Server.Start()
	t.Cleanup(e.Close)
	return e
}

// Open returns the number of connections open now.
func (e *Endpoint) Open() int64 { return e.open.Load() }

// Received returns the number of requests answered so far.
func (e *Endpoint) Received() int64 { return e.received.Load() }
