package triggers

import (
	"fmt"
	"go.mongodb.org/mongo-driver/v2/mongo/address"
	"net"
	"net/url"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

// checkMongoURI validates a MongoDB connection string and returns a message
// that never contains the URI's credentials ("" when valid).
//
// mongodb+srv URIs are checked without the DNS look-ups the driver performs
// when it connects, so validation works offline.
func checkMongoURI(uri string) string {
	switch {
	case strings.HasPrefix(uri, "mongodb://"):
		cs, err := connstring.ParseAndValidate(uri)
		if err != nil {
			return "invalid connection string: " + scrubCredentials(err.Error(), uri)
		}
		for _, h := range cs.Hosts {
			if !dialableHost(h) {
				// The driver's parser takes it, and every connection
				// attempt then fails: "[bad", "ho st".
				return "invalid connection string: " + scrubCredentials(fmt.Sprintf(
					"host %q is not a host name, an IPv4 address or an [IPv6] address, with an optional :port", h), uri)
			}
		}
		return ""
	case strings.HasPrefix(uri, "mongodb+srv://"):
		// The userinfo ends where the driver ends it (it may hold "?"),
		// and is not url.Parse's to judge.
		hosts := strings.TrimPrefix(uri, "mongodb+srv://")
		if _, after, ok := splitUserinfo(hosts); ok {
			hosts = after
		}
		u, err := url.Parse("mongodb+srv://" + hosts)
		if err != nil || u.Host == "" {
			return "invalid connection string: a mongodb+srv URI needs exactly one host name"
		}
		if u.Port() != "" || strings.Contains(u.Host, ",") {
			return "invalid connection string: a mongodb+srv URI needs exactly one host name without a port"
		}
		return ""
	}
	return `must start with "mongodb://" or "mongodb+srv://"`
}

// dialableHost reports whether h, one host of a parsed mongodb://
// connection string ("host", "host:port", "[IPv6]:port", or a Unix socket
// path ending in ".sock"), is one the driver can connect to: a host name
// of letters, digits, '-', '_' and '.' (or non-ASCII), or an IP address,
// IPv6 in brackets. The driver's parser checks the port, not this.
func dialableHost(h string) bool {
	if address.Address(h).Network() == "unix" {
		return true // a Unix socket, as the driver tells one: a path ending in "sock"
	}
	if rest, ok := strings.CutPrefix(h, "["); ok {
		ip, port, ok := strings.Cut(rest, "]")
		ip, _, _ = strings.Cut(ip, "%") // a zone: fe80::1%eth0
		return ok && net.ParseIP(ip) != nil && (port == "" || strings.HasPrefix(port, ":"))
	}
	name := h
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name = h[:i]
	}
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if c < 0x80 && c != '-' && c != '_' && c != '.' &&
			(c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// scrubCredentials removes the URI and its user information from a message.
func scrubCredentials(msg, uri string) string {
	msg = strings.ReplaceAll(msg, uri, RedactURI(uri))
	for _, sec := range uriSecrets(uri) {
		if len(sec) >= 3 {
			msg = strings.ReplaceAll(msg, sec, "xxxxx")
		}
	}
	_, rest, _ := strings.Cut(uri, "://")
	if userinfo, _, ok := splitUserinfo(rest); ok {
		for _, part := range strings.Split(userinfo, ":") {
			if len(part) < 3 {
				// As for option values: replacing every "u" would
				// wreck the message and hide nothing.
				continue
			}
			msg = strings.ReplaceAll(msg, part, "xxxxx")
			if dec, err := url.PathUnescape(part); err == nil && dec != "" {
				msg = strings.ReplaceAll(msg, dec, "xxxxx")
			}
		}
	}
	return msg
}

// ScrubURIError returns err with the connection string uri and every secret
// in it (the userinfo, the values RedactURI hides, raw and unescaped)
// replaced in its message, for wrapping an error of the MongoDB driver,
// which may quote an option's value or the string itself. errors.Is and
// errors.As still see err; nil stays nil.
func ScrubURIError(err error, uri string) error {
	if err == nil {
		return nil
	}
	msg := scrubCredentials(err.Error(), uri)
	if msg == err.Error() {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

// scrubbedError is an error whose message had secrets removed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// splitUserinfo splits what follows a connection string's "://" into its
// userinfo and the rest, as the Go driver does: the userinfo ends at the
// first "@", so it may hold an unescaped "?", "#" or "/" ("user:pa?ss@host"
// is valid). Should the host part after it hold another "@" (an unescaped
// "@" in the password, which the driver rejects), the userinfo extends to
// the last of them, so that no part of the password is taken for a host.
func splitUserinfo(rest string) (userinfo, after string, ok bool) {
	at := strings.IndexByte(rest, '@')
	if at < 0 {
		return "", rest, false
	}
	hostEnd := len(rest)
	if i := strings.IndexAny(rest[at+1:], "/?"); i >= 0 {
		hostEnd = at + 1 + i
	}
	at = strings.LastIndexByte(rest[:hostEnd], '@')
	return rest[:at], rest[at+1:], true
}

// uriOptions returns the options of a connection string (what follows "?"
// after the userinfo and the hosts), split as the driver splits them at "&"
// and ";". "#" has no special meaning to the driver, so it is part of the
// option it is in.
func uriOptions(uri string) []string {
	_, rest, _ := strings.Cut(uri, "://")
	if _, after, ok := splitUserinfo(rest); ok {
		rest = after
	}
	_, query, _ := strings.Cut(rest, "?")
	return strings.FieldsFunc(query, isOptionSeparator)
}

// isOptionSeparator reports whether r separates connection string options.
func isOptionSeparator(r rune) bool { return r == '&' || r == ';' }

// uriOptionName returns a connection string option's name as the driver
// matches it: unescaped first, then lower-cased, so that
// "tlsCertificateKeyFile%50assword" is tlscertificatekeyfilepassword. A
// name that does not unescape (the driver rejects it) is only lower-cased.
func uriOptionName(name string) string {
	if d, err := url.QueryUnescape(name); err == nil {
		name = d
	}
	return strings.ToLower(name)
}

// secretURIOptions are the MongoDB connection string options (lower case)
// whose values are secrets.
var secretURIOptions = map[string]bool{
	"password":                        true,
	"tlscertificatekeyfilepassword":   true,
	"sslpemkeypassword":               true,
	"sslclientcertificatekeypassword": true,
	"proxypassword":                   true,
}

// RedactURI returns a MongoDB connection string with every secret replaced
// by "xxxxx", for logs, errors and API output: the userinfo password (the
// user name is kept), the value of every option that carries a secret
// (password, tlsCertificateKeyFilePassword, sslPEMKeyPassword,
// proxyPassword, ...) and every value of authMechanismProperties
// (AWS_SESSION_TOKEN:xxxxx; the property names are kept). The userinfo and
// the option names are found as the driver finds them: the userinfo ends
// at the first "@" (a password may hold "?", "#" or "/"), an option's name
// is unescaped before it is compared, and "#" is an ordinary character.
// Hosts, the database and other options print as written. A string
// without "://" is replaced as a whole.
func RedactURI(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "xxxxx"
	}
	prefix := scheme + "://"
	if userinfo, after, found := splitUserinfo(rest); found {
		if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
			userinfo = user + ":xxxxx"
		}
		prefix += userinfo + "@"
		rest = after
	}
	base, query, hasQuery := strings.Cut(rest, "?")
	if !hasQuery {
		return prefix + rest
	}
	opts := strings.FieldsFunc(query, isOptionSeparator)
	for i, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			continue
		}
		switch name := uriOptionName(k); {
		case secretURIOptions[name]:
			opts[i] = k + "=xxxxx"
		case name == "authmechanismproperties":
			props := strings.Split(v, ",")
			for j, p := range props {
				prop, _, _ := strings.Cut(p, ":")
				if dp, _, found := strings.Cut(prop, "%3A"); found {
					prop = dp // an escaped colon
				} else if dp, _, found := strings.Cut(prop, "%3a"); found {
					prop = dp
				}
				props[j] = prop + ":xxxxx"
			}
			opts[i] = k + "=" + strings.Join(props, ",")
		}
	}
	return prefix + base + "?" + strings.Join(opts, "&")
}

// uriSecrets returns the secret option values RedactURI hides in uri (raw
// and unescaped), for scrubbing them out of messages that echo them.
func uriSecrets(uri string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.QueryUnescape(s); err == nil && d != s && d != "" {
			out = append(out, d)
		}
	}
	for _, o := range uriOptions(uri) {
		k, v, _ := strings.Cut(o, "=")
		switch name := uriOptionName(k); {
		case secretURIOptions[name]:
			add(v)
		case name == "authmechanismproperties":
			add(v)
			dv, err := url.QueryUnescape(v)
			if err != nil {
				dv = v
			}
			for _, p := range strings.Split(dv, ",") {
				_, pv, _ := strings.Cut(p, ":")
				add(pv)
			}
		}
	}
	return out
}
