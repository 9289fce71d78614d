package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// unappliedController is a Controller whose requests are recorded and no
// process applies: it waits for the call's context to end and returns the
// *runner.PendingError runner.RequestControl returns then.
type unappliedController struct{}

func (unappliedController) RequestControl(ctx context.Context, name, _ string, req store.ControlRequest) (string, error) {
	<-ctx.Done()
	return "", &runner.PendingError{Kind: req.Kind, Trigger: name, Err: ctx.Err()}
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

// endlessDeadLetters is DeadLetterOps whose work never finishes: it runs
// until the call's time budget ends, as a replay of a long backlog does.
type endlessDeadLetters struct{}

func (endlessDeadLetters) Replay(ctx context.Context, _ deadletter.Selection) (deadletter.Summary, error) {
	<-ctx.Done()
	return deadletter.Summary{}, ctx.Err()
}

func (endlessDeadLetters) Purge(ctx context.Context, _ deadletter.Selection) (int64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestDeadLetterWorkEndsBeforeTheWriteTimeout: a replay or purge call
// whose work does not finish answers done: false within the server's write
// timeout (the client then calls again), not after it, when the client
// would only see the connection closed: its work and the recount after it
// end when a control call's wait would.
func TestDeadLetterWorkEndsBeforeTheWriteTimeout(t *testing.T) {
	for wt, want := range map[time.Duration][2]time.Duration{
		30 * time.Second: {20 * time.Second, 5 * time.Second}, // the default
		8 * time.Second:  {3200 * time.Millisecond, 800 * time.Millisecond},
	} {
		if work, recount := deadLetterTimes(wt); work != want[0] || recount != want[1] {
			t.Errorf("deadLetterTimes(%s) = %s, %s; want %s, %s", wt, work, recount, want[0], want[1])
		}
	}
	const writeTimeout = 2 * time.Second
	s := startServer(t, Options{DeadLetters: endlessDeadLetters{}, WriteTimeout: writeTimeout})
	client := &http.Client{Timeout: 10 * time.Second}
	for _, action := range []string{"replay", "purge"} {
		resp, err := client.Post("http://"+s.Addr()+"/api/deadletters/"+action, "application/json", strings.NewReader(`{"all": true}`))
		if err != nil {
			t.Fatalf("%s: no answer with a write timeout of %s: %v", action, writeTimeout, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got DeadLetterCallEnd
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || got.Done {
			t.Fatalf("%s: answer %d %s, want 200 with done false", action, resp.StatusCode, body)
		}
	}
}
