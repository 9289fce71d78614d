// Package admin serves changehook's operational HTTP endpoints:
//
//	GET /healthz        200 while the process is alive
//	GET /readyz         200 when every trigger that should run is running:
//	                    503 with one reason per line for a trigger that
//	                    failed, one retrying longer than
//	                    admin.retrying_unready_after, one paused by its
//	                    payload errors, or one whose change stream is not
//	                    open yet
//	GET /metrics        Prometheus exposition of the given gatherer
//	GET /api/triggers   JSON: per trigger state, last error, counters and
//	                    checkpoint time, as the Runner reports them (never
//	                    secrets)
//	GET /api/history    JSON: the delivery history, newest first, filtered
//	                    (trigger, webhook_id, document_key, since, failed,
//	                    limit, after); 404 for a trigger neither configured
//	                    nor named by a record (Options.Config)
//	POST /api/reload    re-read and apply the configuration file (token)
//	GET /               the web console (package console): triggers, one
//	                    trigger, dead letters; read-only, never secrets
//
// Every call whose method is not GET or HEAD (the POST routes: trigger
// controls, dead-letter replay and purge, reload) is refused with 403 when a
// browser sent it from a page of another origin (Sec-Fetch-Site, else
// Origin against the Host header), and with 415 when it has a body that is
// not Content-Type: application/json; then it needs Options.Token, or a
// loopback listener when there is none. With Options.Token set, every
// request but GET or HEAD of /healthz, /readyz, /metrics and the console's
// /assets/ needs it, reads and the console's pages included (Bearer, or
// the password of HTTP Basic credentials; 401 otherwise, see tokenAuth). No response carries CORS headers,
// so other origins cannot read the GET endpoints either. A server listening
// on loopback answers only requests whose Host is a loopback name, so that
// DNS rebinding cannot turn another site's page into one of its own origin.
//
// A body is one JSON value: unknown fields and anything after the value
// are refused with 400. Errors quote what the client sent cut to its first
// 200 bytes; every answer says X-Content-Type-Options: nosniff. One client
// address holds at most a share of Options.MaxConnections (see there).
package admin

import (
	"cmp"
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

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/internal/admin/console"
	"github.com/changehook/changehook/internal/proccpu"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/triggers"
)

// Runner is what the admin server reports on; *runner.Runner implements it.
type Runner interface {
	// Status returns every trigger's status and counters, in configuration
	// order.
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
	// Gatherer is exposed on /metrics (nil: /metrics is empty).
	Gatherer prometheus.Gatherer
	// Logger receives the server's logs (nil: discarded).
	Logger *slog.Logger
	// Store lets the console show checkpoints and dead letters (nil: its
	// pages say the state database is not available).
	Store console.Store
	// Oplog lets the console show each checkpoint's distance to the oldest
	// oplog entry (nil: not shown).
	Oplog console.Oplog
	// Control applies the POST /api/triggers/{name}/pause|resume|skip|
	// redeliver calls (nil: those routes are absent).
	Control Controller
	// Token, when set, is needed by every request but GET or HEAD of
	// /healthz, /readyz, /metrics and the console's /assets/: the API,
	// reads included, and the console's pages. A request presents it as
	// "Authorization: Bearer TOKEN" or as the password of HTTP Basic
	// credentials (any user name: a browser asks for it); others get 401.
	// When empty, reads are open and mutating calls are accepted only if
	// the server listens on loopback. With or without it, a mutating call
	// from another origin's page or with a body that is not JSON is
	// refused (see the package documentation).
	Token string
	// authDelay replaces authFailDelay (tests; negative: no delay).
	authDelay time.Duration
	// ConsoleSampleEvery is how often the console samples the counters for
	// its sparklines (0: console.DefaultSampleEvery).
	ConsoleSampleEvery time.Duration
	// ReadTimeout bounds reading one request, body included (0:
	// triggers.DefaultAdminReadTimeout). Headers always have at most
	// triggers.DefaultAdminReadHeaderTimeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response (0:
	// triggers.DefaultAdminWriteTimeout).
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (0:
	// triggers.DefaultAdminIdleTimeout).
	IdleTimeout time.Duration
	// MaxConnections caps the open connections (0:
	// triggers.DefaultAdminMaxConnections); further ones are accepted only
	// once one closes. Unless the server listens on loopback, one client
	// address (IPv4, or IPv6 /64) holds at most a quarter of them, at
	// least 4: its further connections are closed at once, so that a
	// client cannot take every slot from the probes and the console.
	MaxConnections int
	// Cluster, when set, serves GET /api/cluster (members, leases, drift)
	// and the console's cluster members.
	Cluster Cluster
	// DeadLetters, when set, serves POST /api/deadletters/replay and
	// /purge, authorised as the control calls; Store alone serves GET
	// /api/deadletters and /api/deadletters/{id}.
	DeadLetters DeadLetterOps
	// DeadLetterCounts, when set, recounts the current dead letters after
	// every replay or purge call, before it answers (see
	// DeadLetterCounter); nil: the counts catch up at the runner's next
	// refresh.
	DeadLetterCounts DeadLetterCounter
	// RetryingUnreadyAfter is how long a trigger may be retrying before
	// /readyz reports it (0: triggers.DefaultRetryingUnreadyAfter).
	RetryingUnreadyAfter time.Duration
	// Reload serves POST /api/reload (nil: the route is absent), authorised
	// like Control.
	Reload Reloader
	// Now is the clock of the readiness rules (nil: time.Now).
	Now func() time.Time
	// History, when set, serves GET /api/history and the console's recent
	// attempts.
	History History
	// Config returns the configuration in use (after a reload, the
	// reloaded one). When set, GET /api/history, GET /api/deadletters and
	// POST /api/deadletters/replay|purge answer 404 for a trigger that is
	// neither in it nor named by any stored record (RecordedTrigger), as
	// the dlq and history commands refuse it; nil (or a nil result): any
	// name is taken, and lists what the records hold.
	Config func() *triggers.Config
}

// Cluster reports the cluster's members and leases; *cluster.Manager
// implements it.
type Cluster interface {
	// Status reads the live members and every lease from the state
	// database (GET /api/cluster).
	Status(ctx context.Context) (cluster.Status, error)
	// Overview reads what the console shows: the members, the configured
	// triggers' leases and the held ones, and a count of the others.
	Overview(ctx context.Context) (cluster.Overview, error)
}

// ClusterHandler serves GET /api/cluster: c's status as JSON, or 503 with
// {"error": ...} when the state database cannot be read.
func ClusterHandler(c Cluster) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		st, err := c.Status(ctx)
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = enc.Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = enc.Encode(st)
	})
}

// OptionsFor returns the server options that cfg's admin section sets
// (address, timeouts, connection cap); the caller adds Runner, Gatherer,
// Logger, Store and Oplog.
func OptionsFor(cfg triggers.AdminConfig) Options {
	return Options{Addr: cfg.Addr, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
		IdleTimeout: cfg.IdleTimeout, MaxConnections: cfg.MaxConnections, RetryingUnreadyAfter: cfg.RetryingUnreadyAfter}
}

// apiNotFound answers, in JSON as every API answer, a request under /api/
// that no route of mux takes: 405 with Allow when the path takes other
// methods, else 404 naming the request and, for a route opts leaves out,
// why this process does not serve it.
func apiNotFound(mux *http.ServeMux, opts Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if m == r.Method || m == http.MethodGet && r.Method == http.MethodHead {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); p != "" && p != "/" && p != "/api/" {
				allow = append(allow, m)
			}
		}
		req := r.Method + " " + r.URL.Path
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s: method not allowed; %s takes %s", req, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		why := `no such API endpoint (the README lists them under Operations, "Admin endpoints")`
		switch {
		case r.URL.Path == "/api/cluster" && opts.Cluster == nil:
			why = "this process is not a cluster member (changehook run is; dev is not)"
		case r.URL.Path == "/api/history" && opts.History == nil:
			why = "the delivery history is off here (history.enabled: false, or no state database)"
		case r.URL.Path == "/api/reload" && opts.Reload == nil:
			why = "this process does not reload its configuration"
		case strings.HasPrefix(r.URL.Path, "/api/triggers/") && opts.Control == nil:
			why = "this process takes no control requests"
		case strings.HasPrefix(r.URL.Path, "/api/deadletters") && (opts.Store == nil || opts.DeadLetters == nil):
			why = "this process has no dead-letter operations"
		}
		writeError(w, http.StatusNotFound, req+": "+why)
	})
}

// Server is a running admin HTTP server.
type Server struct {
	ln       net.Listener
	srv      *http.Server
	done     chan error
	log      *slog.Logger
	stopCons context.CancelFunc
	consDone chan struct{}
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
	opts.ReadTimeout = cmp.Or(opts.ReadTimeout, triggers.DefaultAdminReadTimeout)
	opts.WriteTimeout = cmp.Or(opts.WriteTimeout, triggers.DefaultAdminWriteTimeout)
	opts.IdleTimeout = cmp.Or(opts.IdleTimeout, triggers.DefaultAdminIdleTimeout)
	opts.MaxConnections = cmp.Or(opts.MaxConnections, triggers.DefaultAdminMaxConnections)
	if opts.ReadTimeout < 0 || opts.WriteTimeout < 0 || opts.IdleTimeout < 0 || opts.MaxConnections < 0 {
		return nil, errors.New("start admin server: negative timeout or connection cap")
	}
	var consCluster console.Cluster
	if opts.Cluster != nil {
		consCluster = opts.Cluster
	}
	cons, err := console.New(console.Options{Runner: opts.Runner, Store: opts.Store, Oplog: opts.Oplog, History: opts.History, Cluster: consCluster, Controls: opts.Control != nil,
		DeadLetterControls: opts.DeadLetters != nil,
		SampleEvery:        opts.ConsoleSampleEvery, Logger: opts.Logger, CPU: proccpu.Self})
	if err != nil {
		return nil, fmt.Errorf("start admin server: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("start admin server: %w", err)
	}
	tokens := newTokenAuth(opts.Token, opts.Logger)
	if opts.authDelay != 0 {
		tokens.delay = max(opts.authDelay, 0)
	}
	mux := routes(opts.Runner, opts.Gatherer, readiness{limit: opts.RetryingUnreadyAfter, now: opts.Now, detailed: tokens.reveal})
	loopback := isLoopback(ln.Addr())
	auth := authorizer{token: tokens, loopback: loopback}
	if opts.Control != nil {
		controlRoutes(mux, opts.Control, auth, controlWait(opts.WriteTimeout))
	}
	if opts.Reload != nil {
		reloadRoute(mux, opts.Reload, auth, opts.WriteTimeout)
	}
	deadLetterRoutes(mux, opts.Store, opts.DeadLetters, opts.DeadLetterCounts, opts.Config, auth, opts.Logger, opts.WriteTimeout)
	mux.Handle("/", cons)
	mux.Handle("/api/", apiNotFound(mux, opts))
	if opts.Cluster != nil {
		mux.Handle("GET /api/cluster", ClusterHandler(opts.Cluster))
	}
	if opts.History != nil {
		mux.Handle("GET /api/history", HistoryHandler(opts.History, opts.Config))
	}
	consCtx, stopCons := context.WithCancel(context.Background())
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           noSniff(refuseForeignHost(refuseCrossOrigin(tokens.require(mux, openRoute(mux, cons.ServesAsset))), loopback)),
			ReadHeaderTimeout: min(triggers.DefaultAdminReadHeaderTimeout, opts.ReadTimeout),
			ReadTimeout:       opts.ReadTimeout,
			WriteTimeout:      opts.WriteTimeout,
			IdleTimeout:       opts.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		},
		done:     make(chan error, 1),
		log:      opts.Logger,
		stopCons: stopCons,
		consDone: make(chan struct{}),
	}
	warnAuth(opts.Logger, opts.Token, loopback)
	go func() {
		defer close(s.consDone)
		cons.Run(consCtx)
	}()
	go func() {
		err := s.srv.Serve(newLimitListener(ln, opts.MaxConnections, perClientCap(opts.MaxConnections, isLoopback(ln.Addr())), opts.Logger))
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
	s.stopCons()
	<-s.consDone
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
// another server or testing; every answer has X-Content-Type-Options:
// nosniff. It has no web console: Start adds it.
func Handler(r Runner, g prometheus.Gatherer) http.Handler { return noSniff(routes(r, g, readiness{})) }

// readiness are the /readyz rules' settings.
type readiness struct {
	limit time.Duration    // retrying longer than this is not ready (0: the default)
	now   func() time.Time // nil: time.Now
	// detailed reports whether a /readyz request may read the reasons'
	// error text (nil: every request may).
	detailed func(*http.Request) bool
}

// unready is why one trigger (or the runner) is not ready, in full and
// in brief. The full text adds the trigger's error and reason text, which
// may quote document values and endpoints' answers; the brief one is the
// trigger, its state and its way out.
type unready struct {
	full, brief string
}

// routes registers the admin endpoints on a new mux.
func routes(r Runner, g prometheus.Gatherer, rd readiness) *http.ServeMux {
	if rd.limit <= 0 {
		rd.limit = triggers.DefaultRetryingUnreadyAfter
	}
	if rd.now == nil {
		rd.now = time.Now
	}
	notReady := func(r Runner) []unready { return notReady(r, rd) }
	mux := http.NewServeMux()
	// Browsers ask for /favicon.ico on the pages that are not the
	// console's (its own declare none): no icon, and no 404 or 401 in
	// the browser's log for it.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=86400")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		reasons := notReady(r)
		if len(reasons) == 0 {
			_, _ = fmt.Fprintln(w, "ready")
			return
		}
		// The reasons' error text quotes what the triggers read (a payload
		// error quotes a changed document's value): only for a request
		// that may read the API; a probe without the token gets the
		// trigger, its state and the way out.
		detailed := rd.detailed == nil || rd.detailed(req)
		lines := make([]string, len(reasons))
		for i, reason := range reasons {
			lines[i] = reason.brief
			if detailed {
				lines[i] = reason.full
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, strings.Join(lines, "\n"))
	})
	if g == nil {
		g = prometheus.NewRegistry()
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/triggers", func(w http.ResponseWriter, _ *http.Request) {
		resp := TriggersResponse{Ready: len(notReady(r)) == 0, Triggers: triggerViews(r.Status())}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(resp)
	})
	return mux
}

// notReady lists why the runner is not ready (nil when it is): a failed
// trigger, one retrying longer than rd.limit, one paused by its payload
// errors (nobody asked for that pause), one that should run and whose
// change stream is not open. Disabled, standby, waiting (a start_at to
// come) and otherwise paused triggers are held on purpose; a trigger retrying for less than rd.limit (an election, an
// endpoint's short outage) is ready.
func notReady(r Runner, rd readiness) []unready {
	var reasons []unready
	add := func(st runner.TriggerStatus, state, detail string) {
		brief := fmt.Sprintf("trigger %s: %s", st.Name, state)
		full := brief + detail
		if st.WayOut != "" {
			// A way out is free text that may quote errors (of any
			// partition, of the endpoint): only the token shows it.
			brief += "; its way out: GET /api/triggers with the admin token"
			full += "; way out: " + st.WayOut
		}
		reasons = append(reasons, unready{full: full, brief: brief})
	}
	tolerated := false
	now := rd.now()
	for _, st := range r.Status() {
		switch st.State {
		case runner.StatePaused:
			if st.Paused != nil && st.Paused.By == runner.PauseByPayloadErrors {
				// Nobody asked for this pause: the configuration needs fixing.
				add(st, "paused by payload_errors", ": "+st.Paused.Reason)
			}
			continue
		case runner.StateDisabled, runner.StateStandby, runner.StateWaiting:
			continue
		case runner.StateFailed:
			detail := ""
			if st.LastError != "" {
				detail = ": " + st.LastError
			}
			add(st, "failed", detail)
			continue
		case runner.StateRetrying:
			for_ := now.Sub(st.Since)
			if st.Since.IsZero() || for_ < rd.limit {
				tolerated = true
				continue
			}
			detail := ""
			if st.LastError != "" {
				detail = ": " + st.LastError
			}
			if h := st.HeadOfLine; h != nil && h.DeadLetter != nil && !h.DeadLetter.NextTryAt.IsZero() {
				detail += fmt.Sprintf("; next try to store it at %s", h.DeadLetter.NextTryAt.UTC().Format(time.RFC3339))
			} else if h != nil && !h.NextAttemptAt.IsZero() {
				detail += fmt.Sprintf("; next attempt at %s", h.NextAttemptAt.UTC().Format(time.RFC3339))
			}
			add(st, fmt.Sprintf("retrying for %s (longer than %s)", for_.Round(time.Second), rd.limit), detail)
			continue
		}
		if st.StreamOpen {
			continue
		}
		detail := ""
		if st.LastError != "" {
			detail = ": " + st.LastError
		}
		if st.LeaseWait != nil {
			detail += "; " + st.LeaseWait.Reason
		}
		// Not a way out: a trigger that should run and does not yet.
		reasons = append(reasons, unready{full: fmt.Sprintf("trigger %s: %s, change stream not open%s", st.Name, st.State, detail),
			brief: fmt.Sprintf("trigger %s: %s, change stream not open", st.Name, st.State)})
	}
	if len(reasons) == 0 && !tolerated && !r.Ready() {
		reasons = append(reasons, unready{full: "runner not started", brief: "runner not started"})
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

// TriggerView is one trigger in /api/triggers: its status and counters as
// the Runner reports them, plus the checkpoint lag in seconds.
type TriggerView struct {
	runner.TriggerStatus
	// CheckpointLagSeconds is CheckpointLag in seconds.
	CheckpointLagSeconds float64 `json:"checkpoint_lag_seconds"`
}

func triggerViews(sts []runner.TriggerStatus) []TriggerView {
	views := make([]TriggerView, len(sts))
	for i, st := range sts {
		if st.Deliveries == nil {
			st.Deliveries = map[string]uint64{}
		}
		if st.Attempts == nil {
			st.Attempts = map[string]uint64{}
		}
		views[i] = TriggerView{TriggerStatus: st, CheckpointLagSeconds: st.CheckpointLag.Seconds()}
	}
	return views
}
