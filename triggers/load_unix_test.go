//go:build unix

package triggers

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadRefusesWhatIsNotASmallRegularFile: a named pipe (which would
// block the reader, and with it every reload, until some process writes
// to it), a directory, or a file over the size limit (which would be
// read whole only to be refused) is refused at once, naming what it is.
func TestLoadRefusesWhatIsNotASmallRegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: a gibibyte that takes no disk space.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct{ path, want string }{
		{fifo, "not a regular file but a named pipe (FIFO)"},
		{dir, "not a regular file but a directory"},
		{huge, "1073741824 bytes, more than the 4194304 allowed"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(tc.path, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%s) = %v, want an error saying %q", filepath.Base(tc.path), err, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) still reading after 10s", filepath.Base(tc.path))
		}
	}
}
