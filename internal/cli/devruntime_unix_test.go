//go:build unix

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRuntimeFileOthersCouldWriteIsIgnored: the commands that find a
// running dev trust the runtime file (they load the configuration it names
// and expand its ${VAR}s from their own environment), so a file another
// user could have put or changed is ignored, and dev records itself only
// in a directory no one else can write to — by default one of this user's
// own in the temporary directory, not the shared directory itself.
func TestRuntimeFileOthersCouldWriteIsIgnored(t *testing.T) {
	nothing := func(string) (string, bool) { return "", false }
	record := func(t *testing.T, dir string) string {
		t.Helper()
		env := Env{RuntimeDir: dir, LookupEnv: nothing}
		if _, err := writeDevRuntime(env, devRuntime{URI: "mongodb://127.0.0.1:1/", Config: "x.yaml"}); err != nil {
			t.Fatal(err)
		}
		if _, ok := readDevRuntime(env); !ok {
			t.Fatal("this user's own record was not used")
		}
		return filepath.Join(dir, devRuntimeFile)
	}
	t.Run("writable by others", func(t *testing.T) {
		dir := t.TempDir()
		path := record(t, dir)
		if err := os.Chmod(path, 0o666); err != nil {
			t.Fatal(err)
		}
		if _, ok := readDevRuntime(Env{RuntimeDir: dir, LookupEnv: nothing}); ok {
			t.Error("a record other users can write to was used")
		}
		// A command that would have used it says why it did not.
		t.Chdir(t.TempDir())
		code, _, errOut := runWith(t, dir, nil, "dlq", "list")
		if want := "the record " + path + " of a running 'changehook dev' is ignored: other users can write to it (mode -rw-rw-rw-)"; code != ExitFailure || !strings.Contains(errOut, want) {
			t.Errorf("dlq list with an untrusted record: exit %d\n%s\nwant it to say %q", code, errOut, want)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		elsewhere := record(t, t.TempDir())
		dir := t.TempDir()
		if err := os.Symlink(elsewhere, filepath.Join(dir, devRuntimeFile)); err != nil {
			t.Fatal(err)
		}
		if _, ok := readDevRuntime(Env{RuntimeDir: dir, LookupEnv: nothing}); ok {
			t.Error("a record reached through a symbolic link was used")
		}
	})
	t.Run("another user's", func(t *testing.T) {
		dir := t.TempDir()
		path := record(t, dir)
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Skipf("cannot give the file to another user here: %v", err)
		}
		if _, ok := readDevRuntime(Env{RuntimeDir: dir, LookupEnv: nothing}); ok {
			t.Error("a record owned by another user was used")
		}
	})
	t.Run("shared directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		_, err := writeDevRuntime(Env{RuntimeDir: dir, LookupEnv: nothing}, devRuntime{URI: "mongodb://127.0.0.1:1/", Config: "x.yaml"})
		if err == nil || !strings.Contains(err.Error(), "other users can write to it") || !strings.Contains(err.Error(), "XDG_RUNTIME_DIR") {
			t.Errorf("recording in a directory everyone can write to: %v; want refused, naming XDG_RUNTIME_DIR", err)
		}
	})
	t.Run("default directory", func(t *testing.T) {
		tmp := t.TempDir()
		if err := os.Chmod(tmp, 0o1777); err != nil { // as /tmp is
			t.Fatal(err)
		}
		t.Setenv("TMPDIR", tmp)
		env := Env{LookupEnv: nothing}
		if _, err := writeDevRuntime(env, devRuntime{URI: "mongodb://127.0.0.1:1/", Config: "x.yaml"}); err != nil {
			t.Fatal(err)
		}
		own := filepath.Join(tmp, fmt.Sprintf("changehook-%d", os.Getuid()))
		if fi, err := os.Stat(filepath.Join(own, devRuntimeFile)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("record in %s: %v, %v; want it there, mode 0600", own, fi, err)
		}
		if fi, _ := os.Stat(own); fi.Mode().Perm() != 0o700 {
			t.Errorf("directory %s mode %v, want 0700", own, fi.Mode().Perm())
		}
		if _, ok := readDevRuntime(env); !ok {
			t.Error("the record in the default directory was not used")
		}
	})
}

// TestDevRuntimeStaleRecordReplacedOnce: two devs that find the same stale
// record (its process is gone) do not both replace it. The first (this
// process) is held just before it writes its record over the stale one;
// the second (this test's parent's pid: another live process) then either
// waits for it, or — the race — also finds the record stale and replaces
// it. Either way the first is let go, and the outcome must be one recorded
// dev: the first, while the second is told that another dev is recorded.
// Before, both believed they were recorded and the record named only one.
func TestDevRuntimeStaleRecordReplacedOnce(t *testing.T) {
	rtDir := t.TempDir()
	env := Env{RuntimeDir: rtDir, LookupEnv: func(string) (string, bool) { return "", false }}
	path := filepath.Join(rtDir, devRuntimeFile)
	stale, _ := json.Marshal(devRuntime{PID: 1 << 30, URI: "mongodb://127.0.0.1:1/", Config: "gone.yaml"})
	if err := os.WriteFile(path, stale, 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		forget func()
		err    error
	}
	firstAt, firstGo, firstDone := make(chan struct{}), make(chan struct{}), make(chan result, 1)
	go func() {
		f, err := recordDev(env, devRuntime{URI: "mongodb://127.0.0.1:2/", Config: "first.yaml"}, os.Getpid(), recordHooks{
			replacing: func() { firstAt <- struct{}{}; <-firstGo },
		})
		firstDone <- result{f, err}
	}()
	<-firstAt

	secondBusy, secondAt, secondDone := make(chan struct{}, 1), make(chan struct{}, 1), make(chan result, 1)
	second := os.Getppid()
	go func() {
		f, err := recordDev(env, devRuntime{URI: "mongodb://127.0.0.1:3/", Config: "second.yaml"}, second, recordHooks{
			lockBusy:  func() { secondBusy <- struct{}{} },
			replacing: func() { secondAt <- struct{}{} },
		})
		secondDone <- result{f, err}
	}()
	var secondResult *result
	select {
	case <-secondBusy: // it waits for the first
	case <-secondAt:
		t.Error("the second dev went on to replace the stale record while the first was replacing it")
	case r := <-secondDone:
		secondResult = &r
		t.Errorf("the second dev finished (%v) while the first was replacing the stale record", r.err)
	}
	close(firstGo)
	first := <-firstDone
	if secondResult == nil {
		r := <-secondDone
		secondResult = &r
	}
	if first.err != nil {
		t.Fatalf("first dev: %v", first.err)
	}
	var ode *otherDevError
	if !errors.As(secondResult.err, &ode) || ode.other.PID != os.Getpid() {
		t.Errorf("second dev = %v, want an *otherDevError naming the first (pid %d)", secondResult.err, os.Getpid())
	}
	if rt, ok := readDevRuntime(env); !ok || rt.PID != os.Getpid() || rt.Config != filepath.Join(mustGetwd(t), "first.yaml") {
		t.Errorf("record = %+v, %v; want the first dev's (pid %d)", rt, ok, os.Getpid())
	}
	first.forget()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the first dev's forget left the record: %v", err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(rtDir, "*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// mustGetwd returns the working directory.
func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// TestDevLockWaitIsBounded: a dev holding the runtime record's lock (one
// stopped mid-recording) makes another wait at most the given time, then
// fail with a reason, instead of hanging it; once free the lock is taken.
func TestDevLockWaitIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), devRuntimeLock)
	unlock, err := lockWait(path, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	busy := false
	if _, err := lockWait(path, 50*time.Millisecond, func() { busy = true }); err == nil || !busy || !strings.Contains(err.Error(), "(stopped?)") {
		t.Fatalf("second lockWait while held: err = %v, busy = %v; want a refusal after waiting", err, busy)
	}
	unlock()
	again, err := lockWait(path, 50*time.Millisecond, nil)
	if err != nil {
		t.Fatalf("lockWait once released: %v", err)
	}
	again()
}
