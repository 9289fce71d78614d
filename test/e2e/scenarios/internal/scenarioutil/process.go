package scenarioutil

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/changehook/changehook/internal/childproc"
)

// FreeAddr is childproc.FreeAddr: a loopback host:port that was free a
// moment ago, for a child process that must be told its listen address in
// advance. Another process could take the port in between; the child then
// fails to start and says so.
func FreeAddr() (string, error) { return childproc.FreeAddr() }

// WaitReadyz polls a changehook admin server's /readyz at base (such as
// http://127.0.0.1:9470) until it answers 200 OK — every enabled trigger's
// change stream is open — or until ctx ends or exited is closed (the
// process died). A separate process offers no other signal, hence polling.
func WaitReadyz(ctx context.Context, base string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("wait for %s/readyz: %w", base, err)
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s/readyz: %w", base, ctx.Err())
		case <-exited:
			return fmt.Errorf("wait for %s/readyz: the process exited", base)
		case <-t.C:
		}
	}
}
