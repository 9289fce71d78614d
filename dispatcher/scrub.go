package dispatcher

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/changehook/changehook/triggers"
)

// bodySecrets returns the secret values a Sender of webhook w (its URL
// parsed as u, sent through proxy, nil for none) sends, in every form a
// response body may echo them, longest first, for scrubBody and
// scrubError: the configured header values and the credentials inside
// them (see headerCredentials), the static Authorization's credentials
// (the Basic value's base64 and password, the bearer token), the OAuth2
// client secret (see clientSecretForms), the URL's userinfo user name and
// password and the Basic value net/http makes of them (a user name without
// a password included), the parts of the URL's query and path that
// w.RedactedURL hides (see secretQueryParts and secretPathParts; query
// parts raw, form-decoded and %-decoded keeping '+'), the
// proxy's credentials (see proxySecrets), and the signing keys. Each value
// is listed as it is, form- and path-escaped and JSON-escaped (see
// jsonForms); values shorter than minScrubLen are left out.
func bodySecrets(w *triggers.Webhook, u, proxy *url.URL) []string {
	var vals []string
	add := func(vs ...string) { vals = append(vals, vs...) }
	for k, v := range w.Headers {
		add(v.Reveal())
		add(headerCredentials(k, v.Reveal())...)
	}
	if a := w.Auth; a != nil {
		switch {
		case a.Basic != nil:
			add(a.Basic.Password.Reveal(), basicCredentials(a.Basic.Username, a.Basic.Password.Reveal()))
		case a.Bearer != nil:
			add(a.Bearer.Token.Reveal())
		case a.OAuth2 != nil:
			add(clientSecretForms(a.OAuth2.ClientID, a.OAuth2.ClientSecret.Reveal())...)
		}
	}
	if u.User != nil {
		// net/http sends the userinfo as Basic credentials, with or
		// without a password ("TOKEN@host": Basic base64("TOKEN:")), and
		// a user name alone is often the token.
		user, raw := u.User.Username(), u.User.String()
		pw, _ := u.User.Password()
		if user != "" || pw != "" {
			add(basicCredentials(user, pw))
		}
		rawUser, rawPw, _ := strings.Cut(raw, ":")
		if user != "" {
			add(user, rawUser)
		}
		if pw != "" {
			add(pw, rawPw)
		}
	}
	for _, v := range secretQueryParts(w, u) {
		add(v)
		if dv, err := url.QueryUnescape(v); err == nil {
			add(dv)
		}
		// An endpoint that %-decodes without turning '+' into a space
		// (JavaScript's decodeURIComponent, Python's unquote) echoes
		// this form.
		if dv, err := url.PathUnescape(v); err == nil {
			add(dv)
		}
	}
	add(secretPathParts(w, u)...)
	add(proxySecrets(proxy)...)
	for _, sec := range w.Secrets {
		add(sec.Reveal(), strings.TrimPrefix(sec.Reveal(), secretPrefix))
	}

	var forms []string
	for _, v := range vals {
		if len(v) < minScrubLen {
			continue
		}
		forms = append(forms, v, url.QueryEscape(v), url.PathEscape(v))
		forms = append(forms, jsonForms(v)...)
	}
	slices.SortFunc(forms, longestFirst)
	return slices.Compact(forms)
}

// basicCredentials returns the value of a Basic Authorization header for
// user and password, without "Basic ".
func basicCredentials(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// headerCredentials returns the credentials inside a configured header
// value (of header name) of the form "<scheme> <credentials>", which an
// endpoint may quote without the scheme ("unknown token <credentials>"):
// the credentials part and, for Basic, the password decoded from it (the
// decoded value when it has no colon; the user name when the password is
// empty, as then it is the token). The user name beside a password is not
// listed, as webhook.auth.basic's is not: a body naming the account
// ("user=carol") stays readable, its password masked. A value counts as
// scheme and credentials in an Authorization or Proxy-Authorization
// header, with a common authentication scheme (authScheme) in any header
// (X-Auth: Token ...), or when the credentials look like a token
// (triggers.SecretShapedSegment): "X-Note: Order created" is not one, so
// "created" is not masked all over the body.
func headerCredentials(name, v string) []string {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	cred = strings.TrimSpace(cred)
	if !ok || cred == "" || !tokenString(scheme) {
		return nil
	}
	switch ck := http.CanonicalHeaderKey(name); {
	case ck == "Authorization", ck == "Proxy-Authorization", authScheme(scheme), triggers.SecretShapedSegment(cred):
	default:
		return nil
	}
	out := []string{cred}
	if strings.EqualFold(scheme, "Basic") {
		dec, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			dec, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(cred, "="))
		}
		if err == nil && utf8.Valid(dec) {
			if user, pw, _ := strings.Cut(string(dec), ":"); pw != "" {
				out = append(out, pw)
			} else {
				out = append(out, user)
			}
		}
	}
	return out
}

// authScheme reports whether scheme (of an Authorization-style header
// value) is a common HTTP authentication scheme, registered or in wide use
// by APIs.
func authScheme(scheme string) bool {
	switch strings.ToLower(scheme) {
	case "basic", "bearer", "token", "digest", "dpop", "negotiate", "oauth", "apikey", "api-key", "key", "jwt", "ssws", "bot":
		return true
	}
	return false
}

// tokenString reports whether s is a non-empty HTTP token (RFC 9110
// tchar): what an authentication scheme is.
func tokenString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// proxySecrets returns the credentials of proxy (the proxy a Sender's
// requests go through, nil for none), which net/http sends to it as a
// Proxy-Authorization header a proxy's error page (or an endpoint behind a
// transparent one) may echo: the password as it is and as written in the
// URL (escaped), the Basic value net/http makes of the user name and
// password, and the user name when there is no password (it is the
// token then). A user name beside a password stays readable, as
// webhook.auth.basic's does.
func proxySecrets(proxy *url.URL) []string {
	if proxy == nil || proxy.User == nil {
		return nil
	}
	user := proxy.User.Username()
	pw, _ := proxy.User.Password()
	if user == "" && pw == "" {
		return nil
	}
	rawUser, rawPw, _ := strings.Cut(proxy.User.String(), ":")
	out := []string{basicCredentials(user, pw)}
	if pw != "" {
		return append(out, pw, rawPw)
	}
	return append(out, user, rawUser)
}

// jsonForms returns the forms v takes inside a JSON string (without the
// quotes) as common encoders write it: Go's, with and without HTML
// escaping (\u003c for <, >, &); PHP's json_encode, which escapes / as \/;
// and .NET's System.Text.Json, which escapes <, >, &, ', +, ` and " as
// upper-case \u00XX. A value without such characters has one form.
func jsonForms(v string) []string {
	forms := []string{jsonEscaped(v, false), jsonEscaped(v, true)}
	if strings.Contains(v, "/") {
		forms = append(forms, strings.ReplaceAll(forms[0], "/", `\/`))
	}
	if strings.ContainsAny(v, "<>&'+`\"") {
		forms = append(forms, dotnetEscaper.Replace(forms[0]))
	}
	return forms
}

// dotnetEscaper turns Go's unescaped JSON string contents into what .NET's
// default JavaScriptEncoder writes for the characters it escapes beyond
// JSON's own.
var dotnetEscaper = strings.NewReplacer(`\"`, `\u0022`, "<", `\u003C`, ">", `\u003E`, "&", `\u0026`, "'", `\u0027`, "+", `\u002B`, "`", `\u0060`)

// jsonEscaped returns v as a JSON string's contents (without the quotes),
// with or without HTML escaping.
func jsonEscaped(v string, html bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(html)
	if enc.Encode(v) != nil {
		return v
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return string(b[1 : len(b)-1])
}

// redactedSegment is what triggers.RedactURL writes in place of a hidden
// part of a URL.
const redactedSegment = "REDACTED"

// secretQueryParts returns the parts of u's query (raw, as sent) that
// w.RedactedURL hides: every value, and every name it hides (a
// token-shaped one, with a value or without). They are read off the
// redacted URL, part by part, so that what is masked is what RedactURL
// decided to hide; should the two not line up, every value and every
// token-shaped name is listed.
func secretQueryParts(w *triggers.Webhook, u *url.URL) []string {
	if u.RawQuery == "" {
		return nil
	}
	parts := strings.Split(u.RawQuery, "&")
	var rparts []string
	if ru, err := url.Parse(w.RedactedURL()); err == nil {
		rparts = strings.Split(ru.RawQuery, "&")
	}
	aligned := len(rparts) == len(parts)
	var hidden []string
	for i, p := range parts {
		k, v, hasValue := strings.Cut(p, "=")
		hideKey, hideValue := triggers.SecretShapedSegment(k), hasValue
		if aligned {
			rk, rv, _ := strings.Cut(rparts[i], "=")
			hideKey = rk == redactedSegment && k != redactedSegment
			hideValue = rv == redactedSegment && v != redactedSegment
		}
		if hideKey {
			hidden = append(hidden, k)
		}
		if hideValue {
			hidden = append(hidden, v)
		}
	}
	return hidden
}

// secretPathParts returns the parts of u's path that w.RedactedURL hides,
// escaped and unescaped: each hidden segment, the token-shaped parts of a
// segment hidden for one (triggers.SecretShapedSegment: the token of
// "bot123456789:<token>", which a body may quote alone) and, when several
// segments are hidden together (webhook.secret_path, a known
// incoming-webhook service), the hidden part of the path as a whole.
//
// The hidden segments are read off the redacted URL's path, lined up with
// u's segment by segment: RedactURL decides on the escaped segments and
// then unescapes the path, so a kept segment holding an escaped slash
// ("a%2Fb") is two segments there, a hidden one is "REDACTED", and a
// hidden tail of several segments is one "REDACTED" at the end. Should
// the two not line up, the rest of the path from there is taken as hidden.
func secretPathParts(w *triggers.Webhook, u *url.URL) []string {
	path := u.EscapedPath()
	if strings.Trim(path, "/") == "" {
		return nil
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var rsegs []string
	if ru, err := url.Parse(w.RedactedURL()); err == nil {
		rsegs = strings.Split(strings.TrimPrefix(ru.Path, "/"), "/")
	}
	var hidden []string
	hideTail := func(tail []string) {
		// The tail from a segment on was hidden as one: it is masked as
		// a whole, and so are its segments a body may quote alone (an
		// ID, a token), but not the names among them (nameSegment):
		// "orders" of "/hooks/orders/Xk39…" would be masked in every
		// word of a body that names it.
		hidden = append(hidden, strings.Join(tail, "/"))
		for _, s := range tail {
			if !nameSegment(s) {
				hidden = append(hidden, s)
			}
		}
	}
	j := 0
	for i, s := range segs {
		if j >= len(rsegs) {
			hideTail(segs[i:])
			break
		}
		plain, err := url.PathUnescape(s)
		if err != nil {
			plain = s
		}
		if rsegs[j] != redactedSegment || plain == redactedSegment {
			// Kept: as many segments of the redacted path as it holds
			// slashes once unescaped, and one more.
			n := strings.Count(plain, "/") + 1
			if j+n > len(rsegs) || strings.Join(rsegs[j:j+n], "/") != plain {
				hideTail(segs[i:])
				break
			}
			j += n
			continue
		}
		if j == len(rsegs)-1 && i < len(segs)-1 {
			hideTail(segs[i:])
			break
		}
		hidden = append(hidden, s)
		if parts := strings.FieldsFunc(s, subDelim); len(parts) > 1 {
			for _, p := range parts {
				if triggers.SecretShapedSegment(p) {
					hidden = append(hidden, p)
				}
			}
		}
		j++
	}
	var parts []string
	for _, h := range hidden {
		parts = append(parts, h)
		if p, err := url.PathUnescape(h); err == nil {
			parts = append(parts, p)
		}
	}
	return parts
}

// nameSegment reports whether seg, a path segment, reads as a name rather
// than an identifier or a token: lower-case ASCII letters, '-' and '_'
// only, and shorter than a token (triggers.SecretShapedSegment's 16
// characters). "hooks", "orders" and "order-events" are names;
// "Xk39fjQm2Lp8", "T0123ABC", "a1b2c3d" and a long lower-case run such as
// "teamsecretlowercasepath" are not.
func nameSegment(seg string) bool {
	if seg == "" || len(seg) >= 16 {
		return false
	}
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; !('a' <= c && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// subDelim reports whether r is one of the sub-delimiters an escaped path
// segment may hold between its parts (see triggers.SecretShapedSegment).
func subDelim(r rune) bool { return strings.ContainsRune(":;,!$&'()*@", r) }

// scrubBody returns body, a response body about to be kept (Attempt.Body,
// Result.Body: the delivery history, dead letters, the API), with every
// secret the Sender sent replaced by triggers.RedactedMask: s.secrets and
// token, the request's OAuth2 access token ("" for none). over is what
// was read of the body beyond body when body fills respBodyLimit (see
// readBody): the secrets are then found in body and over together before
// the text is cut to body's length (scrubCut), so a secret the cut splits
// is masked whole (a mask may make a cut body a few bytes longer than
// respBodyLimit), and so is the start of one with which a body read no
// further ends. An uncut body without a secret costs a search per secret
// form and no allocation.
func (s *Sender) scrubBody(body, over, token string) string {
	if body == "" || (len(s.secrets) == 0 && token == "") {
		return body
	}
	forms := s.secrets
	cut := len(body) >= respBodyLimit
	if len(token) >= minScrubLen && (cut || containsAny(body, tokenForms(token))) {
		forms = s.secretForms(token)
	}
	if !cut {
		return scrubForms(body, forms)
	}
	return scrubCut(body+over, len(body), forms)
}

// bodyLookahead returns how many bytes readBody reads beyond respBodyLimit
// for scrubBody to find whole a secret the cut splits: one less than the
// longest form of a secret s sends, or of token (a request's OAuth2 access
// token, "" for none; escaped, at most three times its length).
func (s *Sender) bodyLookahead(token string) int {
	n := 3 * len(token)
	if len(s.secrets) > 0 {
		n = max(n, len(s.secrets[0])) // longest first
	}
	return max(n-1, 0)
}

// secretForms returns the secrets s sends, and the forms of token (a
// request's OAuth2 access token, "" for none), ordered for scrubForms.
func (s *Sender) secretForms(token string) []string {
	if len(token) < minScrubLen {
		return s.secrets
	}
	forms := append(tokenForms(token), s.secrets...)
	slices.SortFunc(forms, longestFirst)
	return forms
}

// scrubError returns err, or, when its text contains one of forms
// (ordered by longestFirst), an error whose text has them masked and that
// unwraps to err (so that it is classified as err is).
func scrubError(err error, forms []string) error {
	if err == nil || len(forms) == 0 {
		return err
	}
	if msg := err.Error(); containsAny(msg, forms) {
		return &scrubbedError{msg: scrubForms(msg, forms), err: err}
	}
	return err
}

// longestFirst orders secret forms for scrubForms: longest first, so that
// a secret containing another is masked whole.
func longestFirst(a, b string) int {
	if len(a) != len(b) {
		return len(b) - len(a)
	}
	return strings.Compare(a, b)
}

// tokenForms returns the forms of an access token a body may echo.
func tokenForms(token string) []string {
	if q := url.QueryEscape(token); q != token {
		return []string{q, token}
	}
	return []string{token}
}

// containsAny reports whether s contains one of forms.
func containsAny(s string, forms []string) bool {
	for _, f := range forms {
		if strings.Contains(s, f) {
			return true
		}
	}
	return false
}

// scrubForms replaces every occurrence of forms (ordered by longestFirst)
// in s with triggers.RedactedMask, in one pass (a mask is never searched
// again, so a secret such as "secret" does not match inside one). s is
// returned as it is, without allocating, when it contains none.
func scrubForms(s string, forms []string) string {
	if !containsAny(s, forms) {
		return s
	}
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, triggers.RedactedMask)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// scrubCut returns the first n bytes of s with the secrets among forms
// (ordered by longestFirst) masked as scrubForms masks them, found in all
// of s before it is cut: one that starts in the first n bytes is masked
// whole, wherever it ends. The start (at least minScrubLen bytes) of a
// form with which s ends is masked too when it starts in the first n
// bytes: s is all there is to read, and the rest of the secret never came.
// It takes time linear in len(s) for each form, however many secrets s
// echoes: each form's next occurrence is remembered, and searched for
// again only once the scan has gone past it.
func scrubCut(s string, n int, forms []string) string {
	return scrubCutIndex(s, n, forms, strings.Index)
}

// scrubCutIndex is scrubCut finding a form in a text with index (which
// returns what strings.Index returns): tests count the bytes it reads.
func scrubCutIndex(s string, n int, forms []string, index func(s, substr string) int) string {
	var b strings.Builder
	// next[k] is where forms[k] next occurs at or after i (len(s) for
	// nowhere, -1 before the first search); an occurrence found from an
	// earlier i is still the first one from i as long as it does not start
	// before i.
	next := make([]int, len(forms))
	for k := range next {
		next[k] = -1
	}
	i := 0
	for i < n {
		at, f := len(s), ""
		for k, g := range forms {
			if next[k] < i {
				next[k] = len(s)
				if j := index(s[i:], g); j >= 0 {
					next[k] = i + j
				}
			}
			if next[k] < at { // the first of the forms there: the longest
				at, f = next[k], g
			}
		}
		if at >= n {
			break
		}
		b.WriteString(s[i:at])
		b.WriteString(triggers.RedactedMask)
		i = at + len(f)
	}
	if i < n {
		if at := tailStart(s[i:], forms); at >= 0 && i+at < n {
			b.WriteString(s[i : i+at])
			b.WriteString(triggers.RedactedMask)
		} else {
			b.WriteString(s[i:n])
		}
	}
	return b.String()
}

// tailStart returns where the start of one of forms (at least minScrubLen
// bytes of it, shorter than it) with which s ends begins in s, the longest
// such start first; -1 for none.
func tailStart(s string, forms []string) int {
	at := -1
	for _, f := range forms {
		for k := min(len(f)-1, len(s)); k >= minScrubLen; k-- {
			if strings.HasSuffix(s, f[:k]) {
				if at < 0 || len(s)-k < at {
					at = len(s) - k
				}
				break
			}
		}
	}
	return at
}
