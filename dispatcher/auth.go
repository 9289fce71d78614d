package dispatcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/triggers"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ReasonAuth: the endpoint's credentials could not be obtained (the OAuth2
// token request failed). Retried when the token endpoint's status (or
// timeout / connection) is in retry.retry_on, permanent otherwise (a 401
// from the token endpoint: wrong client credentials).
const ReasonAuth = "auth"

// ReasonTLS: the TLS handshake failed: the server's certificate is not
// trusted (webhook.tls.ca_file), or the server refused the client
// certificate or its absence (webhook.tls.cert_file). A connection failure:
// retried when retry.retry_on lists connection (the default), since
// certificates are rotated while events wait.
const ReasonTLS = "tls"

// staticAuthorization returns the Authorization header value of basic and
// bearer auth ("" for none or OAuth2).
func staticAuthorization(a *triggers.Auth) string {
	switch {
	case a == nil:
		return ""
	case a.Basic != nil:
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(a.Basic.Username+":"+a.Basic.Password.Reveal()))
	case a.Bearer != nil:
		return "Bearer " + a.Bearer.Token.Reveal()
	}
	return ""
}

// tokenSource is an OAuth2 client-credentials token cache shared by a
// Sender's deliveries: the token is reused until it expires
// (oauth2.Token.Valid: ten seconds before its expiry), and dropped when the
// endpoint answers 401 to it (invalidate).
//
// One token request is in flight at a time, and every attempt needing a
// token shares it: each waits for it only until its own deadline (the
// webhook timeout from when it asked, or its context), never for requests
// made one after another. The request has a context of its own, bounded by
// the webhook timeout from its start (every attempt of the trigger has
// that timeout, so it ends no later than any attempt that joined it would
// stop waiting), and canceled earlier only when every attempt waiting for
// it has gone: the attempt that started it leaving, at its deadline or on
// its cancellation, does not cut it off for the others. A failed request
// is the answer of the attempts that were waiting for it when it failed,
// and of no later one: an attempt asking after it (a retry, another
// delivery) sends a request of its own, so a brief failure of the token
// endpoint costs a delivery no more than the attempts that shared it.
type tokenSource struct {
	// byStyle are the grant's configurations with the client credentials
	// in the Authorization header (oauth2.AuthStyleInHeader) and in the
	// request body (oauth2.AuthStyleInParams); see fetch.
	byStyle  map[oauth2.AuthStyle]*clientcredentials.Config
	client   *http.Client
	timeout  time.Duration // webhook.timeout: an attempt's deadline
	tokenURL string        // redacted
	rules    triggers.RetryPolicy
	// secretForms are the forms of the secrets a token request carries (see
	// tokenSecretForms), removed from every text derived from its response.
	secretForms []string

	mu  sync.Mutex
	tok *oauth2.Token
	// style is how the endpoint took the client credentials the last time
	// a token was issued (oauth2.AuthStyleAutoDetect: not known yet).
	style oauth2.AuthStyle
	// inflight is the token request under way (nil: none).
	inflight *tokenFetch

	// fetches counts token requests (tests, metrics).
	fetches atomic.Int64
}

// tokenFetch is one token request, shared by the attempts waiting for it.
type tokenFetch struct {
	done   chan struct{} // closed when tok and err are set
	cancel context.CancelFunc
	// waiters counts the attempts waiting for done (guarded by
	// tokenSource.mu; see leave).
	waiters int
	tok     *oauth2.Token
	err     error
}

// newTokenSource returns the token cache of o; token requests go through
// a client whose transport is transport (the network guard's dialer), with
// the webhook's timeout.
func newTokenSource(o *triggers.OAuth2ClientCredentials, transport http.RoundTripper, timeout time.Duration, rules triggers.RetryPolicy) *tokenSource {
	byStyle := map[oauth2.AuthStyle]*clientcredentials.Config{}
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		byStyle[style] = &clientcredentials.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret.Reveal(),
			TokenURL:     o.TokenURL,
			Scopes:       o.Scopes,
			AuthStyle:    style,
		}
	}
	return &tokenSource{
		byStyle: byStyle,
		client: &http.Client{
			Transport:     transport,
			Timeout:       timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		timeout:     timeout,
		tokenURL:    triggers.RedactURL(o.TokenURL),
		rules:       rules,
		secretForms: tokenSecretForms(o),
	}
}

// tokenSecretForms returns the forms of the secrets a token request of o
// carries, longest first, for scrubForms: the client secret (see
// clientSecretForms) and the token URL's own secrets, derived as
// bodySecrets derives a webhook URL's (its userinfo and the Basic
// credentials net/http makes of it, its query values, the path segments
// triggers.RedactURL hides), since an endpoint's answer or a malformed
// status line may echo the request line or its headers.
func tokenSecretForms(o *triggers.OAuth2ClientCredentials) []string {
	forms := clientSecretForms(o.ClientID, o.ClientSecret.Reveal())
	if u, err := url.Parse(o.TokenURL); err == nil {
		forms = append(forms, bodySecrets(&triggers.Webhook{URL: o.TokenURL}, u, nil)...)
	}
	slices.SortFunc(forms, longestFirst)
	return slices.Compact(forms)
}

// minScrubLen is the length below which a secret is not searched for in
// text to scrub: a value of one to three characters matches all over
// ordinary text, and masking it would garble the text without protecting
// anything worth the name.
const minScrubLen = 4

// clientSecretForms returns the forms in which a token request carries the
// client secret, longest first: as it is, form-encoded (the request body)
// and inside the Basic credentials of the Authorization header (both
// values form-encoded, as x/oauth2 sends them, and as they are). None when
// the secret is shorter than minScrubLen.
func clientSecretForms(id, secret string) []string {
	if len(secret) < minScrubLen {
		return nil
	}
	b64 := base64.StdEncoding.EncodeToString
	forms := []string{
		secret,
		url.QueryEscape(secret),
		b64([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret))),
		b64([]byte(id + ":" + secret)),
	}
	slices.SortFunc(forms, longestFirst)
	return slices.Compact(forms)
}

// tokenErrorCode returns the "error" field of a token endpoint's answer if
// it is fit to quote: an error code of RFC 6749 §5.2 (invalid_request,
// invalid_client, invalid_grant, unauthorized_client,
// unsupported_grant_type, invalid_scope) or another short code of the same
// shape (1 to 40 lower-case letters and underscores). Anything else is the
// endpoint's free text, which may echo the request and its client secret:
// "" then.
func tokenErrorCode(code string) string {
	if len(code) == 0 || len(code) > 40 {
		return ""
	}
	for i := 0; i < len(code); i++ {
		if c := code[i]; (c < 'a' || c > 'z') && c != '_' {
			return ""
		}
	}
	return code
}

// scrubbedError is an error whose text had secrets removed; it unwraps to
// the original so that errors.Is and errors.As still see the cause.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// token returns a valid access token, requesting one when none is cached
// or the cached one expired (see tokenSource for how attempts share a
// request). Its error is an *AttemptError with ReasonAuth (ReasonBlocked
// for a token URL the network guard refuses), a timeout when no token came
// within the webhook timeout from when this attempt asked (a
// *tokenWaitError when the request it waited for was still under way
// then), or ctx's error when ctx ended first. An attempt that stops
// waiting leaves the request to the attempts still waiting for it.
func (ts *tokenSource) token(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	ts.mu.Lock()
	if ts.tok != nil && ts.tok.Valid() {
		tok := ts.tok.AccessToken
		ts.mu.Unlock()
		return tok, nil
	}
	f := ts.inflight
	if f == nil {
		f = ts.start(context.WithoutCancel(ctx))
	}
	f.waiters++
	ts.mu.Unlock()

	wctx := ctx
	if ts.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, ts.timeout)
		defer cancel()
	}
	select {
	case <-f.done:
	case <-wctx.Done():
		select {
		case <-f.done: // answered as the wait ended: the answer counts
		default:
			ts.leave(f)
			if err := ctx.Err(); err != nil {
				return "", err
			}
			return "", &AttemptError{Reason: ReasonAuth, Retryable: ts.rules.RetryOn.Has(triggers.RuleTimeout),
				Err: &tokenWaitError{tokenURL: ts.tokenURL, timeout: ts.timeout}}
		}
	}
	if f.err != nil {
		return "", ts.fetchError(ctx, f.err)
	}
	return f.tok.AccessToken, nil
}

// errEmptyAccessToken is a token endpoint's answer without an access
// token.
var errEmptyAccessToken = errors.New("empty access token")

// fetchError is the error of an attempt whose token request failed with
// err.
func (ts *tokenSource) fetchError(ctx context.Context, err error) error {
	if errors.Is(err, errEmptyAccessToken) {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return &AttemptError{Reason: ReasonAuth, Err: fmt.Errorf("token endpoint %s returned an empty access token", ts.tokenURL)}
	}
	return ts.tokenError(ctx, err)
}

// tokenWaitError is the failure of an attempt that waited for a token
// request (shared with other attempts, or started by this one) for the
// whole webhook timeout from when it asked, without an answer: the
// request may still succeed for the attempts waiting after it. It is a
// timeout for the retry rules (net.Error).
type tokenWaitError struct {
	tokenURL string // redacted
	timeout  time.Duration
}

func (e *tokenWaitError) Error() string {
	return fmt.Sprintf("waited for a token from %s, which did not come within this attempt's webhook timeout (%s)", e.tokenURL, e.timeout)
}

// Timeout reports true: the attempt's time ran out.
func (e *tokenWaitError) Timeout() bool { return true }

// Temporary reports true, as net/http's timeouts do.
func (e *tokenWaitError) Temporary() bool { return true }

// timeoutError is the cause of a token request that did not finish within
// the webhook timeout, as a *url.Error of the token URL (redacted), which
// is a timeout for the retry rules.
func (ts *tokenSource) timeoutError() error {
	return &url.Error{Op: urlErrorOp(http.MethodPost), URL: ts.tokenURL, Err: &attemptTimeoutError{timeout: ts.timeout}}
}

// start starts a token request on a context of its own derived from
// parent (which carries values, never a deadline or a cancellation: see
// token), bounded by the webhook timeout from now and canceled by leave
// when every attempt waiting for it has gone. ts.mu is held.
func (ts *tokenSource) start(parent context.Context) *tokenFetch {
	var fctx context.Context
	var cancel context.CancelFunc
	if ts.timeout > 0 {
		fctx, cancel = context.WithTimeout(parent, ts.timeout)
	} else {
		fctx, cancel = context.WithCancel(parent)
	}
	f := &tokenFetch{done: make(chan struct{}), cancel: cancel}
	ts.inflight = f
	style := ts.style
	go ts.run(fctx, f, style)
	return f
}

// run makes token request f and records its outcome in f for the
// attempts waiting for it, and the token and the credentials style that
// got it in ts. A failure is not kept beyond f: the next attempt asking
// for a token starts a request of its own.
func (ts *tokenSource) run(ctx context.Context, f *tokenFetch, style oauth2.AuthStyle) {
	defer f.cancel()
	tok, style, err := ts.fetch(ctx, style)
	if err == nil && tok.AccessToken == "" {
		err = errEmptyAccessToken
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The request's own bound, the webhook timeout: the error says
		// so, as an attempt's own timeout does, whatever the transport
		// made of it.
		err = ts.timeoutError()
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.inflight == f {
		ts.inflight = nil
	}
	f.tok, f.err = tok, err
	if err == nil {
		ts.tok, ts.style = tok, style
	}
	close(f.done)
}

// fetch requests a token with the client credentials sent in style. A
// style not known yet (oauth2.AuthStyleAutoDetect) is detected as x/oauth2
// does, in the Authorization header first and then in the request body,
// except that the second request is made only when the endpoint answered
// the first with a 4xx status (refusing how the credentials were sent): a
// token endpoint that does not answer, or fails, is not asked twice. It
// returns the style that got the token.
func (ts *tokenSource) fetch(ctx context.Context, style oauth2.AuthStyle) (*oauth2.Token, oauth2.AuthStyle, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, ts.client)
	if style != oauth2.AuthStyleAutoDetect {
		ts.fetches.Add(1)
		tok, err := ts.byStyle[style].Token(ctx)
		return tok, style, err
	}
	ts.fetches.Add(1)
	tok, err := ts.byStyle[oauth2.AuthStyleInHeader].Token(ctx)
	var re *oauth2.RetrieveError
	if err == nil || !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode < 400 || re.Response.StatusCode > 499 || ctx.Err() != nil {
		return tok, oauth2.AuthStyleInHeader, err
	}
	ts.fetches.Add(1)
	tok, err = ts.byStyle[oauth2.AuthStyleInParams].Token(ctx)
	return tok, oauth2.AuthStyleInParams, err
}

// leave records that an attempt stopped waiting for f before its answer
// (its context ended, or its webhook timeout). While other attempts wait
// for f it runs on for them, and is not marked failed. When the last one
// left, f is canceled and forgotten: no attempt wants its answer, and the
// next one starts a request of its own.
func (ts *tokenSource) leave(f *tokenFetch) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f.waiters--
	if f.waiters == 0 && ts.inflight == f {
		ts.inflight = nil
		f.cancel()
	}
}

// invalidate drops the cached token if it is still used (the endpoint
// answered 401 to it); a token another delivery already replaced stays.
func (ts *tokenSource) invalidate(used string) {
	ts.mu.Lock()
	if ts.tok != nil && ts.tok.AccessToken == used {
		ts.tok = nil
	}
	ts.mu.Unlock()
}

// tokenError classifies a failed token request by the trigger's retry
// rules, without the response body or the request's secrets: the
// endpoint's error code is quoted only when it is one (tokenErrorCode),
// and the client secret and the token URL's secrets, in any form the
// request carried them (tokenSecretForms), are masked in what remains of
// the endpoint's answer (x/oauth2's parse errors quote it, a malformed
// status line may echo the request line).
func (ts *tokenSource) tokenError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	ae := &AttemptError{Reason: ReasonAuth}
	var re *oauth2.RetrieveError
	var be *BlockedError
	switch {
	case errors.As(err, &be):
		// The network guard refused the token endpoint's address: as for
		// a refused webhook address, nothing was sent and no retry can
		// pass the guard.
		ae.Reason, ae.Err = ReasonBlocked, scrubError(fmt.Errorf("request a token from %s: %w", ts.tokenURL, redactError(err)), ts.secretForms)
	case errors.As(err, &re) && re.Response != nil:
		code := re.Response.StatusCode
		msg := fmt.Sprintf("token endpoint %s answered HTTP %d %s", ts.tokenURL, code, http.StatusText(code))
		if ec := tokenErrorCode(re.ErrorCode); ec != "" {
			msg += " (" + ec + ")"
		}
		ae.Err = errors.New(scrubForms(msg, ts.secretForms))
		ae.Retryable = ts.rules.ListOf(code) == triggers.ListRetryOn
	default:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = &url.Error{Op: ue.Op, URL: ts.tokenURL, Err: ue.Err}
		}
		ae.Err = scrubError(fmt.Errorf("request a token from %s: %w", ts.tokenURL, redactError(err)), ts.secretForms)
		if isTimeout(err) {
			ae.Retryable = ts.rules.RetryOn.Has(triggers.RuleTimeout)
		} else {
			ae.Retryable = ts.rules.RetryOn.Has(triggers.RuleConnection)
		}
	}
	return ae
}

// tlsFailure returns a hint for a TLS handshake failure, "" when err is
// not one. crypto/tls reports a peer's alert as a *net.OpError with Op
// "remote error" whose Err (an unexported alert type) reads "tls: <alert
// description>".
func tlsFailure(err error) string {
	var (
		cve *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		oe  *net.OpError
	)
	switch {
	case errors.As(err, &cve), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return "the server's certificate is not trusted; check webhook.tls.ca_file and the URL's host name"
	case errors.As(err, &rh):
		return "the server does not speak TLS; check the URL's scheme and port"
	case errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && strings.HasPrefix(oe.Err.Error(), "tls: "):
		switch oe.Err.Error() {
		case "tls: certificate required", "tls: bad certificate", "tls: unknown certificate authority",
			"tls: certificate expired", "tls: revoked certificate", "tls: unsupported certificate", "tls: unknown certificate":
			return "the server refused the client certificate (or its absence); check webhook.tls.cert_file and key_file"
		case "tls: handshake failure":
			return "the server refused the TLS handshake (a server that requires a client certificate does this under TLS 1.2); check webhook.tls.cert_file and key_file"
		case "tls: protocol version not supported":
			return "the server accepts no TLS version allowed here; check webhook.tls.min_version"
		}
		return "the server ended the TLS handshake"
	}
	return ""
}

// tlsError is a TLS failure with its hint.
type tlsError struct {
	err  error
	hint string
}

func (e *tlsError) Error() string { return e.hint + ": " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }
