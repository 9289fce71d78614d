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

// RedactURI returns a MongoDB connection string with its password replaced by
// "xxxxx" (the user name is kept), for logs and /api output. A string that
// cannot be parsed is replaced as a whole by its scheme and "…".
func RedactURI(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "xxxxx"
	}
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	at := strings.LastIndex(rest[:hostEnd], "@")
	if at < 0 {
		return uri
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return uri
	}
	return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
}
