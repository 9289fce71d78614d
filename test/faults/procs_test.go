package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/childproc"
)

// procTimeout bounds how long a child process may take to come up or stop.
const procTimeout = 30 * time.Second

// buildChangehook compiles ./cmd/changehook into a temporary directory.
func buildChangehook(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "changehook")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/changehook/changehook/cmd/changehook")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build changehook: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := childproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// child is one run of a child process.
type child struct{ *childproc.Proc }

func startChild(bin string, out *childproc.TailBuffer, stdout io.Writer, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = out
	cmd.Stdout = stdout
	if stdout == nil {
		cmd.Stdout = out
	}
	p, err := childproc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s %s: %w", filepath.Base(bin), args[0], err)
	}
	return &child{p}, nil
}

// stop sends SIGTERM and waits for a clean exit; after procTimeout it kills.
func (c *child) stop() error {
	if !c.Stop(procTimeout) {
		return fmt.Errorf("stop: no exit within %v after SIGTERM", procTimeout)
	}
	if err := c.Err(); err != nil {
		return fmt.Errorf("stop: exit status: %w", err)
	}
	return nil
}

// devdbProc is devdb run as `changehook devdb` on a fixed address and data
// directory, so that it can be killed and restarted where it was.
type devdbProc struct {
	t     *testing.T
	bin   string
	addr  string
	data  string
	extra []string
	out   *childproc.TailBuffer
	cur   *child
	uri   string
}

// startDevdb starts devdb on a free port with a fresh data directory; extra
// flags (e.g. --oplog-max-bytes) apply to every (re)start.
func startDevdb(t *testing.T, bin string, extra ...string) *devdbProc {
	t.Helper()
	d := &devdbProc{t: t, bin: bin, addr: freeAddr(t), data: filepath.Join(t.TempDir(), "devdb"),
		extra: extra, out: &childproc.TailBuffer{Max: 32 << 10}}
	d.start()
	t.Cleanup(func() {
		if d.cur != nil {
			d.cur.Kill()
		}
	})
	return d
}

// start runs devdb and waits for the connection string it prints.
func (d *devdbProc) start() {
	d.t.Helper()
	pr, pw := io.Pipe()
	args := append([]string{"devdb", "--addr", d.addr, "--data", d.data}, d.extra...)
	c, err := startChild(d.bin, d.out, pw, args...)
	if err != nil {
		d.t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		_, _ = io.Copy(d.out, pr)
	}()
	go func() {
		<-c.Exited()
		_ = pw.Close()
	}()
	timer := time.NewTimer(procTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-first:
		if !ok || !strings.HasPrefix(line, "mongodb://") {
			c.Kill()
			d.t.Fatalf("devdb did not print its URI (got %q):\n%s", line, d.out)
		}
		d.uri = line
	case <-timer.C:
		c.Kill()
		d.t.Fatalf("devdb not up within %v:\n%s", procTimeout, d.out)
	}
	d.cur = c
}

// kill SIGKILLs devdb.
func (d *devdbProc) kill() {
	d.cur.Kill()
	d.cur = nil
}

// runnerProc is `changehook run` on a configuration file, restartable.
type runnerProc struct {
	t     *testing.T
	bin   string
	cfg   string
	admin string
	extra []string
	out   *childproc.TailBuffer
	cur   *child
	http  *http.Client
}

func newRunner(t *testing.T, bin, cfg string, extra ...string) *runnerProc {
	r := &runnerProc{t: t, bin: bin, cfg: cfg, admin: freeAddr(t), extra: extra,
		out: &childproc.TailBuffer{Max: 64 << 10}, http: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(func() {
		if r.cur != nil {
			r.cur.Kill()
		}
	})
	return r
}

// start starts the runner and, when ready is set, waits until every
// enabled trigger's change stream is open (/readyz).
func (r *runnerProc) start(ready bool) {
	r.t.Helper()
	args := append([]string{"run", "-c", r.cfg, "--admin-addr", r.admin, "--log-level", "warn", "--grace", "10s"}, r.extra...)
	c, err := startChild(r.bin, r.out, nil, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.cur = c
	if ready {
		r.waitFor("ready (/readyz)", func() bool { return r.get("/readyz", nil) == nil })
	}
}

// kill SIGKILLs the runner.
func (r *runnerProc) kill() {
	r.cur.Kill()
	r.cur = nil
}

// stop stops the runner gracefully (SIGTERM) and checks it exited 0.
func (r *runnerProc) stop() {
	r.t.Helper()
	err := r.cur.stop()
	r.cur = nil
	if err != nil {
		r.t.Fatalf("runner %v:\n%s", err, r.out)
	}
}

// get fetches an admin path; into (if not nil) receives the JSON body.
func (r *runnerProc) get(path string, into any) error {
	resp, err := r.http.Get("http://" + r.admin + path)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if into == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(into)
}

// triggerStatus is the part of /api/triggers the suite reads.
type triggerStatus struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	StreamOpen bool              `json:"stream_open"`
	LastError  string            `json:"last_error"`
	Deliveries map[string]uint64 `json:"deliveries"`
	Attempts   map[string]uint64 `json:"attempts"`
}

// failedAttempts sums the failed delivery attempts of every trigger.
func (r *runnerProc) failedAttempts() (uint64, error) {
	var resp struct {
		Triggers []triggerStatus `json:"triggers"`
	}
	if err := r.get("/api/triggers", &resp); err != nil {
		return 0, err
	}
	var n uint64
	for _, s := range resp.Triggers {
		for reason, c := range s.Attempts {
			if reason != "ok" {
				n += c
			}
		}
	}
	return n, nil
}

// status returns the trigger named name from /api/triggers.
func (r *runnerProc) status(name string) (triggerStatus, error) {
	var resp struct {
		Triggers []triggerStatus `json:"triggers"`
	}
	if err := r.get("/api/triggers", &resp); err != nil {
		return triggerStatus{}, err
	}
	for _, s := range resp.Triggers {
		if s.Name == name {
			return s, nil
		}
	}
	return triggerStatus{}, fmt.Errorf("no trigger %q in /api/triggers", name)
}

// waitFor polls cond (a query of a child process, which cannot notify us)
// every 20 ms until it holds; it fails the test after procTimeout or if the
// runner exits.
func (r *runnerProc) waitFor(what string, cond func() bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		var exited <-chan struct{}
		if r.cur != nil {
			exited = r.cur.Exited()
		}
		select {
		case <-exited:
			r.t.Fatalf("runner exited (%v) while waiting for %s:\n%s", r.cur.Err(), what, r.out)
		case <-ctx.Done():
			r.t.Fatalf("runner: not %s within %v:\n%s", what, procTimeout, r.out)
		case <-tick.C:
		}
	}
}

// checkpointsReset runs `changehook checkpoints reset --trigger name`.
func checkpointsReset(t *testing.T, bin, cfg, name string) string {
	t.Helper()
	out, err := exec.Command(bin, "checkpoints", "reset", "-c", cfg, "--trigger", name).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("checkpoints reset exited %d:\n%s", ee.ExitCode(), out)
		}
		t.Fatalf("checkpoints reset: %v", err)
	}
	return string(out)
}

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
