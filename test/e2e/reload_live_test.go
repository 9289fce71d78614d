package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// TestAdminAPIOnReloadedTriggers: the admin API works on the running
// configuration, not the one loaded at start. A trigger removed by a
// reload and added back by another shows the dead letters it has then
// (its own, and two stored meanwhile) in /api/triggers and the gauge as
// soon as the reload answers; pause,
// resume and redeliver through the API apply to it; its dead letters are
// replayed to its (reloaded) webhook, the replay recorded in the history
// and the count at 0 when the call answers; a purge of the trigger
// through the API answers with the count already at 0.
func TestAdminAPIOnReloadedTriggers(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var mu sync.Mutex
	seen := map[string]int{}
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		seen[d.ID]++
		if d.Header.Get("X-Version") == "reject" && seen[d.ID] == 1 {
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	path := filepath.Join(t.TempDir(), "live.yaml")
	write := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(reloadConfig(srv.URI(), rc.URL(), yaml)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var r *runner
	call := func(path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, r.admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer reload-token")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	write(triggerA + triggerB("reject"))
	r = startRunner(t, runArgs(path)...)
	r.token = reloadToken
	r.waitReady()
	insertOne(t, client, "b", 1)
	r.waitDeadLetterGauge("b", 1, waitTimeout)

	// b removed, then added back with another webhook header.
	write(triggerA)
	if code, body := r.postReload("reload-token"); code != http.StatusOK {
		t.Fatalf("reload without b = %d %s", code, body)
	}
	if _, ok := r.triggers()["b"]; ok {
		t.Fatal("b still listed after the reload that removed it")
	}
	// Meanwhile two more of b's events are dead-lettered (by another
	// process, say): b comes back with three.
	st := store.New(client, "chstate")
	for i := range 2 {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprint("kept", i)}})
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(100 + i)}}}})
		if err := st.PutDeadLetter(context.Background(), dispatcher.DeadLetter{Trigger: "b", Event: ev, Token: tok, Attempts: 1,
			LastStatus: 400, DeadLetteredAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	write(triggerA + triggerB("v2"))
	if code, body := r.postReload("reload-token"); code != http.StatusOK || !strings.Contains(string(body), `"added": [`) {
		t.Fatalf("reload adding b back = %d %s", code, body)
	}
	if m, a := r.deadLetterGauge("b"); m != 3 || a != 3 {
		t.Errorf("right after b was added back: gauge %d, /api/triggers %d; want its 3 dead letters", m, a)
	}
	r.waitReady()

	// Controls reach the added trigger.
	if code, body := call("/api/triggers/b/pause", `{"reason": "maintenance"}`); code != http.StatusOK || !strings.Contains(string(body), `"applied": true`) {
		t.Fatalf("pause b = %d %s", code, body)
	}
	if st := r.triggers()["b"].State; st != "paused" {
		t.Errorf("b after pause: %s, want paused", st)
	}
	// Resume positions have one-second resolution: the redelivered range
	// starts at the next whole second, after every earlier change.
	since := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(since))
	insertOne(t, client, "b", 2)
	if code, body := call("/api/triggers/b/resume", ``); code != http.StatusOK {
		t.Fatalf("resume b = %d %s", code, body)
	}
	first := deliveredTo(t, rc, "b", 2)
	if first.Header.Get("X-Version") != "v2" {
		t.Errorf("b/2 delivered with X-Version %q, want the reloaded v2", first.Header.Get("X-Version"))
	}
	if code, body := call("/api/triggers/b/redeliver", fmt.Sprintf(`{"since": %q}`, since.UTC().Format(time.RFC3339))); code != http.StatusOK {
		t.Fatalf("redeliver b = %d %s", code, body)
	}
	rc.waitFor(t, "b/2 redelivered with the same webhook-id", func(ds []delivery) bool {
		n := 0
		for _, d := range ds {
			if d.ID == first.ID {
				n++
			}
		}
		return n >= 2
	})

	// The kept dead letter is replayed to the reloaded webhook; the count
	// is 0 when the call answers; the replay is in the history.
	var dl struct {
		DeadLetters []struct {
			ID string `json:"id"`
		} `json:"dead_letters"`
	}
	_, body := r.get("/api/deadletters?trigger=b")
	if err := json.Unmarshal(body, &dl); err != nil || len(dl.DeadLetters) != 3 {
		t.Fatalf("dead letters of b: %s", body)
	}
	id := dl.DeadLetters[0].ID // the one of b/1, the oldest
	if code, body := call("/api/deadletters/replay", `{"trigger": "b"}`); code != http.StatusOK || !strings.Contains(string(body), `"replayed": 3`) {
		t.Fatalf("replay b = %d %s", code, body)
	}
	if m, a := r.deadLetterGauge("b"); m != 0 || a != 0 {
		t.Errorf("right after the replay: gauge %d, /api/triggers %d; want 0", m, a)
	}
	replayed := false
	for _, d := range rc.deliveries() {
		replayed = replayed || d.ID == id && d.Header.Get("X-Version") == "v2" && d.Status == http.StatusNoContent
	}
	if !replayed {
		t.Errorf("dead letter %s not replayed to b's reloaded webhook", id)
	}
	r.waitAdmin("/api/history?webhook_id="+id, func(_ int, b []byte) bool {
		recs := apiHistory(t, b)
		return len(recs) > 0 && recs[0].Kind == "replay" && recs[0].By == "api" && recs[0].Status == http.StatusNoContent
	})

	// A purge answers with the count already down.
	write(triggerA + triggerB("reject"))
	if code, body := r.postReload("reload-token"); code != http.StatusOK {
		t.Fatalf("reload = %d %s", code, body)
	}
	r.waitReady()
	insertOne(t, client, "b", 3)
	r.waitDeadLetterGauge("b", 1, waitTimeout)
	if code, body := call("/api/deadletters/purge", `{"trigger": "b"}`); code != http.StatusOK || !strings.Contains(string(body), `"deleted": 1`) {
		t.Fatalf("purge b = %d %s", code, body)
	}
	if m, a := r.deadLetterGauge("b"); m != 0 || a != 0 {
		t.Errorf("right after the purge: gauge %d, /api/triggers %d; want 0", m, a)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
