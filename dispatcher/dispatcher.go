package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = time.Minute
	DefaultTimeout        = 10 * time.Second
	DefaultMaxAttempts    = 8
)

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("dispatcher closed")

// reservedHeaders may not be set through Webhook.Headers.
var reservedHeaders = []string{"Content-Type", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "X-Changehook-Trigger"}

// Option configures a Dispatcher.
type Option func(*Dispatcher)

// WithHTTPClient sends requests with a shallow copy of c whose Timeout is the
// webhook's timeout and whose redirect policy is "do not follow". Default: a
// client on a clone of http.DefaultTransport with enough idle connections
// per host for Concurrency.
func WithHTTPClient(c *http.Client) Option { return func(d *Dispatcher) { d.baseClient = c } }

// WithClock sets the clock used for timestamps, metrics and backoff waits.
func WithClock(c Clock) Option { return func(d *Dispatcher) { d.clock = c } }

// WithLogger sets the logger; every line carries the trigger name. Default:
// discard.
func WithLogger(l *slog.Logger) Option { return func(d *Dispatcher) { d.log = l } }

// WithMetrics records into m (shared by all dispatchers of a process).
func WithMetrics(m *Metrics) Option { return func(d *Dispatcher) { d.metrics = m } }

// WithCheckRetry replaces DefaultCheckRetry. The policy's error should be an
// *AttemptError so the failure reason is known; other errors count as
// server_error (or connection when there was no response).
func WithCheckRetry(p retryablehttp.CheckRetry) Option {
	return func(d *Dispatcher) { d.checkRetry = p }
}

// WithBackoff replaces ExponentialJitterBackoff. It is called with
// RetryPolicy.InitialBackoff and MaxBackoff.
func WithBackoff(b retryablehttp.Backoff) Option { return func(d *Dispatcher) { d.backoff = b } }

// Dispatcher delivers the events of one trigger. Its methods are safe for
// concurrent use, except that Submit must be called from one goroutine (the
// trigger's stream reader): submission order is stream order.
type Dispatcher struct {
	cfg         Config
	sink        DeadLetterSink
	clock       Clock
	log         *slog.Logger
	metrics     *Metrics
	baseClient  *http.Client
	http        *http.Client
	checkRetry  retryablehttp.CheckRetry
	backoff     retryablehttp.Backoff
	method      string
	url         string
	redactedURL string
	baseHeader  http.Header
	keys        [][]byte
	signers     sync.Pool // *signer of keys
	sendStates  sync.Pool // *sendState (see getSendState)

	runCtx    context.Context // deliveries; canceled when Close's grace ends
	cancelRun context.CancelFunc
	slots     chan struct{} // admission semaphore: one token per event in order
	ready     chan *item    // events whose turn has come, for the workers
	closing   chan struct{} // closed by Close: wakes blocked Submits
	drained   chan struct{} // closed when closing and nothing is admitted
	stopped   chan struct{} // closed when the workers have exited
	workers   sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	active    int              // admitted events not finished
	order     ring             // admitted events not yet passed by the watermark
	keyTail   map[string]*item // per key: the newest admitted event
	watermark bson.Raw
	idleWait  chan struct{} // closed (and reset) when active drops to 0
}

// item is one admitted event.
type item struct {
	ev        Event
	submitted time.Time
	state     itemState
	next      *item // the next admitted event with the same key
}

type itemState uint8

const (
	statePending   itemState = iota
	stateDone                // delivered or dead-lettered
	stateAbandoned           // canceled by Close: never done
)

// New returns a Dispatcher for cfg, with its workers started. sink receives
// dead letters; it is required when cfg.DeadLetter is true. Zero fields take
// defaults (see the Default* constants; Ordering Strict; Concurrency 1;
// Method POST; Format json). New checks the URL, method, headers, secrets and
// format; its errors never contain secrets.
func New(cfg Config, sink DeadLetterSink, opts ...Option) (*Dispatcher, error) {
	d := &Dispatcher{
		cfg:        cfg,
		sink:       sink,
		clock:      SystemClock{},
		checkRetry: DefaultCheckRetry,
	}
	for _, o := range opts {
		o(d)
	}
	if err := d.init(); err != nil {
		return nil, fmt.Errorf("new dispatcher for trigger %q: %w", cfg.Trigger, err)
	}
	d.start()
	return d, nil
}

// init validates and completes the configuration.
func (d *Dispatcher) init() error {
	c := &d.cfg
	if c.Trigger == "" {
		return errors.New("trigger name is empty")
	}
	if c.Ordering == "" {
		c.Ordering = Strict
	}
	if !c.Ordering.Valid() {
		return fmt.Errorf("unknown ordering %q (want strict, per_document or none)", c.Ordering)
	}
	if c.Concurrency < 1 || c.Ordering == Strict {
		c.Concurrency = 1
	}
	if c.Retry.MaxAttempts < 1 {
		c.Retry.MaxAttempts = 1
	}
	if c.Retry.InitialBackoff <= 0 {
		c.Retry.InitialBackoff = DefaultInitialBackoff
	}
	if c.Retry.MaxBackoff <= 0 {
		c.Retry.MaxBackoff = DefaultMaxBackoff
	}
	c.Retry.MaxBackoff = max(c.Retry.MaxBackoff, c.Retry.InitialBackoff)
	if c.DeadLetter && d.sink == nil {
		return errors.New("dead letters enabled but no dead-letter sink given")
	}
	w := &c.Webhook
	if w.Timeout <= 0 {
		w.Timeout = DefaultTimeout
	}
	if _, err := canonicalFormat(w.Format); err != nil {
		return err
	}
	u, err := url.Parse(w.URL)
	if err != nil {
		return fmt.Errorf("webhook url %s does not parse", RedactURL(w.URL))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook url %s: want an absolute http or https URL", redactParsedURL(u))
	}
	d.url, d.redactedURL = w.URL, redactParsedURL(u)
	d.method = strings.ToUpper(w.Method)
	if d.method == "" {
		d.method = http.MethodPost
	}
	if d.method == http.MethodGet || d.method == http.MethodHead {
		return fmt.Errorf("webhook method %s cannot carry a body", d.method)
	}
	for i, s := range w.Secrets {
		k, err := decodeSecret(s)
		if err != nil {
			return fmt.Errorf("webhook secret %d: %w", i+1, err)
		}
		d.keys = append(d.keys, k)
	}
	ua := c.UserAgent
	if ua == "" {
		ua = defaultUserAgent()
	}
	h := make(http.Header, len(w.Headers)+4)
	for k, v := range w.Headers {
		ck := http.CanonicalHeaderKey(k)
		for _, r := range reservedHeaders {
			if ck == r {
				return fmt.Errorf("webhook header %s is set by changehook and cannot be configured", ck)
			}
		}
		if ck == "" || strings.ContainsAny(ck, " \t\r\n:") {
			return fmt.Errorf("webhook header name %q is invalid", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("webhook header %s: value contains a line break", ck)
		}
		h.Set(ck, v)
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", ua)
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Changehook-Trigger", c.Trigger)
	d.baseHeader = h

	if d.clock == nil {
		d.clock = SystemClock{}
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With(slog.String("trigger", c.Trigger))
	if d.checkRetry == nil {
		d.checkRetry = DefaultCheckRetry
	}
	if d.backoff == nil {
		d.backoff = ExponentialJitterBackoff(d.clock.Now, nil)
	}
	d.http = d.httpClient()
	return nil
}

// httpClient returns the client deliveries use.
func (d *Dispatcher) httpClient() *http.Client {
	var hc http.Client
	if d.baseClient != nil {
		hc = *d.baseClient
	} else {
		var t *http.Transport
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			t = dt.Clone()
		} else {
			t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
		}
		t.MaxIdleConnsPerHost = max(d.cfg.Concurrency, 2)
		hc.Transport = t
	}
	hc.Timeout = d.cfg.Webhook.Timeout
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// defaultUserAgent is "changehook/<main module version>".
func defaultUserAgent() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "changehook/" + v
}

// queueLen is the minimum length of the queue behind the deliveries in flight.
const queueLen = 16

// capacity bounds the events held at once: every submitted event is held
// from Submit until the watermark passes it, so this is Concurrency
// deliveries in flight plus a queue of max(Concurrency, 16) events, and a slow
// (or blocked) oldest event stops admission once that window is full.
func (d *Dispatcher) capacity() int { return d.cfg.Concurrency + max(d.cfg.Concurrency, queueLen) }

// start allocates the scheduling state and starts the workers.
func (d *Dispatcher) start() {
	n := d.capacity()
	d.runCtx, d.cancelRun = context.WithCancel(context.Background())
	d.slots = make(chan struct{}, n)
	d.ready = make(chan *item, n)
	d.closing = make(chan struct{})
	d.drained = make(chan struct{})
	d.stopped = make(chan struct{})
	d.order = newRing(n)
	d.keyTail = make(map[string]*item, n)
	d.workers.Add(d.cfg.Concurrency)
	for range d.cfg.Concurrency {
		go d.worker()
	}
	go func() {
		d.workers.Wait()
		close(d.stopped)
	}()
}

// Submit hands ev to the dispatcher. Events must be submitted in stream
// order, from one goroutine. Submit copies ev, so the caller may reuse its
// buffers afterwards. It blocks while the dispatcher is at capacity
// (Concurrency deliveries in flight and as many queued), so a slow endpoint
// slows the caller down; it returns ctx's error if ctx ends first, and
// ErrClosed after Close.
func (d *Dispatcher) Submit(ctx context.Context, ev Event) error {
	if d.cfg.Ordering == PerDocument && ev.Key == "" {
		return d.submitBarrier(ctx, ev)
	}
	return d.submit(ctx, ev)
}

// submitBarrier submits a keyless event under PerDocument ordering as a
// barrier: it waits until every earlier event is done, admits the event,
// and waits until it is done too, so that a drop or rename is never
// delivered before, nor overtaken by, the document events around it. Once
// the event is admitted, an ended ctx only stops the waiting: the event
// stays admitted and is delivered (or abandoned by Close) like any other.
func (d *Dispatcher) submitBarrier(ctx context.Context, ev Event) error {
	if err := d.waitIdle(ctx); err != nil {
		return fmt.Errorf("submit event: %w", err)
	}
	if err := d.submit(ctx, ev); err != nil {
		return err
	}
	_ = d.waitIdle(ctx)
	return nil
}

// waitIdle blocks until no admitted event is unfinished, ctx ends or the
// dispatcher is closed.
func (d *Dispatcher) waitIdle(ctx context.Context) error {
	for {
		d.mu.Lock()
		if d.active == 0 {
			d.mu.Unlock()
			return nil
		}
		if d.idleWait == nil {
			d.idleWait = make(chan struct{})
		}
		ch := d.idleWait
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-d.closing:
			return ErrClosed
		}
	}
}

// submit admits ev (see Submit).
func (d *Dispatcher) submit(ctx context.Context, ev Event) error {
	if len(ev.Token) == 0 {
		return errors.New("submit event: empty resume token")
	}
	if len(ev.Raw) == 0 {
		return errors.New("submit event: empty event document")
	}
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("submit event: %w", ctx.Err())
	case <-d.closing:
		return fmt.Errorf("submit event: %w", ErrClosed)
	}
	// One copy holds both (both are non-empty, checked above).
	buf := make([]byte, len(ev.Raw)+len(ev.Token))
	n := copy(buf, ev.Raw)
	copy(buf[n:], ev.Token)
	it := &item{
		ev: Event{
			Raw:   buf[:n:n],
			Token: buf[n:],
			Key:   ev.Key,
		},
		submitted: d.clock.Now(),
	}
	if d.cfg.Ordering != PerDocument {
		it.ev.Key = ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		<-d.slots
		return fmt.Errorf("submit event: %w", ErrClosed)
	}
	d.active++
	d.order.push(it)
	if k := it.ev.Key; k != "" {
		if tail, busy := d.keyTail[k]; busy {
			// Wait behind the key's previous event; finish will release it.
			tail.next = it
			d.keyTail[k] = it
			return nil
		}
		d.keyTail[k] = it
	}
	d.ready <- it // never blocks: len(ready) <= active <= len(order) <= cap(ready)
	return nil
}

// worker delivers ready events until the dispatcher is closed.
func (d *Dispatcher) worker() {
	defer d.workers.Done()
	for it := range d.ready {
		state := stateAbandoned
		if d.runCtx.Err() == nil {
			state = d.process(d.runCtx, it)
		}
		d.finish(it, state)
	}
}

// finish records the end of it, hands the next event of its key to the
// workers, advances the watermark over the done prefix of the submission
// order and releases the admission slots of the events it passed.
func (d *Dispatcher) finish(it *item, state itemState) {
	released := 0
	d.mu.Lock()
	it.state = state
	if k := it.ev.Key; k != "" {
		if it.next != nil {
			d.ready <- it.next // never blocks: see Submit
			it.next = nil
		} else if d.keyTail[k] == it {
			delete(d.keyTail, k)
		}
	}
	// An abandoned event is never popped: the watermark stays behind it.
	for {
		head, ok := d.order.peek()
		if !ok || head.state != stateDone {
			break
		}
		d.watermark = head.ev.Token
		d.order.pop()
		released++
	}
	d.active--
	if d.active == 0 && d.idleWait != nil {
		close(d.idleWait)
		d.idleWait = nil
	}
	if d.closed && d.active == 0 {
		close(d.drained)
	}
	d.mu.Unlock()
	for range released {
		<-d.slots
	}
}

// Watermark returns the resume token of the newest submitted event such
// that it and every event submitted before it were delivered or
// dead-lettered: the token that is safe to checkpoint. ok is false until the
// first submitted event is done. Events canceled by Close are never done, so
// the watermark never passes them. The returned token is a copy.
func (d *Dispatcher) Watermark() (token bson.Raw, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watermark == nil {
		return nil, false
	}
	return bytes.Clone(d.watermark), true
}

// Idle reports whether no event is in flight or queued.
func (d *Dispatcher) Idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.active == 0
}

// Close stops accepting events and lets the admitted ones finish until ctx
// is done (the grace period); then it cancels the remaining deliveries,
// which are not marked done, and waits for the workers to exit. It returns
// nil when everything finished within the grace period, otherwise an error
// wrapping ctx's error. Calling Close again waits for the first Close.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		select {
		case <-d.stopped:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("close dispatcher: %w", ctx.Err())
		}
	}
	d.closed = true
	close(d.closing)
	if d.active == 0 {
		close(d.drained)
	}
	d.mu.Unlock()

	var graceErr error
	select {
	case <-d.drained:
	case <-ctx.Done():
		d.mu.Lock()
		n := d.active
		d.mu.Unlock()
		graceErr = fmt.Errorf("close dispatcher: grace period ended with %d events unfinished: %w", n, ctx.Err())
		d.cancelRun()
		<-d.drained
	}
	d.cancelRun()
	close(d.ready)
	<-d.stopped
	return graceErr
}

// process delivers one admitted event and returns its final state.
func (d *Dispatcher) process(ctx context.Context, it *item) itemState {
	d.metrics.inflightAdd(d.cfg.Trigger, 1)
	defer d.metrics.inflightAdd(d.cfg.Trigger, -1)
	id := WebhookID(d.cfg.Trigger, it.ev.Token)
	out, err := d.deliver(ctx, id, it.ev)
	elapsed := d.clock.Now().Sub(it.submitted).Seconds()
	switch {
	case err == nil:
		d.metrics.delivery(d.cfg.Trigger, OutcomeDelivered, elapsed)
		return stateDone
	case out.reason == ReasonCanceled || ctx.Err() != nil:
		d.metrics.delivery(d.cfg.Trigger, OutcomeFailed, -1)
		d.log.LogAttrs(ctx, slog.LevelInfo, "delivery canceled by shutdown",
			slog.String("webhook_id", id), slog.Int("attempts", out.attempts))
		return stateAbandoned
	}
	if !d.cfg.DeadLetter {
		// Unreachable with the built-in policies (without dead letters every
		// failure is retried until ctx ends); never skip the event.
		d.metrics.delivery(d.cfg.Trigger, OutcomeFailed, -1)
		return stateAbandoned
	}
	dl := DeadLetter{
		Trigger:        d.cfg.Trigger,
		WebhookID:      id,
		Event:          it.ev.Raw,
		Token:          it.ev.Token,
		Attempts:       out.attempts,
		LastStatus:     out.status,
		LastReason:     out.reason,
		LastError:      err.Error(),
		LastResponse:   out.body,
		FirstAttemptAt: out.firstAttempt,
	}
	if !d.putDeadLetter(ctx, dl) {
		d.metrics.delivery(d.cfg.Trigger, OutcomeFailed, -1)
		return stateAbandoned
	}
	d.metrics.delivery(d.cfg.Trigger, OutcomeDeadLettered, d.clock.Now().Sub(it.submitted).Seconds())
	return stateDone
}

// deliver builds the payload and sends it. A payload that cannot be built is
// a permanent failure; without dead letters it blocks (retried with the
// maximum backoff) until ctx ends, since the event may not be skipped.
func (d *Dispatcher) deliver(ctx context.Context, id string, ev Event) (outcome, error) {
	for {
		payload, err := BuildPayload(d.cfg.Webhook, ev)
		if err == nil {
			return d.send(ctx, id, payload)
		}
		out := outcome{reason: ReasonPayload, firstAttempt: d.clock.Now(), lastErr: err}
		if d.cfg.DeadLetter {
			return out, fmt.Errorf("deliver %s: %w", id, err)
		}
		d.log.LogAttrs(ctx, slog.LevelError, "payload cannot be built; dead letters are disabled, so the event blocks until the configuration is fixed",
			slog.String("webhook_id", id), slog.String("error", err.Error()))
		if serr := d.clock.Sleep(ctx, d.cfg.Retry.MaxBackoff); serr != nil {
			out.reason = ReasonCanceled
			return out, fmt.Errorf("deliver %s: %w", id, serr)
		}
	}
}

// putDeadLetter stores dl, retrying with backoff until it succeeds (true) or
// ctx ends (false).
func (d *Dispatcher) putDeadLetter(ctx context.Context, dl DeadLetter) bool {
	var last string
	for attempt := 0; ; attempt++ {
		dl.DeadLetteredAt = d.clock.Now()
		err := d.sink.PutDeadLetter(ctx, dl)
		if err == nil {
			d.metrics.deadLettered(d.cfg.Trigger)
			d.log.LogAttrs(ctx, slog.LevelWarn, "event dead-lettered",
				slog.String("webhook_id", dl.WebhookID),
				slog.Int("attempts", dl.Attempts),
				slog.String("reason", dl.LastReason),
				slog.Int("status", dl.LastStatus),
				slog.String("error", dl.LastError))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if msg := err.Error(); msg != last {
			last = msg
			d.log.LogAttrs(ctx, slog.LevelError, "store dead letter failed; retrying",
				slog.String("webhook_id", dl.WebhookID), slog.String("error", msg))
		}
		wait := d.backoff(d.cfg.Retry.InitialBackoff, d.cfg.Retry.MaxBackoff, attempt, nil)
		if d.clock.Sleep(ctx, wait) != nil {
			return false
		}
	}
}

// Deliver sends ev through the whole retry policy synchronously, without
// dead-lettering and independently of the dispatcher's queue (for dead-letter
// replay and test sends). Without dead letters (Config.DeadLetter false) it
// retries until it succeeds or ctx ends. The Result describes the last
// attempt; the error wraps the last failure ("giving up after N attempts")
// or ctx's error.
func (d *Dispatcher) Deliver(ctx context.Context, ev Event) (Result, error) {
	if len(ev.Token) == 0 {
		return Result{}, errors.New("deliver event: empty resume token")
	}
	id := WebhookID(d.cfg.Trigger, ev.Token)
	out, err := d.deliver(ctx, id, ev)
	res := Result{WebhookID: id, Attempts: out.attempts, Status: out.status, Reason: out.reason, Body: out.body}
	outcome := OutcomeDelivered
	if err != nil {
		outcome = OutcomeFailed
	}
	d.metrics.delivery(d.cfg.Trigger, outcome, -1)
	return res, err
}

// ring is a FIFO of admitted items with a fixed capacity.
type ring struct {
	buf        []*item
	head, size int
}

func newRing(n int) ring { return ring{buf: make([]*item, n)} }

func (r *ring) push(it *item) {
	r.buf[(r.head+r.size)%len(r.buf)] = it
	r.size++
}

func (r *ring) peek() (*item, bool) {
	if r.size == 0 {
		return nil, false
	}
	return r.buf[r.head], true
}

func (r *ring) pop() {
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.size--
}
