package childproc

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a child process: "sleep" sleeps
// until killed, "ignore-term" does too but ignores SIGTERM, "exit3" prints
// and exits 3.
const helperEnv = "CHILDPROC_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "sleep":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		<-ch
		os.Exit(0)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(time.Hour)
	case "exit3":
		_, _ = os.Stdout.WriteString("hello from the child\n")
		os.Exit(3)
	}
	os.Exit(99)
}

func helper(t *testing.T, mode string, out *TailBuffer) *Proc {
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
	p := helper(t, "sleep", &TailBuffer{Max: 1 << 10})
	time.Sleep(200 * time.Millisecond) // let it install its SIGTERM handler
	if !p.Stop(10 * time.Second) {
		t.Fatal("Stop = false, want a clean exit on SIGTERM")
	}
	if err := p.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := helper(t, "ignore-term", &TailBuffer{Max: 1 << 10})
	time.Sleep(200 * time.Millisecond) // let it ignore SIGTERM
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
