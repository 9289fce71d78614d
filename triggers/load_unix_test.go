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

// TestTLSFilesMustBeSmallRegularFiles: a webhook.tls file that is a named
// pipe (which would block validate and every reload), a device such as
// /dev/zero (which would be read without end) or a file over the size
// limit is refused at once, at the field, naming what it is.
func TestTLSFilesMustBeSmallRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "ca.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	huge := filepath.Join(dir, "huge.pem")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	cert, err := filepath.Abs("testdata/tls/client.pem")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, tls, want string }{
		{"fifo", "{ca_file: " + fifo + "}", `c.yaml:1:75: webhook.tls.ca_file: "` + fifo + `" is not a regular file but a named pipe (FIFO)`},
		{"device", "{ca_file: /dev/zero}", `c.yaml:1:75: webhook.tls.ca_file: "/dev/zero" is not a regular file but a device`},
		{"huge", "{ca_file: " + huge + "}", `c.yaml:1:75: webhook.tls.ca_file: "` + huge + `" is 1073741824 bytes, more than the 1048576 a PEM file may have`},
		{"key fifo", "{cert_file: " + cert + ", key_file: " + fifo + "}", `webhook.tls.key_file: "` + fifo + `" is not a regular file but a named pipe (FIFO)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "triggers: [{name: t, webhook: {url: 'https://localhost/x', tls: " + tt.tls + "}}]"
			done := make(chan error, 1)
			go func() {
				_, err := Parse(filepath.Join(dir, "c.yaml"), []byte(src), nil)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Parse = %v, want an error containing %q", err, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Parse still reading after 10s")
			}
		})
	}
}
