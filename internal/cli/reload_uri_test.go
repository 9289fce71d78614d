package cli

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
)

// TestReloadSaysAChangedMongoURINeedsARestart: a reload keeps the running
// connection, so a file whose mongodb.uri changed gets the warning that
// names the settings needing a restart, mongodb.uri among them, without
// the URI itself (it may hold a password).
func TestReloadSaysAChangedMongoURINeedsARestart(t *testing.T) {
	srv, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := func(uri string) string {
		return "mongodb: { uri: \"" + uri + "\" }\ntriggers:\n  - name: orders\n    database: shop\n    collection: orders\n    webhook: { url: \"http://127.0.0.1:1/hook\" }\n"
	}
	path := writeConfig(t, file(srv.URI()))
	var logs syncbuf.Buffer
	rl := testReloader(t, client, path, slog.New(slog.NewTextHandler(&logs, nil)), runner.Options{})

	if _, err := rl.Reload(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "need a restart") {
		t.Fatalf("unchanged file: %s", logs.String())
	}
	other := "mongodb://app:s3cretPassw0rd@127.0.0.1:1/?directConnection=true"
	if err := os.WriteFile(path, []byte(file(other)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Reload(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	if !strings.Contains(got, "need a restart") || !strings.Contains(got, "mongodb.uri") {
		t.Errorf("reload of a file with another mongodb.uri logged:\n%s\nwant the restart warning naming mongodb.uri", got)
	}
	if strings.Contains(got, "s3cretPassw0rd") {
		t.Errorf("the new URI's password was logged:\n%s", got)
	}
}

// TestReloadNamesRestartSettingsUntilRestart: a reload's result names the
// settings outside the triggers that changed since the process started and
// wait for a restart, on every reload until then (not only on the one that
// changed them), and none once the file has the start's values again.
func TestReloadNamesRestartSettingsUntilRestart(t *testing.T) {
	srv, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := func(idle, coll string) string {
		return "mongodb: { uri: \"" + srv.URI() + "\" }\nadmin: { idle_timeout: " + idle + " }\ntriggers:\n  - name: orders\n    database: shop\n    collection: " + coll +
			"\n    webhook: { url: \"http://127.0.0.1:1/hook\" }\n"
	}
	path := writeConfig(t, file("60s", "orders"))
	rl := testReloader(t, client, path, slog.New(slog.DiscardHandler), runner.Options{StartStopped: true})
	for _, step := range []struct {
		idle, coll string
		changed    []string
		restart    []string
	}{
		{"90s", "orders", nil, []string{"admin"}},
		{"90s", "sales", []string{"orders"}, []string{"admin"}}, // still due
		{"60s", "sales", nil, nil},
	} {
		if err := os.WriteFile(path, []byte(file(step.idle, step.coll)), 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := rl.Reload(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Changed, step.changed) || !slices.Equal(res.RestartNeeded, step.restart) {
			t.Errorf("idle_timeout %s, collection %s: changed %v, restart needed %v; want %v, %v",
				step.idle, step.coll, res.Changed, res.RestartNeeded, step.changed, step.restart)
		}
	}
}
