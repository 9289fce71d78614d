//go:build unix

package cli

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/childproc"
)

// TestConsoleWriterClosedPipe: a consoleWriter passes writes through until
// one fails with EPIPE (its reader is gone); that write and every later one
// succeed without being written, and broken is called once, whoever writes.
func TestConsoleWriterClosedPipe(t *testing.T) {
	tests := []struct {
		name        string
		closeReader bool
		writes      int
		wantBroken  int
	}{
		{name: "reader open", writes: 3},
		{name: "reader closed", closeReader: true, writes: 3, wantBroken: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			defer r.Close()
			broken := 0
			cw := &consoleWriter{w: w, broken: func() { broken++ }}
			if tt.closeReader {
				r.Close()
			}
			for i := range tt.writes {
				if n, err := cw.Write([]byte("line\n")); n != 5 || err != nil {
					t.Fatalf("write %d = %d, %v; want 5, nil", i, n, err)
				}
			}
			if broken != tt.wantBroken {
				t.Errorf("broken called %d times, want %d", broken, tt.wantBroken)
			}
			if !tt.closeReader {
				w.Close()
				b := make([]byte, 64)
				if n, _ := r.Read(b); n == 0 {
					t.Error("nothing written through an open pipe")
				}
			}
		})
	}
}

// TestConsoleStopsOnce: an EPIPE on standard output says so on standard
// error and requests the stop; a later EPIPE on standard error requests
// nothing more.
func TestConsoleStopsOnce(t *testing.T) {
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errW.Close()
	stops := 0
	unwatched := make(chan struct{})
	close(unwatched) // writes alone tell here
	env := consoleStops(Env{Stdout: outW, Stderr: errW}, func() { stops++ }, unwatched)
	outR.Close()
	if _, err := env.Stdout.Write([]byte("delivery\n")); err != nil {
		t.Fatalf("write to the closed stdout: %v", err)
	}
	line, err := bufio.NewReader(errR).ReadString('\n')
	if err != nil || !strings.Contains(line, "standard output is closed") {
		t.Errorf("stderr = %q, %v; want it to say standard output is closed", line, err)
	}
	errR.Close()
	if _, err := env.Stderr.Write([]byte("log\n")); err != nil {
		t.Fatalf("write to the closed stderr: %v", err)
	}
	if stops != 1 {
		t.Errorf("stop requested %d times, want 1", stops)
	}
}

// TestConsoleNoticesClosedPipeWithoutWriting: a serving command whose
// standard output is a pipe notices its reader exiting without writing to
// it (`changehook devdb | head -1`: devdb writes nothing after its first
// lines): it says so on standard error and requests the stop, once; while
// the reader is there, nothing happens, and once done is closed the pipe
// is no longer watched.
func TestConsoleNoticesClosedPipeWithoutWriting(t *testing.T) {
	for _, tc := range []struct {
		name        string
		closeReader bool
		closeDone   bool
		wantStops   int32
		wantStderr  string
	}{
		{name: "reader exits", closeReader: true, wantStops: 1,
			wantStderr: "changehook: stopping: standard output is closed (the program reading it exited)\n"},
		{name: "reader stays", wantStops: 0},
		{name: "reader exits after done", closeReader: true, closeDone: true, wantStops: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outR, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer outW.Close()
			defer outR.Close()
			var stops atomic.Int32
			var stderr lockedBuffer
			done := make(chan struct{})
			consoleStops(Env{Stdout: outW, Stderr: &stderr}, func() { stops.Add(1) }, done)
			if tc.closeDone {
				close(done)
				time.Sleep(2 * pipePollInterval * time.Millisecond) // the watcher's wait ends, sees done
			} else {
				defer close(done)
			}
			if tc.closeReader {
				outR.Close()
			}
			deadline := time.Now().Add(5 * time.Second)
			for tc.wantStops > 0 && stops.Load() < tc.wantStops && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if tc.wantStops == 0 {
				time.Sleep(3 * pipePollInterval * time.Millisecond)
			}
			if got := stops.Load(); got != tc.wantStops || stderr.String() != tc.wantStderr {
				t.Errorf("stop requested %d times, stderr %q; want %d, %q", got, stderr.String(), tc.wantStops, tc.wantStderr)
			}
		})
	}
}

// lockedBuffer is a strings.Builder safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const mainProcessEnv = "CHANGEHOOK_TEST_MAIN_PROCESS"

// TestMainProcess is not a test: it runs Main on the arguments after "--"
// in a child process started by a test (with mainProcessEnv set).
func TestMainProcess(t *testing.T) {
	if os.Getenv(mainProcessEnv) != "1" {
		t.Skip("run as a child process only")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(Main(args, OSEnv("dev")))
}

// TestDevStopsWhenStdoutReaderExits: `changehook dev --demo | head -N`:
// once the program reading dev's output is gone, dev is not killed by
// SIGPIPE but stops gracefully, exit 0, and removes its temporary data
// directory, whether it was still starting or already delivering.
func TestDevStopsWhenStdoutReaderExits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dev in a child process")
	}
	tests := []struct {
		name     string
		lastRead string // the reader exits after the line starting with this
	}{
		{name: "while starting", lastRead: "devdb"},
		{name: "while delivering", lastRead: "Press Ctrl-C to stop."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp, rt := t.TempDir(), t.TempDir()
			recvAddr, err := childproc.FreeAddr()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainProcess$", "--",
				"dev", "--demo", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
			cmd.Env = append(os.Environ(), mainProcessEnv+"=1", "TMPDIR="+tmp, "XDG_RUNTIME_DIR="+rt,
				"CHANGEHOOK_DEMO_URL=http://"+recvAddr+"/hooks/stock")
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr lockedBuffer
			cmd.Stdout, cmd.Stderr = w, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()

			// Like head: read up to a line, then exit.
			br := bufio.NewReader(r)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Errorf("dev's stdout ended before a line starting with %q: %v", tt.lastRead, err)
					break
				}
				if strings.HasPrefix(line, tt.lastRead) {
					break
				}
			}
			r.Close()
			select {
			case err = <-exited:
			case <-time.After(time.Minute):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("dev still runs a minute after its stdout reader exited\n%s", stderr.String())
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					t.Fatalf("dev was killed by %v, want a graceful stop\n%s", ws.Signal(), stderr.String())
				}
			}
			if err != nil {
				t.Errorf("dev: %v, want exit 0\n%s", err, stderr.String())
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, devDirPrefix+"*")); len(left) > 0 {
				t.Errorf("temporary data directory left: %v", left)
			}
			if !strings.Contains(stderr.String(), "standard output is closed") {
				t.Errorf("stderr does not say standard output is closed:\n%s", stderr.String())
			}
		})
	}
}
