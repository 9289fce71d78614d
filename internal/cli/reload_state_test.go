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
	"github.com/changehook/changehook/runner"
)

// TestReloadKeepsTheRunningStateDatabase: state.database needs a restart,
// so a reload that changes it keeps the one in use, also as the database
// a deployment-wide trigger filters out of its stream. Given the new name,
// the trigger was restarted for nothing and then saw, and delivered, its
// own checkpoint writes to the state database in use, each delivery
// saving another checkpoint: a loop.
func TestReloadKeepsTheRunningStateDatabase(t *testing.T) {
	srv, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := "mongodb: { uri: \"" + srv.URI() + "\" }\nstate: { database: st1 }\ntriggers:\n" +
		"  - name: all\n    webhook: { url: \"http://127.0.0.1:1/hook\" }\n" +
		"  - name: orders\n    database: shop\n    collection: orders\n    webhook: { url: \"http://127.0.0.1:1/hook\" }\n"
	path := writeConfig(t, file)
	rl := testReloader(t, client, path, slog.New(slog.DiscardHandler), runner.Options{StartStopped: true})
	if err := os.WriteFile(path, []byte(strings.Replace(file, "database: st1", "database: st2", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := rl.Reload(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Unchanged, []string{"all", "orders"}) || len(res.Changed) > 0 || !slices.Equal(res.RestartNeeded, []string{"state"}) {
		t.Errorf("reload changing state.database = %+v; want every trigger unchanged, state needing a restart", res)
	}
	for name, units := range rl.rn.Units() {
		for _, u := range units {
			if u.StateDatabase != "st1" {
				t.Errorf("trigger %s filters out state database %q, want st1 (the one in use)", name, u.StateDatabase)
			}
		}
	}
	if got := rl.Config().State.Database; got != "st1" {
		t.Errorf("running configuration's state.database = %q, want st1", got)
	}
}
