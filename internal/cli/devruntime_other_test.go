package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeOtherDev records, in rtDir's runtime file, a dev run by another
// process that is alive (this test's parent) and returns the file's
// content.
func writeOtherDev(t *testing.T, rtDir string) []byte {
	t.Helper()
	b, err := json.Marshal(devRuntime{PID: os.Getppid(), URI: "mongodb://127.0.0.1:1/?directConnection=true", Config: "/elsewhere/triggers.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rtDir, devRuntimeFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if rt, ok := readDevRuntime(Env{RuntimeDir: rtDir, LookupEnv: func(string) (string, bool) { return "", false }}); !ok || rt.PID != os.Getppid() {
		t.Fatalf("the other dev's record is not read as a running dev: %+v, %v", rt, ok)
	}
	return b
}

// TestDevRuntimeNeverReplacesAnotherLiveDev: writing the runtime file
// while it records another process that is alive is refused (an
// *otherDevError naming it) and leaves the record as it is; a record of a
// process that is gone is replaced, and forget removes only this process's.
func TestDevRuntimeNeverReplacesAnotherLiveDev(t *testing.T) {
	rtDir := t.TempDir()
	env := Env{RuntimeDir: rtDir, LookupEnv: func(string) (string, bool) { return "", false }}
	path := filepath.Join(rtDir, devRuntimeFile)
	other := writeOtherDev(t, rtDir)
	forget, err := writeDevRuntime(env, devRuntime{URI: "mongodb://127.0.0.1:2/", Config: "mine.yaml"})
	var ode *otherDevError
	if !errors.As(err, &ode) || ode.other.PID != os.Getppid() {
		t.Fatalf("write over another live dev's record = %v, want an *otherDevError naming pid %d", err, os.Getppid())
	}
	if forget != nil {
		t.Error("a refused write returned a forget")
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, other) {
		t.Fatalf("the other dev's record became %s (%v), want it unchanged", b, err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(rtDir, "*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// A process that is gone: its record is replaced.
	b, _ := json.Marshal(devRuntime{PID: 1 << 30, URI: "mongodb://127.0.0.1:1/", Config: "gone.yaml"})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	forget, err = writeDevRuntime(env, devRuntime{URI: "mongodb://127.0.0.1:2/", Config: "mine.yaml"})
	if err != nil {
		t.Fatalf("write over a gone process's record: %v", err)
	}
	if rt, ok := readDevRuntime(env); !ok || rt.PID != os.Getpid() || rt.URI != "mongodb://127.0.0.1:2/" {
		t.Fatalf("record after replacing a stale one = %+v, %v; want this process's", rt, ok)
	}
	forget()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("forget left this process's record: %v", err)
	}
}

// TestSecondDevLeavesTheFirstsRecord: while another dev runs (its record
// names a live process), a second dev neither removes nor replaces its
// record — not when it fails to start (its demo receiver's port is taken),
// not when it runs and stops — so `dlq list` and the other commands keep
// finding the first; the second says on stderr that it is not recorded and
// how to reach it.
func TestSecondDevLeavesTheFirstsRecord(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeURL := "http://" + free.Addr().String() + "/hooks/stock"
	free.Close()

	t.Run("fails to start", func(t *testing.T) {
		rtDir := t.TempDir()
		other := writeOtherDev(t, rtDir)
		code, out, errOut := runWith(t, rtDir, map[string]string{"CHANGEHOOK_DEMO_URL": "http://" + taken.Addr().String() + "/hooks/stock"},
			"dev", "--demo", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		if code != ExitFailure {
			t.Fatalf("dev with its receiver's port taken = %d, want %d\n%s%s", code, ExitFailure, out, errOut)
		}
		if b, err := os.ReadFile(filepath.Join(rtDir, devRuntimeFile)); err != nil || !bytes.Equal(b, other) {
			t.Fatalf("after the second dev failed, the first's record is %q (%v), want it unchanged", b, err)
		}
	})
	t.Run("runs and stops", func(t *testing.T) {
		rtDir := t.TempDir()
		other := writeOtherDev(t, rtDir)
		_, stderr, stop := startDevIn(t, rtDir, map[string]string{"CHANGEHOOK_DEMO_URL": freeURL}, nil,
			func(stdout, _ string) bool { return strings.Contains(stdout, "Press Ctrl-C to stop.") },
			"--demo", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
		if b, err := os.ReadFile(filepath.Join(rtDir, devRuntimeFile)); err != nil || !bytes.Equal(b, other) {
			t.Errorf("while the second dev runs, the first's record is %q (%v), want it unchanged", b, err)
		}
		if code := stop(); code != ExitOK {
			t.Errorf("second dev: exit %d\n%s", code, stderr)
		}
		if b, err := os.ReadFile(filepath.Join(rtDir, devRuntimeFile)); err != nil || !bytes.Equal(b, other) {
			t.Errorf("after the second dev stopped, the first's record is %q (%v), want it unchanged", b, err)
		}
		const says = "is recorded in " // ... and still running: the other commands keep using that one
		if s := stderr.String(); !strings.Contains(s, says) || !strings.Contains(s, "is not recorded, so to reach it give them -c") {
			t.Errorf("the second dev does not say it is not recorded and how to reach it:\n%s", s)
		}
	})
}

// TestSecondDevAdviceReachesIt: the way a second dev (not recorded) tells
// other commands to reach it works: "-c FILE and MONGODB_URI=URI" only when
// FILE takes mongodb.uri from MONGODB_URI. A mongodb.uri the file sets
// otherwise wins over the variable, so that advice would reach the file's
// deployment (where `dlq purge --yes` acts on other data): the second dev
// says so instead.
func TestSecondDevAdviceReachesIt(t *testing.T) {
	const rest = `triggers:
  - name: orders
    database: shop
    collection: orders
    webhook:
      url: http://127.0.0.1:1/hook
`
	tests := []struct {
		name       string
		mongodb    string // the file's mongodb section
		followable bool   // the advice is -c FILE with MONGODB_URI
	}{
		{name: "uri left out", followable: true},
		{name: "uri from MONGODB_URI", mongodb: "mongodb:\n  uri: ${MONGODB_URI}\n", followable: true},
		{name: "literal uri", mongodb: "mongodb:\n  uri: mongodb://127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=2000\n"},
		{name: "uri from another variable", mongodb: "mongodb:\n  uri: ${PROD_MONGODB_URI}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rtDir := t.TempDir()
			writeOtherDev(t, rtDir)
			file := filepath.Join(t.TempDir(), "triggers.yaml")
			if err := os.WriteFile(file, []byte(tt.mongodb+rest), 0o600); err != nil {
				t.Fatal(err)
			}
			_, stderr, stop := startDevIn(t, rtDir, nil, nil,
				func(_, stderr string) bool { return strings.Contains(stderr, "is not recorded, so to reach it") },
				"-c", file, "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
			defer stop()
			m := regexp.MustCompile(`give them -c (\S+) and MONGODB_URI=(\S+)`).FindStringSubmatch(stderr.String())
			if !tt.followable {
				if m != nil || !strings.Contains(stderr.String(), "its mongodb.uri wins over MONGODB_URI") {
					t.Fatalf("the second dev advises -c FILE with MONGODB_URI, or does not say the file's mongodb.uri wins:\n%s", stderr)
				}
				return
			}
			if m == nil {
				t.Fatalf("no -c FILE and MONGODB_URI advice on stderr:\n%s", stderr)
			}
			code, out, errOut := runWith(t, rtDir, map[string]string{"MONGODB_URI": m[2]}, "checkpoints", "list", "-c", m[1])
			if code != ExitOK {
				t.Errorf("following the advice (MONGODB_URI=%s changehook checkpoints list -c %s) = exit %d, want 0:\n%s%s",
					m[2], m[1], code, out, errOut)
			}
		})
	}
}
