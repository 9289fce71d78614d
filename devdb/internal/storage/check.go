package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DamagedError reports a data file that cannot be used: it failed the
// consistency check on open, or the storage library failed on it.
type DamagedError struct {
	// Dir is the data directory.
	Dir string
	// Err says what is wrong.
	Err error
}

// Error says what is damaged and what to do.
func (e *DamagedError) Error() string {
	return fmt.Sprintf("data directory %s is damaged: %v; move it away or restore a backup", e.Dir, e.Err)
}

// Unwrap returns the underlying problem, for errors.Is and errors.As.
func (e *DamagedError) Unwrap() error { return e.Err }

// InUseError reports a data directory locked by another process.
type InUseError struct {
	// Dir is the data directory.
	Dir string
	// PID is the process holding it, 0 when unknown.
	PID int
}

// Error names the holder.
func (e *InUseError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("another process (pid %d)", e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by %s; stop it or choose another data directory", e.Dir, who)
}

// DefaultCheckTimeout bounds the consistency check on open when
// Options.CheckTimeout is 0.
const DefaultCheckTimeout = 30 * time.Second

// lockFile is the data directory's lock, holding the owner's pid.
const lockFile = "devdb.lock"

// readLockPID returns the pid recorded in the lock file of dir, or 0.
func readLockPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// checkFile checks the bbolt file at path before it is opened for writing:
// it opens it read-only (which neither rebuilds the free list nor writes),
// refuses a data format newer than this devdb's (*FormatError) and a file
// shorter than the pages its meta page counts, reads every
// bucket, key and value, checking that keys are in order, and checks the
// buckets that hold one large value each (checkValueBuckets), with panics
// and memory faults of the storage library turned into errors. The check stops early (without error) after timeout.
// A missing file is fine (a new data directory).
func checkFile(path string, timeout time.Duration) (err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the storage library failed reading it: %v", r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(timeout)
	n := 0
	return db.View(func(tx *bolt.Tx) error {
		// The storage library grows the file to hold every page before a
		// commit names them, so a shorter file lost its end (a partial copy,
		// a full disk during a copy); pages past it would read as a fault.
		if fi != nil && fi.Size() < tx.Size() {
			return fmt.Errorf("the file is %d bytes, shorter than the %d bytes its pages take: its end is missing", fi.Size(), tx.Size())
		}
		if m := tx.Bucket(bucketMeta); m != nil {
			if err := checkFormat(m); err != nil {
				return err
			}
		}
		var walk func(b *bolt.Bucket, name string, depth int) error
		walk = func(b *bolt.Bucket, name string, depth int) error {
			if depth > 8 { // devdb nests buckets two levels deep
				return fmt.Errorf("bucket %q: nested deeper than devdb ever writes", name)
			}
			var prev []byte
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if prev != nil && bytes.Compare(prev, k) >= 0 {
					return fmt.Errorf("bucket %q: keys out of order", name)
				}
				prev = append(prev[:0], k...)
				if v == nil {
					child := b.Bucket(k)
					if child == nil {
						return fmt.Errorf("bucket %q: key %x has neither a value nor a bucket", name, k)
					}
					if err := walk(child, name+"/"+string(k), depth+1); err != nil {
						return err
					}
				}
				if n++; n%4096 == 0 && time.Now().After(deadline) {
					return errCheckTimeout
				}
			}
			return nil
		}
		err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if isFormatGuard(name) {
				return nil
			}
			return walk(b, string(name), 1)
		})
		if err != nil {
			return err
		}
		tick := func() error {
			if n++; n%4096 == 0 && time.Now().After(deadline) {
				return errCheckTimeout
			}
			return nil
		}
		return checkValueBuckets(tx, tick)
	})
}

// checkValueBuckets checks the documents of every collection and the oplog
// entries stored in buckets of their own: each such bucket holds its value
// and nothing else, and the value is as long as its length prefix says.
// tick is called once per key read and ends the check with its error.
func checkValueBuckets(tx *bolt.Tx, tick func() error) error {
	if data := tx.Bucket(bucketData); data != nil {
		err := data.ForEachBucket(func(id []byte) error {
			docs := data.Bucket(id).Bucket(keyDocs)
			if docs == nil {
				return nil
			}
			return checkValueBucketsOf(docs, fmt.Sprintf("data/%x/d", id), tick)
		})
		if err != nil {
			return err
		}
	}
	if oplog := tx.Bucket(bucketOplog); oplog != nil {
		return checkValueBucketsOf(oplog, "oplog", tick)
	}
	return nil
}

// checkValueBucketsOf checks the value buckets of b.
func checkValueBucketsOf(b *bolt.Bucket, name string, tick func() error) error {
	return b.ForEachBucket(func(k []byte) error {
		if err := tick(); err != nil {
			return err
		}
		sb := b.Bucket(k)
		if _, err := valueOf(sb, k); err != nil {
			return fmt.Errorf("bucket %q: %w", name, err)
		}
		c := sb.Cursor()
		first, _ := c.First()
		if next, _ := c.Next(); next != nil || !bytes.Equal(first, keyValue) {
			return fmt.Errorf("bucket %q: value %x: its bucket holds keys other than %q", name, k, keyValue)
		}
		return nil
	})
}

// errCheckTimeout ends a check that ran out of time; it is not damage.
var errCheckTimeout = errors.New("consistency check ran out of time")

// isDamage reports whether err from opening a bbolt file means the file is
// unusable rather than, say, unreadable for permissions.
func isDamage(err error) bool {
	return errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) ||
		errors.Is(err, berrors.ErrInvalidMapping)
}
