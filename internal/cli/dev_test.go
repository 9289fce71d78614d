package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/demo"
	"github.com/changehook/changehook/triggers"
)

// startDevIn runs `changehook dev args...` in-process with its runtime
// file in rtDir and vars as its environment, until the returned stop is
// called (which returns dev's exit code). reload, when not nil, sends
// reload requests. It returns once ready(stdout, stderr) holds.
func startDevIn(t *testing.T, rtDir string, vars map[string]string, reload <-chan struct{}, ready func(stdout, stderr string) bool,
	args ...string) (stdout, stderr *signalWriter, stop func() int) {
	t.Helper()
	stdout = &signalWriter{ready: make(chan struct{})}
	stderr = &signalWriter{ready: make(chan struct{})}
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
			t.Fatalf("dev did not stop\n%s%s", stdout, stderr)
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	deadline := time.After(30 * time.Second)
	for !ready(stdout.String(), stderr.String()) {
		select {
		case code := <-done:
			stopped = true
			t.Fatalf("dev exited with %d before it was ready:\n%s%s", code, stdout, stderr)
		case <-deadline:
			t.Fatalf("dev was not ready in 30 s:\n%s%s", stdout, stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return stdout, stderr, stop
}

// running: dev's triggers run (it must log at info).
func running(_, stderr string) bool { return strings.Contains(stderr, "changehook running") }

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
	_, stderr, stop := startDevIn(t, rtDir, nil, reload, running,
		"-c", cfg, "--addr", "127.0.0.1:0", "--admin-addr", "off", "--log-level", "info")
	// The line names the process to send SIGHUP to.
	if pid := "pid=" + strconv.Itoa(os.Getpid()); !strings.Contains(stderr.String(), pid) {
		t.Errorf("the \"changehook running\" line has no %s:\n%s", pid, stderr)
	}

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

// TestDevPrintsTheAdminURL: dev's banner has an admin line with the URL
// the admin server listens on (port 0 resolved), also for the demo, whose
// logs are at warn and so hide "admin server listening"; the runtime file
// records it.
func TestDevPrintsTheAdminURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	demoURL := "http://" + ln.Addr().String() + "/hooks/stock"
	ln.Close()
	rtDir := t.TempDir()
	stdout, _, stop := startDevIn(t, rtDir, map[string]string{"CHANGEHOOK_DEMO_URL": demoURL}, nil,
		func(stdout, _ string) bool { return strings.Contains(stdout, "Press Ctrl-C to stop.") },
		"--demo", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	banner := stdout.String()
	m := regexp.MustCompile(`(?m)^admin      (http://127\.0\.0\.1:(\d+))  \(console`).FindStringSubmatch(banner)
	if m == nil || m[2] == "0" {
		t.Fatalf("no admin line with the listening URL in dev's banner:\n%s", banner)
	}
	if strings.Index(banner, "admin      ") > strings.Index(banner, "Press Ctrl-C to stop.") {
		t.Errorf("the admin line comes after \"Press Ctrl-C to stop.\":\n%s", banner)
	}
	resp, err := http.Get(m[1] + "/healthz")
	if err != nil {
		t.Fatalf("GET %s/healthz: %v", m[1], err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s/healthz = %d", m[1], resp.StatusCode)
	}
	b, err := os.ReadFile(filepath.Join(rtDir, devRuntimeFile))
	if err != nil {
		t.Fatal(err)
	}
	var rt devRuntime
	if err := json.Unmarshal(b, &rt); err != nil || rt.Admin != m[1] {
		t.Errorf("runtime file %s: admin %q, want %q (%v)", b, rt.Admin, m[1], err)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("dev: exit %d\n%s", code, stdout)
	}
}

// TestDevPartitionsChangeWayOut: under dev, a reload changing a trigger's
// partitions (its checkpoints under the old partitioning) fails the new
// partitions with a way out that works while dev runs: `changehook resume
// NAME --from now`, not `checkpoints repartition`, which is refused beside
// a running dev.
func TestDevPartitionsChangeWayOut(t *testing.T) {
	file := filepath.Join(t.TempDir(), "triggers.yaml")
	writePartitions := func(n int) {
		s := fmt.Sprintf("triggers:\n  - name: orders\n    database: shop\n    collection: orders\n    ordering: per_document\n    partitions: %d\n"+
			"    webhook: {url: \"http://127.0.0.1:1/orders\"}\n", n)
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePartitions(2)
	rtDir := t.TempDir()
	reload := make(chan struct{}, 1)
	_, stderr, stop := startDevIn(t, rtDir, nil, reload, running,
		"-c", file, "--addr", "127.0.0.1:0", "--admin-addr", "off", "--log-level", "info")
	defer stop()
	// As waitFor polls the log: until both partitions saved a checkpoint.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, out, _ := runWith(t, rtDir, nil, "checkpoints", "list")
		if strings.Contains(out, "orders/p0of2") && strings.Contains(out, "orders/p1of2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoints of both partitions:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	writePartitions(3)
	reload <- struct{}{}
	waitFor(t, stderr, "refuse to start")
	line := ""
	for l := range strings.Lines(stderr.String()) {
		if strings.Contains(l, "refuse to start") {
			line = l
		}
	}
	if !strings.Contains(line, "changehook resume orders --from now") || strings.Contains(line, "checkpoints repartition --trigger") {
		t.Fatalf("the reload's way out under dev is not resume --from now:\n%s", line)
	}
	if code, out, errOut := runWith(t, rtDir, nil, "resume", "orders", "--from", "now"); code != ExitOK {
		t.Errorf("the way out (resume orders --from now) = exit %d:\n%s%s", code, out, errOut)
	}
}

// TestDevDemoBannerNamesTheReceiversSecret: the demo receiver checks
// signatures with the demo trigger's own secrets, so the banner names
// the demo secret only for the built-in configuration; with -c FILE it
// names FILE's trigger, and with no secret it says nothing is checked.
func TestDevDemoBannerNamesTheReceiversSecret(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		secrets    []triggers.Secret
		want       string
	}{
		{"built-in", demo.ConfigName, []triggers.Secret{"whsec_a"}, "verifies its signature with the demo secret"},
		{"a file's secret", "my.yaml", []triggers.Secret{"whsec_a"}, "verifies its signature with trigger low_stock's secret from my.yaml"},
		{"a file's two secrets", "my.yaml", []triggers.Secret{"whsec_a", "whsec_b"}, "verifies its signature with trigger low_stock's 2 secrets from my.yaml"},
		{"no secret", "my.yaml", nil, "checks no signature: trigger low_stock has no secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &triggers.Trigger{Name: "low_stock", Webhook: triggers.Webhook{Secrets: tc.secrets}}
			if got := receiverCheck(tc.path, tr); got != tc.want {
				t.Errorf("receiverCheck(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/hooks/stock"
	ln.Close()
	cfg := writeConfig(t, `
triggers:
  - name: stock
    database: shop
    collection: items
    webhook:
      url: "`+url+`"
      secret: whsec_EZQGwCu/jl8apnj/X5Y+X2MOFX/knB2EvA4g1VC4694=
`)
	stdout, _, stop := startDevIn(t, t.TempDir(), nil, nil,
		func(stdout, _ string) bool { return strings.Contains(stdout, "Press Ctrl-C to stop.") },
		"-c", cfg, "--demo", "--addr", "127.0.0.1:0", "--admin-addr", "off")
	want := "receiver   http://" + ln.Addr().String() + "  (prints every delivery; verifies its signature with trigger stock's secret from " + cfg + ")\n"
	if !strings.Contains(stdout.String(), want) {
		t.Errorf("dev -c FILE --demo's banner has no line %q:\n%s", want, stdout)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("dev: exit %d\n%s", code, stdout)
	}
}
