package faults

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestMetaRoots: on a bbolt file whose root has moved away from its first
// page through many transactions, metaRoots names pages whose headers
// carry their own number (pages in use), whatever the history.
func TestMetaRoots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.bbolt")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(fmt.Appendf(nil, "b%d", i%7))
			if err != nil {
				return err
			}
			return b.Put(fmt.Appendf(nil, "k%d", i), make([]byte, 300))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	roots, size := metaRoots(b)
	if size != 4096 && size != 16384 && size != 65536 {
		t.Fatalf("page size %d", size)
	}
	if len(roots) == 0 {
		t.Fatal("no root pages found")
	}
	for _, r := range roots {
		if id := binary.NativeEndian.Uint64(b[r*size:]); id != uint64(r) {
			t.Errorf("root page %d: its header says page %d", r, id)
		}
	}
	if roots, _ := metaRoots(make([]byte, 4*4096)); len(roots) != 0 {
		t.Errorf("roots of a zeroed file: %v, want none", roots)
	}
	if roots, _ := metaRoots(b[:100]); len(roots) != 0 {
		t.Errorf("roots of a 100-byte file: %v, want none", roots)
	}
}
