package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// writeDataDir creates a real data directory with some documents and
// returns the bytes of its data file.
func writeDataDir(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	e, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("app", "c")
		if err != nil {
			return err
		}
		for i := range 3000 {
			if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: int32(i)}, {Key: "pad", Value: string(make([]byte, 200))}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "devdb.bbolt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A damaged copy of a real data file is refused with DamagedError, never a
// panic.
func TestOpenDamagedDataFile(t *testing.T) {
	good := writeDataDir(t)
	const page = 4096
	tests := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }},
		{"page 3 zeroed", func(b []byte) []byte { clear(b[3*page : 4*page]); return b }},
		{"both meta pages zeroed", func(b []byte) []byte { clear(b[:2*page]); return b }},
		{"16 bytes flipped in every page header", func(b []byte) []byte {
			for off := 2 * page; off+16 <= len(b); off += page {
				for i := range 16 {
					b[off+i] ^= 0xff
				}
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b := tt.damage(append([]byte(nil), good...))
			if err := os.WriteFile(filepath.Join(dir, "devdb.bbolt"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := Open(Options{Dir: dir})
			if err == nil {
				_ = e.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			var de *DamagedError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a DamagedError", err)
			}
			if want := "data directory " + dir + " is damaged: "; len(err.Error()) < len(want) || !containsStr(err.Error(), want) || !containsStr(err.Error(), "move it away or restore a backup") {
				t.Errorf("message = %q", err.Error())
			}
		})
	}
	// The undamaged copy opens.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "devdb.bbolt"), good, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("open of the good copy: %v", err)
	}
	_ = e.Close()
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// A second Open of a locked data directory fails at once naming the holder.
func TestOpenLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_, err = Open(Options{Dir: dir})
	var ie *InUseError
	if !errors.As(err, &ie) {
		t.Fatalf("second open: err = %v, want InUseError", err)
	}
	if ie.PID != os.Getpid() || !containsStr(err.Error(), "(pid "+strconv.Itoa(os.Getpid())+")") {
		t.Errorf("err = %v, want this process's pid %d", err, os.Getpid())
	}
}

// A data file damaged while devdb runs (pages overwritten under it) makes
// reads fail with DamagedError — the data directory named, the way out
// given — instead of a panic that ends the process.
func TestDamagedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	err = e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("app", "c")
		if err != nil {
			return err
		}
		for i := range 3000 {
			if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: int32(i)}, {Key: "pad", Value: string(make([]byte, 200))}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	// Overwrite every page after the meta pages with a garbage header
	// through the file: the engine's memory map sees it.
	f, err := os.OpenFile(filepath.Join(dir, "devdb.bbolt"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	junk := make([]byte, 16)
	for i := range junk {
		junk[i] = 0xA5
	}
	for off := int64(2 * 4096); off+16 <= st.Size(); off += 4096 {
		if _, err := f.WriteAt(junk, off); err != nil {
			t.Fatal(err)
		}
	}
	_ = f.Close()
	err = e.View(func(tx *Tx) error {
		c, err := tx.Collection("app", "c")
		if err != nil || c == nil {
			return err
		}
		return tx.Scan(c, 0, func(RecordID, bson.Raw) (bool, error) { return true, nil })
	})
	var de *DamagedError
	if !errors.As(err, &de) || !containsStr(err.Error(), "data directory "+dir+" is damaged: ") || !containsStr(err.Error(), "move it away or restore a backup") {
		t.Fatalf("scan of a file damaged at run time: err = %v, want a DamagedError", err)
	}
	// A panic outside the storage library is not mistaken for damage.
	defer func() {
		if r := recover(); r != "devdb bug" {
			t.Fatalf("recovered %v, want the re-raised devdb bug", r)
		}
	}()
	_ = e.View(func(*Tx) error { panic("devdb bug") })
}

// A data file cut short anywhere inside its pages is refused naming the
// missing end; one cut after its last page (the spare page the storage
// library keeps) opens.
func TestOpenTruncatedDataFile(t *testing.T) {
	good := writeDataDir(t)
	probe := filepath.Join(t.TempDir(), "devdb.bbolt")
	if err := os.WriteFile(probe, good, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(probe, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var pages int64
	_ = db.View(func(tx *bolt.Tx) error { pages = tx.Size(); return nil })
	_ = db.Close()
	if pages <= 4096 || pages > int64(len(good)) {
		t.Fatalf("pages take %d bytes of a %d-byte file", pages, len(good))
	}

	open := func(n int64) error {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "devdb.bbolt"), good[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		e, err := Open(Options{Dir: dir})
		if err == nil {
			_ = e.Close()
		}
		return err
	}
	for _, n := range []int64{pages - 4096, pages - 1, pages - pages/3} {
		err := open(n)
		var de *DamagedError
		if !errors.As(err, &de) {
			t.Fatalf("cut to %d of %d bytes: err = %v, want a DamagedError", n, pages, err)
		}
		if want := "the file is " + strconv.FormatInt(n, 10) + " bytes, shorter than the " + strconv.FormatInt(pages, 10) + " bytes its pages take: its end is missing"; !containsStr(err.Error(), want) {
			t.Errorf("cut to %d: message = %q, want it to contain %q", n, err.Error(), want)
		}
	}
	if err := open(pages); err != nil {
		t.Errorf("cut right after the last page: %v", err)
	}
}
