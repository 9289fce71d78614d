package triggers

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/mql"
)

// Ordering selects the delivery order guarantee of a trigger.
type Ordering string

const (
	// Strict delivers one event at a time, in stream order.
	Strict Ordering = "strict"
	// PerDocument delivers events of the same document in stream order;
	// events of different documents go in parallel up to the trigger's
	// Concurrency. An event without a document key (a collection-level
	// event such as drop, rename or dropDatabase) is a barrier: it is
	// delivered after every earlier event is done, and later events wait
	// until it is done.
	PerDocument Ordering = "per_document"
	// None delivers events in parallel up to the trigger's Concurrency, in
	// no particular order.
	None Ordering = "none"
)

// Orderings returns every valid Ordering, in the order the documentation
// lists them.
func Orderings() []Ordering { return []Ordering{Strict, PerDocument, None} }

// Valid reports whether o is one of Strict, PerDocument and None.
func (o Ordering) Valid() bool {
	switch o {
	case Strict, PerDocument, None:
		return true
	}
	return false
}

// Concurrency returns the number of deliveries in flight that o allows
// when n are configured: always 1 for Strict, otherwise n but at least 1.
// It is the one place where strict ordering implies a concurrency of 1.
func (o Ordering) Concurrency(n int) int {
	if o == Strict || n < 1 {
		return 1
	}
	return n
}

// RetryPolicy bounds the attempts made for one event.
//
// The wait before retry n (n = 0 for the first retry) is drawn uniformly from
// [0, min(MaxBackoff, InitialBackoff·2ⁿ)] ("full jitter"). When the failed
// response carries a Retry-After header (delta-seconds or HTTP-date), the
// wait is the longer of that delay and the jittered one: an endpoint can ask
// for a longer wait but never remove the backoff ("Retry-After: 0"). The
// wait stays capped at MaxBackoff so that an endpoint cannot stall a trigger
// for longer than the operator allowed.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, including the first
	// (default DefaultMaxAttempts; values below 1 mean 1). Ignored when the
	// trigger's DeadLetter is false (deliveries are then retried until they
	// succeed).
	MaxAttempts int `json:"max_attempts"`
	// InitialBackoff is the base of the exponential backoff (default
	// DefaultInitialBackoff).
	InitialBackoff time.Duration `json:"initial_backoff"`
	// MaxBackoff caps every wait, Retry-After included (default
	// DefaultMaxBackoff; never shorter than InitialBackoff).
	MaxBackoff time.Duration `json:"max_backoff"`
	// RetryOn lists what is retried: statuses, classes, RuleTimeout and
	// RuleConnection (nil: DefaultRetryOn). A failure that is not listed is
	// permanent. Which of RetryOn, SuccessOn and DropOn decides a status
	// is ListOf's answer: a code beats a class.
	RetryOn StatusRules `json:"retry_on"`
	// SuccessOn lists the statuses that mean delivered (nil:
	// DefaultSuccessOn).
	SuccessOn StatusRules `json:"success_on"`
	// DropOn lists the statuses that acknowledge the event without a dead
	// letter ("409: already have it"). nil: none.
	DropOn StatusRules `json:"drop_on"`
}

// WithDefaults returns p with every zero or out-of-range field replaced by
// its default: MaxAttempts at least 1, InitialBackoff DefaultInitialBackoff
// and MaxBackoff DefaultMaxBackoff when not positive, MaxBackoff at least
// InitialBackoff, nil RetryOn DefaultRetryOn and nil SuccessOn
// DefaultSuccessOn.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.MaxAttempts < 1 {
		p.MaxAttempts = 1
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = DefaultInitialBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	p.MaxBackoff = max(p.MaxBackoff, p.InitialBackoff)
	if p.RetryOn == nil {
		p.RetryOn = DefaultRetryOn()
	}
	if p.SuccessOn == nil {
		p.SuccessOn = DefaultSuccessOn()
	}
	return p
}

// MarshalJSON writes the durations as Go duration strings ("500ms").
func (p RetryPolicy) MarshalJSON() ([]byte, error) {
	return marshalJSON(struct {
		MaxAttempts    int         `json:"max_attempts"`
		InitialBackoff string      `json:"initial_backoff"`
		MaxBackoff     string      `json:"max_backoff"`
		RetryOn        StatusRules `json:"retry_on"`
		SuccessOn      StatusRules `json:"success_on"`
		DropOn         StatusRules `json:"drop_on,omitempty"`
	}{p.MaxAttempts, p.InitialBackoff.String(), p.MaxBackoff.String(), p.RetryOn, p.SuccessOn, p.DropOn})
}

// reservedHeaders are the request headers changehook sets itself (or that
// the HTTP client owns); a webhook's headers may not set them. Canonical
// form. The ones the client owns are connectionHeaders, Expect and
// Proxy-Authorization.
var reservedHeaders = []string{
	"Content-Type", "Content-Length", "Host", "Connection", "Transfer-Encoding", "Upgrade",
	"Te", "Trailer", "Keep-Alive", "Proxy-Connection", "Expect", "Proxy-Authorization",
	"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "X-Changehook-Trigger",
}

// connectionHeaders are the reserved headers that belong to the HTTP
// connection or frame the message, which the client writes itself:
// net/http and the direct transport drop a configured Host,
// Content-Length, Transfer-Encoding and Trailer, HTTP/2 drops Connection,
// Keep-Alive, Proxy-Connection and Upgrade, and the rest would change how
// the connection is used (Connection: close, Upgrade: websocket) or how the
// response is framed (TE: gzip asks for a transfer coding the client cannot
// read, and HTTP/2 allows TE only as "trailers"). Canonical form.
var connectionHeaders = []string{
	"Content-Length", "Host", "Connection", "Transfer-Encoding", "Upgrade",
	"Te", "Trailer", "Keep-Alive", "Proxy-Connection",
}

// ReservedHeaders returns the headers a webhook's headers may not set, in
// canonical form: the ones changehook sets on every request and the ones
// the HTTP client owns.
func ReservedHeaders() []string { return append([]string(nil), reservedHeaders...) }

// IsReservedHeader reports whether name (any case) is one of
// ReservedHeaders.
func IsReservedHeader(name string) bool {
	return slices.Contains(reservedHeaders, http.CanonicalHeaderKey(name))
}

// ReservedHeaderReason says why name (any case) cannot be configured, as
// the rest of a sentence starting with the name: "belongs to the HTTP
// connection, …" or "is set by changehook …". It is "" when name is not one
// of ReservedHeaders.
func ReservedHeaderReason(name string) string {
	ck := http.CanonicalHeaderKey(name)
	switch {
	case slices.Contains(connectionHeaders, ck):
		return "belongs to the HTTP connection, which changehook's client manages; it cannot be configured"
	case ck == "Expect":
		// The direct transport hands such a request to net/http, which
		// waits for 100 Continue before sending the body; any other
		// expectation gets 417 Expectation Failed.
		return "changes how changehook's client sends the request (its body would wait for the endpoint's 100 Continue); it cannot be configured"
	case ck == "Proxy-Authorization":
		// Without a proxy, and through an HTTPS proxy's CONNECT tunnel,
		// a request's own Proxy-Authorization goes to the endpoint.
		return "would send the proxy's credentials to the endpoint (without a proxy, and through an HTTPS proxy's tunnel); put them in the proxy's URL instead (HTTPS_PROXY=http://user:password@host:port), which only the proxy sees; it cannot be configured"
	case slices.Contains(reservedHeaders, ck):
		return "is set by changehook and cannot be configured"
	}
	return ""
}

// Methods returns the HTTP methods a webhook may use: POST, PUT and PATCH.
func Methods() []string { return []string{http.MethodPost, http.MethodPut, http.MethodPatch} }

// AllowedMethod reports whether method (any case) is one of Methods.
func AllowedMethod(method string) bool {
	switch strings.ToUpper(method) {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}

// Payload formats, the values of Webhook.Format.
const (
	// FormatJSON is relaxed Extended JSON (the default).
	FormatJSON = "json"
	// FormatCanonical is canonical Extended JSON.
	FormatCanonical = "canonical"
)

// Formats returns every payload format: FormatJSON, FormatCanonical,
// FormatCloudEvents and FormatCloudEventsBinary.
func Formats() []string {
	return []string{FormatJSON, FormatCanonical, FormatCloudEvents, FormatCloudEventsBinary}
}

// Webhook is a trigger's webhook section.
//
// Printing a Webhook (%v, %s, %q, %#v), marshalling it to JSON or logging
// it shows the URL redacted (RedactURL) and neither header values nor
// signing keys, which are Secrets.
type Webhook struct {
	// URL is an absolute http or https URL. It may carry a token (userinfo,
	// query, path): show it only through RedactURL.
	URL string
	// Method is POST, PUT or PATCH (default POST).
	Method string
	// Headers are extra request headers, keyed by the name as configured.
	// None of them is one of ReservedHeaders.
	Headers map[string]Secret
	// Secrets are Standard Webhooks signing keys, "whsec_" + base64; the
	// first signs, all are sent during a rotation. None: requests are not
	// signed.
	Secrets []Secret
	// Timeout bounds one attempt, response body included (default
	// DefaultTimeout; Parse accepts at most MaxTimeout).
	Timeout time.Duration
	// Format is FormatJSON (relaxed Extended JSON, the default),
	// FormatCanonical, FormatCloudEvents or FormatCloudEventsBinary.
	Format string
	// CloudEvents holds the CloudEvents attributes' settings (nil:
	// defaults); set only with a CloudEvents Format.
	CloudEvents *CloudEvents
	// Auth authenticates requests to the endpoint (nil: no Authorization
	// header other than a configured one).
	Auth *Auth
	// TLS configures connections to an https endpoint: custom CA, client
	// certificate, minimum version (nil: system roots, TLS 1.2).
	TLS *TLS
	// Payload is the compiled payload expression (nil: the whole event). Its
	// result must be a document.
	Payload *mql.Expr
	// PayloadSpec is Payload's source in its BSON form (nil: none).
	PayloadSpec any
	// SecretPath true hides the URL's whole path wherever it is shown
	// (RedactedURL): for endpoints whose path is a token RedactURL does not
	// recognise.
	SecretPath bool
	// RateLimit limits this trigger's attempts (nil: unlimited).
	RateLimit *RateLimit
	// Endpoint is the endpoints entry whose url_prefix matches URL (nil:
	// none); its rate limit is shared with the other triggers it matches.
	Endpoint *Endpoint
}

// WithDefaults returns w with its empty fields set to the defaults: Method
// POST, Timeout DefaultTimeout (when not positive), Format FormatJSON.
func (w Webhook) WithDefaults() Webhook {
	if w.Method == "" {
		w.Method = http.MethodPost
	}
	if w.Timeout <= 0 {
		w.Timeout = DefaultTimeout
	}
	if w.Format == "" {
		w.Format = FormatJSON
	}
	return w
}

// String describes the webhook without secrets (URL redacted, header values
// and keys counted, not shown).
func (w Webhook) String() string {
	return fmt.Sprintf("{%s %s headers:%d secrets:%d timeout:%s format:%s}",
		w.Method, w.RedactedURL(), len(w.Headers), len(w.Secrets), w.Timeout, w.Format)
}

// GoString is String, so that %#v cannot show the URL's token either.
func (w Webhook) GoString() string { return "triggers.Webhook" + w.String() }

// LogValue logs the webhook as String.
func (w Webhook) LogValue() slog.Value { return slog.StringValue(w.String()) }

// MarshalJSON writes the webhook with its URL redacted, header values and
// signing keys as RedactedMask, the timeout as a duration string and the
// payload as relaxed Extended JSON.
func (w Webhook) MarshalJSON() ([]byte, error) {
	v := struct {
		URL     string            `json:"url"`
		Method  string            `json:"method"`
		Headers map[string]Secret `json:"headers,omitempty"`
		Secrets []Secret          `json:"secrets,omitempty"`
		Timeout string            `json:"timeout"`
		Format  string            `json:"format"`
		Payload json.RawMessage   `json:"payload,omitempty"`
		RateLim *RateLimit        `json:"rate_limit,omitempty"`
		Endpt   string            `json:"endpoint,omitempty"`
		CE      *CloudEvents      `json:"cloudevents,omitempty"`
		Auth    *Auth             `json:"auth,omitempty"`
		TLS     *TLS              `json:"tls,omitempty"`
	}{
		CE:      w.CloudEvents,
		Auth:    w.Auth,
		TLS:     w.TLS,
		RateLim: w.RateLimit,
		URL:     w.RedactedURL(),
		Method:  w.Method,
		Headers: w.Headers,
		Secrets: w.Secrets,
		Timeout: w.Timeout.String(),
		Format:  w.Format,
	}
	if w.PayloadSpec != nil {
		v.Payload = extJSONValue(w.PayloadSpec)
	}
	if w.Endpoint != nil {
		v.Endpt = w.Endpoint.Name
	}
	return marshalJSON(v)
}

// SigningKeys returns the values of the signing keys, in order, for the
// code that signs requests.
func (w Webhook) SigningKeys() []string {
	out := make([]string, len(w.Secrets))
	for i, s := range w.Secrets {
		out[i] = s.Reveal()
	}
	return out
}
