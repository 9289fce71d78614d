package console_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/admin"
	"github.com/changehook/changehook/internal/admin/console"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

var screenshotDir = flag.String("console-screenshots", "", "save the console test's screenshots in this directory (default: $CHANGEHOOK_CONSOLE_SCREENSHOTS, else a temporary directory)")

// browserTimeout bounds each browser step; the machine running the tests may
// be heavily loaded, so it is generous. It is an upper bound, never a wait.
const browserTimeout = 90 * time.Second

// storeCluster reports the cluster as /api/cluster does for the member
// self, reading the members and leases from the state database.
type storeCluster struct {
	st               *store.Store
	self, configHash string
}

func (c storeCluster) Status(ctx context.Context) (cluster.Status, error) {
	s, err := cluster.ReadStatus(ctx, c.st, nil)
	s.InstanceID, s.ConfigHash, s.LeaseTTL = c.self, c.configHash, "10m0s"
	return s, err
}

// Overview is Status with every lease (the test's are all configured).
func (c storeCluster) Overview(ctx context.Context) (cluster.Overview, error) {
	s, err := c.Status(ctx)
	return cluster.Overview{Status: s}, err
}

// findChromium returns the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	if p := os.Getenv("CHANGEHOOK_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Secrets configured for the test's triggers: none of them may appear in any
// page.
const (
	signingKey  = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10aGUtY29uc29sZQ=="
	headerValue = "Bearer header-secret-0c7f"
	urlToken    = "url-token-5e1d"
	adminToken  = "admin-token-93b2"
)

// TestConsoleInBrowser runs a real runner on devdb with httptest receivers
// behind the admin server and drives the console in headless Chromium: the
// pages render live data, the live region refreshes, dead letters can be
// browsed, the keyboard reaches the skip link first, pause and resume work
// with the admin token and are refused without it, no page shows a secret
// and the browser logs no error.
func TestConsoleInBrowser(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		t.Skip("no chromium binary found (apt-get install chromium, or set CHANGEHOOK_CHROMIUM): the console's browser test is skipped")
	}
	_, client := devdbtest.Start(t)

	var delivered atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(ok.Close)
	var goneBack atomic.Bool // the gone endpoint answers 204 from now on
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if goneBack.Load() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.Error(w, `{"error":"this endpoint is gone"}`, http.StatusGone)
	}))
	t.Cleanup(gone.Close)

	env := map[string]string{"OK_URL": ok.URL + "/hooks/orders?token=" + urlToken, "GONE_URL": gone.URL + "/hooks/gone", "KEY": signingKey, "HDR": headerValue}
	cfg, err := triggers.Parse("console.yaml", []byte(`
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: none
    webhook:
      url: ${OK_URL}
      secret: ${KEY}
      headers: { Authorization: "${HDR}" }
  - name: legacy
    database: shop
    collection: legacy
    retry: { max_attempts: 1 }
    circuit: { open_on: [] } # 410 dead-letters each event here instead of opening the circuit
    webhook: { url: "${GONE_URL}", secret: "${KEY}" }
  - name: archive
    database: shop
    collection: archive
    enabled: false
    webhook: { url: "${OK_URL}" }
`), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(client, "changehook")
	rn, err := runner.New(cfg, client, st, runner.Options{
		Logger:             slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		CheckpointInterval: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second, Version: "test", Controls: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRunner := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- rn.Run(runCtx) }()
	t.Cleanup(func() {
		stopRunner()
		if err := <-runDone; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	// Two cluster members registered in the state database, each holding
	// a lease: the overview lists them as /api/cluster reports them.
	ctx0 := context.Background()
	for _, m := range []store.Member{
		{ID: "node-a", Host: "host-a", PID: 101, Version: "test", ConfigHash: "cfg-1", Started: time.Now().Add(-time.Hour)},
		{ID: "node-b", Host: "host-b", PID: 202, Version: "test", ConfigHash: "cfg-2", Started: time.Now().Add(-time.Minute)},
	} {
		if err := st.Heartbeat(ctx0, m, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for key, owner := range map[string]string{"orders": "node-a", "legacy": "node-b"} {
		if _, err := st.AcquireLease(ctx0, key, owner, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	adm, err := admin.Start(admin.Options{Addr: "127.0.0.1:0", Runner: rn, Store: st,
		Oplog: console.MongoOplog{Client: client}, ConsoleSampleEvery: 100 * time.Millisecond,
		Control: rn, Token: adminToken, DeadLetters: &testDeadLetterOps{st: st, cfg: cfg},
		Cluster: storeCluster{st: st, self: "node-a", configHash: "cfg-1"}, Config: func() *triggers.Config { return cfg }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := adm.Shutdown(context.Background()); err != nil {
			t.Errorf("admin shutdown: %v", err)
		}
	})
	waitUntil(t, "runner ready", rn.Ready)

	// The database writes share one context across every browser step
	// below (each bounded by browserTimeout): it bounds the whole test,
	// never a wait.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	shop := client.Database("shop")
	for i := range 5 {
		if _, err := shop.Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "total", Value: 10 * i}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if _, err := shop.Collection("legacy").InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "sku", Value: fmt.Sprintf("sku-%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "5 deliveries and 2 dead letters", func() bool {
		dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{})
		return err == nil && len(dls) == 2 && delivered.Load() == 5
	})
	waitUntil(t, "orders checkpoint saved", func() bool {
		cp, ok, err := st.LoadCheckpoint(ctx, "orders")
		return err == nil && ok && cp.ClusterTime.T != 0
	})

	// A paused trigger shows who paused it and why.
	if err := rn.Pause("legacy", "endpoint maintenance", "test"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "legacy paused", func() bool {
		st, err := rn.TriggerStatus("legacy")
		return err == nil && st.State == runner.StatePaused
	})

	// The current dead-letter count is read again at most a second after
	// the runner stores a dead letter (it is a count of the collection, not
	// a running total): the overview shows it once it has been.
	waitUntil(t, "legacy's 2 dead letters counted", func() bool {
		st, err := rn.TriggerStatus("legacy")
		return err == nil && st.DeadLettersCurrent == 2
	})

	b := startBrowser(t, chrome)
	base := adm.URL()
	shots := shotDir(t)

	// admin.token is set: the console's pages need it as well. A browser
	// without it gets the 401 page (the user dismissed the browser's login
	// prompt), which shows no data.
	auth := b.interceptAuth(t, base, adminToken)
	b.run(t, "dead letters without the token", chromedp.Navigate(base+"/deadletters?trigger=legacy"))
	if got := eval[string](t, b, `document.body.innerText`); !strings.Contains(got, "401 Unauthorized") || strings.Contains(got, "sku-") {
		t.Errorf("the dead letters' page without the token shows %q, want the 401 text only", got)
	}
	if auth.challenges.Load() == 0 {
		t.Error("the 401 page did not make the browser ask for credentials")
	}
	// The pages below get the token as a bearer token (the console's own
	// calls do not: its token dialog is tested); the browser's login
	// prompt (HTTP Basic) is tested at the end.
	auth.mode.Store(int32(bearerPages))

	// Overview: live data from the runner.
	b.run(t, "overview", chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-trigger="orders"]`)))
	row := b.text(t, `tr[data-trigger="orders"]`)
	for _, want := range []string{"orders", "shop.orders", "running"} {
		if !strings.Contains(row, want) {
			t.Errorf("overview row of orders = %q, want it to contain %q", row, want)
		}
	}
	if got := b.text(t, `tr[data-trigger="orders"] td:nth-of-type(5)`); got != "5" {
		t.Errorf("orders delivered = %q, want 5", got)
	}
	if got := b.text(t, `tr[data-trigger="legacy"] td:nth-of-type(6)`); got != "2" {
		t.Errorf("legacy dead letters = %q, want 2", got)
	}
	if row := b.text(t, `tr[data-trigger="legacy"]`); !strings.Contains(row, "paused") || !strings.Contains(row, "by test: endpoint maintenance") {
		t.Errorf("legacy row = %q, want paused by test: endpoint maintenance", row)
	}
	if row := b.text(t, `tr[data-trigger="archive"]`); !strings.Contains(row, "disabled") {
		t.Errorf("archive row = %q, want disabled", row)
	}
	// Cluster members, read from the state database as /api/cluster reads
	// them: this instance marked, the leases each holds, a configuration
	// that differs.
	if row := b.text(t, `tr[data-member="node-a"]`); !strings.Contains(row, "node-a (this instance)") || !strings.Contains(row, "host-a pid 101") ||
		!strings.Contains(row, "orders") || strings.Contains(row, "legacy") || !strings.Contains(row, "same") {
		t.Errorf("member row of node-a = %q", row)
	}
	if row := b.text(t, `tr[data-member="node-b"]`); !strings.Contains(row, "legacy") || !strings.Contains(row, "differs from this instance's") {
		t.Errorf("member row of node-b = %q", row)
	}
	if href := eval[string](t, b, `document.querySelector('tr[data-member="node-b"] a').getAttribute("href")`); href != "/triggers/legacy" {
		t.Errorf("node-b's lease links to %q, want /triggers/legacy", href)
	}
	// A member that joins appears with the live region's refresh.
	if err := st.Heartbeat(ctx, store.Member{ID: "node-c", Host: "host-c", PID: 303, Version: "test", ConfigHash: "cfg-1", Started: time.Now()}, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	b.run(t, "new member", chromedp.WaitVisible(chromedp.CSS(`tr[data-member="node-c"]`)))
	if n := eval[int](t, b, `document.querySelectorAll("#cluster tbody tr").length`); n != 3 {
		t.Errorf("%d member rows, want 3", n)
	}
	// The live region refreshes itself: more deliveries and the sparklines
	// appear without a reload.
	for i := 5; i < 8; i++ {
		if _, err := shop.Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	b.run(t, "live refresh", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](`(() => {
		const c = document.querySelector('tr[data-trigger="orders"] td:nth-of-type(5)');
		return c && c.textContent.trim() === "8" && document.querySelector('tr[data-trigger="orders"] polyline') !== null;
	})()`, chromedp.WithPollingInterval(200*time.Millisecond))(ctx, tg)
		return err
	}))
	b.shot(t, shots, "overview.png")
	// The keyboard reaches the skip link first.
	b.run(t, "tab to the skip link", chromedp.KeyEvent(kb.Tab))
	focused := eval[string](t, b, `document.activeElement.className`)
	if focused != "skip" {
		t.Errorf("first Tab focuses %q, want the skip link", focused)
	}

	// Trigger page: status, counters, checkpoint.
	b.run(t, "trigger page", chromedp.Navigate(base+"/triggers/orders"), chromedp.WaitVisible(chromedp.CSS(`#cp-h`)))
	page := b.text(t, "main")
	// devdb serves local.oplog.rs, so the distance is shown, not "not available".
	for _, want := range []string{"Trigger orders", "shop.orders", "delivered", "Saved", "Distance to the oldest oplog entry", "ahead of the oldest oplog entry ("} {
		if !strings.Contains(page, want) {
			t.Errorf("trigger page lacks %q:\n%s", want, page)
		}
	}
	b.shot(t, shots, "trigger.png")

	// Dead letters: list, filter by trigger, show one.
	b.run(t, "dead letters", chromedp.Navigate(base+"/deadletters"), chromedp.WaitVisible(chromedp.CSS(`table.grid`)))
	rows := eval[int](t, b, `document.querySelectorAll("table.grid tbody tr").length`)
	if rows != 2 {
		t.Errorf("dead-letter rows = %d, want 2", rows)
	}
	b.run(t, "filter", chromedp.SetValue(chromedp.CSS(`#trigger`), "orders"),
		chromedp.Click(chromedp.CSS(`form.filter button`)),
		chromedp.WaitVisible(chromedp.Search(`//p[contains(., "No dead letters for trigger orders")]`)))
	b.run(t, "filter legacy", chromedp.SetValue(chromedp.CSS(`#trigger`), "legacy"),
		chromedp.Click(chromedp.CSS(`form.filter button`)),
		chromedp.WaitVisible(chromedp.CSS(`table.grid tbody tr`)))
	b.shot(t, shots, "deadletters.png")
	// The first row is the first dead letter in the store's order (time, then
	// id: the two may share a millisecond, so which sku it holds is read here).
	firstDLs, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "legacy", Limit: 1})
	if err != nil || len(firstDLs) != 1 {
		t.Fatalf("first legacy dead letter: %v, %v", firstDLs, err)
	}
	firstSKU := firstDLs[0].Event.Lookup("fullDocument", "sku").StringValue()
	b.run(t, "show one", chromedp.Click(chromedp.CSS(`table.grid tbody tr a`)),
		chromedp.WaitVisible(chromedp.CSS(`#event-h`)))
	page = b.text(t, "main")
	for _, want := range []string{"legacy", "HTTP 410", "this endpoint is gone", firstSKU} {
		if !strings.Contains(page, want) {
			t.Errorf("dead-letter page lacks %q:\n%s", want, page)
		}
	}
	b.shot(t, shots, "deadletter.png")

	// Pause and resume from the console: refused without the admin token
	// (the console asks for it), refused with a wrong one, done with the
	// right one, which the tab then keeps.
	state := func() runner.State {
		st, err := rn.TriggerStatus("orders")
		if err != nil {
			t.Fatal(err)
		}
		return st.State
	}
	pause := chromedp.CSS(`tr[data-trigger="orders"] button[data-action="pause"]`)
	b.run(t, "pause without a token", chromedp.Navigate(base+"/"), chromedp.Click(pause),
		chromedp.WaitVisible(chromedp.CSS("#admin-token")))
	if got := b.text(t, "#token-message"); !strings.Contains(got, "enter the admin token") {
		t.Errorf("token dialog says %q", got)
	}
	b.shot(t, shots, "token.png")
	b.run(t, "a wrong token", chromedp.SendKeys(chromedp.CSS("#admin-token"), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#token-dialog button[value="ok"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="token-message"][contains(., "was refused")]`)))
	b.run(t, "cancel", chromedp.Click(chromedp.CSS(`#token-dialog button[value="cancel"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., "not done: it needs the admin token")]`)))
	if st := state(); st != runner.StateRunning {
		t.Fatalf("orders is %s after refused pauses, want running", st)
	}
	b.run(t, "the right token", chromedp.Click(pause), chromedp.WaitVisible(chromedp.CSS("#admin-token")),
		chromedp.SendKeys(chromedp.CSS("#admin-token"), adminToken),
		chromedp.Click(chromedp.CSS(`#token-dialog button[value="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-trigger="orders"] button[data-action="resume"]`)))
	if st := state(); st != runner.StatePaused {
		t.Errorf("orders is %s after pausing from the console, want paused", st)
	}
	if row := b.text(t, `tr[data-trigger="orders"]`); !strings.Contains(row, "paused") || !strings.Contains(row, "by api: paused from the web console") {
		t.Errorf("orders row after pause = %q", row)
	}
	b.shot(t, shots, "paused.png")
	b.run(t, "resume with the kept token", chromedp.Click(chromedp.CSS(`tr[data-trigger="orders"] button[data-action="resume"]`)),
		chromedp.WaitVisible(pause))
	if open := eval[bool](t, b, `document.getElementById("token-dialog").open`); open {
		t.Error("the console asked for the token again on resume")
	}
	waitUntil(t, "orders running again", func() bool { return state() == runner.StateRunning })

	// Dead letters from the console: purge one and replay a trigger's,
	// refused without the admin token or with a wrong one (401 said on
	// the page), each behind a confirmation step.
	legacyDLs, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "legacy"})
	if err != nil || len(legacyDLs) != 2 {
		t.Fatalf("legacy dead letters = %d, %v; want 2", len(legacyDLs), err)
	}
	purged, kept := legacyDLs[0].ID, legacyDLs[1].ID
	exists := func(id string) bool {
		_, ok, err := st.GetDeadLetter(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	purgeOne := chromedp.CSS(`#dl-actions button[data-dlq="purge"]`)
	b.run(t, "dead letter without a token", chromedp.Navigate(base+"/deadletters/"+purged),
		chromedp.WaitVisible(purgeOne))
	eval[bool](t, b, `(sessionStorage.clear(), true)`)
	if label := eval[string](t, b, `document.querySelector('#dl-actions button[data-dlq="replay"]').getAttribute("aria-label")`); label != "Replay dead letter "+purged {
		t.Errorf("replay button label = %q", label)
	}
	b.run(t, "purge: confirm", chromedp.Click(purgeOne), chromedp.WaitVisible(chromedp.CSS("#confirm-ok")))
	if got := b.text(t, "#confirm-message"); !strings.Contains(got, "Purge dead letter "+purged) {
		t.Errorf("confirmation says %q", got)
	}
	if f := eval[string](t, b, `document.activeElement.id`); f != "confirm-ok" {
		t.Errorf("focus in the confirmation dialog is on %q, want confirm-ok", f)
	}
	b.shot(t, shots, "dlq-confirm.png")
	b.run(t, "purge without a token", chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitVisible(chromedp.CSS("#admin-token")))
	b.run(t, "purge: a wrong token", chromedp.SendKeys(chromedp.CSS("#admin-token"), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#token-dialog button[value="ok"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="token-message"][contains(., "was refused (401)")]`)))
	b.run(t, "purge: cancel", chromedp.Click(chromedp.CSS(`#token-dialog button[value="cancel"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., "not done: refused (401), it needs the admin token")]`)))
	if !exists(purged) {
		t.Fatal("the dead letter was purged without the admin token")
	}
	b.shot(t, shots, "dlq-refused.png")
	b.run(t, "purge: cancel the confirmation", chromedp.Click(purgeOne), chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS(`#confirm-dialog button[value="cancel"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., "Purge cancelled")]`)))
	b.run(t, "purge with the right token", chromedp.Click(purgeOne), chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")), chromedp.WaitVisible(chromedp.CSS("#admin-token")),
		chromedp.SendKeys(chromedp.CSS("#admin-token"), adminToken),
		chromedp.Click(chromedp.CSS(`#token-dialog button[value="ok"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., "done: 1 deleted")]`)),
		chromedp.WaitVisible(chromedp.Search(`//a[contains(., "This dead letter is gone")]`)))
	if exists(purged) {
		t.Error("the purged dead letter is still stored")
	}
	if !exists(kept) {
		t.Error("purging one dead letter removed the other")
	}
	b.shot(t, shots, "dlq-purged.png")

	// Replay while the endpoint still answers 410: the dead letter stays,
	// with the replay's attempt recorded.
	before, _, err := st.GetDeadLetter(ctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	replayAll := chromedp.CSS(`#dl-actions button[data-dlq="replay"][data-trigger="legacy"]`)
	b.run(t, "replay one, still failing", chromedp.Navigate(base+"/deadletters/"+kept),
		chromedp.Click(chromedp.CSS(`#dl-actions button[data-dlq="replay"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., "done: 0 delivered and removed, 1 failed")]`)))
	if open := eval[bool](t, b, `document.getElementById("token-dialog").open`); open {
		t.Error("the console asked for the token again on replay")
	}
	// The status line says why, and that the attempt is recorded.
	if got, want := b.text(t, "#action-status"), "1 failed and still dead-lettered (attempts updated); why: delivery failed: HTTP 410 (client_error): 1 ("+kept+")."; !strings.Contains(got, want) {
		t.Errorf("status after the failed replay = %q, want it to contain %q", got, want)
	}
	after, found, err := st.GetDeadLetter(ctx, kept)
	if err != nil || !found {
		t.Fatalf("the dead letter whose replay failed: found %v, %v", found, err)
	}
	if after.Attempts != before.Attempts+1 {
		t.Errorf("attempts after a failed replay = %d, want %d (the replay's attempt added)", after.Attempts, before.Attempts+1)
	}
	// The page shows the updated count without a reload: it asks for its
	// facts again once the status line has said the replay is done.
	want := fmt.Sprintf("Attempts%d", after.Attempts)
	if !b.poll(t, fmt.Sprintf(`document.getElementById("dl-facts").textContent.replace(/\s+/g, "").includes(%q)`, want)) {
		got := strings.Join(strings.Fields(b.text(t, "#dl-facts")), "")
		t.Errorf("dead-letter facts after the failed replay = %q, want %q", got, want)
	}
	// The dead letter of a trigger removed from the configuration: its
	// replay makes no attempt, the status line says why and does not
	// claim the attempts were updated.
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82FFFF0001"}})
	ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"}})
	if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "removed", Event: ev, Token: tok, Attempts: 2, LastStatus: 500, LastError: "HTTP 500"}); err != nil {
		t.Fatal(err)
	}
	removedID := dispatcher.WebhookID("removed", tok)
	b.run(t, "replay the dead letter of a removed trigger", chromedp.Navigate(base+"/deadletters/"+removedID),
		chromedp.Click(chromedp.CSS(`#dl-actions button[data-dlq="replay"]`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., "done: 0 delivered and removed, 1 failed")]`)))
	if got, want := b.text(t, "#action-status"), `1 failed and still dead-lettered (no attempt made: unchanged); why: trigger "removed" is not in console.yaml: its webhook is unknown: 1 (`+removedID+`).`; !strings.Contains(got, want) || strings.Contains(got, "attempts updated") {
		t.Errorf("status after replaying a removed trigger's dead letter = %q, want it to contain %q", got, want)
	}
	if _, err := st.DeleteDeadLetter(ctx, removedID); err != nil {
		t.Fatal(err)
	}
	// A trigger neither configured nor named by a dead letter (a page
	// left open while the trigger was removed and its dead letters purged
	// elsewhere; here a button changed to name it) is refused with the
	// API's 404 error on the status line, and nothing is replayed.
	b.run(t, "replay all of an unknown trigger", chromedp.Navigate(base+"/deadletters?trigger=legacy"), chromedp.WaitVisible(replayAll))
	eval[bool](t, b, `(document.querySelector('#dl-actions button[data-dlq="replay"][data-trigger="legacy"]').dataset.trigger = "legac", true)`)
	b.run(t, "replay all of an unknown trigger: yes", chromedp.Click(chromedp.CSS(`#dl-actions button[data-dlq="replay"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")), chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., 'refused: unknown trigger "legac"') and contains(., '(did you mean "legacy"?)')]`)))
	if !exists(kept) {
		t.Error("a replay of an unknown trigger replayed legacy's dead letter")
	}
	// The endpoint is back: replaying the trigger's dead letters from the
	// list delivers it and removes it.
	goneBack.Store(true)
	b.run(t, "replay all of legacy", chromedp.Navigate(base+"/deadletters?trigger=legacy"),
		chromedp.Click(replayAll), chromedp.WaitVisible(chromedp.CSS("#confirm-ok")))
	if got := b.text(t, "#confirm-message"); !strings.Contains(got, "Replay every dead letter of trigger legacy") {
		t.Errorf("confirmation says %q", got)
	}
	b.run(t, "replay all: yes", chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="action-status"][contains(., "done: 1 delivered and removed, 0 failed")]`)),
		chromedp.WaitVisible(chromedp.Search(`//div[@id="dl-list"]/p[contains(., "No dead letters for trigger legacy")]`)))
	if exists(kept) {
		t.Error("the replayed dead letter is still stored")
	}
	if f := eval[string](t, b, `document.activeElement.id`); f != "action-status" {
		t.Errorf("focus after the replay is on %q, want the status line", f)
	}
	b.shot(t, shots, "dlq-replayed.png")

	// The browser's own login prompt: the user enters any name and the
	// token as the password; the browser sends them with the pages and the
	// console's calls: pause and resume without the console's dialog, and
	// the live region refreshes.
	auth.mode.Store(int32(basicPrompt))
	asked := auth.challenges.Load()
	b.run(t, "log in", chromedp.Navigate(base+"/"), chromedp.WaitVisible(pause))
	eval[bool](t, b, `(sessionStorage.clear(), true)`)
	if auth.challenges.Load() == asked {
		t.Error("the console opened without the browser asking for credentials")
	}
	b.run(t, "pause with the browser's credentials", chromedp.Click(pause),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-trigger="orders"] button[data-action="resume"]`)))
	if st := state(); st != runner.StatePaused {
		t.Errorf("orders is %s after pausing with the browser's credentials, want paused", st)
	}
	b.run(t, "resume with the browser's credentials", chromedp.Click(chromedp.CSS(`tr[data-trigger="orders"] button[data-action="resume"]`)),
		chromedp.WaitVisible(pause))
	if open := eval[bool](t, b, `document.getElementById("token-dialog").open`); open {
		t.Error("the console asked for the token though the browser had it")
	}
	waitUntil(t, "orders running again", func() bool { return state() == runner.StateRunning })
	if _, err := shop.Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: 100}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "9 deliveries", func() bool { return delivered.Load() == 9 })
	if !b.poll(t, `document.querySelector('tr[data-trigger="orders"] td:nth-of-type(5)').textContent.trim() === "9"`) {
		t.Errorf("the live region did not refresh with the browser's credentials: %q", b.text(t, `tr[data-trigger="orders"]`))
	}

	// No page shows a secret.
	for _, path := range []string{"/", "/triggers/orders", "/triggers/legacy", "/deadletters"} {
		b.run(t, "read "+path, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS("main")))
		html := eval[string](t, b, `document.documentElement.outerHTML`)
		for _, secret := range []string{signingKey, strings.TrimPrefix(signingKey, "whsec_"), headerValue, urlToken, adminToken} {
			if strings.Contains(html, secret) {
				t.Errorf("%s shows a secret", path)
			}
		}
	}
	b.checkNoErrors(t)
	t.Logf("screenshots in %s", shots)
}

// testDeadLetterOps replays and purges with the test's configuration, as
// the CLI's serve wiring does.
type testDeadLetterOps struct {
	st  *store.Store
	cfg *triggers.Config
}

func (o *testDeadLetterOps) Replay(ctx context.Context, sel deadletter.Selection) (deadletter.Summary, error) {
	r := deadletter.Replayer{Store: o.st, Config: o.cfg, NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) {
		return dispatcher.NewSender(t)
	}}
	return r.Replay(ctx, sel, nil)
}

func (o *testDeadLetterOps) Purge(ctx context.Context, sel deadletter.Selection) (int64, error) {
	return deadletter.Purge(ctx, o.st, sel)
}

// browser is a headless Chromium tab that records console errors and
// uncaught exceptions.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

func startBrowser(t *testing.T, path string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	b := &browser{ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				msg = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			msg = "uncaught exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *log.EventEntryAdded:
			// The refused control calls are expected: they are the test
			// (401 without the token; 404 for the unknown trigger), as is
			// the 401 of the page opened without the token.
			refused := strings.Contains(ev.Entry.Text, "status of 401") && (strings.Contains(ev.Entry.URL, "/api/triggers/") || strings.Contains(ev.Entry.URL, "/api/deadletters/") ||
				strings.HasSuffix(ev.Entry.URL, "/deadletters?trigger=legacy")) ||
				strings.Contains(ev.Entry.Text, "status of 404") && strings.HasSuffix(ev.Entry.URL, "/api/deadletters/replay")
			if (ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning) && !refused {
				msg = fmt.Sprintf("browser log %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// authMode is what the browser does about the admin token.
type authMode int32

const (
	// noCredentials: the user dismisses the browser's login prompt.
	noCredentials authMode = iota
	// bearerPages: the pages (not /api/) are requested with the token
	// as a bearer token, the console's calls as the console sends them,
	// and the browser's login prompt is dismissed.
	bearerPages
	// basicPrompt: the user enters a name and the token in the browser's
	// login prompt (HTTP Basic).
	basicPrompt
)

// authInterceptor plays the user at the browser's login prompt.
type authInterceptor struct {
	mode       atomic.Int32 // an authMode
	challenges atomic.Int64 // login prompts the browser showed
}

// interceptAuth pauses every request to base and every login prompt of
// its pages, and goes on with them as the interceptor's mode says
// (noCredentials at first).
func (b *browser) interceptAuth(t *testing.T, base, token string) *authInterceptor {
	t.Helper()
	a := &authInterceptor{}
	a.mode.Store(int32(noCredentials))
	requests := chromedp.Events(b.ctx, fetch.RequestPaused)
	prompts := chromedp.Events(b.ctx, fetch.AuthRequired)
	handle := true
	if _, err := chromedp.Call(b.ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handle,
		Patterns: []*fetch.RequestPattern{{URLPattern: base + "/*"}}}); err != nil {
		t.Fatalf("browser: intercept requests: %v", err)
	}
	go func() {
		for ev, err := range requests {
			if err != nil {
				return
			}
			params := fetch.ContinueRequestParams{RequestID: ev.RequestID}
			if authMode(a.mode.Load()) == bearerPages && !strings.HasPrefix(ev.Request.URL, base+"/api/") {
				for k, v := range ev.Request.Headers {
					params.Headers = append(params.Headers, &fetch.HeaderEntry{Name: k, Value: fmt.Sprint(v)})
				}
				params.Headers = append(params.Headers, &fetch.HeaderEntry{Name: "Authorization", Value: "Bearer " + token})
			}
			_, _ = chromedp.Call(b.ctx, fetch.ContinueRequest, params)
		}
	}()
	go func() {
		for ev, err := range prompts {
			if err != nil {
				return
			}
			a.challenges.Add(1)
			resp := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if authMode(a.mode.Load()) == basicPrompt {
				resp = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: "operator", Password: token}
			}
			_, _ = chromedp.Call(b.ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: resp})
		}
	}()
	return a
}

func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// poll reports whether the JavaScript expression expr became true within
// browserTimeout, evaluating it every 50 ms.
func (b *browser) poll(t *testing.T, expr string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond)))
	return err == nil
}

// get runs an action that returns a value.
func get[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	return get(t, b, expr, chromedp.Evaluate[T](expr))
}

func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	return strings.TrimSpace(get(t, b, "text of "+sel, chromedp.Text(chromedp.CSS(sel))))
}

func (b *browser) shot(t *testing.T, dir, name string) {
	t.Helper()
	png := get(t, b, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (b *browser) checkNoErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		t.Errorf("browser reported: %s", e)
	}
}

func shotDir(t *testing.T) string {
	dir := *screenshotDir
	if dir == "" {
		dir = os.Getenv("CHANGEHOOK_CONSOLE_SCREENSHOTS")
	}
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitUntil polls cond until it holds; the bound is generous because the
// machine may be loaded, and only reached on failure.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(browserTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
