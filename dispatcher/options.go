package dispatcher

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
)

// Option configures a Sender, or a Dispatcher and the Sender it builds.
type Option func(*options)

// options are the settings shared by NewSender and New.
type options struct {
	httpClient *http.Client
	clock      Clock
	log        *slog.Logger
	metrics    *Metrics
	checkRetry CheckRetry
	backoff    Backoff
	observers  []observer
	userAgent  string
	limiters   *Limiters
	shared     *ByteBudget
	wrapRT     func(http.RoundTripper) http.RoundTripper
	// proxy replaces the transport's Proxy function (nil: the
	// environment's, http.ProxyFromEnvironment, which net/http reads once
	// per process): tests route requests through a proxy with it.
	proxy func(*http.Request) (*url.URL, error)
	// lookup replaces the network guard's resolver (nil:
	// net.DefaultResolver): tests resolve names with it.
	lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// netHTTPOnly sends every request through http.Client and net/http's
	// Transport, never the direct transport or Sender.send's shortcut:
	// the reference tests compare them with.
	netHTTPOnly bool
	// payloadPause: WithPayloadErrorPause.
	payloadPause func(reason string)
	// batchedHeld: WithBatchedHeld.
	batchedHeld int
	// submitWait: WithSubmitWait.
	submitWait *WaitClock
}

// MaxBatchedHeld bounds WithBatchedHeld.
const MaxBatchedHeld = 1 << 16

// WithBatchedHeld lets a batched dispatcher hold at least n submitted events
// (at most MaxBatchedHeld) before Submit blocks, more than its sealed and
// open batches: the events beyond them wait, in stream order, for a batch
// to take them (the byte budgets still bound their bytes). A stream reader
// that reads the change stream in replies of r events passes 2·r, so that
// a whole reply is admitted while the previous one is delivered and the
// server builds the next reply meanwhile. Ignored without batching.
func WithBatchedHeld(n int) Option {
	return func(o *options) { o.batchedHeld = min(max(n, 0), MaxBatchedHeld) }
}

// WithSubmitWait marks on c the time Submit spends blocked: while the
// dispatcher holds as many events as it may (its in-flight limits and byte
// budgets), or, PerDocument, while a keyless event waits for the events
// before it and for its own delivery. That is the backpressure deliveries
// put on the stream reader.
func WithSubmitWait(c *WaitClock) Option { return func(o *options) { o.submitWait = c } }

// WithHTTPClient sends requests with a shallow copy of c whose redirect
// policy is "do not follow" and whose Timeout is replaced by the webhook's
// timeout, applied to each attempt (connection, request and response body)
// through the request's context. Default: a
// client on a clone of http.DefaultTransport with enough idle connections
// per host for Concurrency, whose dialer applies the trigger's network
// policy (the network guard). A client given here is used as it is: the
// network guard does not apply to it.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithClock sets the clock used for timestamps, metrics and backoff waits.
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithLogger sets the logger; every line carries the trigger name. Default:
// discard.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics records into m (shared by all senders and dispatchers of a
// process).
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// WithCheckRetry replaces DefaultCheckRetry. The policy's error should be an
// *AttemptError so the failure reason is known; other errors count as
// server_error (or connection when there was no response).
func WithCheckRetry(p CheckRetry) Option { return func(o *options) { o.checkRetry = p } }

// WithBackoff replaces ExponentialJitterBackoff. It is called with
// RetryPolicy.InitialBackoff and MaxBackoff.
func WithBackoff(b Backoff) Option { return func(o *options) { o.backoff = b } }

// WithObserver adds f to the functions called after every delivery attempt,
// on the delivering goroutine, with what the attempt did. Options may
// install several observers (each WithObserver appends; a nil f is
// ignored); they are called one after the other, in the order the options
// were given. A Dispatcher delivers from several goroutines at once, so f
// must be safe for concurrent use, and it must return quickly: delivery
// waits for it.
func WithObserver(f func(Attempt)) Option {
	return func(o *options) {
		if f != nil {
			o.observers = append(o.observers, observer{f: f})
		}
	}
}

// WithActiveObserver is WithObserver for an observer that is on only while
// active reports true (such as the delivery history, which a reload turns
// on and off): while every observer is off, a delivery does no work for
// them (it does not read the event's documentKey and operationType). active
// is called on the delivering goroutine before and after each attempt, so
// it must be cheap and safe for concurrent use; an observer turned on
// while an attempt is in flight may see that attempt without its
// DocumentKey and Operation. A nil active is WithObserver.
func WithActiveObserver(f func(Attempt), active func() bool) Option {
	return func(o *options) {
		if f != nil {
			o.observers = append(o.observers, observer{f: f, active: active})
		}
	}
}

// observer is an observer and, when not nil, what says it is on.
type observer struct {
	f      func(Attempt)
	active func() bool
}

// on reports whether the observer is on.
func (o observer) on() bool { return o.active == nil || o.active() }

// WithUserAgent sets the User-Agent header of requests that do not configure
// one (default version.UserAgent("")).
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// WithSharedByteBudget bounds the bytes of the dispatcher's held events by
// b too, a budget shared with the process's other dispatchers
// (limits.max_inflight_bytes). A dispatcher holding nothing may always take
// one event, so no trigger starves; the sum exceeds b's limit by at most one
// event per dispatcher. Only New uses it.
func WithSharedByteBudget(b *ByteBudget) Option { return func(o *options) { o.shared = b } }

// WithTransportWrapper wraps the transport requests are sent through (the
// default one, with the network guard and webhook.tls, or WithHTTPClient's)
// in f's RoundTripper, e.g. to refuse requests once a lease is lost. Unlike
// WithHTTPClient it keeps the network guard and the TLS settings. OAuth2
// token requests do not go through it. The wrapper must be done with a
// request (its body too) when its RoundTrip returns, as one that checks and
// forwards is: a batched trigger reuses the body's memory after that.
func WithTransportWrapper(f func(http.RoundTripper) http.RoundTripper) Option {
	return func(o *options) { o.wrapRT = f }
}
