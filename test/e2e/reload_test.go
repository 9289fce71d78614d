package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// reloadToken is reloadConfig's admin token.
const reloadToken = "reload-token"

// reloadConfig is a configuration with an admin token (reloadToken) and the
// given triggers' YAML.
func reloadConfig(uri, url, triggersYAML string) string {
	return strings.Replace(baseConfig(uri, url), "state: { database: chstate }",
		"state: { database: chstate }\nadmin: { token: "+reloadToken+", retrying_unready_after: 1s }", 1) + triggersYAML
}

const triggerA = `
  - name: a
    database: e2e
    collection: a
`

func triggerB(tag string) string {
	return fmt.Sprintf(`
  - name: b
    database: e2e
    collection: b
    webhook: { headers: { X-Version: %s } }
`, tag)
}

// statusView is the part of /api/triggers these tests read.
type statusView struct {
	Name           string    `json:"name"`
	State          string    `json:"state"`
	Since          time.Time `json:"since"`
	EventsReceived uint64    `json:"events_received"`
	LastError      string    `json:"last_error"`
	WayOut         string    `json:"way_out"`
	HeadOfLine     *struct {
		WebhookID     string    `json:"webhook_id"`
		Attempts      int       `json:"attempts"`
		LastStatus    int       `json:"last_status"`
		NextAttemptAt time.Time `json:"next_attempt_at"`
	} `json:"head_of_line"`
}

func (r *runner) triggers() map[string]statusView {
	r.t.Helper()
	_, body := r.get("/api/triggers")
	var resp struct {
		Triggers []statusView `json:"triggers"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		r.t.Fatalf("/api/triggers: %v: %s", err, body)
	}
	out := map[string]statusView{}
	for _, tr := range resp.Triggers {
		out[tr.Name] = tr
	}
	return out
}

// postReload calls POST /api/reload with token ("" : none).
func (r *runner) postReload(token string) (int, []byte) {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.admin+"/api/reload", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("POST /api/reload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// post calls POST path on the admin server with a JSON body and r.token
// (none needed without admin.token: the e2e admin server listens on
// loopback).
func (r *runner) post(path, body string) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.admin+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatalf("POST %s: %v", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func insertOne(t *testing.T, client *mongo.Client, coll string, id int) {
	t.Helper()
	if _, err := client.Database("e2e").Collection(coll).InsertOne(context.Background(), bson.D{{Key: "_id", Value: id}}); err != nil {
		t.Fatal(err)
	}
}

// deliveredTo waits for a delivery of document id of collection coll and
// returns it.
func deliveredTo(t *testing.T, rc *receiver, coll string, id int) delivery {
	t.Helper()
	var found delivery
	rc.waitFor(t, fmt.Sprintf("delivery of %s/%d", coll, id), func(ds []delivery) bool {
		for _, d := range ds {
			ns, _ := lookup(d.Event, "ns").(bson.D)
			key, _ := lookup(d.Event, "documentKey").(bson.D)
			if lookup(ns, "coll") == coll && fmt.Sprint(lookup(key, "_id")) == fmt.Sprint(id) && d.Status == http.StatusNoContent {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

// TestReload: a changed trigger is restarted with its new definition
// (SIGHUP) while the unchanged one keeps running untouched in the same
// process; a broken file is rejected with its problems (FILE:LINE:COL) and
// the running configuration keeps delivering; POST /api/reload needs the
// token and adds and removes triggers (the removed one's checkpoint is
// kept); the reloads are counted.
func TestReload(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "reload.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(srv.URI(), rc.URL(), triggerA+triggerB("one")))
	r := startRunner(t, runArgs(path)...)
	r.token = reloadToken
	r.waitReady()
	insertOne(t, client, "a", 1)
	insertOne(t, client, "b", 1)
	deliveredTo(t, rc, "a", 1)
	if v := deliveredTo(t, rc, "b", 1).Header.Get("X-Version"); v != "one" {
		t.Fatalf("b's first delivery X-Version %q, want one", v)
	}
	before := r.triggers()

	// A good change to b, by SIGHUP.
	write(reloadConfig(srv.URI(), rc.URL(), triggerA+triggerB("two")))
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitLog(`"msg":"configuration reloaded","by":"SIGHUP"`)
	if !strings.Contains(r.logText(), `"changed":["b"]`) {
		t.Errorf("reload log does not name b as the only change:\n%s", r.logText())
	}
	insertOne(t, client, "a", 2)
	insertOne(t, client, "b", 2)
	deliveredTo(t, rc, "a", 2)
	if v := deliveredTo(t, rc, "b", 2).Header.Get("X-Version"); v != "two" {
		t.Errorf("b after the reload: X-Version %q, want two", v)
	}
	after := r.triggers()
	if a0, a1 := before["a"], after["a"]; !a1.Since.Equal(a0.Since) || a1.EventsReceived != a0.EventsReceived+1 || a1.State != "running" {
		t.Errorf("a was touched by the reload: before %+v, after %+v", a0, a1)
	}
	// b restarted (a new since); its events_received continues.
	if b0, b1 := before["b"], after["b"]; b1.Since.Equal(b0.Since) || b1.EventsReceived != b0.EventsReceived+1 {
		t.Errorf("b was not restarted by the reload, or its count did not continue: before %+v, after %+v", b0, b1)
	}

	// A broken file, by the API: refused without the token, rejected with
	// the problems with it; the old configuration keeps delivering.
	write(reloadConfig(srv.URI(), rc.URL(), triggerA+triggerB("three")+"    colection: typo\n"))
	if code, _ := r.postReload(""); code != http.StatusUnauthorized {
		t.Errorf("POST /api/reload without the token = %d, want 401", code)
	}
	code, body := r.postReload("reload-token")
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), path+":") || !strings.Contains(string(body), "colection") {
		t.Errorf("POST /api/reload of a broken file = %d %s, want 422 with FILE:LINE:COL problems", code, body)
	}
	r.waitLog(`reload rejected: configuration problem`)
	if !strings.Contains(r.logText(), path+":") {
		t.Errorf("the rejected reload's problem is not logged as FILE:LINE:COL:\n%s", r.logText())
	}
	insertOne(t, client, "b", 3)
	if v := deliveredTo(t, rc, "b", 3).Header.Get("X-Version"); v != "two" {
		t.Errorf("b after a rejected reload: X-Version %q, want two (the running configuration)", v)
	}

	// Remove b, add c, by the API.
	write(reloadConfig(srv.URI(), rc.URL(), triggerA+`
  - name: c
    database: e2e
    collection: c
`))
	code, body = r.postReload("reload-token")
	var res struct {
		Result                  string
		Added, Removed, Changed []string
	}
	if err := json.Unmarshal(body, &res); err != nil || code != http.StatusOK || res.Result != "success" ||
		fmt.Sprint(res.Added, res.Removed, res.Changed) != "[c] [b] []" {
		t.Fatalf("POST /api/reload = %d %s", code, body)
	}
	r.waitAdmin("/readyz", func(code int, _ []byte) bool { return code == http.StatusOK })
	insertOne(t, client, "c", 1)
	insertOne(t, client, "a", 3)
	deliveredTo(t, rc, "c", 1)
	deliveredTo(t, rc, "a", 3)
	if _, ok := r.triggers()["b"]; ok {
		t.Error("b still listed after its removal")
	}
	cp, found, err := store.New(client, "chstate").LoadCheckpoint(context.Background(), "b")
	if err != nil || !found || len(cp.Token) == 0 {
		t.Errorf("b's checkpoint after removal: found %v, err %v; want it kept", found, err)
	}

	_, metrics := r.get("/metrics")
	for _, want := range []string{`changehook_config_reloads_total{result="success"} 2`, `changehook_config_reloads_total{result="failure"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestWatchConfig: with --watch-config, saving the file the way editors do
// (write a new file, rename it over the old one) reloads it, and so does a
// Kubernetes ConfigMap update, which replaces the ..data link the file is
// reached through (triggers.yaml -> ..data/triggers.yaml) and makes no
// event naming the file.
func TestWatchConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup writes the first content; update replaces it.
		setup, update func(t *testing.T, dir, path, content string)
	}{
		{"editor's rename",
			func(t *testing.T, dir, path, content string) { writeFile(t, dir, filepath.Base(path), content) },
			func(t *testing.T, dir, path, content string) {
				if err := os.Rename(writeFile(t, dir, ".watch.yaml.swp", content), path); err != nil {
					t.Fatal(err)
				}
			}},
		{"ConfigMap's ..data switch",
			func(t *testing.T, dir, path, content string) {
				configMapVersion(t, dir, "..2026_12_05_00_00_00.1", content)
				if err := os.Symlink("..2026_12_05_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join("..data", filepath.Base(path)), path); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, dir, path, content string) {
				// As the kubelet does: a new directory, a new link, renamed
				// over ..data, the old directory removed.
				configMapVersion(t, dir, "..2026_12_05_00_01_00.2", content)
				if err := os.Symlink("..2026_12_05_00_01_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(filepath.Join(dir, "..2026_12_05_00_00_00.1")); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, client := devdbtest.StartWith(t, devdb.Options{})
			rc := newReceiver(t)
			dir := t.TempDir()
			path := filepath.Join(dir, "watch.yaml")
			tc.setup(t, dir, path, reloadConfig(srv.URI(), rc.URL(), triggerA))
			r := startRunner(t, runArgs(path, "--watch-config")...)
			r.token = reloadToken
			r.waitReady()
			tc.update(t, dir, path, reloadConfig(srv.URI(), rc.URL(), triggerA+triggerB("w")))
			r.waitLog(`"msg":"configuration reloaded","by":"--watch-config"`)
			r.waitAdmin("/readyz", func(code int, _ []byte) bool { return code == http.StatusOK })
			insertOne(t, client, "b", 1)
			if v := deliveredTo(t, rc, "b", 1).Header.Get("X-Version"); v != "w" {
				t.Errorf("b added by --watch-config: X-Version %q, want w", v)
			}
		})
	}
}

// configMapVersion writes one version of a ConfigMap volume as the kubelet
// does: a directory named version, beside the ..data link, holding the
// file watch.yaml.
func configMapVersion(t *testing.T, dir, version, content string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, version), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, version), "watch.yaml", content)
}

// TestStatusStatesOverAPI: /api/triggers shows a trigger whose endpoint
// answers 503 as retrying with its head-of-line delivery, and one whose
// endpoint answers 410 without dead letters as failed with the way out;
// /readyz reports both (retrying_unready_after is 1s here).
func TestStatusStatesOverAPI(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		ns, _ := lookup(d.Event, "ns").(bson.D)
		switch lookup(ns, "coll") {
		case "flaky":
			return http.StatusServiceUnavailable
		case "gone":
			return http.StatusGone
		}
		return http.StatusNoContent
	})
	path := writeFile(t, t.TempDir(), "states.yaml", reloadConfig(srv.URI(), rc.URL(), `
  - name: flaky
    database: e2e
    collection: flaky
    dead_letter: false
    retry: { initial_backoff: 50ms, max_backoff: 200ms }
  - name: gone
    database: e2e
    collection: gone
    dead_letter: false
    retry: { initial_backoff: 50ms, max_backoff: 200ms }
`))
	r := startRunner(t, runArgs(path)...)
	r.token = reloadToken
	r.waitReady()
	insertOne(t, client, "flaky", 1)
	insertOne(t, client, "gone", 1)
	r.waitAdmin("/api/triggers", func(int, []byte) bool {
		f := r.triggers()["flaky"]
		return f.State == "retrying" && f.HeadOfLine != nil && f.HeadOfLine.Attempts >= 2 && f.HeadOfLine.LastStatus == 503 &&
			!f.HeadOfLine.NextAttemptAt.IsZero() && strings.HasPrefix(f.HeadOfLine.WebhookID, "msg_")
	})
	r.waitAdmin("/api/triggers", func(int, []byte) bool {
		g := r.triggers()["gone"]
		return g.State == "failed" && strings.Contains(g.WayOut, "changehook skip gone")
	})
	body := r.waitAdmin("/readyz", func(code int, body []byte) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(string(body), "trigger flaky: retrying for")
	})
	if !strings.Contains(string(body), "trigger gone: failed") || !strings.Contains(string(body), "way out: ") {
		t.Errorf("/readyz = %s, want gone failed with its way out", body)
	}
}

// TestDeadLetterReplayAfterReload: POST /api/deadletters/replay uses the
// running configuration, so after a reload that fixes a trigger's webhook
// the replayed dead letter goes to the new endpoint, signed with the new
// secret, and the dead letter is gone.
func TestDeadLetterReplayAfterReload(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var rejected atomic.Int32
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rejected.Add(1)
		w.WriteHeader(http.StatusBadRequest)
	}))
	t.Cleanup(broken.Close)
	dir := t.TempDir()
	path := filepath.Join(dir, "replay.yaml")
	write := func(url string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(reloadConfig(srv.URI(), url, triggerA)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(broken.URL)
	r := startRunner(t, runArgs(path)...)
	r.token = reloadToken
	r.waitReady()
	st := store.New(client, "chstate")
	ctx := context.Background()
	insertOne(t, client, "a", 1)
	r.waitAdmin("/api/triggers", func(_ int, body []byte) bool {
		var resp struct {
			Triggers []struct {
				DeadLettersCurrent int64 `json:"dead_letters_current"`
			} `json:"triggers"`
		}
		return json.Unmarshal(body, &resp) == nil && len(resp.Triggers) == 1 && resp.Triggers[0].DeadLettersCurrent == 1
	})

	write(rc.URL())
	if code, body := r.postReload("reload-token"); code != http.StatusOK {
		t.Fatalf("POST /api/reload = %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, r.admin+"/api/deadletters/replay", strings.NewReader(`{"trigger": "a"}`))
	req.Header.Set("Authorization", "Bearer reload-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var res struct {
		Replayed, Failed int
		Done             bool
	}
	if err := json.Unmarshal(body, &res); err != nil || resp.StatusCode != http.StatusOK || res.Replayed != 1 || res.Failed != 0 || !res.Done {
		t.Fatalf("POST /api/deadletters/replay = %d %s, want 1 replayed to the reloaded webhook", resp.StatusCode, body)
	}
	deliveredTo(t, rc, "a", 1)
	if n := rejected.Load(); n != 1 {
		t.Errorf("the old endpoint got %d requests, want only the first attempt", n)
	}
	if n, err := st.CountDeadLetters(ctx, "a"); err != nil || n != 0 {
		t.Errorf("dead letters after the replay: %d, %v; want 0", n, err)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
