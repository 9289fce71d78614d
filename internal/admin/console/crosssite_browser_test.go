package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/changehook/changehook/internal/admin"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// oneTrigger is a runner with one running trigger, orders.
type oneTrigger struct{}

func (oneTrigger) Status() []runner.TriggerStatus {
	return []runner.TriggerStatus{{Name: "orders", State: runner.StateRunning, StreamOpen: true}}
}

func (oneTrigger) Ready() bool { return true }

// appliedOps records the control and dead-letter calls that reached it.
type appliedOps struct {
	mu    sync.Mutex
	calls []string
}

func (o *appliedOps) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, s)
}

func (o *appliedOps) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

func (o *appliedOps) RequestControl(_ context.Context, name, _ string, req store.ControlRequest) (string, error) {
	o.add(req.Kind + " " + name)
	return req.Kind + " done", nil
}

func (o *appliedOps) Replay(_ context.Context, sel deadletter.Selection) (deadletter.Summary, error) {
	o.add(fmt.Sprintf("replay %+v", sel))
	return deadletter.Summary{}, nil
}

func (o *appliedOps) Purge(_ context.Context, sel deadletter.Selection) (int64, error) {
	o.add(fmt.Sprintf("purge %+v", sel))
	return 0, nil
}

// TestCrossSiteRequestsRefusedInBrowser: with the default configuration (no
// admin token, loopback), a page of another site makes Chromium send the
// admin API's mutating calls the ways that need no CORS preflight (no-cors
// fetch with a text/plain body or none, an HTML form) and tries to read
// /api/triggers: nothing is applied and nothing is read. The console's own
// page, on the admin server's origin, still pauses a trigger.
func TestCrossSiteRequestsRefusedInBrowser(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		t.Skip("no chromium binary found (apt-get install chromium, or set CHANGEHOOK_CHROMIUM): the console's browser test is skipped")
	}
	ops := &appliedOps{}
	adm, err := admin.Start(admin.Options{Addr: "127.0.0.1:0", Runner: oneTrigger{}, Control: ops, DeadLetters: ops})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adm.Shutdown(context.Background()) })
	base := adm.URL()

	// The other site: localhost is not the same site as 127.0.0.1.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprintf(w, `<!doctype html><title>elsewhere</title>
<form method="post" enctype="text/plain" action="%s/api/triggers/orders/pause"><input name='{"reason":"csrf","x":"' value='"}'></form>`, base)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)

	b := startBrowser(t, chrome)
	b.run(t, "open the other site's page", chromedp.Navigate(evilURL+"/"))
	got := get(t, b, "calls from the other site", chromedp.Evaluate[string](`(async () => {
  const api = `+"`"+base+"`"+`;
  const out = [];
  const tries = [
    () => fetch(api + "/api/triggers/orders/pause", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: '{"reason":"csrf"}'}),
    () => fetch(api + "/api/deadletters/purge", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: '{"all":true}'}),
    () => fetch(api + "/api/triggers/orders/skip", {method: "POST", mode: "no-cors"}),
    () => fetch(api + "/api/triggers/orders/resume", {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}),
    () => fetch(api + "/api/triggers").then(r => r.text()),
  ];
  for (const f of tries) {
    try { await f(); out.push("sent"); } catch (e) { out.push("blocked"); }
  }
  return out.join(" ");
})()`, chromedp.EvalAwaitPromise))
	// The no-cors calls are sent (their answers are opaque); the JSON call
	// needs a preflight the server does not grant, and the read gets no
	// Access-Control-Allow-Origin.
	if want := "sent sent sent blocked blocked"; got != want {
		t.Errorf("the other site's calls: %s, want %s", got, want)
	}
	if calls := ops.take(); len(calls) != 0 {
		t.Errorf("calls applied from the other site's fetches: %q, want none", calls)
	}

	b.run(t, "submit the other site's form", chromedp.Navigate(evilURL+"/"), chromedp.Submit(chromedp.CSS("form")))
	const refused = "cross-site request refused: the browser sent it from another site's page"
	waitUntil(t, "the form's answer", func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
		defer cancel()
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		return err == nil && strings.Contains(text, refused)
	})
	if calls := ops.take(); len(calls) != 0 {
		t.Errorf("calls applied from the other site's form: %q, want none", calls)
	}

	b.run(t, "open the console", chromedp.Navigate(base+"/"))
	status := get(t, b, "pause from the console's origin", chromedp.Evaluate[int](`fetch("/api/triggers/orders/pause", {method: "POST",
  headers: {"Content-Type": "application/json"}, body: JSON.stringify({reason: "paused from the web console"})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != http.StatusOK {
		t.Errorf("pause from the console's origin = %d, want 200", status)
	}
	if calls := strings.Join(ops.take(), "; "); calls != "pause orders" {
		t.Errorf("calls applied from the console's origin: %q, want pause orders", calls)
	}
}
