package dispatcher

import (
	"net/url"
	"strings"
)

// redacted replaces secret parts of URLs.
const redacted = "REDACTED"

// RedactURL returns raw with its secrets removed, for logs, errors and API
// output: the userinfo is replaced by "REDACTED", every query value by
// "REDACTED" (keys are kept, so an operator can still see which parameters
// were set), the fragment is dropped, and everything after the first path
// segment becomes "REDACTED", because incoming-webhook services put their
// token in the path (Slack's /services/T…/B…/<secret>, Zapier's
// /hooks/catch/<id>/<key>/): scheme, host and the first segment are enough to
// tell endpoints apart. A URL that does not parse is replaced entirely, since
// the parse error could echo a secret.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return redactParsedURL(u)
}

// redactParsedURL is RedactURL for a parsed URL; u is not modified.
func redactParsedURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(redacted)
	}
	c.Fragment, c.RawFragment = "", ""
	if first, rest, ok := strings.Cut(strings.TrimPrefix(c.Path, "/"), "/"); ok && strings.Trim(rest, "/") != "" {
		c.Path, c.RawPath = "/"+first+"/"+redacted, ""
	}
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			if k, _, ok := strings.Cut(p, "="); ok {
				parts[i] = k + "=" + redacted
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	if c.Opaque != "" {
		// "scheme:opaque" URLs have no structure to keep.
		c.Opaque = redacted
	}
	return c.String()
}

// redactError rewrites the URL inside a *url.Error (what net/http returns)
// so the error can be logged and stored. net/http's Client.Do returns its
// *url.Error unwrapped; other errors are returned unchanged.
func redactError(err error) error {
	ue, ok := err.(*url.Error) //nolint:errorlint // net/http returns *url.Error unwrapped; a wrapper would keep the raw text.
	if !ok || ue.URL == "" {
		return err
	}
	// Rebuild rather than mutate: the *url.Error may be shared.
	return &url.Error{Op: ue.Op, URL: RedactURL(ue.URL), Err: ue.Err}
}
