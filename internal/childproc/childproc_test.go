package childproc

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a child process: "sleep" sleeps
// until killed (a SIGTERM ends it with status 0), "ignore-term" does too but
// ignores SIGTERM, "exit3" prints and exits 3. "sleep" and "ignore-term"
// print readyLine once their SIGTERM handling is in place.
const helperEnv = "CHILDPROC_TEST_HELPER"

// readyLine is what a helper prints once it handles SIGTERM its way.
const readyLine = "ready\n"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "sleep":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		_, _ = os.Stdout.WriteString(readyLine)
		<-ch
		os.Exit(0)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		_, _ = os.Stdout.WriteString(readyLine)
		time.Sleep(time.Hour)
	case "exit3":
		_, _ = os.Stdout.WriteString("hello from the child\n")
		os.Exit(3)
	}
	os.Exit(99)
}

func helper(t *testing.T, mode string, out io.Writer) *Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stdout, cmd.Stderr = out, out
	p, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-p.Exited():
		default:
			p.Kill()
		}
	})
	return p
}

// readyOut is a helper's output that reports when the helper printed
// readyLine.
type readyOut struct {
	TailBuffer
	once  sync.Once
	ready chan struct{}
}

func newReadyOut() *readyOut {
	return &readyOut{TailBuffer: TailBuffer{Max: 1 << 10}, ready: make(chan struct{})}
}

func (o *readyOut) Write(p []byte) (int, error) {
	n, err := o.TailBuffer.Write(p)
	if strings.Contains(o.String(), readyLine) {
		o.once.Do(func() { close(o.ready) })
	}
	return n, err
}

// helperReady starts helper mode and waits until it handles SIGTERM its way:
// a signal sent before that would meet Go's default handling and kill it.
func helperReady(t *testing.T, mode string) *Proc {
	t.Helper()
	out := newReadyOut()
	p := helper(t, mode, out)
	select {
	case <-out.ready:
	case <-p.Exited():
		t.Fatalf("helper %s exited before it was ready: %v\n%s", mode, p.Err(), out.String())
	case <-time.After(30 * time.Second): // a hang detector, not a speed check
		t.Fatalf("helper %s not ready in 30s:\n%s", mode, out.String())
	}
	return p
}

func TestFreeAddr(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("FreeAddr = %q, want a 127.0.0.1 address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	_ = ln.Close()
}

func TestTailBuffer(t *testing.T) {
	b := &TailBuffer{Max: 5}
	for _, s := range []string{"ab", "cdef", "g"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "cdefg" {
		t.Fatalf("String() = %q, want %q", got, "cdefg")
	}
}

func TestExitStatusAndOutput(t *testing.T) {
	out := &TailBuffer{Max: 1 << 10}
	p := helper(t, "exit3", out)
	<-p.Exited()
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Err() = %v, want exit status 3", err)
	}
	if p.Cmd.ProcessState == nil {
		t.Fatal("ProcessState not set after exit")
	}
	if !strings.Contains(out.String(), "hello from the child") {
		t.Fatalf("output %q lacks the child's line", out.String())
	}
}

func TestStopClean(t *testing.T) {
	p := helperReady(t, "sleep")
	if !p.Stop(10 * time.Second) {
		t.Fatal("Stop = false, want a clean exit on SIGTERM")
	}
	if err := p.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := helperReady(t, "ignore-term")
	if p.Stop(100 * time.Millisecond) {
		t.Fatal("Stop = true for a child that ignores SIGTERM")
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned before the child was gone")
	}
}

func TestKill(t *testing.T) {
	p := helper(t, "sleep", &TailBuffer{Max: 1 << 10})
	p.Kill()
	if p.Err() == nil {
		t.Fatal("Err() = nil after SIGKILL")
	}
}
