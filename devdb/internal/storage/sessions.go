package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The session table is devdb's equivalent of MongoDB's config.transactions:
// for each logical session, the latest retryable write (its txnNumber and
// the reply it produced), so that a retry of that write is answered from the
// record instead of being applied twice. Layout of the "sessions" bucket
// (created on first use):
//
//	"s" → {session key → record}       record = txn(8) lastUse(8) len(cmd)(2) cmd reply
//	"t" → {lastUse(8) session key → ∅} the records in last-use order, for eviction
//	"m" → count(8) bytes(8)            number of records and their total size
var (
	bucketSessions   = []byte("sessions")
	keySessionRecs   = []byte("s")
	keySessionByTime = []byte("t")
	keySessionMeta   = []byte("m")
)

// sessionHeader is the fixed part of an encoded record: txnNumber, last use
// (Unix nanoseconds) and the command fingerprint's length.
const sessionHeader = 8 + 8 + 2

// MaxSessionKey bounds the length of a session key accepted by the table.
const MaxSessionKey = 1024

// maxExpirePerWrite bounds how many expired records one PutSessionTxn
// removes, so that a write after a long idle period stays fast; the rest go
// with later writes.
const maxExpirePerWrite = 256

// SessionTxn is the recorded latest retryable write of one logical session.
type SessionTxn struct {
	// TxnNumber is the write's transaction number.
	TxnNumber int64
	// Command fingerprints the write (command name and namespace), so that a
	// different command reusing the txnNumber is detected. At most 65,535 bytes.
	Command string
	// Reply is the reply the write produced, returned again on a retry.
	Reply bson.Raw
	// LastUse is when the session last ran a retryable write.
	LastUse time.Time
}

// SessionLimits bound the session table.
type SessionLimits struct {
	// Timeout is the inactivity after which a record expires (MongoDB's
	// logicalSessionTimeoutMinutes); 0 means records never expire.
	Timeout time.Duration
	// MaxSessions caps the number of records; the least recently used are
	// evicted beyond it. 0 means no cap.
	MaxSessions int
	// MaxBytes caps the records' total encoded size, evicting the least
	// recently used beyond it. 0 means no cap.
	MaxBytes int64
}

// SessionTxn returns the record of session, or nil when there is none or it
// expired (LastUse older than timeout before now; timeout 0 never expires).
// The returned Reply is a copy, valid after the transaction.
func (t *Tx) SessionTxn(session []byte, now time.Time, timeout time.Duration) (*SessionTxn, error) {
	root := t.tx.Bucket(bucketSessions)
	if root == nil {
		return nil, nil
	}
	v := root.Bucket(keySessionRecs).Get(session)
	if v == nil {
		return nil, nil
	}
	rec, err := decodeSessionTxn(v)
	if err != nil {
		return nil, fmt.Errorf("read session record: %w", err)
	}
	if timeout > 0 && now.Sub(rec.LastUse) > timeout {
		return nil, nil
	}
	return rec, nil
}

// PutSessionTxn records rec as the latest retryable write of session,
// replacing any earlier record, then removes expired records (relative to
// rec.LastUse) and evicts the least recently used ones while lim is
// exceeded. The record just written is never evicted. It fails in a View
// transaction, for an empty or over-long session key, and for a Command
// longer than 65,535 bytes.
func (t *Tx) PutSessionTxn(session []byte, rec *SessionTxn, lim SessionLimits) error {
	if err := t.writable(); err != nil {
		return err
	}
	if len(session) == 0 || len(session) > MaxSessionKey {
		return mongoerr.Errorf(mongoerr.BadValue, "session key must be 1 to %d bytes, got %d", MaxSessionKey, len(session))
	}
	if len(rec.Command) > 0xffff {
		return mongoerr.Errorf(mongoerr.BadValue, "session command fingerprint too long: %d bytes", len(rec.Command))
	}
	root, err := t.tx.CreateBucketIfNotExists(bucketSessions)
	if err != nil {
		return fmt.Errorf("create session table: %w", err)
	}
	recs, err := root.CreateBucketIfNotExists(keySessionRecs)
	if err != nil {
		return fmt.Errorf("create session table: %w", err)
	}
	byTime, err := root.CreateBucketIfNotExists(keySessionByTime)
	if err != nil {
		return fmt.Errorf("create session table: %w", err)
	}
	count, size := sessionMeta(root)
	if old := recs.Get(session); old != nil {
		if len(old) < sessionHeader {
			return fmt.Errorf("write session record: corrupt record of %d bytes", len(old))
		}
		if err := byTime.Delete(sessionTimeKey(old[8:16], session)); err != nil {
			return fmt.Errorf("write session record: %w", err)
		}
		count--
		size -= int64(len(old))
	}
	enc := encodeSessionTxn(rec)
	if err := recs.Put(session, enc); err != nil {
		return fmt.Errorf("write session record: %w", err)
	}
	if err := byTime.Put(sessionTimeKey(enc[8:16], session), nil); err != nil {
		return fmt.Errorf("write session record: %w", err)
	}
	count++
	size += int64(len(enc))

	var cutoff []byte
	if lim.Timeout > 0 {
		cutoff = u64(uint64(rec.LastUse.Add(-lim.Timeout).UnixNano()))
	}
	expired := 0
	cur := byTime.Cursor()
	for k, _ := cur.First(); k != nil; {
		over := (lim.MaxSessions > 0 && count > int64(lim.MaxSessions)) || (lim.MaxBytes > 0 && size > lim.MaxBytes)
		isExpired := cutoff != nil && expired < maxExpirePerWrite && bytes.Compare(k[:8], cutoff) < 0
		if !over && !isExpired {
			break
		}
		if bytes.Equal(k[8:], session) {
			k, _ = cur.Next() // never evict the record just written
			continue
		}
		k = bytes.Clone(k)
		victim := k[8:]
		old := recs.Get(victim)
		if err := cur.Delete(); err != nil {
			return fmt.Errorf("evict session record: %w", err)
		}
		if old != nil {
			count--
			size -= int64(len(old))
			if err := recs.Delete(victim); err != nil {
				return fmt.Errorf("evict session record: %w", err)
			}
		}
		if isExpired {
			expired++
		}
		k, _ = cur.Seek(k)
	}
	meta := binary.BigEndian.AppendUint64(u64(uint64(max(count, 0))), uint64(max(size, 0)))
	if err := root.Put(keySessionMeta, meta); err != nil {
		return fmt.Errorf("write session table size: %w", err)
	}
	return nil
}

// SessionStats returns the number of records in the session table and their
// total encoded size, expired records not yet removed included.
func (t *Tx) SessionStats() (count int, size int64) {
	root := t.tx.Bucket(bucketSessions)
	if root == nil {
		return 0, 0
	}
	n, s := sessionMeta(root)
	return int(n), s
}

// OplogSize returns the total encoded size of the retained oplog entries.
func (t *Tx) OplogSize() int64 {
	if v := t.tx.Bucket(bucketMeta).Get(keyOplogBytes); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func sessionMeta(root *bolt.Bucket) (count, size int64) {
	if v := root.Get(keySessionMeta); len(v) == 16 {
		return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
	}
	return 0, 0
}

func sessionTimeKey(lastUse, session []byte) []byte {
	k := make([]byte, 0, 8+len(session))
	return append(append(k, lastUse...), session...)
}

func encodeSessionTxn(rec *SessionTxn) []byte {
	b := make([]byte, 0, sessionHeader+len(rec.Command)+len(rec.Reply))
	b = binary.BigEndian.AppendUint64(b, uint64(rec.TxnNumber))
	b = binary.BigEndian.AppendUint64(b, uint64(rec.LastUse.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(rec.Command)))
	b = append(b, rec.Command...)
	return append(b, rec.Reply...)
}

func decodeSessionTxn(v []byte) (*SessionTxn, error) {
	if len(v) < sessionHeader {
		return nil, fmt.Errorf("corrupt record of %d bytes", len(v))
	}
	n := int(binary.BigEndian.Uint16(v[16:18]))
	if len(v) < sessionHeader+n {
		return nil, fmt.Errorf("corrupt record of %d bytes", len(v))
	}
	return &SessionTxn{
		TxnNumber: int64(binary.BigEndian.Uint64(v)),
		LastUse:   time.Unix(0, int64(binary.BigEndian.Uint64(v[8:16]))),
		Command:   string(v[sessionHeader : sessionHeader+n]),
		Reply:     bytes.Clone(v[sessionHeader+n:]),
	}, nil
}

// OplogCount returns how many entries the oplog retains. It counts them
// (the oplog keeps no count), one key per entry.
func (t *Tx) OplogCount() int64 {
	var n int64
	c := t.tx.Bucket(bucketOplog).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
