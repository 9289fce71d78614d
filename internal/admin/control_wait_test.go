package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// unappliedController is a Controller whose requests no process applies:
// it waits for the call's context to end, as runner.RequestControl does.
type unappliedController struct{}

func (unappliedController) RequestControl(ctx context.Context, _, _ string, _ store.ControlRequest) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// TestControlWaitEndsBeforeTheWriteTimeout: a control call that no
// process applies is answered 202 within the server's write timeout, not
// after it (when the client only sees the connection closed): the wait is
// the write timeout less a margin of 5 s, at least half of it.
func TestControlWaitEndsBeforeTheWriteTimeout(t *testing.T) {
	for wt, want := range map[time.Duration]time.Duration{
		30 * time.Second: 25 * time.Second, // the default
		60 * time.Second: 55 * time.Second,
		8 * time.Second:  4 * time.Second,
		time.Second:      500 * time.Millisecond,
	} {
		if got := controlWait(wt); got != want {
			t.Errorf("controlWait(%s) = %s, want %s", wt, got, want)
		}
	}

	const writeTimeout = 2 * time.Second
	s := startServer(t, Options{Control: unappliedController{}, WriteTimeout: writeTimeout})
	client := &http.Client{Timeout: 10 * time.Second} // the old wait (30 s) fails here
	start := time.Now()
	resp, err := client.Post("http://"+s.Addr()+"/api/triggers/orders/pause", "application/json", nil)
	if err != nil {
		t.Fatalf("no answer to a control nobody applies (write timeout %s): %v", writeTimeout, err)
	}
	defer resp.Body.Close()
	took := time.Since(start)
	body, _ := io.ReadAll(resp.Body)
	var got ControlResponse
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &got) != nil || got.Applied || got.Trigger != "orders" {
		t.Fatalf("answer %d %s, want 202 with applied false", resp.StatusCode, body)
	}
	if took < controlWait(writeTimeout) || took >= writeTimeout {
		t.Errorf("answered after %s, want after the wait (%s) and before the write timeout (%s)", took, controlWait(writeTimeout), writeTimeout)
	}
}
