package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/internal/textcut"
)

// realm is the protection space the admin server's 401 answers name; a
// browser keeps the credentials it was given for it and sends them again.
const realm = "changehook admin"

// Challenges of a 401 answer. The Basic one makes a browser opening the
// console ask for the token itself (as a password, any user name); the
// Bearer one is what API clients send.
const (
	basicChallenge  = `Basic realm="` + realm + `", charset="UTF-8"`
	bearerChallenge = `Bearer realm="` + realm + `"`
)

// unauthorizedAPI is the error of a 401 answer under /api/; unauthorizedPage
// the text of one on a console page.
const (
	unauthorizedAPI  = "missing or wrong admin token: send Authorization: Bearer <admin.token>, or HTTP Basic credentials with admin.token as the password (any user name)"
	unauthorizedPage = "401 Unauthorized: this admin server needs its admin token (admin.token).\n" +
		"A browser asks for it: enter any user name and the token as the password.\n" +
		"Other clients send Authorization: Bearer <admin.token>.\n"
)

// Failed authentication: how often it is logged, and when answering is
// slowed down.
const (
	// authLogEvery is the least time between two log lines about failed
	// authentication; each line counts the failures since the last one.
	authLogEvery = 10 * time.Second
	// authFailWindow is how long a remote address's failures are
	// remembered after its last one.
	authFailWindow = 10 * time.Minute
	// authFailsBeforeDelay is how many wrong credentials a remote address
	// may present within authFailWindow before its 401s are delayed.
	authFailsBeforeDelay = 10
	// authFailDelay is the delay of each further 401 for that address.
	authFailDelay = 250 * time.Millisecond
	// maxAuthFailRemotes bounds the remote addresses remembered.
	maxAuthFailRemotes = 1024
)

// tokenAuth checks the admin token on requests, and logs and slows down
// wrong credentials. The zero token means none is configured.
type tokenAuth struct {
	want  [sha256.Size]byte // SHA-256 of the token: comparing digests hides its length
	isSet bool
	log   *slog.Logger
	now   func() time.Time
	delay time.Duration // of a 401 once a remote failed too often (0: none)

	mu      sync.Mutex
	lastLog time.Time         // when the last line was logged
	unseen  int               // failures since that line, not counted in it yet
	remotes map[string]remote // by remote address (host only)
}

// remote is one remote address's recent failures.
type remote struct {
	fails int
	last  time.Time
}

// newTokenAuth returns the checker of token ("" : none configured),
// logging to log.
func newTokenAuth(token string, log *slog.Logger) *tokenAuth {
	return &tokenAuth{want: sha256.Sum256([]byte(token)), isSet: token != "", log: log, now: time.Now,
		delay: authFailDelay, remotes: map[string]remote{}}
}

// credentials returns the token r presents, as "Authorization: Bearer
// TOKEN" or as the password of HTTP Basic credentials (any user name), and
// whether it presents one. The scheme's name is matched in any case, as
// HTTP's authentication schemes are (RFC 9110, 11.1).
func credentials(r *http.Request) (string, bool) {
	if tok, ok := cutScheme(r.Header.Get("Authorization"), "Bearer"); ok {
		return tok, true
	}
	if _, pw, ok := r.BasicAuth(); ok {
		return pw, true
	}
	return "", len(r.Header.Values("Authorization")) > 0
}

// cutScheme returns the credentials of an Authorization header's value
// auth when it names scheme (in any case) followed by one space, and
// whether it does.
func cutScheme(auth, scheme string) (string, bool) {
	if len(auth) <= len(scheme) || auth[len(scheme)] != ' ' || !strings.EqualFold(auth[:len(scheme)], scheme) {
		return "", false
	}
	return auth[len(scheme)+1:], true
}

// ok reports whether r presents the configured token (true when none is
// configured). It compares SHA-256 digests in constant time, so neither
// the token's bytes nor its length show in the time taken.
func (a *tokenAuth) ok(r *http.Request) bool {
	if !a.isSet {
		return true
	}
	tok, _ := credentials(r)
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], a.want[:]) == 1
}

// openRoute returns the check of whether a request may be served without
// the token: GET or HEAD of the probes, the metrics, /favicon.ico (none)
// and the console's static assets (its stylesheet and script: no data).
// It decides from the route mux picks for the request, and for mux's
// catch-all "/" (the console) from asset (console.Console.ServesAsset),
// never from a decoded or cleaned copy of the path: those can name an
// open path while mux, which matches the escaped path, routes the request
// to a guarded handler (/triggers/x%2F..%2F..%2Fhealthz is one {name}
// segment of the console's trigger page).
func openRoute(mux *http.ServeMux, asset func(*http.Request) bool) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return false
		}
		switch _, pattern := mux.Handler(r); pattern {
		case "GET /healthz", "GET /readyz", "GET /metrics", "GET /favicon.ico":
			return true
		case "/":
			return asset != nil && asset(r)
		}
		return false
	}
}

// require wraps next so that, when a token is configured, every request
// but those open says may be served without it (openRoute) presents it;
// others are answered 401 (see deny).
func (a *tokenAuth) require(next http.Handler, open func(*http.Request) bool) http.Handler {
	if !a.isSet {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if open(r) {
			next.ServeHTTP(w, r)
			return
		}
		if !a.ok(r) {
			a.deny(w, r)
			return
		}
		a.succeeded(r)
		next.ServeHTTP(w, r)
	})
}

// deny answers 401 to r. Under /api/ the answer is JSON with a Bearer and
// a Basic challenge; elsewhere (the console's pages) text with the Basic
// challenge, so that a browser asks for the token. Wrong credentials (not
// missing ones: a browser's first request has none) are logged and, from
// a remote address that presented many, delayed (see failed).
func (a *tokenAuth) deny(w http.ResponseWriter, r *http.Request) {
	if _, presented := credentials(r); presented {
		a.wrong(r)
	}
	if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Add("WWW-Authenticate", bearerChallenge)
		w.Header().Add("WWW-Authenticate", basicChallenge)
		writeError(w, http.StatusUnauthorized, unauthorizedAPI)
		return
	}
	w.Header().Set("WWW-Authenticate", basicChallenge)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(unauthorizedPage))
}

// wrong records r's wrong credentials (see failed) and waits as long as
// failed says, or until r is cancelled.
func (a *tokenAuth) wrong(r *http.Request) {
	if d := a.failed(r); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
}

// reveal reports whether r may read what an open path shows only to
// those holding the token (the error text of /readyz): true when no token
// is configured or r presents it. It never delays the answer (a probe
// must not time out), so that an open path is no faster way to guess the
// token: wrong credentials count as failures (and are logged) like those
// of a guarded path, and a remote address that failed more than
// authFailsBeforeDelay times is shown nothing more, the right token
// included, until its failures are older than authFailWindow.
func (a *tokenAuth) reveal(r *http.Request) bool {
	if !a.isSet {
		return true
	}
	if _, presented := credentials(r); !presented {
		return false
	}
	if a.penalised(r) {
		return false
	}
	if !a.ok(r) {
		a.failed(r)
		return false
	}
	a.succeeded(r)
	return true
}

// penalised reports whether r's remote address failed more than
// authFailsBeforeDelay times within authFailWindow.
func (a *tokenAuth) penalised(r *http.Request) bool {
	host := remoteHost(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	rm, known := a.remotes[host]
	return known && a.now().Sub(rm.last) <= authFailWindow && rm.fails > authFailsBeforeDelay
}

// remoteHost is r's remote address without its port.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// failed records wrong credentials from r's remote address, logs them at
// most once per authLogEvery (with the count of failures since the
// previous line; never the credentials), and returns how long to wait
// before answering: a.delay once the address failed more than
// authFailsBeforeDelay times within authFailWindow, else 0.
func (a *tokenAuth) failed(r *http.Request) time.Duration {
	now := a.now()
	host := remoteHost(r)
	a.mu.Lock()
	rm, known := a.remotes[host]
	if !known || now.Sub(rm.last) > authFailWindow {
		rm = remote{}
	}
	if !known && len(a.remotes) >= maxAuthFailRemotes {
		a.forget(now)
	}
	rm.fails++
	rm.last = now
	a.remotes[host] = rm
	a.unseen++
	var count int
	if a.lastLog.IsZero() || now.Sub(a.lastLog) >= authLogEvery {
		count, a.unseen, a.lastLog = a.unseen, 0, now
	}
	a.mu.Unlock()
	if count > 0 {
		a.log.Warn("admin request refused: wrong admin token", "remote", host, "method", r.Method, "path", textcut.Marked(r.URL.Path, textcut.QuoteLimit),
			"failures_since_last_line", count, "failures_from_remote", rm.fails)
	}
	if rm.fails > authFailsBeforeDelay {
		return a.delay
	}
	return 0
}

// forget makes room in a.remotes: it drops the addresses whose failures
// are older than authFailWindow, and when none is, an arbitrary one.
// a.mu is held.
func (a *tokenAuth) forget(now time.Time) {
	for h, rm := range a.remotes {
		if now.Sub(rm.last) > authFailWindow {
			delete(a.remotes, h)
		}
	}
	for h := range a.remotes {
		if len(a.remotes) < maxAuthFailRemotes {
			break
		}
		delete(a.remotes, h)
	}
}

// succeeded forgets the failures of r's remote address once it presented
// the right token.
func (a *tokenAuth) succeeded(r *http.Request) {
	host := remoteHost(r)
	a.mu.Lock()
	delete(a.remotes, host)
	a.mu.Unlock()
}

// warnAuth logs, when the server starts, what its token setting leaves
// open on its listener: without a token on an address beyond loopback,
// anyone who can reach it reads the dead letters' events and the delivery
// history. (A token shorter than triggers.MinAdminTokenLength is a warning
// of the configuration, with its position, which run and dev log.)
func warnAuth(log *slog.Logger, token string, loopback bool) {
	if token == "" && !loopback {
		log.Warn("the admin server listens beyond loopback without admin.token: anyone who can reach it can read the dead letters' events and the delivery history; set admin.token (token: ${CHANGEHOOK_ADMIN_TOKEN})")
	}
}
