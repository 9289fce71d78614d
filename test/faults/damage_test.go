package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// dataFile is devdb's data file inside its data directory.
const dataFile = "devdb.bbolt"

// damage is one way of damaging a copy of a real data file.
type damage struct {
	name  string
	apply func(b []byte, rng *rand.Rand) []byte
}

// damages are the three ways the adversarial run damaged devdb's file, the
// third aimed at the page every lookup starts from: root is that page's
// byte range in the file (rootPage).
func damages(root [2]int) []damage {
	const page = 4096
	return []damage{
		{"16 bytes flipped in every page header of the first MiB", func(b []byte, rng *rand.Rand) []byte {
			mask := byte(1 + rng.IntN(255)) // seeded, never 0
			for off := 2 * page; off+16 <= len(b) && off < 1<<20; off += page {
				for i := range 16 {
					b[off+i] ^= mask
				}
			}
			return b
		}},
		{"truncated to half", func(b []byte, _ *rand.Rand) []byte { return b[:len(b)/2] }},
		{"root page zeroed", func(b []byte, _ *rand.Rand) []byte {
			// A fixed page number (say 3) may be free in a file with a
			// longer history, and zeroing a free page damages nothing.
			clear(b[root[0]:root[1]])
			return b
		}},
	}
}

// rootPage returns the byte range of the root page of the bbolt file whose
// bytes are good, as the storage library reads it (from a copy, read-only).
func rootPage(t *testing.T, good []byte) [2]int {
	t.Helper()
	path := filepath.Join(t.TempDir(), dataFile)
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open a copy of the data file: %v", err)
	}
	defer db.Close()
	var root int
	_ = db.View(func(tx *bolt.Tx) error { root = int(tx.Cursor().Bucket().Root()); return nil })
	size := db.Info().PageSize
	return [2]int{root * size, (root + 1) * size}
}

// devdbOnce runs `changehook devdb` on dir and a free port, expecting it to
// exit by itself within procTimeout; it returns the output, the exit code
// and how long it ran.
func devdbOnce(s *suite, dir string) (string, int, time.Duration) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procTimeout)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, s.bin, "devdb", "--addr", freeAddr(s.t), "--data", dir).CombinedOutput()
	took := time.Since(start)
	if ctx.Err() != nil {
		s.t.Fatalf("devdb on %s still running after %v:\n%s", dir, procTimeout, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		s.t.Fatalf("devdb on %s: %v", dir, err)
	}
	code := 0
	if ee != nil {
		code = ee.ExitCode()
	}
	return string(out), code, took
}

// checkRefusal fails s.t unless devdb exited 1 with want in its output and
// no Go panic trace.
func checkRefusal(s *suite, what, out string, code int, want ...string) {
	s.t.Helper()
	if code != 1 {
		s.t.Errorf("%s: exit status %d, want 1:\n%s", what, code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			s.t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		s.t.Errorf("%s: output has a Go panic trace:\n%s", what, out)
	}
}

// (i) devdb's data directory damaged: devdb SIGKILLed under a delivering
// runner, copies of its real data file damaged three ways; devdb must
// refuse each at once with the "damaged … move it away or restore a backup"
// error (exit 1, no panic), a second devdb on a directory in use must name
// the holder's pid, and the documented recovery (move the directory away,
// start devdb on an empty one, start the runner) must deliver again with
// nothing the receiver already got lost.
func scenarioDamagedDataDir(s *suite) []tally {
	t := s.t
	writes, rate := pick(s, 300, 3000), pick(s, 1000, 500)
	x := startThree(s, "i", 0, 0)
	x.writePaced(writes, rate, nil)
	x.waitAll(pick(s, time.Minute, 5*time.Minute))

	// devdb dies; the runner is stopped too ("stop everything using the
	// directory"), by SIGKILL, so that no checkpoint is written after it.
	x.dbp.kill()
	x.r.kill()
	good, err := os.ReadFile(filepath.Join(x.dbp.data, dataFile))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(s.seed, 9))
	var slowest time.Duration
	damagedDir := ""
	for _, d := range damages(rootPage(t, good)) {
		dir := filepath.Join(t.TempDir(), "devdb")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		damaged := d.apply(append([]byte(nil), good...), rng)
		if bytes.Equal(damaged, good) {
			t.Fatalf("%s: the damage changed nothing in the %d-byte data file", d.name, len(good))
		}
		if err := os.WriteFile(filepath.Join(dir, dataFile), damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		out, code, took := devdbOnce(s, dir)
		checkRefusal(s, d.name, out, code, "data directory "+dir+" is damaged: ", "move it away or restore a backup")
		t.Logf("%s: exit %d after %v: %s", d.name, code, took.Round(time.Millisecond), strings.TrimSpace(out))
		slowest = max(slowest, took)
		damagedDir = dir
	}

	// Recovery as devdb/README.md documents it: move the damaged directory
	// away and start devdb again where it was (an empty database).
	if err := os.Rename(damagedDir, damagedDir+".damaged"); err != nil {
		t.Fatal(err)
	}
	x.dbp.data = damagedDir
	x.dbp.start()

	// A second devdb on the directory now in use names the holder at once.
	out, code, took := devdbOnce(s, damagedDir)
	holder := fmt.Sprintf("in use by another process (pid %d)", x.dbp.cur.Cmd.Process.Pid)
	checkRefusal(s, "second devdb on a locked directory", out, code, holder)
	t.Logf("locked: exit %d after %v: %s", code, took.Round(time.Millisecond), strings.TrimSpace(out))
	slowest = max(slowest, took)

	// The state database was in the damaged directory: the runner finds no
	// checkpoints and starts at start_at (now). The workload's collections
	// are gone, so it writes new keys.
	for coll, watchers := range x.w.watch {
		x.w.recreated(coll, 10000, watchers)
	}
	x.r.start(true)
	for _, tr := range x.trigs {
		if st, err := x.r.status(tr.name); err != nil || st.State != "running" {
			t.Errorf("%s after recovery: state %q (err %v), want running", tr.name, st.State, err)
		}
	}
	after := pick(s, 150, 1500)
	x.writePaced(after, rate, nil)
	x.waitAll(pick(s, time.Minute, 5*time.Minute))
	x.r.stop()
	return x.tallies("i: damaged data directory", fmt.Sprintf(
		"3 damaged copies (flipped, half, root page zeroed) and a locked dir refused with exit 1, no panic, slowest %.1f s; recovered by moving the dir away (checkpoints gone: started at now)",
		slowest.Seconds()))
}
