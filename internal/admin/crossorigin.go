package admin

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/changehook/changehook/internal/textcut"
)

// Why a mutating call from a browser page of another origin is refused. The
// admin token is optional on loopback, and a page on any site can make the
// browser send a "simple" cross-origin POST (text/plain, form-encoded or
// multipart body, no custom header) without a CORS preflight: only the
// request headers the browser sets itself tell such a call apart.
const (
	crossSiteHint = "; the admin API accepts changes only from its own console or from clients that are not browsers (curl, scripts)"
	proxyHint     = "; behind a reverse proxy, pass the browser's Host header on"
	jsonHint      = "mutating calls take their body as JSON: send Content-Type: application/json"
)

// refuseCrossOrigin guards every request whose method is not GET or HEAD
// (every mutating route, and any added later) before next sees it:
//
//   - 403 when a browser says the request comes from a page of another origin:
//     Sec-Fetch-Site is cross-site, same-site without an Origin that is ours,
//     or any unknown value; or, without Sec-Fetch-Site (older browsers), an
//     Origin header that is not ours. An Origin is ours when its host and port
//     are the Host header's (the console is served on the same listener, and
//     a reverse proxy that keeps Host serves both under its own name);
//     Sec-Fetch-Site: same-origin is trusted as is, since a page cannot set it.
//   - 415 when the request has a body, or declares a Content-Type, that is
//     not application/json. A browser cannot send application/json to another
//     origin without a preflight, which this server never grants (it sends no
//     CORS headers).
//
// Requests with neither Origin nor Sec-Fetch-Site (curl, scripts) pass the
// first check; a call without a body needs no Content-Type.
func refuseCrossOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		if msg := crossOrigin(r); msg != "" {
			writeError(w, http.StatusForbidden, msg)
			return
		}
		if msg := notJSON(r); msg != "" {
			writeError(w, http.StatusUnsupportedMediaType, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// crossOrigin says why r comes from a page of another origin, or "".
func crossOrigin(r *http.Request) string {
	origin, hasOrigin := r.Header.Get("Origin"), len(r.Header.Values("Origin")) > 0
	ours := hasOrigin && originIsHost(origin, r.Host)
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin":
		return ""
	case "", "none":
		if !hasOrigin || ours {
			return ""
		}
		return "cross-origin request refused: Origin " + textcut.Quote(origin) + " is not this server (Host " + textcut.Quote(r.Host) + ")" + crossSiteHint + proxyHint
	case "same-site":
		if ours {
			return ""
		}
		fallthrough
	default:
		msg := "cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: " + textcut.Quote(site)
		if hasOrigin {
			msg += ", Origin " + textcut.Quote(origin)
		}
		return msg + ")" + crossSiteHint
	}
}

// originIsHost reports whether origin (scheme://host[:port], as browsers
// send it) names the authority in host, the request's Host header: the
// same host and the same port, a missing port being the scheme's default.
// The scheme itself is not compared: the server speaks plain HTTP, and a
// TLS-terminating proxy in front of it makes the browser's origin https.
func originIsHost(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || host == "" {
		return false
	}
	return strings.EqualFold(withPort(u.Host, u.Scheme), withPort(host, u.Scheme))
}

// withPort returns hostport with scheme's default port when it has none.
func withPort(hostport, scheme string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), port)
}

// notJSON says why r's body is not acceptable as JSON, or "" when r has no
// body and no Content-Type, or its Content-Type is application/json (with
// parameters such as charset allowed).
func notJSON(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if r.ContentLength == 0 {
			return ""
		}
		return jsonHint + " (the request has a body and no Content-Type)"
	}
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		return ""
	}
	return jsonHint + " (got " + textcut.Quote(ct) + ")"
}

// refuseForeignHost answers 403 to every request whose Host header does not
// name a loopback address (127.0.0.0/8, ::1, localhost or a name under
// .localhost) when the server listens on loopback. Such a listener is for
// clients on this machine, and a request for another name reaching it is a
// reverse proxy that keeps the browser's Host — or a web page on another
// name whose DNS answer was rebound to 127.0.0.1, which the browser takes
// for that page's own origin: without this check it could read the API
// (dead letters hold events) and, without admin.token, change things.
func refuseForeignHost(next http.Handler, loopback bool) http.Handler {
	if !loopback {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "" && !loopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, "request refused: Host "+textcut.Quote(r.Host)+" is not a loopback name. "+
				"The admin server listens on loopback and answers only requests for 127.0.0.1, [::1] or localhost, "+
				"so that a web page on another name cannot reach it through DNS rebinding; "+
				"behind a reverse proxy, send the upstream's address as Host (nginx's default), "+
				"or listen on another address with admin.token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether host (a Host header: name or address, with
// or without a port) names a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
