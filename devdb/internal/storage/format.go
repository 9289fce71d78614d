package storage

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The data format of a bbolt file is recorded in the meta bucket under
// "format":
//
//	1 (or absent)  every document and oplog entry stored inline
//	2              documents and oplog entries longer than a page may be
//	               stored in buckets of their own (values.go)
//
// Open refuses a file of a format newer than formatVersion with a
// *FormatError, before writing anything, and records formatVersion in an
// older file. A format 1 file is not rewritten: its inline values are read
// as they are (every read accepts both forms), and a document is stored in
// a bucket of its own only when it is written again. Rewriting every value on open would
// make opening a large data directory slow for no gain: old values are
// never in the newest leaf that appends rewrite.
const formatVersion = 2

var keyFormat = []byte("format")

// FormatError reports a data file written by a newer devdb, in a data
// format this one cannot read.
type FormatError struct {
	// Dir is the data directory.
	Dir string
	// Found is the file's data format, Supported the newest this devdb reads.
	Found, Supported int
}

// Error says which formats and what to do.
func (e *FormatError) Error() string {
	return fmt.Sprintf("data directory %s was written by a newer devdb (data format %d; this devdb reads formats up to %d): open it with that devdb or a newer one",
		e.Dir, e.Found, e.Supported)
}

// checkFormat refuses a file whose meta bucket records a format newer than
// formatVersion.
func checkFormat(meta *bolt.Bucket) error {
	v := meta.Get(keyFormat)
	if v == nil {
		return nil
	}
	if len(v) != 1 {
		return &FormatError{Found: -1, Supported: formatVersion}
	}
	if int(v[0]) > formatVersion {
		return &FormatError{Found: int(v[0]), Supported: formatVersion}
	}
	return nil
}

// formatGuard is a chain of nested buckets that devdb binaries from before
// the format was recorded refuse: their consistency check on open fails on
// buckets nested deeper than eight levels, and prints the path, which reads
// as the reason. Those binaries would otherwise take a document stored in a
// bucket of its own for a missing one. Its root bucket sorts before every other, so they meet it
// first; this devdb's check skips it.
var formatGuard = [][]byte{
	[]byte("!devdb data format 2"), []byte("this data directory"), []byte("was written by"), []byte("a newer devdb"),
	[]byte("that stores large"), []byte("values apart"), []byte("open it with"), []byte("that devdb"), []byte("or a newer one"),
}

// writeFormat records formatVersion in the meta bucket and creates the
// format guard, when the file does not have them yet.
func writeFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyFormat); len(v) == 1 && v[0] == formatVersion {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(formatGuard[0])
	if err != nil {
		return fmt.Errorf("record the data format: %w", err)
	}
	for _, name := range formatGuard[1:] {
		if b, err = b.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("record the data format: %w", err)
		}
	}
	if err := meta.Put(keyFormat, []byte{formatVersion}); err != nil {
		return fmt.Errorf("record the data format: %w", err)
	}
	return nil
}

// isFormatGuard reports whether the root bucket name is the format guard's.
func isFormatGuard(name []byte) bool { return bytes.Equal(name, formatGuard[0]) }
