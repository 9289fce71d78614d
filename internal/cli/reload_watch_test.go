package cli

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestWatchConfigSaysTheFileCannotBeRead: --watch-config reloads a changed
// file; one that is there but cannot be read (here a directory took its
// place: permissions do not stop root) is reported in the log, as SIGHUP
// or the API would report it, instead of being passed over in silence
// like a file renamed away.
func TestWatchConfigSaysTheFileCannotBeRead(t *testing.T) {
	srv, client := devdbtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	path := writeConfig(t, "mongodb: { uri: \""+srv.URI()+"\" }\ntriggers:\n  - name: orders\n    database: shop\n    collection: orders\n    webhook: { url: \"http://127.0.0.1:1/hook\" }\n")
	cfg, err := triggers.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	rn, err := runner.New(cfg, client, store.New(client, cfg.State.Database), runner.Options{StartStopped: true})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	rl := newReloader(path, Env{}, slog.New(slog.NewTextHandler(&logs, nil)), cfg, rn, prometheus.NewRegistry())
	if err := rl.watchFile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "cannot read the configuration file") {
		if time.Now().After(deadline) {
			t.Fatalf("a configuration file that cannot be read was not reported; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
