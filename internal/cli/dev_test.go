package cli

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// startDevIn runs `changehook dev args...` in-process with its runtime
// file in rtDir and env's variables, until the returned stop is called
// (which returns dev's exit code). It returns once the triggers run (dev
// logs "changehook running"; args must ask for --log-level info).
func startDevIn(t *testing.T, rtDir string, vars map[string]string, reload <-chan struct{}, stdout io.Writer, args ...string) (stderr *signalWriter, stop func() int) {
	t.Helper()
	stderr = &signalWriter{want: "changehook running", ready: make(chan struct{})}
	env := Env{Stdout: stdout, Stderr: stderr, Version: "v0", RuntimeDir: rtDir,
		LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	if reload != nil {
		env.WatchReload = func() (<-chan struct{}, func()) { return reload, func() {} }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, append([]string{"dev"}, args...), env) }()
	stopped := false
	stop = func() int {
		t.Helper()
		if stopped {
			return ExitOK
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatalf("dev did not stop\n%s", stderr)
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	select {
	case <-stderr.ready:
	case code := <-done:
		stopped = true
		t.Fatalf("dev exited with %d before running its triggers:\n%s", code, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("dev did not start\n%s", stderr)
	}
	return stderr, stop
}

// waitFor polls w until it contains want.
func waitFor(t *testing.T, w *signalWriter, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in:\n%s", want, w)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDevIgnoresTheFilesMongoURI: dev replaces mongodb.uri with its devdb's,
// so `uri: ${MONGODB_URI}` (as README recommends) needs no MONGODB_URI: not
// at start, not on a reload, and not in the commands that use the running
// dev's configuration.
func TestDevIgnoresTheFilesMongoURI(t *testing.T) {
	cfg := writeConfig(t, `
mongodb:
  uri: ${MONGODB_URI}
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/orders" }
`)
	rtDir := t.TempDir()
	reload := make(chan struct{}, 1)
	stderr, stop := startDevIn(t, rtDir, nil, reload, io.Discard,
		"-c", cfg, "--addr", "127.0.0.1:0", "--admin-addr", "off", "--log-level", "info")

	reload <- struct{}{}
	waitFor(t, stderr, "configuration reloaded")

	t.Chdir(t.TempDir()) // no triggers.yaml: the dev's configuration
	if code, out, errOut := runWith(t, rtDir, nil, "validate"); code != ExitOK {
		t.Errorf("validate with the running dev: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runWith(t, rtDir, nil, "checkpoints", "list"); code != ExitOK {
		t.Errorf("checkpoints list with the running dev: exit %d\n%s%s", code, out, errOut)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("dev: exit %d\n%s", code, stderr)
	}
	if s := stderr.String(); strings.Contains(s, "MONGODB_URI") {
		t.Errorf("dev asked for MONGODB_URI:\n%s", s)
	}
}
