package dispatcher

import (
	"net/url"

	"github.com/changehook/changehook/triggers"
)

// redactError rewrites the URL inside a *url.Error (what net/http returns)
// so the error can be logged and stored. net/http's Client.Do returns its
// *url.Error unwrapped; other errors are returned unchanged.
func redactError(err error) error {
	ue, ok := err.(*url.Error) //nolint:errorlint // net/http returns *url.Error unwrapped; a wrapper would keep the raw text.
	if !ok || ue.URL == "" {
		return err
	}
	// Rebuild rather than mutate: the *url.Error may be shared.
	return &url.Error{Op: ue.Op, URL: triggers.RedactURL(ue.URL), Err: ue.Err}
}
