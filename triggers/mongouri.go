package triggers

import (
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
		if _, err := connstring.ParseAndValidate(uri); err != nil {
			return "invalid connection string: " + scrubCredentials(err.Error(), uri)
		}
		return ""
	case strings.HasPrefix(uri, "mongodb+srv://"):
		u, err := url.Parse(uri)
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

// scrubCredentials removes the URI and its user information from a message.
func scrubCredentials(msg, uri string) string {
	msg = strings.ReplaceAll(msg, uri, RedactURI(uri))
	for _, sec := range uriSecrets(uri) {
		if len(sec) >= 3 {
			msg = strings.ReplaceAll(msg, sec, "xxxxx")
		}
	}
	rest := uri[strings.Index(uri, "://")+3:]
	if at := strings.LastIndex(rest[:strings.IndexAny(rest+"/", "/?")], "@"); at >= 0 {
		userinfo := rest[:at]
		for _, part := range strings.Split(userinfo, ":") {
			if part == "" {
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
// (AWS_SESSION_TOKEN:xxxxx; the property names are kept). Hosts, the
// database and other options print as written. A string without "://" is
// replaced as a whole.
func RedactURI(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "xxxxx"
	}
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	if at := strings.LastIndex(rest[:hostEnd], "@"); at >= 0 {
		if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
			rest = user + ":xxxxx@" + rest[at+1:]
		}
	}
	base, query, hasQuery := strings.Cut(rest, "?")
	if !hasQuery {
		return scheme + "://" + rest
	}
	query, frag, hasFrag := strings.Cut(query, "#")
	opts := strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' })
	for i, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok {
			continue
		}
		lk := strings.ToLower(k)
		if dk, err := url.QueryUnescape(lk); err == nil {
			lk = dk
		}
		switch {
		case secretURIOptions[lk]:
			opts[i] = k + "=xxxxx"
		case lk == "authmechanismproperties":
			props := strings.Split(v, ",")
			for j, p := range props {
				name, _, _ := strings.Cut(p, ":")
				if dn, _, found := strings.Cut(name, "%3A"); found {
					name = dn // an escaped colon
				} else if dn, _, found := strings.Cut(name, "%3a"); found {
					name = dn
				}
				props[j] = name + ":xxxxx"
			}
			opts[i] = k + "=" + strings.Join(props, ",")
		}
	}
	out := scheme + "://" + base + "?" + strings.Join(opts, "&")
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// uriSecrets returns the secret values RedactURI hides in uri (raw and
// unescaped), for scrubbing them out of messages that echo them.
func uriSecrets(uri string) []string {
	var out []string
	_, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return nil
	}
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.QueryUnescape(s); err == nil && d != s && d != "" {
			out = append(out, d)
		}
	}
	_, query, _ := strings.Cut(rest, "?")
	query, _, _ = strings.Cut(query, "#")
	for _, o := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, _ := strings.Cut(o, "=")
		lk := strings.ToLower(k)
		switch {
		case secretURIOptions[lk]:
			add(v)
		case lk == "authmechanismproperties":
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
