// Package admin serves changehook's operational HTTP endpoints:
//
//	GET /healthz        200 while the process is alive
//	GET /readyz         200 when every enabled trigger's change stream is open,
//	                    503 with one reason per line otherwise
//	GET /metrics        Prometheus exposition of the given gatherer
//	GET /api/triggers   JSON: per trigger state, last error, counters and
//	                    checkpoint time (never secrets)
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/changehook/changehook/runner"
)

// Runner is what the admin server reports on; *runner.Runner implements it.
type Runner interface {
	// Status returns every trigger's status, in configuration order.
	Status() []runner.TriggerStatus
	// Ready reports whether every enabled trigger's change stream is open.
	Ready() bool
}

// Options configure a Server.
type Options struct {
	// Addr is the listen address (host:port; port 0 picks a free one).
	Addr string
	// Runner provides the triggers' status. Required.
	Runner Runner
	// Gatherer is exposed on /metrics and read for the counters of
	// /api/triggers (nil: /metrics is empty and counters are zero).
	Gatherer prometheus.Gatherer
	// Logger receives the server's logs (nil: discarded).
	Logger *slog.Logger
}

// Server is a running admin HTTP server.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
	log  *slog.Logger
}

// Start listens on opts.Addr and serves the admin endpoints in a background
// goroutine until Shutdown.
func Start(opts Options) (*Server, error) {
	if opts.Runner == nil {
		return nil, errors.New("start admin server: nil runner")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("start admin server: %w", err)
	}
	s := &Server{
		ln:   ln,
		srv:  &http.Server{Handler: Handler(opts.Runner, opts.Gatherer), ReadHeaderTimeout: 5 * time.Second},
		done: make(chan error, 1),
		log:  opts.Logger,
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the server's base URL, http://ADDR.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Shutdown stops accepting connections and waits for the active requests to
// finish until ctx is done, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("shut down admin server: %w", err)
	}
	if serveErr := <-s.done; serveErr != nil && err == nil {
		err = fmt.Errorf("admin server: %w", serveErr)
	}
	return err
}

// Handler returns the admin endpoints as an http.Handler, for embedding in
// another server or testing.
func Handler(r Runner, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		reasons := notReady(r)
		if len(reasons) == 0 {
			_, _ = fmt.Fprintln(w, "ready")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, strings.Join(reasons, "\n"))
	})
	if g == nil {
		g = prometheus.NewRegistry()
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/triggers", func(w http.ResponseWriter, _ *http.Request) {
		resp := TriggersResponse{Ready: len(notReady(r)) == 0, Triggers: triggerViews(r.Status(), g)}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(resp)
	})
	return mux
}

// notReady lists why the runner is not ready (nil when it is).
func notReady(r Runner) []string {
	var reasons []string
	for _, st := range r.Status() {
		if st.State == runner.StateDisabled || st.StreamOpen {
			continue
		}
		reason := fmt.Sprintf("trigger %s: %s, change stream not open", st.Name, st.State)
		if st.LastError != "" {
			reason += ": " + st.LastError
		}
		reasons = append(reasons, reason)
	}
	if len(reasons) == 0 && !r.Ready() {
		reasons = append(reasons, "runner not started")
	}
	return reasons
}

// TriggersResponse is the body of GET /api/triggers.
type TriggersResponse struct {
	// Ready is what /readyz reports.
	Ready bool `json:"ready"`
	// Triggers are the triggers in configuration order.
	Triggers []TriggerView `json:"triggers"`
}

// TriggerView is one trigger in /api/triggers: its status plus the delivery
// counters read from the metrics.
type TriggerView struct {
	runner.TriggerStatus
	// CheckpointLagSeconds is CheckpointLag in seconds.
	CheckpointLagSeconds float64 `json:"checkpoint_lag_seconds"`
	// Deliveries counts finished deliveries by outcome (delivered,
	// dead_lettered, failed).
	Deliveries map[string]uint64 `json:"deliveries"`
	// Attempts counts delivery attempts by result ("ok" or a failure reason).
	Attempts map[string]uint64 `json:"attempts"`
	// DeadLetters counts dead letters stored since start.
	DeadLetters uint64 `json:"dead_letters"`
	// InFlight is the number of deliveries being attempted now.
	InFlight int64 `json:"in_flight"`
}

func triggerViews(sts []runner.TriggerStatus, g prometheus.Gatherer) []TriggerView {
	views := make([]TriggerView, len(sts))
	idx := make(map[string]*TriggerView, len(sts))
	for i, st := range sts {
		views[i] = TriggerView{
			TriggerStatus:        st,
			CheckpointLagSeconds: st.CheckpointLag.Seconds(),
			Deliveries:           map[string]uint64{},
			Attempts:             map[string]uint64{},
		}
		idx[st.Name] = &views[i]
	}
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return views
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := idx[label(m, "trigger")]
			if v == nil {
				continue
			}
			switch mf.GetName() {
			case "changehook_deliveries_total":
				v.Deliveries[label(m, "outcome")] += uint64(m.GetCounter().GetValue())
			case "changehook_delivery_attempts_total":
				v.Attempts[label(m, "reason")] += uint64(m.GetCounter().GetValue())
			case "changehook_dead_letters_total":
				v.DeadLetters += uint64(m.GetCounter().GetValue())
			case "changehook_inflight":
				v.InFlight += int64(m.GetGauge().GetValue())
			}
		}
	}
	return views
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
