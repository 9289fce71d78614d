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
// Sender's deliveries: one token request at a time, the token reused until
// it expires (oauth2.Token.Valid: ten seconds before its expiry), and
// dropped when the endpoint answers 401 to it (invalidate).
type tokenSource struct {
	cfg      clientcredentials.Config
	client   *http.Client
	tokenURL string // redacted
	rules    triggers.RetryPolicy
	// secretForms are the forms of the secrets a token request carries (see
	// tokenSecretForms), removed from every text derived from its response.
	secretForms []string

	mu  sync.Mutex
	tok *oauth2.Token

	// fetches counts token requests (tests, metrics).
	fetches atomic.Int64
}

// newTokenSource returns the token cache of o; token requests go through
// a client whose transport is transport (the network guard's dialer), with
// the webhook's timeout.
func newTokenSource(o *triggers.OAuth2ClientCredentials, transport http.RoundTripper, timeout time.Duration, rules triggers.RetryPolicy) *tokenSource {
	return &tokenSource{
		cfg: clientcredentials.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret.Reveal(),
			TokenURL:     o.TokenURL,
			Scopes:       o.Scopes,
		},
		client: &http.Client{
			Transport:     transport,
			Timeout:       timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
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
// or the cached one expired. Its error is an *AttemptError with ReasonAuth.
func (ts *tokenSource) token(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tok != nil && ts.tok.Valid() {
		return ts.tok.AccessToken, nil
	}
	ts.fetches.Add(1)
	tok, err := ts.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, ts.client))
	if err != nil {
		return "", ts.tokenError(ctx, err)
	}
	if tok.AccessToken == "" {
		return "", &AttemptError{Reason: ReasonAuth, Err: fmt.Errorf("token endpoint %s returned an empty access token", ts.tokenURL)}
	}
	ts.tok = tok
	return tok.AccessToken, nil
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
		ae.Retryable = ts.rules.RetryOn.MatchStatus(code)
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
