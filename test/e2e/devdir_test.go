package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/cli"
)

// devLine is dev's first line: "devdb      URI  (data in DIR, removed on exit; ...)".
var devLine = regexp.MustCompile(`devdb\s+(\S+)\s+\(data in (\S+), removed on exit`)

// startDev runs `changehook dev -c cfg` with TMPDIR=tmp and returns it with
// its devdb URI and data directory.
func startDev(t *testing.T, tmp, cfg string, extra ...string) (r *runner, uri, dir string) {
	t.Helper()
	args := append([]string{"dev", "-c", cfg, "--admin-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}, extra...)
	r = startRunnerEnv(t, []string{"TMPDIR=" + tmp}, args...)
	deadline := time.Now().Add(waitTimeout)
	for {
		if m := devLine.FindStringSubmatch(r.stdout.String()); m != nil {
			uri, dir = m[1], m[2]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev printed no devdb line:\n%s\n%s", r.stdout.String(), r.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.HasPrefix(dir, tmp) {
		t.Fatalf("dev's data directory %s is not under TMPDIR %s", dir, tmp)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("dev's data directory: %v", err)
	}
	return r, uri, dir
}

// waitExit waits for r to exit and returns its exit code.
func (r *runner) waitExit() int {
	r.t.Helper()
	select {
	case <-r.exited:
	case <-time.After(waitTimeout):
		r.t.Fatalf("changehook did not exit\n%s", r.logText())
	}
	return r.cmd.ProcessState.ExitCode()
}

func gone(t *testing.T, dir, when string) {
	t.Helper()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s: data directory %s still exists (stat: %v)", when, dir, err)
	}
}

// TestDevRemovesItsDataDirectory: dev's temporary data directory is removed
// after a stop whose grace period a delivery outlasts (dev says so), after
// SIGINT, after SIGTERM, after a second SIGINT that ends a slow
// graceful shutdown at once, and after an error; when dev is SIGKILLed, the
// next dev removes the leftover.
func TestDevRemovesItsDataDirectory(t *testing.T) {
	rc := newReceiver(t)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	rc.setRespond(func(_ int, _ delivery, _ http.ResponseWriter, r *http.Request) int {
		select { // every delivery hangs: a graceful shutdown waits for --grace
		case <-r.Context().Done():
		case <-hang:
		}
		return 0
	})
	tmp := t.TempDir()
	cfg := writeFile(t, t.TempDir(), "dev.yaml", baseConfig("mongodb://127.0.0.1:1", rc.URL())+`
  - name: d
    database: e2e
    collection: d
    webhook: { timeout: 1m }
`)

	t.Run("grace period ends first", func(t *testing.T) {
		// A delivery that outlasts --grace: dev says it did not finish
		// rather than that every in-flight delivery did.
		r, uri, dir := startDev(t, tmp, cfg, "--grace", "100ms")
		r.waitReady()
		client, err := mongo.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = client.Disconnect(context.Background()) }()
		if _, err := client.Database("e2e").Collection("d").InsertOne(context.Background(), bson.D{{Key: "_id", Value: 2}}); err != nil {
			t.Fatal(err)
		}
		rc.waitInflight(t, 1)
		if code := r.stop(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		out := r.stdout.String()
		if want := "stopped: 1 event unfinished when the grace period (100ms) ended; checkpoints saved before them: " +
			"they go with the temporary data (with --data DIR a next dev delivers them again)."; !strings.Contains(out, want) ||
			strings.Contains(out, "in-flight deliveries finished") {
			t.Errorf("stdout\n%s\nwant %q", out, want)
		}
		gone(t, dir, "after the grace period ended")
	})
	t.Run("SIGINT", func(t *testing.T) {
		r, _, dir := startDev(t, tmp, cfg)
		r.waitReady()
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		if code := r.waitExit(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		gone(t, dir, "after SIGINT")
	})
	t.Run("SIGINT twice at once", func(t *testing.T) {
		// GNU timeout without --foreground signals the process and then
		// its process group: one stop request, delivered twice.
		r, _, dir := startDev(t, tmp, cfg)
		r.waitReady()
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		if code := r.waitExit(); code != 0 {
			t.Errorf("exit code %d, want 0 (a graceful stop)", code)
		}
		if out := r.stdout.String(); !strings.Contains(out, "stopped: in-flight deliveries finished") {
			t.Errorf("dev did not stop gracefully:\n%s\n%s", out, r.logText())
		}
		gone(t, dir, "after SIGINT twice at once")
	})
	t.Run("SIGTERM", func(t *testing.T) {
		r, _, dir := startDev(t, tmp, cfg)
		r.waitReady()
		if code := r.stop(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		gone(t, dir, "after SIGTERM")
	})
	t.Run("second SIGINT", func(t *testing.T) {
		r, uri, dir := startDev(t, tmp, cfg, "--grace", "1m")
		r.waitReady()
		client, err := mongo.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = client.Disconnect(context.Background()) }()
		if _, err := client.Database("e2e").Collection("d").InsertOne(context.Background(), bson.D{{Key: "_id", Value: 1}}); err != nil {
			t.Fatal(err)
		}
		rc.waitInflight(t, 1) // the graceful shutdown now waits up to a minute
		// Without the second one, the graceful shutdown would wait a minute.
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		r.waitLog("stopping: in-flight deliveries may finish")
		// The process took the first signal before it logged that: one
		// sooner than the window after it would be the first delivered
		// twice.
		time.Sleep(cli.DuplicateSignalWindow + 10*time.Millisecond)
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		if code := r.waitExit(); code != 130 {
			t.Errorf("exit code %d after a second SIGINT, want 130", code)
		}
		gone(t, dir, "after a second SIGINT")
	})
	t.Run("SIGKILL then the next dev", func(t *testing.T) {
		r, _, dir := startDev(t, tmp, cfg)
		r.waitReady()
		r.kill()
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("after SIGKILL the directory is expected to remain until the next dev: %v", err)
		}
		r2, _, dir2 := startDev(t, tmp, cfg)
		gone(t, dir, "after the next dev started")
		if !strings.Contains(r2.logText(), "removed the data directory of a dev that did not exit cleanly") {
			t.Errorf("the next dev did not log the removal:\n%s", r2.logText())
		}
		if code := r2.stop(); code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		gone(t, dir2, "after SIGTERM")
	})
	t.Run("error", func(t *testing.T) {
		// The admin address is taken: dev fails after devdb started.
		r, _, _ := startDev(t, tmp, cfg)
		r.waitReady()
		addr := strings.TrimPrefix(r.admin, "http://")
		r2 := startRunnerEnvNoAdmin(t, []string{"TMPDIR=" + tmp}, "dev", "-c", cfg, "--admin-addr", addr, "--log-format", "json")
		if code := r2.waitExit(); code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		m := devLine.FindStringSubmatch(r2.stdout.String())
		if m == nil {
			t.Fatalf("failing dev printed no devdb line:\n%s\n%s", r2.stdout.String(), r2.logText())
		}
		gone(t, m[2], "after an error")
		_ = r.stop()
	})
}

// startRunnerEnvNoAdmin starts changehook like startRunnerEnv without
// waiting for its admin server (for a run expected to fail).
func startRunnerEnvNoAdmin(t *testing.T, env []string, args ...string) *runner {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runnerEnv+"=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, cmd: cmd, adminURL: make(chan string, 1), exited: make(chan struct{})}
	cmd.Stdout = &r.stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start changehook: %v", err)
	}
	go r.readLogs(stderr)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.exited
	})
	return r
}

// waitLog waits until r logged a line containing text.
func (r *runner) waitLog(text string) {
	r.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(r.logText(), text) {
		if time.Now().After(deadline) {
			r.t.Fatalf("changehook did not log %q\n%s", text, r.logText())
		}
		select {
		case <-r.exited:
			r.t.Fatalf("changehook exited before logging %q: %v\n%s", text, r.exitErr, r.logText())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
