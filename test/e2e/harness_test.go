// Package e2e holds changehook's end-to-end tests: a devdb in the test
// process, httptest receivers, and changehook itself running as a separate
// process (the test binary re-executed as the changehook command), so that
// it can be killed with SIGKILL and restarted.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/cli"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/internal/testhooks"
)

// runnerEnv marks a re-executed test binary that must behave as the
// changehook command.
const runnerEnv = "CHANGEHOOK_E2E_AS_CLI"

// waitTimeout bounds every wait; nothing normally takes more than a
// fraction of it.
const waitTimeout = 30 * time.Second

// testSecret is the signing key of every test trigger.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// TestMain turns the test binary into the changehook command when
// runnerEnv is set, exactly as cmd/changehook does.
func TestMain(m *testing.M) {
	if os.Getenv(runnerEnv) == "1" {
		// Released read-ahead buffers are overwritten: a read of an
		// event's bytes after the dispatcher released them shows.
		testhooks.PoisonReleased = true
		os.Exit(cli.Main(os.Args[1:], cli.OSEnv("e2e")))
	}
	os.Exit(m.Run())
}

// longFlag asks for the larger runs: go test ./test/e2e -long.
var longFlag = flag.Bool("long", false, "run the larger crash-safety test (also CHANGEHOOK_LONG=1)")

// long reports whether the larger runs were asked for (-long or
// CHANGEHOOK_LONG=1).
func long() bool { return *longFlag || os.Getenv("CHANGEHOOK_LONG") == "1" }

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCLI runs a changehook command in-process and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	code = cli.Run(ctx, args, cli.Env{Stdout: &out, Stderr: &errb, Version: "e2e"})
	return code, out.String(), errb.String()
}

// delivery is one request received by a receiver.
type delivery struct {
	ID        string
	Timestamp string
	Header    http.Header
	Body      []byte
	Event     bson.D // Body decoded as relaxed Extended JSON
	At        time.Time
	Status    int // what the receiver answered
	SigErr    error
	// Batch is the webhook-id of the batch request the event came in ("":
	// a request of one event); ID is then the event's own webhook-id
	// (dispatcher.WebhookID of its resume token), Body the event's
	// element of the array and Events the batch's size.
	Batch  string
	Events int
}

// Token returns the _data of the event's resume token ("" if none).
func (d delivery) Token() string {
	id, _ := lookup(d.Event, "_id").(bson.D)
	s, _ := lookup(id, "_data").(string)
	return s
}

func lookup(doc bson.D, key string) any {
	for _, e := range doc {
		if e.Key == key {
			return e.Value
		}
	}
	return nil
}

// receiver is an httptest webhook endpoint that verifies every signature
// with verifySignature and records every request (a batch request as one
// delivery per event). respond, when set, chooses the answer to the n-th
// request (0-based: the number of deliveries before it).
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	got      []delivery
	inflight int
	maxIn    int
	respond  func(n int, d delivery, w http.ResponseWriter, r *http.Request) int
	changed  chan struct{} // closed and replaced when a request arrives or is answered
}

func newReceiver(t *testing.T) *receiver { return startReceiver(t, false) }

// startReceiver starts a receiver, serving HTTPS (HTTP/1.1, httptest's
// certificate) when https.
func startReceiver(t *testing.T, https bool) *receiver {
	t.Helper()
	rc := &receiver{changed: make(chan struct{})}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	if https {
		rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut by kills
		rc.srv.StartTLS()
	} else {
		rc.srv.Start()
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

// newTLSReceiver is newReceiver serving HTTPS, with its certificate written
// to a PEM file in dir for webhook.tls.ca_file.
func newTLSReceiver(t *testing.T, dir string) (rc *receiver, caFile string) {
	t.Helper()
	rc = startReceiver(t, true)
	caFile = filepath.Join(dir, "receiver-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return rc, caFile
}

func (rc *receiver) URL() string { return rc.srv.URL + "/hook" }

func (rc *receiver) setRespond(f func(n int, d delivery, w http.ResponseWriter, r *http.Request) int) {
	rc.mu.Lock()
	rc.respond = f
	rc.mu.Unlock()
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d := delivery{
		ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
		Header: r.Header.Clone(), Body: body, At: time.Now(),
	}
	d.SigErr = verifySignature(testSecret, d.ID, d.Timestamp, r.Header.Get("webhook-signature"), body, time.Now())
	ds := []delivery{d}
	if bytes.HasPrefix(body, []byte("[")) {
		ds = batchDeliveries(d)
	} else if err := bson.UnmarshalExtJSON(body, false, &ds[0].Event); err != nil {
		ds[0].SigErr = errors.Join(d.SigErr, fmt.Errorf("body is not Extended JSON: %w", err))
	}
	d = ds[0]
	d.Body = body // respond sees the whole request
	rc.mu.Lock()
	n := len(rc.got)
	respond := rc.respond
	rc.inflight++
	rc.maxIn = max(rc.maxIn, rc.inflight)
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()

	d.Status = http.StatusNoContent
	if respond != nil {
		d.Status = respond(n, d, w, r)
	}
	rc.mu.Lock()
	rc.inflight--
	for _, e := range ds {
		e.Status = d.Status
		rc.got = append(rc.got, e)
	}
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
	if d.Status != 0 {
		w.WriteHeader(d.Status)
	}
}

// batchDeliveries splits the batch request d (a JSON array of events)
// into one delivery per event, in the array's order; respond sees the
// first with the whole body.
func batchDeliveries(d delivery) []delivery {
	var elems []json.RawMessage
	if err := json.Unmarshal(d.Body, &elems); err != nil || len(elems) == 0 {
		d.SigErr = errors.Join(d.SigErr, fmt.Errorf("batch body is not a non-empty JSON array: %v", err))
		return []delivery{d}
	}
	out := make([]delivery, len(elems))
	for i, e := range elems {
		ev := d
		ev.Batch, ev.Events, ev.Body, ev.Event = d.ID, len(elems), e, nil
		if err := bson.UnmarshalExtJSON(e, false, &ev.Event); err != nil {
			ev.SigErr = errors.Join(ev.SigErr, fmt.Errorf("batch element %d is not Extended JSON: %w", i, err))
		}
		tok, err := bson.Marshal(lookup(ev.Event, "_id"))
		if err != nil {
			ev.SigErr = errors.Join(ev.SigErr, fmt.Errorf("batch element %d has no resume token: %w", i, err))
		}
		ev.ID = dispatcher.WebhookID(d.Header.Get("X-Changehook-Trigger"), tok)
		out[i] = ev
	}
	return out
}

// deliveries returns a copy of everything received so far.
func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// waitFor waits until cond holds on the deliveries received so far.
func (rc *receiver) waitFor(t *testing.T, what string, cond func([]delivery) bool) []delivery {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		got := append([]delivery(nil), rc.got...)
		changed := rc.changed
		rc.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s (%d deliveries received: %s)", what, len(got), summary(got))
		}
	}
}

// waitInflight waits until at least n requests are being answered at once.
func (rc *receiver) waitInflight(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		in, changed := rc.inflight, rc.changed
		rc.mu.Unlock()
		if in >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d requests in flight (%d)", n, in)
		}
	}
}

// verifySignature is an independent implementation of Standard Webhooks
// verification (https://www.standardwebhooks.com): the signed content is
// "{id}.{timestamp}.{body}", the key is the base64 part of "whsec_...",
// the header is a space-separated list of "v1,{base64 HMAC-SHA256}", and
// the timestamp must be within five minutes of now.
func verifySignature(secret, id, ts, header string, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("bad test secret: %w", err)
	}
	if id == "" || ts == "" || header == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %w", ts, err)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp %s is too far from now", ts)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, part := range strings.Split(header, " ") {
		if v, sig, ok := strings.Cut(part, ","); ok && v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("no v1 signature in %q matches", header)
}

// runner is a changehook process (the re-executed test binary).
type runner struct {
	t        *testing.T
	cmd      *exec.Cmd
	adminURL chan string
	admin    string
	exited   chan struct{}
	exitErr  error
	logMu    sync.Mutex
	logs     bytes.Buffer
	stdout   syncbuf.Buffer
	// token is the admin token get and post send, as a bearer token (""
	// : none): set it for a configuration with admin.token.
	token string
}

// startRunner starts `changehook args...` as a child process and waits
// until its admin server is up.
func startRunner(t *testing.T, args ...string) *runner {
	t.Helper()
	return startRunnerEnv(t, nil, args...)
}

// startRunnerEnv is startRunner with extra environment variables (NAME=value).
func startRunnerEnv(t *testing.T, env []string, args ...string) *runner {
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
		if t.Failed() {
			t.Logf("changehook %v logs:\n%s", args, r.logText())
		}
	})
	select {
	case r.admin = <-r.adminURL:
	case <-r.exited:
		t.Fatalf("changehook exited before starting: %v\n%s", r.exitErr, r.logText())
	case <-time.After(waitTimeout):
		t.Fatalf("changehook did not start its admin server\n%s", r.logText())
	}
	return r
}

func (r *runner) readLogs(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		r.logMu.Lock()
		r.logs.Write(line)
		r.logs.WriteByte('\n')
		r.logMu.Unlock()
		var rec struct {
			Msg string `json:"msg"`
			URL string `json:"url"`
		}
		if !sent && json.Unmarshal(line, &rec) == nil && rec.Msg == "admin server listening" {
			r.adminURL <- rec.URL
			sent = true
		}
	}
	r.exitErr = r.cmd.Wait()
	close(r.exited)
}

func (r *runner) logText() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.logs.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (r *runner) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
}

// stop sends SIGTERM and returns the exit code.
func (r *runner) stop() int {
	r.t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(waitTimeout):
		r.t.Fatalf("changehook did not stop after SIGTERM\n%s", r.logText())
	}
	return r.cmd.ProcessState.ExitCode()
}

// get fetches an admin endpoint, with r.token when set.
func (r *runner) get(path string) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.admin+path, nil)
	if err != nil {
		r.t.Fatalf("GET %s: %v", path, err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitReady polls /readyz until it answers 200.
func (r *runner) waitReady() {
	r.t.Helper()
	r.waitAdmin("/readyz", func(code int, _ []byte) bool { return code == http.StatusOK })
}

// waitAdmin polls an admin endpoint until cond holds.
func (r *runner) waitAdmin(path string, cond func(int, []byte) bool) []byte {
	r.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		code, body := r.get(path)
		if cond(code, body) {
			return body
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out polling %s: last %d %s\n%s", path, code, body, r.logText())
		}
		select {
		case <-tick.C:
		case <-r.exited:
			r.t.Fatalf("changehook exited: %v\n%s", r.exitErr, r.logText())
		}
	}
}

// runArgs are the flags of every test runner: a free admin port and JSON
// logs (the harness reads the admin URL from them).
func runArgs(cfg string, extra ...string) []string {
	return append([]string{"run", "-c", cfg, "--admin-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info", "--grace", "5s"}, extra...)
}

// summary lists the operation types and document keys of the first
// deliveries, for failure messages.
func summary(ds []delivery) string {
	var parts []string
	for i, d := range ds {
		if i == 20 {
			parts = append(parts, "…")
			break
		}
		key, _ := lookup(d.Event, "documentKey").(bson.D)
		parts = append(parts, fmt.Sprintf("%v:%v→%d", lookup(d.Event, "operationType"), lookup(key, "_id"), d.Status))
	}
	return strings.Join(parts, " ")
}
