package storage

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Large values are stored in buckets of their own.
//
// bbolt never splits a leaf of four keys or fewer, so a bucket that stores
// large values under increasing keys keeps the newest three or four of them
// in its newest leaf, and every commit that appends one more writes them all
// again (a 20 KB document cost ~230 KB of page writes). A document or oplog
// entry longer than Engine.ownBucketOver (a page) is therefore stored as a
// nested bucket under its key (a value bucket) that holds the value under
// keyValue: the bucket's root leaf holds nothing else, so it is written once,
// as one run of pages, when the value is written, and never again until the
// value changes or goes; the parent's leaf holds only the small bucket
// header. Smaller values stay inline: a value bucket takes at least a whole
// page of the file, and a read opens the bucket. (BenchmarkInsertCommit
// measured the alternative of cutting large values into chunks smaller than
// a page: it halves the bytes written too, but bbolt writes every page
// allocation with its own system call, and a commit then made twice as many
// of them as with inline values, so it cost as much CPU as before.)
//
//	documents:  data/<collection id>/d  <record id>   → document | bucket {"v" → document}
//	oplog:      oplog                   <cluster time> → entry   | bucket {"v" → entry}
//
// A value read from a value bucket points into storage like an inline one,
// so every read keeps its lifetime (valid until the transaction ends).
// Values stored inline before the format had value buckets are read as they
// are and never rewritten until their document is.

// keyValue is the key of a value bucket's value.
var keyValue = []byte("v")

// valueOf returns the value the value bucket sb (stored under key) holds.
// A bucket without it, or whose value is shorter or longer than its BSON
// length prefix says, is an error.
func valueOf(sb *bolt.Bucket, key []byte) ([]byte, error) {
	v := sb.Get(keyValue)
	if v == nil {
		return nil, fmt.Errorf("value %x: its bucket holds no value", key)
	}
	if len(v) < 5 || int(int32(binary.LittleEndian.Uint32(v))) != len(v) {
		return nil, fmt.Errorf("value %x: %d bytes stored where its length prefix says %d", key, len(v), lengthPrefix(v))
	}
	return v, nil
}

func lengthPrefix(v []byte) int {
	if len(v) < 4 {
		return -1
	}
	return int(int32(binary.LittleEndian.Uint32(v)))
}

// getValue returns the value stored under key in b, nil when there is
// none, and whether it is in a value bucket.
func getValue(b *bolt.Bucket, key []byte) (v []byte, own bool, err error) {
	if v := b.Get(key); v != nil {
		return v, false, nil
	}
	sb := b.Bucket(key)
	if sb == nil {
		return nil, false, nil
	}
	v, err = valueOf(sb, key)
	return v, true, err
}

// cursorValue returns the value at key k of a cursor of b whose value is v:
// v itself, or the value of its value bucket when v is nil (a nested
// bucket).
func cursorValue(b *bolt.Bucket, k, v []byte) ([]byte, error) {
	if v != nil {
		return v, nil
	}
	sb := b.Bucket(k)
	if sb == nil {
		return nil, fmt.Errorf("value %x: neither a value nor a bucket", k)
	}
	return valueOf(sb, k)
}

// putValue stores val under key in b: inline when it is at most
// t.e.ownBucketOver bytes long, otherwise in a value bucket. old says what
// was stored under key before: nothing (exists false), an inline value or a
// value bucket (own), which is replaced. val must stay unchanged until the
// transaction ends (bbolt keeps the slices it is given until it commits).
func (t *Tx) putValue(b *bolt.Bucket, key, val []byte, exists, own bool) error {
	big := len(val) > t.e.ownBucketOver
	if exists && (own || big) {
		// A value bucket is replaced by a new one or a value, and a value
		// by a bucket: bbolt keeps the kinds apart.
		if err := deleteValue(b, key, own); err != nil {
			return err
		}
	}
	if !big {
		return b.Put(key, val)
	}
	sb, err := b.CreateBucket(key)
	if err != nil {
		return fmt.Errorf("create value bucket: %w", err)
	}
	return sb.Put(keyValue, val)
}

// deleteValue deletes the value stored under key in b: its value bucket
// when own, an inline value otherwise.
func deleteValue(b *bolt.Bucket, key []byte, own bool) error {
	if own {
		return b.DeleteBucket(key)
	}
	return b.Delete(key)
}
