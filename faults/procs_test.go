package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return addr
}

// tailBuffer keeps the last max bytes written to it (a child's output).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// child is one run of a child process.
type child struct {
	cmd    *exec.Cmd
	out    *tailBuffer
	exited chan struct{}
	err    error // Wait's result, valid once exited is closed
}

func startChild(bin string, out *tailBuffer, stdout io.Writer, args ...string) (*child, error) {
	c := &child{cmd: exec.Command(bin, args...), out: out, exited: make(chan struct{})}
	c.cmd.Stderr = out
	c.cmd.Stdout = stdout
	if stdout == nil {
		c.cmd.Stdout = out
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", filepath.Base(bin), args[0], err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// stop sends SIGTERM and waits for a clean exit; after procTimeout it kills.
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(procTimeout)
	defer t.Stop()
	select {
	case <-c.exited:
		if c.err != nil {
			return fmt.Errorf("stop: exit status: %w", c.err)
		}
		return nil
	case <-t.C:
		c.kill()
		return fmt.Errorf("stop: no exit within %v after SIGTERM", procTimeout)
	}
}

// devdbProc is devdb run as `changehook devdb` on a fixed address and data
// directory, so that it can be killed and restarted where it was.
type devdbProc struct {
	t     *testing.T
	bin   string
	addr  string
	data  string
	extra []string
	out   *tailBuffer
	cur   *child
	uri   string
}

// startDevdb starts devdb on a free port with a fresh data directory; extra
// flags (e.g. --oplog-max-bytes) apply to every (re)start.
func startDevdb(t *testing.T, bin string, extra ...string) *devdbProc {
	t.Helper()
	d := &devdbProc{t: t, bin: bin, addr: freeAddr(t), data: filepath.Join(t.TempDir(), "devdb"),
		extra: extra, out: &tailBuffer{max: 32 << 10}}
	d.start()
	t.Cleanup(func() {
		if d.cur != nil {
			d.cur.kill()
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
		<-c.exited
		_ = pw.Close()
	}()
	timer := time.NewTimer(procTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-first:
		if !ok || !strings.HasPrefix(line, "mongodb://") {
			c.kill()
			d.t.Fatalf("devdb did not print its URI (got %q):\n%s", line, d.out)
		}
		d.uri = line
	case <-timer.C:
		c.kill()
		d.t.Fatalf("devdb not up within %v:\n%s", procTimeout, d.out)
	}
	d.cur = c
}

// kill SIGKILLs devdb.
func (d *devdbProc) kill() {
	d.cur.kill()
	d.cur = nil
}

// runnerProc is `changehook run` on a configuration file, restartable.
type runnerProc struct {
	t     *testing.T
	bin   string
	cfg   string
	admin string
	extra []string
	out   *tailBuffer
	cur   *child
	http  *http.Client
}

func newRunner(t *testing.T, bin, cfg string, extra ...string) *runnerProc {
	r := &runnerProc{t: t, bin: bin, cfg: cfg, admin: freeAddr(t), extra: extra,
		out: &tailBuffer{max: 64 << 10}, http: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(func() {
		if r.cur != nil {
			r.cur.kill()
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
	r.cur.kill()
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
			exited = r.cur.exited
		}
		select {
		case <-exited:
			r.t.Fatalf("runner exited (%v) while waiting for %s:\n%s", r.cur.err, what, r.out)
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
