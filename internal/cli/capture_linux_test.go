//go:build linux

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestCaptureToDevStdoutRedirectedToAFile: `capture -o /dev/stdout >
// out.jsonl` writes the events to out.jsonl: /dev/stdout is a symlink to
// /proc/self/fd/1, which with stdout redirected is a regular file, written
// through the link (a file put in its place would land in /dev).
// /proc/self/fd/N stands in for it.
func TestCaptureToDevStdoutRedirectedToAFile(t *testing.T) {
	dst, err := os.Create(filepath.Join(t.TempDir(), "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	path := fmt.Sprintf("/proc/self/fd/%d", dst.Fd())
	f, err := newCaptureFile(path)
	if err != nil {
		t.Fatalf("-o %s (stdout redirected to a file) is refused: %v", path, err)
	}
	if _, err := f.Write([]byte("{\"e\":1}\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = f.Close()
	b, _ := os.ReadFile(dst.Name())
	if string(b) != "{\"e\":1}\n" {
		t.Fatalf("the file behind %s holds %q", path, b)
	}
}

// TestCaptureThroughASymlink: -o LINK, LINK a symlink to the real
// recording, writes the recording through the link, as os.Create does; the
// link stays a link.
func TestCaptureThroughASymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.jsonl")
	if err := os.WriteFile(target, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.jsonl")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	f, err := newCaptureFile(link)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("-o %s replaced the symlink itself with a regular file", link)
	}
	if b, _ := os.ReadFile(target); string(b) != "new\n" {
		t.Errorf("the symlink's target %s still holds %q: the capture did not reach it", target, b)
	}
}

// TestCaptureToDevStdoutAppended: `capture -o /dev/stdout >>
// events.jsonl` adds to the earlier recording: the descriptor the shell
// opened for appending is written through. /proc/self/fd/N stands in for
// /dev/stdout.
func TestCaptureToDevStdoutAppended(t *testing.T) {
	name := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(name, []byte("{\"earlier\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0) // the shell's >>
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	f, err := newCaptureFile(fmt.Sprintf("/proc/self/fd/%d", dst.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("{\"e\":1}\n")); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if b, _ := os.ReadFile(name); string(b) != "{\"earlier\":1}\n{\"e\":1}\n" {
		t.Errorf("stdout appended to a recording (>>): the file holds %q, want the earlier recording then the event", b)
	}
}

// TestCaptureToDevStdoutWithStderr: `capture -o /dev/stdout > out.jsonl
// 2>&1` keeps stderr's lines and the events in order, whole: stdout and
// stderr share the shell's open file, written through, never from its
// start.
func TestCaptureToDevStdoutWithStderr(t *testing.T) {
	name := filepath.Join(t.TempDir(), "out.jsonl")
	dst, err := os.Create(name) // the shell's > out.jsonl 2>&1
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	const begin, event, end = "capturing up to 1 event of trigger orders (shop.orders) to /dev/stdout; Ctrl-C stops\n",
		"{\"_id\":{\"_data\":\"82AA01\"},\"operationType\":\"insert\",\"fullDocument\":{\"_id\":1,\"sku\":\"x\"}}\n", "captured 1 event\n"
	if _, err := dst.WriteString(begin); err != nil { // stderr
		t.Fatal(err)
	}
	f, err := newCaptureFile(fmt.Sprintf("/proc/self/fd/%d", dst.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(event)); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.WriteString(end); err != nil { // stderr
		t.Fatal(err)
	}
	_ = f.Close()
	b, _ := os.ReadFile(name)
	if want := begin + event + end; string(b) != want {
		t.Errorf("out.jsonl holds %q,\nwant %q (the event line whole)", b, want)
	}
}
