package dispatcher

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/internal/version"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/time/rate"
)

// Attempt describes one delivery attempt: what WithObserver's callback
// receives and what Sender.SendOnce returns.
type Attempt struct {
	// WebhookID is the webhook-id the request carried.
	WebhookID string
	// Number is the attempt's number within its delivery, from 1.
	Number int
	// Status is the HTTP status (0: no response).
	Status int
	// Reason is "" on success, otherwise the failure reason (see Reason*),
	// ReasonCanceled when the context ended.
	Reason string
	// Err is the failure, nil on success. Its text never contains secrets.
	Err error
	// Retry reports whether the retry policy judged the failure transient.
	Retry bool
	// Latency is the time from sending the request to the end of reading
	// the response (on the Sender's Clock).
	Latency time.Duration
	// Body is the response body, truncated to 4 KiB, with every secret the
	// request carried (header values, credentials, the URL's secrets, the
	// signing keys) masked as triggers.RedactedMask.
	Body string
	// Trigger is the trigger's name.
	Trigger string
	// Start is when the attempt started (on the Sender's Clock).
	Start time.Time
	// DocumentKey is the event's documentKey as the stream returned it, nil
	// when the event has none or the attempt came from SendOnce. It aliases
	// the event's bytes: an observer that keeps it must copy it.
	DocumentKey bson.Raw
	// Operation is the event's operationType ("" from SendOnce).
	Operation string
	// Events is the number of events the request carried when it was a
	// batch (a trigger with batch: its body is a JSON array of Events
	// elements, WebhookID is the batch's id and DocumentKey and Operation
	// are the first event's); 0 for a request of one event.
	Events int

	// resp is the response (its body already read and closed), for the
	// Backoff policy's Retry-After.
	resp *http.Response
}

// Sender delivers one event of one trigger to its webhook: it builds the
// payload, signs it (Standard Webhooks v1) and sends it, one attempt at a
// time (SendOnce), retrying as the CheckRetry and Backoff policies say
// (Deliver, DeliverUntilSuccess). It holds no queue and no state between
// deliveries other than pooled buffers; its methods are safe for concurrent
// use.
type Sender struct {
	trigger     string
	retry       triggers.RetryPolicy
	webhook     triggers.Webhook
	clock       Clock
	log         *slog.Logger
	metrics     *Metrics
	http        *http.Client
	owned       []http.RoundTripper // the transports newSender built (not WithHTTPClient's): CloseIdleConnections closes their idle connections
	timeout     time.Duration       // webhook.timeout put on each attempt's context (0: none, or the transport applies it)
	viaClient   bool                // send through http.Client (see send)
	checkRetry  CheckRetry
	rules       CheckRetry // the trigger's own status rules
	backoff     Backoff
	observers   []observer
	method      string
	url         string
	reqURL      *url.URL // url as http.NewRequest parses it (never modified: each request gets a copy)
	reqHost     string   // the Host of such a request
	directBody  bool     // requests go to a directTransport: bodies are payloadBody (see newRequest)
	redactedURL string
	baseHeader  http.Header
	keys        [][]byte
	signers     sync.Pool // *signer of keys
	limiters    []*rate.Limiter
	tokens      *tokenSource // webhook.auth.oauth2_client_credentials (nil: none)
	secrets     []string     // the secret forms masked in kept response bodies (bodySecrets)
	circuitOpen func() bool  // the dispatcher's circuit is open: no retry starts (nil: no circuit)
	// opensCircuit reports whether a status opens the dispatcher's circuit
	// at once (circuit.open_on): the round of attempts ends there (nil: no
	// circuit).
	opensCircuit func(status int) bool
}

// errCircuitHeld ends a round of attempts whose next retry would start
// while the dispatcher's circuit is open (another delivery opened it): the
// caller holds the delivery at the circuit's gate, without counting the
// round as a failure.
var errCircuitHeld = errors.New("held while the endpoint's circuit is open")

// errOpensCircuit ends a round of attempts at a failure whose status is in
// circuit.open_on, before the retries the policy would still allow: the
// caller opens the circuit at once and the delivery becomes its probe (or,
// when another delivery's failure opened it meanwhile, waits at its gate).
var errOpensCircuit = errors.New("stopped: circuit.open_on lists the status")

// ErrWithheld is matched (errors.Is) by the error a transport wrapper
// (WithTransportWrapper) or a send check (WithSendCheck) returns when it
// refuses to send a request because its owner must stop delivering: the
// runner's lease gate once the member's lease lapsed. Nothing was sent, so
// it is no failed attempt: no attempt metric, no retry, no circuit breaker
// failure and never a dead letter. The delivery ends as canceled
// (ReasonCanceled, and the observers learn of it as a canceled attempt) and
// its event stays undone, for whoever runs the trigger next.
var ErrWithheld = errors.New("request withheld: not sent")

// NewSender returns the Sender of trigger t, a trigger as triggers.Parse
// validated it (tests may build one by hand). It reads t's Name, Webhook,
// Retry, Ordering and Concurrency (for the HTTP client's idle connections)
// and never modifies t; zero fields take defaults (triggers' Default*
// constants; Method POST; Format json). It checks the URL, method, headers,
// secrets and format; its errors never contain secrets.
func NewSender(t *triggers.Trigger, opts ...Option) (*Sender, error) {
	if t == nil {
		return nil, errors.New("new sender: nil trigger")
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	s, err := newSender(t, o)
	if err != nil {
		return nil, fmt.Errorf("new sender for trigger %q: %w", t.Name, err)
	}
	return s, nil
}

// newSender validates t and builds the Sender.
func newSender(t *triggers.Trigger, o options) (*Sender, error) {
	if t.Name == "" {
		return nil, errors.New("trigger name is empty")
	}
	s := &Sender{
		trigger:    t.Name,
		retry:      t.Retry,
		webhook:    t.Webhook,
		clock:      o.clock,
		log:        o.log,
		metrics:    o.metrics,
		checkRetry: o.checkRetry,
		backoff:    o.backoff,
		observers:  o.observers,
	}
	s.retry = s.retry.WithDefaults()
	s.webhook = s.webhook.WithDefaults()
	w := &s.webhook
	if _, err := canonicalFormat(w.Format); err != nil {
		return nil, err
	}
	if w.Auth != nil && w.Auth.Kind() == "" {
		return nil, errors.New("webhook auth: no method set")
	}
	u, err := url.Parse(w.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook url %s does not parse", triggers.RedactURL(w.URL))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %s: want an absolute http or https URL", triggers.RedactURL(w.URL))
	}
	s.url, s.redactedURL = w.URL, w.RedactedURL()
	s.method = strings.ToUpper(w.Method)
	if !triggers.AllowedMethod(s.method) {
		return nil, fmt.Errorf("webhook method %s is not one of %s", s.method, strings.Join(triggers.Methods(), ", "))
	}
	tmpl, err := http.NewRequest(s.method, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("webhook method %q or url %s is not valid in a request", s.method, s.redactedURL)
	}
	s.reqURL, s.reqHost = tmpl.URL, tmpl.Host
	for i, sec := range w.Secrets {
		k, err := decodeSecret(sec.Reveal())
		if err != nil {
			return nil, fmt.Errorf("webhook secret %d: %w", i+1, err)
		}
		s.keys = append(s.keys, k)
	}
	if s.baseHeader, err = baseHeader(t.Name, o.userAgent, w.Headers); err != nil {
		return nil, err
	}
	if w.Auth != nil && s.baseHeader.Get("Authorization") != "" {
		return nil, errors.New("webhook header Authorization is set by webhook auth and cannot be configured")
	}
	if v := staticAuthorization(w.Auth); v != "" {
		s.baseHeader.Set("Authorization", v)
	}
	if w.Format == triggers.FormatCloudEvents {
		s.baseHeader.Set("Content-Type", ContentTypeCloudEventsJSON)
	}
	s.secrets = bodySecrets(w, u, senderProxy(o, u))
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With(slog.String("trigger", t.Name))
	s.rules = StatusCheckRetry(s.retry)
	if s.checkRetry == nil {
		s.checkRetry = s.rules
	}
	if s.backoff == nil {
		s.backoff = ExponentialJitterBackoff(s.clock.Now, nil)
	}
	ordering := t.Ordering
	if ordering == "" {
		ordering = triggers.Strict
	}
	conc := ordering.Concurrency(t.Concurrency)
	guard := newNetGuard(t.Network)
	guard.lookup = o.lookup
	var tlsConf *tls.Config
	if w.TLS != nil {
		tlsConf = w.TLS.ClientConfig()
	}
	s.http, s.timeout = httpClient(o.httpClient, u, conc, w.Timeout, guard, o.proxy, tlsConf, !o.netHTTPOnly)
	if o.httpClient == nil {
		s.owned = append(s.owned, s.http.Transport)
	}
	s.viaClient = s.http.Jar != nil || u.User != nil || o.netHTTPOnly
	_, s.directBody = s.http.Transport.(*directTransport)
	if o.wrapRT != nil {
		next := s.http.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		s.http.Transport = o.wrapRT(next)
	}
	if w.Auth != nil && w.Auth.OAuth2 != nil {
		var tokenTLS *tls.Config
		if w.TLS != nil {
			tokenTLS = w.TLS.TokenClientConfig()
		}
		tr := s.http.Transport
		if o.httpClient == nil {
			hc, _ := httpClient(nil, u, 1, 0, guard, o.proxy, tokenTLS, false)
			tr = hc.Transport
			s.owned = append(s.owned, tr)
		}
		s.tokens = newTokenSource(w.Auth.OAuth2, tr, w.Timeout, s.retry)
	}
	if w.RateLimit != nil {
		s.limiters = append(s.limiters, newLimiter(*w.RateLimit))
	}
	if ep := w.Endpoint; ep != nil {
		if o.limiters != nil {
			s.limiters = append(s.limiters, o.limiters.For(ep))
		} else {
			s.limiters = append(s.limiters, newLimiter(ep.RateLimit))
		}
	}
	return s, nil
}

// senderProxy returns the proxy the requests of a Sender with options o to
// u go through (the one httpClient's transport chooses: o.proxy, else
// the client's or the default transport's Proxy function, the
// environment's), nil for none or when it cannot tell. Asked once, when
// the Sender is built: its credentials are among the secrets a kept body
// is scrubbed of.
func senderProxy(o options, u *url.URL) *url.URL {
	proxy := o.proxy
	if proxy == nil {
		rt := http.DefaultTransport
		if o.httpClient != nil && o.httpClient.Transport != nil {
			rt = o.httpClient.Transport
		}
		switch t := rt.(type) {
		case *http.Transport:
			proxy = t.Proxy
		case noSwitch:
			proxy = t.t.Proxy
		default:
			if rt == http.DefaultTransport {
				proxy = http.ProxyFromEnvironment
			}
		}
	}
	if proxy == nil {
		return nil
	}
	p, err := proxy(&http.Request{URL: u})
	if err != nil {
		return nil
	}
	return p
}

// baseHeader returns the header every request of trigger carries: the
// configured headers (checked), User-Agent, Content-Type and
// X-Changehook-Trigger.
func baseHeader(trigger, ua string, headers map[string]triggers.Secret) (http.Header, error) {
	if ua == "" {
		ua = version.UserAgent("")
	}
	h := make(http.Header, len(headers)+4)
	for k, v := range headers {
		ck := http.CanonicalHeaderKey(k)
		if why := triggers.ReservedHeaderReason(ck); why != "" {
			return nil, fmt.Errorf("webhook header %s %s", ck, why)
		}
		if ck == "" || strings.ContainsAny(ck, " \t\r\n:") {
			return nil, fmt.Errorf("webhook header name %q is invalid", k)
		}
		if strings.ContainsAny(v.Reveal(), "\r\n") {
			return nil, fmt.Errorf("webhook header %s: value contains a line break", ck)
		}
		h.Set(ck, v.Reveal())
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", ua)
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Changehook-Trigger", trigger)
	return h, nil
}

// CloseIdleConnections closes the keep-alive connections that the
// transports the Sender built for itself hold idle: the webhook's and, with
// webhook.auth.oauth2_client_credentials, the token endpoint's. A client
// given with WithHTTPClient is the caller's, and its connections are left
// alone. Call it when done with the Sender, once no delivery of it is in
// progress: a connection still carrying a request is not closed (net/http's
// transport closes it when its request ends; the direct transport keeps it
// until its idle timeout). The Sender stays usable: a later delivery dials
// again. A Dispatcher calls it when it closes, so a pause, a reload or a
// lease handoff does not leave its connections open until their idle
// timeout (90 s) while its successor opens its own; a caller building
// Senders of its own (a dead-letter replay) does the same.
func (s *Sender) CloseIdleConnections() {
	for _, rt := range s.owned {
		if ci, ok := rt.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
}

// httpClient returns the client deliveries to u use: a copy of base (or of
// a client on a cloned default transport with idle connections for conc
// deliveries, dialling through guard, with tlsConf when not nil and proxy
// (nil: the environment's) as its Proxy function, the target of every
// proxied request checked by guard first; an http or https u goes through the
// direct transport instead unless direct is false or a proxy is set for
// it) without a Timeout of its own and with redirects not followed.
// ctxTimeout is the timeout each request's context must carry: timeout, or
// 0 when the direct transport applies it itself.
func httpClient(base *http.Client, u *url.URL, conc int, timeout time.Duration, guard *netGuard, proxy func(*http.Request) (*url.URL, error),
	tlsConf *tls.Config, direct bool) (hc *http.Client, ctxTimeout time.Duration) {
	hc = new(http.Client)
	if base != nil {
		*hc = *base
	} else {
		var t *http.Transport
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			t = dt.Clone()
		} else {
			t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
		}
		if proxy == nil {
			proxy = t.Proxy
		}
		// The dialer's guard sees only the proxy's address: the target
		// of a proxied request is checked before it is sent.
		t.Proxy = guard.proxy(proxy)
		t.MaxResponseHeaderBytes = maxResponseHeaderBytes
		t.MaxIdleConnsPerHost = max(conc, 2)
		// At most conc connections: a delivery that finishes returns its
		// connection to the pool asynchronously, and without this bound
		// the next delivery of the same worker may dial a new one in that
		// window, which the idle limit then closes: connections churn
		// (with TLS, a handshake each) instead of staying at conc.
		t.MaxConnsPerHost = conc
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: guard.control}
		t.DialContext = dialer.DialContext
		// HTTP/1.1 only, as on the direct transport (whose limits and
		// errors this path keeps: maxResponseHeaderBytes above): a URL with
		// userinfo or a host that is not ASCII, a request through a proxy
		// (to the endpoint, over CONNECT) and the OAuth2 token requests
		// offer only http/1.1 in ALPN. Net/http's HTTP/2 client would
		// apply its own header limit and error text, and multiplex every
		// delivery on one connection, where concurrency means conc
		// connections.
		t.ForceAttemptHTTP2 = false
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
		tc := &tls.Config{}
		if tlsConf != nil {
			// webhook.tls; the dialer (and so the network guard) stays.
			tc = tlsConf.Clone()
		}
		tc.NextProtos = []string{"http/1.1"}
		t.TLSClientConfig = tc
		// No "Accept-Encoding: gzip" added to requests, nor responses
		// decompressed: response bodies are only kept (4 KiB) for the
		// delivery history, and the direct transport writes exactly what
		// this one does.
		t.DisableCompression = true
		hc.Transport = noSwitch{t}
		if dt := newDirectTransport(u, conc, timeout, dialer.DialContext, proxy, noSwitch{t}, tlsConf); direct && dt != nil {
			hc.Transport = dt
			timeout = 0 // the direct transport applies it
		}
	}
	// No Client.Timeout: Sender.do puts webhook.timeout on each request's
	// context.
	hc.Timeout = 0
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return hc, timeout
}

// Deliver sends ev through the retry policy: at most Retry.MaxAttempts
// attempts, stopping at the first success or permanent failure, waiting
// between attempts as the Backoff policy says (on the Clock, honouring ctx).
// It never dead-letters or checkpoints. The Result describes the last
// attempt; the error wraps the last failure ("giving up after N attempts")
// or ctx's error (Result.Reason is then ReasonCanceled). A payload that
// cannot be built fails with ReasonPayload and sends nothing (the observers
// see one attempt with that reason).
func (s *Sender) Deliver(ctx context.Context, ev Event) (Result, error) {
	r, err := s.deliver(ctx, ev, false, false, nil, Result{}, 0)
	return r.Result, err
}

// DeliverUntilSuccess is Deliver for a trigger without dead letters, whose
// events may never be skipped: every failure, permanent ones included, is
// retried without an attempt limit, and a payload that cannot be built is
// retried every Retry.MaxBackoff (the configuration may be fixed and
// reloaded), until the delivery succeeds or ctx ends.
func (s *Sender) DeliverUntilSuccess(ctx context.Context, ev Event) (Result, error) {
	r, err := s.deliver(ctx, ev, true, true, nil, Result{}, 0)
	return r.Result, err
}

// deliver builds the payload and runs the retry stage; forever: failed
// attempts are retried without a limit, payloadForever: a payload error is
// retried every Retry.MaxBackoff (see DeliverUntilSuccess) instead of being
// returned. Every payload error counts as an attempt with reason
// payload_error (metric and observers; nothing is sent). prog (may be nil)
// follows the attempts. prev is the result of the event's previous rounds
// of attempts (zero for none): the attempts are numbered on from it, and
// the Result's FirstAttemptAt stays the first round's. made is the number
// of prev's attempts that belong to this round (see retryStage).
func (s *Sender) deliver(ctx context.Context, ev Event, forever, payloadForever bool, prog *progress, prev Result, made int) (roundResult, error) {
	if ctx == nil {
		return roundResult{}, fmt.Errorf("deliver event: %w", errNilContext)
	}
	if len(ev.Token) == 0 {
		return roundResult{}, errors.New("deliver event: empty resume token")
	}
	id := WebhookID(s.trigger, ev.Token)
	for n := prev.Attempts + 1; ; n++ {
		payload, err := BuildPayload(s.webhook, ev)
		var msg Message
		if err == nil {
			msg, err = wrapMessage(&s.webhook, id, ev.Raw, payload)
		}
		if err == nil {
			return s.retryStage(ctx, msg, forever, prog, s.eventInfo(ev), prev, made)
		}
		s.metrics.attempt(s.trigger, ReasonPayload)
		now := s.clock.Now()
		// The observers (the delivery history) learn of the attempt that
		// could not be sent, so a dead-lettered payload error leaves a
		// record.
		info := s.eventInfo(ev)
		s.observe(Attempt{WebhookID: id, Number: n, Reason: ReasonPayload, Err: err, Trigger: s.trigger, Start: now,
			DocumentKey: info.documentKey, Operation: info.operation})
		// Attempts counts the requests sent: none for this one.
		res := roundResult{Result: Result{WebhookID: id, Reason: ReasonPayload, Attempts: prev.Attempts, FirstAttemptAt: prev.FirstAttemptAt}}
		if res.FirstAttemptAt.IsZero() {
			res.FirstAttemptAt = now
		}
		if !payloadForever {
			prog.failedPayload(err, now, time.Time{})
			return res, fmt.Errorf("deliver %s: %w", id, err)
		}
		prog.failedPayload(err, now, s.clock.Now().Add(s.retry.MaxBackoff))
		s.log.LogAttrs(ctx, slog.LevelError, "payload cannot be built; dead letters are disabled, so the event blocks until the configuration is fixed",
			slog.String("webhook_id", id), slog.String("error", err.Error()))
		if serr := s.clock.Sleep(ctx, s.retry.MaxBackoff); serr != nil {
			res.Reason = ReasonCanceled
			return res, fmt.Errorf("deliver %s: %w", id, serr)
		}
	}
}

// retryStage sends msg with sendOnce until an attempt succeeds, the policy
// gives up (never when forever) or ctx ends. prog (may be nil) follows the
// attempts; info is what the observers learn about the event. A batch of
// several events that the endpoint refuses as too large (tooLarge) ends the
// stage at once as a failure, whatever the policy says of 413
// (retry.retry_on, and success_on and drop_on, which sendOnce does not
// apply to it) and also when forever: the same body cannot pass, and the
// caller sends its events in smaller requests. An event alone refused with
// 413 is retried, dropped or done as the policy says. prev is the
// result of the request's previous rounds of attempts (zero for none): a
// round is retry.max_attempts attempts, backed off from
// retry.initial_backoff again, but its attempts are numbered on from
// prev's and FirstAttemptAt stays the first round's. made is the number
// of this round's attempts already made (0 for a new round): a round
// held at the dispatcher's open circuit goes on after it closes with the
// attempts it has left, and its backoff where it stopped. With the
// dispatcher's circuit a failure whose status is in circuit.open_on ends
// the round (errOpensCircuit) unless it ends anyway. A round cut short,
// held (errCircuitHeld) or by open_on, says when its next attempt would
// have been due (roundResult.due); a round that ends at a failure says so
// (roundResult.ended).
func (s *Sender) retryStage(ctx context.Context, msg Message, forever bool, prog *progress, info eventInfo, prev Result, made int) (roundResult, error) {
	id := msg.ID
	res := roundResult{Result: Result{WebhookID: id, FirstAttemptAt: prev.FirstAttemptAt}}
	if res.FirstAttemptAt.IsZero() {
		res.FirstAttemptAt = s.clock.Now()
	}
	lastLog := ""
	var lastErr error          // the previous attempt's failure
	for k := made + 1; ; k++ { // k: this round's attempt, n: the request's
		n := prev.Attempts + k - made
		if k > made+1 && s.heldByCircuit() {
			// The circuit opened while this delivery waited for its
			// retry: the next attempt waits for the circuit to close.
			prog.scheduled(time.Time{})
			return res, s.circuitHeld(id, res.Attempts, lastErr)
		}
		at, retry, err := s.sendOnce(ctx, msg, n, info)
		res.Attempts, res.Status, res.Reason, res.Body = n, at.Status, at.Reason, at.Body
		res.Latency = s.clock.Now().Sub(res.FirstAttemptAt)
		if err == nil {
			prog.attempted(at, false, time.Time{})
			return res, nil
		}
		if at.Reason == ReasonDropped {
			prog.attempted(at, false, time.Time{})
			// retry.drop_on: acknowledged by the endpoint, done without a
			// dead letter.
			res.Dropped = true
			s.log.LogAttrs(ctx, slog.LevelInfo, "event dropped: the endpoint's status is in retry.drop_on",
				slog.String("webhook_id", id), slog.Int("status", at.Status))
			return res, nil
		}
		res.resp = at.resp
		if cerr := ctx.Err(); cerr != nil {
			// Shutdown: not a failure of the endpoint, and never "done".
			res.Reason = ReasonCanceled
			return res, fmt.Errorf("deliver %s to %s: %w", id, s.redactedURL, cerr)
		}
		if at.Reason == ReasonCanceled {
			// Withheld (ErrWithheld): nothing was sent; the event stays undone.
			res.Attempts = n - 1
			return res, fmt.Errorf("deliver %s to %s: %w", id, s.redactedURL, err)
		}
		permanent := !retry
		if tooLarge(at.Status, info.events) {
			// Sending the same body again cannot succeed, even when
			// retry_on lists 413 or when retrying forever: the
			// dispatcher sends the batch in parts.
			prog.attempted(at, true, time.Time{})
			return res, fmt.Errorf("deliver %s to %s: the endpoint refused a batch of %d events as too large: %w", id, s.redactedURL, info.events, err)
		}
		if forever {
			retry = true // never skip an event
		}
		// Warn when the failure changes; at debug level, every attempt.
		if msg := err.Error(); msg != lastLog || s.log.Enabled(ctx, slog.LevelDebug) {
			level := slog.LevelWarn
			if msg == lastLog {
				level = slog.LevelDebug
			}
			lastLog = msg
			s.log.LogAttrs(ctx, level, "delivery attempt failed",
				slog.String("webhook_id", id),
				slog.Int("attempt", n),
				slog.String("reason", at.Reason),
				slog.Int("status", at.Status),
				slog.Bool("retry", retry),
				slog.String("error", msg))
		}
		if !retry || (!forever && k >= s.retry.MaxAttempts) {
			prog.attempted(at, permanent, time.Time{})
			// The policy gave up: not sent again in this round, also
			// when the circuit opened meanwhile (with dead letters,
			// not at all).
			res.ended = true
			return res, fmt.Errorf("deliver %s to %s: giving up after %s: %w", id, s.redactedURL, AttemptsText(n), err)
		}
		lastErr = err
		wait := s.backoff(s.retry.InitialBackoff, s.retry.MaxBackoff, k-1, at.resp)
		if s.heldByCircuit() {
			// Another delivery opened the circuit: no retry is scheduled
			// until it closes, and none before its backoff is over.
			prog.attempted(at, permanent, time.Time{})
			res.due = s.clock.Now().Add(wait)
			return res, s.circuitHeld(id, n, err)
		}
		if s.opensCircuit != nil && s.opensCircuit(at.Status) {
			// circuit.open_on: the circuit opens now, not once the
			// retries have run out; the caller probes with this delivery
			// (or, another delivery's failure having opened the circuit,
			// holds it until its backoff is over and the circuit closed).
			prog.attempted(at, permanent, time.Time{})
			res.due = s.clock.Now().Add(wait)
			return res, fmt.Errorf("deliver %s to %s: %w after %s: %w", id, s.redactedURL, errOpensCircuit, AttemptsText(n), err)
		}
		prog.attempted(at, permanent, s.clock.Now().Add(wait))
		if serr := s.clock.Sleep(ctx, wait); serr != nil {
			res.Reason = ReasonCanceled
			return res, fmt.Errorf("deliver %s to %s: %w", id, s.redactedURL, serr)
		}
	}
}

// roundResult is the Result of a round of attempts (retryStage) and the
// response of its last failed attempt (nil: none, or the round succeeded),
// its body already read and replaced: its Retry-After may lengthen the
// wait before the next round and before the circuit's probe.
type roundResult struct {
	Result
	resp *http.Response
	// ended: the round ended at its last attempt's failure, which the
	// policy does not retry (a permanent failure) or which used up
	// retry.max_attempts; the next attempt, if any, is a new round's.
	ended bool
	// due is, for a round cut short before its next attempt (held at the
	// open circuit, or ended by circuit.open_on), when that attempt would
	// have been sent: the last attempt's backoff, lengthened by its
	// Retry-After. Zero: at once (or the round was not cut short).
	due time.Time
}

// retryAfter is the wait resp's Retry-After header asks for (0 for none, a
// date in the past or no response), at most retry.max_backoff: what it
// may lengthen a wait to, as ExponentialJitterBackoff honours it.
func (s *Sender) retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), s.clock.Now())
	if !ok {
		return 0
	}
	return min(d, s.retry.MaxBackoff)
}

// heldByCircuit reports whether the dispatcher's circuit is open, so that
// no retry may start.
func (s *Sender) heldByCircuit() bool { return s.circuitOpen != nil && s.circuitOpen() }

// circuitHeld is the error of delivery id's round of attempts cut short
// by the open circuit after n attempts, the last of which failed with err.
func (s *Sender) circuitHeld(id string, n int, err error) error {
	return fmt.Errorf("deliver %s to %s: %w after %s: %w", id, s.redactedURL, errCircuitHeld, AttemptsText(n), err)
}

// AttemptsText is n attempts in words: "1 attempt" or "N attempts", as
// delivery errors and statuses count them.
func AttemptsText(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// probeOnce builds ev's message as deliver does (payload, then the
// format's CloudEvent envelope or ce-* headers) and makes attempt n: a
// circuit probe. The observers see it with the event's documentKey and
// operationType, as every other attempt of the delivery. It returns
// sendOnce's attempt and error; Attempt.Retry says whether the policy
// judged a failure transient.
func (s *Sender) probeOnce(ctx context.Context, ev Event, n int) (Attempt, error) {
	id := WebhookID(s.trigger, ev.Token)
	info := s.eventInfo(ev)
	payload, err := BuildPayload(s.webhook, ev)
	var msg Message
	if err == nil {
		msg, err = wrapMessage(&s.webhook, id, ev.Raw, payload)
	}
	if err != nil {
		// Unreachable: the message was built for the delivery that opened
		// the circuit, and the webhook does not change.
		s.metrics.attempt(s.trigger, ReasonPayload)
		at := Attempt{WebhookID: id, Number: n, Reason: ReasonPayload, Err: err, Trigger: s.trigger, Start: s.clock.Now(),
			DocumentKey: info.documentKey, Operation: info.operation}
		s.observe(at)
		return at, err
	}
	at, retry, err := s.sendOnce(ctx, msg, n, info)
	at.Retry = retry
	return at, err
}

// SendOnce makes one attempt, number n (from 1), to send payload as webhook
// id: a request stamped and signed now, its response body kept (up to 4 KiB)
// and classified by the CheckRetry policy. It returns nil on success;
// otherwise the failure (an *AttemptError with the built-in policy) and
// whether the policy judged it transient. When ctx ends the Attempt's Reason
// is ReasonCanceled and the error is ctx's. It records the attempt metric and
// calls the observers. payload is sent as it is, with the trigger's headers:
// a cloudevents-binary trigger's ce-* headers are added by Deliver only.
func (s *Sender) SendOnce(ctx context.Context, id string, payload []byte, n int) (Attempt, bool, error) {
	if ctx == nil {
		return Attempt{WebhookID: id, Number: n, Trigger: s.trigger}, false, fmt.Errorf("send %s: %w", id, errNilContext)
	}
	return s.sendOnce(ctx, Message{ID: id, Body: payload}, n, eventInfo{})
}

// errNilContext is the error of a call given a nil context.Context.
var errNilContext = errors.New("nil context")

// eventInfo is what the observers learn about the event being delivered.
type eventInfo struct {
	documentKey bson.Raw
	operation   string
	events      int // Attempt.Events
}

// tooLarge reports whether status, the answer to a request of events
// events, says the request was too large for the endpoint and could be
// sent in parts: 413 Content Too Large to a batch of two or more events.
func tooLarge(status, events int) bool {
	return status == http.StatusRequestEntityTooLarge && events > 1
}

// isDropped reports whether err is a retry policy's verdict that the
// response is in retry.drop_on (an *AttemptError with ReasonDropped).
func isDropped(err error) bool {
	var ae *AttemptError
	return errors.As(err, &ae) && ae.Reason == ReasonDropped
}

// eventInfo reads ev's documentKey and operationType for the observers
// (nothing when none is on: delivery pays for it only when observed).
func (s *Sender) eventInfo(ev Event) eventInfo {
	if !s.observed() {
		return eventInfo{}
	}
	var info eventInfo
	dk, op, ok := scanInfoFields(ev.Raw)
	if !ok {
		dk, _ = ev.Raw.LookupErr("documentKey")
		op, _ = ev.Raw.LookupErr("operationType")
	}
	if dk.Type != 0 {
		info.documentKey, _ = dk.DocumentOK()
	}
	if v := op; v.Type == bson.TypeString && len(v.Value) >= 5 {
		// A string value: int32 length (with the NUL), bytes, NUL.
		if n := int(binary.LittleEndian.Uint32(v.Value)); n >= 1 && n <= len(v.Value)-4 && v.Value[3+n] == 0 {
			info.operation = operationName(v.Value[4 : 3+n])
		}
	}
	return info
}

// observed reports whether an observer is on.
func (s *Sender) observed() bool {
	for _, o := range s.observers {
		if o.on() {
			return true
		}
	}
	return false
}

// operationName returns the operationType b as a string, without
// allocating for MongoDB's operation types.
func operationName(b []byte) string {
	switch string(b) {
	case "insert":
		return "insert"
	case "update":
		return "update"
	case "replace":
		return "replace"
	case "delete":
		return "delete"
	case "drop":
		return "drop"
	case "rename":
		return "rename"
	case "dropDatabase":
		return "dropDatabase"
	case "invalidate":
		return "invalidate"
	}
	return string(b)
}

// sendOnce is SendOnce for a Message. With OAuth2 auth, a 401 answer to a
// cached token drops it and the attempt is sent once more with a new token
// (once: no loop). A 413 to a request of several events (info.events) is a
// failure (ReasonClientError, not retried as it is) also when
// retry.success_on or drop_on lists it: see tooLarge.
func (s *Sender) sendOnce(ctx context.Context, msg Message, n int, info eventInfo) (Attempt, bool, error) {
	id := msg.ID
	at := Attempt{WebhookID: id, Number: n, Trigger: s.trigger, DocumentKey: info.documentKey, Operation: info.operation, Events: info.events}
	if s.limiters != nil {
		if err := s.waitRate(ctx); err != nil {
			at.Start, at.Reason, at.Err = s.clock.Now(), ReasonCanceled, err
			s.observe(at)
			return at, false, err
		}
	}
	if err := ctx.Err(); err != nil {
		// The dispatcher stopped (Stop) or closed: nothing is sent.
		at.Start, at.Reason, at.Err = s.clock.Now(), ReasonCanceled, err
		s.observe(at)
		return at, false, err
	}
	// From here on the attempt is under way: a Stop of the dispatcher lets
	// it finish (its grace period bounds it), so it is judged under the
	// context its request runs under, while the wait for the rate limit
	// before a second request (a refreshed token) is a new start.
	wctx := ctx
	ctx = attemptContext(ctx)
	start := s.clock.Now()
	at.Start = start
	resp, body, doErr, authErr := s.do(ctx, msg, start)
	if authErr == nil && doErr == nil && s.tokens != nil && resp.StatusCode == http.StatusUnauthorized {
		s.tokens.invalidate(bearerToken(resp.Request))
		if s.limiters != nil {
			if err := s.waitRate(wctx); err != nil {
				at.Reason, at.Err = ReasonCanceled, err
				s.observe(at)
				return at, false, err
			}
		}
		if err := wctx.Err(); err != nil {
			// Stopped meanwhile: the second request would be a new start.
			at.Reason, at.Err = ReasonCanceled, err
			s.observe(at)
			return at, false, err
		}
		resp, body, doErr, authErr = s.do(ctx, msg, s.clock.Now())
	}
	if authErr != nil {
		at.Latency = s.clock.Now().Sub(start)
		if ctx.Err() != nil {
			at.Reason, at.Err = ReasonCanceled, ctx.Err()
			s.observe(at)
			return at, false, at.Err
		}
		var ae *AttemptError
		if !errors.As(authErr, &ae) {
			// Only a nil ctx gets here: method and URL were checked by NewSender.
			at.Reason, at.Err = ReasonConnection, authErr
			s.observe(at)
			return at, false, at.Err
		}
		at.Reason, at.Err, at.Retry = ae.Reason, ae, ae.Retryable
		s.metrics.attempt(s.trigger, at.Reason)
		s.observe(at)
		return at, ae.Retryable, ae
	}
	if resp != nil {
		at.Status = resp.StatusCode
		at.Body = body
		at.resp = resp
	}
	at.Latency = s.clock.Now().Sub(start)
	if doErr != nil && errors.Is(doErr, ErrWithheld) {
		at.Reason, at.Err = ReasonCanceled, doErr
		s.observe(at)
		return at, false, at.Err
	}
	retry, cerr := s.checkRetry(ctx, resp, doErr)
	if ctx.Err() != nil {
		at.Reason, at.Err = ReasonCanceled, ctx.Err()
		s.observe(at)
		return at, false, at.Err
	}
	if resp != nil && tooLarge(resp.StatusCode, info.events) && (cerr == nil || isDropped(cerr)) {
		// A request of several events refused as too large failed,
		// whatever retry.success_on and drop_on say of 413: they judge
		// the events, and the endpoint refused the request's size, not
		// them. The dispatcher sends them in smaller requests.
		retry, cerr = false, &AttemptError{Reason: ReasonClientError, Status: resp.StatusCode}
	}
	if cerr == nil && (retry || !s.succeeded(resp)) {
		// A plugged-in policy (go-retryablehttp's answer (false, nil) to a
		// 404) judged without a reason: the trigger's rules classify, and
		// a "no retry" stays one.
		if _, cerr = s.rules(ctx, resp, doErr); cerr == nil {
			cerr = fmt.Errorf("unexpected HTTP status %d", at.Status)
		}
	}
	if cerr == nil {
		s.metrics.attempt(s.trigger, "")
		s.observe(at)
		return at, false, nil
	}
	if ae, ok := cerr.(*AttemptError); ok && ae.Reason == ReasonRedirect && resp != nil { //nolint:errorlint // only the policies' own *AttemptError is rewritten.
		// The policies redact a redirect's Location with the general
		// rule; this webhook's path is secret as a whole, and a redirect
		// (a trailing slash added) usually repeats it. And a Location may
		// echo what the request carried (a header's value in a login
		// path) where the general rule sees nothing secret. The detail is
		// always rebuilt from the whole Location, masked before it is
		// cut: the policy's detail is already cut, and a secret the cut
		// splits is no longer whole in it.
		forms := s.secretForms(bearerToken(resp.Request))
		c := *ae
		c.detail = redirectDetail(resp, func(loc string) string { return scrubForms(s.redactLocation(loc), forms) })
		cerr = &c
	}
	var ae *AttemptError
	switch {
	case errors.As(cerr, &ae):
		at.Reason = ae.Reason
	case resp == nil:
		at.Reason = ReasonConnection
	default:
		at.Reason = ReasonServerError
	}
	at.Err, at.Retry = cerr, retry
	s.metrics.attempt(s.trigger, at.Reason)
	s.observe(at)
	return at, retry, cerr
}

// do sends one request of msg stamped at now, within webhook.timeout, and
// reads its response body (kept up to 4 KiB, its secrets masked before it
// is cut: see scrubBody; resp's body is then replaced by the kept bytes as
// read).
// authErr is a failure before sending: the OAuth2 token could not be
// obtained (an *AttemptError), or the request could not be built.
//
// The timeout is not http.Client.Timeout: with a wrapped transport
// (WithTransportWrapper, the runner's lease gate) net/http enforces that
// with a goroutine, a timer and two channels per request. It is a deadline
// on the request's context (s.timeout), or, on the direct transport, on its
// connection (see directTransport). Like Client.Timeout it covers the
// connection, the request and reading the response body.
func (s *Sender) do(ctx context.Context, msg Message, now time.Time) (resp *http.Response, body string, doErr, authErr error) {
	rctx := ctx
	if s.timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	if rctx == nil {
		return nil, "", nil, fmt.Errorf("build request for %s: %w", s.redactedURL, errors.New("net/http: nil Context"))
	}
	req, vals := s.newRequestParts(rctx, msg.Body)
	req.Header = s.headerIn(vals, msg.ID, now, msg.Body, msg.Header)
	var tok string
	if s.tokens != nil {
		var err error
		if tok, err = s.tokens.token(ctx); err != nil {
			return nil, "", nil, err
		}
		req.Header["Authorization"] = []string{"Bearer " + tok}
	}
	resp, doErr = s.send(req)
	if dl, ok := rctx.Deadline(); doErr != nil && ctx.Err() == nil && s.timeout > 0 && ok && !time.Now().Before(dl) {
		// The webhook's timeout, not the caller's context (a connection's
		// deadline may fire before the context's own timer).
		doErr = &url.Error{Op: urlErrorOp(req.Method), URL: s.redactedURL, Err: &attemptTimeoutError{timeout: s.timeout}}
	} else if ue, ok := doErr.(*url.Error); ok { //nolint:errorlint // net/http returns *url.Error unwrapped.
		// The trigger's own redaction (webhook.secret_path included),
		// before any policy sees the error; and no secret the request
		// carried in what the error quotes of the answer (a status line
		// that is an endpoint echoing the request line or a header).
		doErr = &url.Error{Op: ue.Op, URL: s.redactedURL, Err: scrubError(ue.Err, s.secretForms(tok))}
	}
	if resp != nil {
		// Before the deadline's cancel; also closes the body. What is kept
		// of it never holds a secret the request carried (an endpoint
		// that echoes the request, an error page quoting a header).
		kept, over := readBody(resp, s.bodyLookahead(tok))
		body = s.scrubBody(kept, over, tok)
	}
	return resp, body, doErr, nil
}

// send sends req through the client's transport, or through http.Client
// when the client adds something to the request (a cookie jar, the basic
// auth of a URL's userinfo). Redirects are never followed, so for every
// other request http.Client only copies the request's headers (kept for a
// redirect) and wraps errors; send wraps them as it does (*url.Error).
func (s *Sender) send(req *http.Request) (*http.Response, error) {
	if s.viaClient {
		return s.http.Do(req)
	}
	rt := s.http.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(req)
	if err == nil && resp == nil {
		err = errors.New("transport returned neither a response nor an error")
	}
	if err != nil {
		return nil, &url.Error{Op: urlErrorOp(req.Method), URL: s.redactedURL, Err: err}
	}
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	return resp, nil
}

// urlErrorOp is the Op of net/http's *url.Error for a request of method:
// "Post" for POST, as http.Client.Do names it.
func urlErrorOp(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

// attemptTimeoutError is an attempt that did not finish within
// webhook.timeout. It is a timeout for the retry policy (net.Error's
// Timeout, and context.DeadlineExceeded for errors.Is).
type attemptTimeoutError struct{ timeout time.Duration }

func (e *attemptTimeoutError) Error() string {
	return "no response within the webhook timeout (" + e.timeout.String() + ")"
}

// Timeout reports true: the attempt timed out.
func (e *attemptTimeoutError) Timeout() bool { return true }

// Temporary reports true, as net/http's timeouts do.
func (e *attemptTimeoutError) Temporary() bool { return true }

// Unwrap returns context.DeadlineExceeded.
func (e *attemptTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// redactLocation redacts a redirect's Location as the webhook URL is
// redacted: with webhook.secret_path, its whole path is hidden.
func (s *Sender) redactLocation(loc string) string {
	return triggers.Webhook{URL: loc, SecretPath: s.webhook.SecretPath}.RedactedURL()
}

// bearerToken returns the token of req's Authorization: Bearer header.
func bearerToken(req *http.Request) string {
	if req == nil {
		return ""
	}
	tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return tok
}

// succeeded reports whether resp is a success by the trigger's
// retry.success_on (as RetryPolicy.ListOf decides its status).
func (s *Sender) succeeded(resp *http.Response) bool {
	return resp != nil && s.retry.ListOf(resp.StatusCode) == triggers.ListSuccessOn
}

// observe hands at to the observers that are on, in order.
func (s *Sender) observe(at Attempt) {
	at.resp = nil
	for _, o := range s.observers {
		if o.on() {
			o.f(at)
		}
	}
}

// Canonical forms of the per-request headers (what Header.Set stores).
const (
	hdrID        = "Webhook-Id"
	hdrTimestamp = "Webhook-Timestamp"
	hdrSignature = "Webhook-Signature"
)

// header returns an attempt's header: a copy of the base header plus
// webhook-id, webhook-timestamp and (with keys) webhook-signature — the
// header Clone+Set would build, in one map and one value array.
func (s *Sender) header(id string, now time.Time, payload []byte, extra http.Header) http.Header {
	return s.headerIn(nil, id, now, payload, extra)
}

// headerIn is header, its values stored in vals (length 0) when its
// capacity is enough.
func (s *Sender) headerIn(vals []string, id string, now time.Time, payload []byte, extra http.Header) http.Header {
	n := 4
	for _, v := range s.baseHeader {
		n += len(v)
	}
	for _, v := range extra {
		n += len(v)
	}
	if cap(vals) < n {
		vals = make([]string, 0, n)
	}
	h := make(http.Header, len(s.baseHeader)+len(extra)+4)
	for k, v := range s.baseHeader {
		i := len(vals)
		vals = append(vals, v...)
		h[k] = vals[i:len(vals):len(vals)]
	}
	// The message's own headers win (a batch's Content-Type).
	for k, v := range extra {
		i := len(vals)
		vals = append(vals, v...)
		h[k] = vals[i:len(vals):len(vals)]
	}
	add := func(k, v string) {
		i := len(vals)
		vals = append(vals, v)
		h[k] = vals[i : i+1 : i+1]
	}
	ts, sig := s.stampValues(id, now, payload)
	add(hdrID, id)
	add(hdrTimestamp, ts)
	if sig != "" {
		add(hdrSignature, sig)
	}
	return h
}

// stampValues returns the webhook-timestamp and webhook-signature values for
// an attempt at now ("" signature without keys), signing with a pooled
// signer of s's keys.
func (s *Sender) stampValues(id string, now time.Time, payload []byte) (ts, sig string) {
	if len(s.keys) == 0 {
		return strconv.FormatInt(now.Unix(), 10), ""
	}
	sg, _ := s.signers.Get().(*signer)
	if sg == nil {
		sg = newSigner(s.keys)
	}
	ts, sig = sg.stamp(id, now.Unix(), payload)
	s.signers.Put(sg)
	return ts, sig
}

// readBody reads up to respBodyLimit bytes of resp's body, and, when the
// body goes on, up to lookahead more (over), for the secrets to be masked
// before the body is cut (see scrubBody); it drains a bounded remainder so
// the connection can be reused, closes the body, and replaces it with the
// first respBodyLimit bytes read (so later readers, a retry policy, and
// closers are harmless).
func readBody(resp *http.Response, lookahead int) (body, over string) {
	if resp.Body == nil || resp.Body == http.NoBody {
		return "", ""
	}
	if b, ok := resp.Body.(*directBody); ok && b.rc == http.NoBody && !b.closed {
		// No body (204, 304, Content-Length: 0): nothing to read or keep;
		// closing hands the connection back.
		_ = b.Close()
		resp.Body = http.NoBody
		return "", ""
	}
	bp := bodyBufPool.Get().(*[respBodyLimit]byte)
	defer bodyBufPool.Put(bp)
	n, err := 0, error(nil)
	for n < len(bp) && err == nil {
		var m int
		m, err = resp.Body.Read(bp[n:])
		n += m
	}
	body = string(bp[:n])
	left := drainLimit // bytes read and discarded over the kept ones
	if err == nil && lookahead > 0 {
		ob := make([]byte, lookahead)
		k := 0
		for k < len(ob) && err == nil {
			var m int
			m, err = resp.Body.Read(ob[k:])
			k += m
		}
		over, left = string(ob[:k]), left-k
	}
	if err == nil {
		for left > 0 && err == nil {
			var m int
			m, err = resp.Body.Read(bp[:min(left, len(bp))])
			left -= m
		}
	}
	_ = resp.Body.Close()
	sb := new(stringBody)
	sb.Reset(body)
	resp.Body = sb
	return body, over
}

// bodyBufPool holds readBody's scratch buffers.
var bodyBufPool = sync.Pool{New: func() any { return new([respBodyLimit]byte) }}

// stringBody is a response body replaced by the bytes kept of it.
type stringBody struct{ strings.Reader }

func (*stringBody) Close() error { return nil }

// noSwitch is a net/http transport that never hands a connection over: a
// final 101 Switching Protocols answer, which no webhook request asks for,
// has its body closed at once. net/http makes a protocol switch's
// connection the response body, and reading it is bound by neither the
// request's context nor its deadline: an endpoint answering 101 and then
// holding the connection would hold the attempt (and an OAuth2 token
// request, every delivery of its trigger) for as long as it liked. The
// answer stays a 101, which the retry rules classify.
type noSwitch struct{ t *http.Transport }

// RoundTrip sends req through the transport; see noSwitch.
func (n noSwitch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := n.t.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
		resp.Body = http.NoBody
	}
	return resp, err
}

// CloseIdleConnections closes the transport's idle connections.
func (n noSwitch) CloseIdleConnections() { n.t.CloseIdleConnections() }
