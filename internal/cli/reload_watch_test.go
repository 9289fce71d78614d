package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"

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
	var logs syncbuf.Buffer
	rl := testReloader(t, client, path, slog.New(slog.NewTextHandler(&logs, nil)), runner.Options{StartStopped: true})
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

// TestWatchConfigRetriesAnUnfinishedReload: a reload --watch-config starts
// that does not finish (here a stand-in failing as a stop past the
// reload's deadline, or an unreachable state database, would) is applied
// again while the file keeps that content, and stops being retried once
// it succeeds; a configuration the reload rejects is not retried: only a
// new content is applied.
func TestWatchConfigRetriesAnUnfinishedReload(t *testing.T) {
	srv, client := devdbtest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const conf = "mongodb: { uri: \"%s\" }\ntriggers:\n  - name: orders # %s\n    database: shop\n    collection: orders\n    webhook: { url: \"http://127.0.0.1:1/hook\" }\n"
	path := writeConfig(t, fmt.Sprintf(conf, srv.URI(), "v1"))
	var logs syncbuf.Buffer
	rl := testReloader(t, client, path, slog.New(slog.NewTextHandler(&logs, nil)), runner.Options{StartStopped: true})
	// Each call records the version the file had and answers with the
	// next scripted result.
	calls := make(chan string, 16)
	script := make(chan error, 16)
	rl.watchRetry = time.Millisecond
	rl.watchReload = func(context.Context, string) (runner.ReloadResult, error) {
		b, _ := os.ReadFile(path)
		_, v, _ := strings.Cut(string(b), "# ")
		v, _, _ = strings.Cut(v, "\n")
		calls <- v
		return runner.ReloadResult{}, <-script
	}
	if err := rl.watchFile(ctx); err != nil {
		t.Fatal(err)
	}
	next := func(want string) {
		t.Helper()
		select {
		case got := <-calls:
			if got != want {
				t.Fatalf("reload applied the file's %s, want %s; log:\n%s", got, want, logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no reload of the file's %s; log:\n%s", want, logs.String())
		}
	}
	unfinished := errors.New("reload: stop trigger orders: context deadline exceeded")
	script <- unfinished
	script <- unfinished
	script <- nil
	write := func(v string) {
		if err := os.WriteFile(path, fmt.Appendf(nil, conf, srv.URI(), v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("v2")
	next("v2") // fails
	next("v2") // retried, fails
	next("v2") // retried, succeeds: no more retries
	if !strings.Contains(logs.String(), "the reload did not finish; applying the file again later") {
		t.Errorf("the retry is not logged:\n%s", logs.String())
	}

	// A rejected configuration waits for the file to change.
	script <- &ReloadError{Problems: []string{"triggers.yaml:1:1: bad"}, err: errors.New("bad")}
	script <- nil
	write("v3")
	next("v3")
	write("v4")
	next("v4") // v3 was not applied again in between
	select {
	case v := <-calls:
		t.Fatalf("reload of %s after a successful one", v)
	default:
	}
}

// testReloader loads the configuration at path and returns the reloader of
// a runner made with opts on client, logging to log.
func testReloader(t *testing.T, client *mongo.Client, path string, log *slog.Logger, opts runner.Options) *reloader {
	t.Helper()
	cfg, err := triggers.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	rn, err := runner.New(cfg, client, store.New(client, cfg.State.Database), opts)
	if err != nil {
		t.Fatal(err)
	}
	return newReloader(path, Env{}, log, cfg, rn, prometheus.NewRegistry())
}
