// Package storage is devdb's durable storage engine on go.etcd.io/bbolt: the
// catalog (databases, collections, indexes), documents, unique index
// enforcement and the oplog that change streams read.
//
// Layout of the bbolt file:
//
//	meta     "ts" → last allocated cluster time (8 bytes, T<<32|I)
//	         "format" → the data format (1 byte, formatVersion; absent: 1)
//	         "oplogUUID" → local.oplog.rs's UUID (16 bytes; written when absent)
//	catalog  "<db>\x00<coll>" → collection record (BSON); bucket sequence = next collection id
//	data     <collection id> → bucket { "d" → {record id → document},
//	                                    "i:<index>" → {KeyString → record id}, "stats" }
//	oplog    <cluster time> → OplogEntry (BSON)
//	"!devdb data format 2…"  nested buckets that refuse older binaries (formatGuard)
//
// Documents are stored under a per-collection record id (insertion order, as
// MongoDB's natural order); the _id index maps KeyString(_id) to it. A
// document or oplog entry longer than a page is stored in a bucket of its
// own under its key (see values.go).
package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mql"
)

// DefaultOplogMaxBytes is the oplog size bound used when Options.OplogMaxBytes is 0.
const DefaultOplogMaxBytes = 128 << 20

// syncInterval is how often unsynced commits are flushed to stable storage,
// matching MongoDB's default journal commit interval (100 ms).
const syncInterval = 100 * time.Millisecond

// DefaultNoopInterval is how often an engine with nothing else to write
// writes a periodic no-op oplog entry when Options.NoopInterval is 0: the
// default of MongoDB's periodicNoopIntervalSecs.
const DefaultNoopInterval = 10 * time.Second

// PeriodicNoopMsg is the msg of a periodic no-op entry, as a replica set
// primary writes it: {op: "n", o: {msg: "periodic noop"}}.
const PeriodicNoopMsg = "periodic noop"

var (
	bucketMeta    = []byte("meta")
	bucketCatalog = []byte("catalog")
	bucketData    = []byte("data")
	bucketOplog   = []byte("oplog")
	keyTS         = []byte("ts")
	keyOplogBytes = []byte("oplogBytes")
	keyOplogUUID  = []byte("oplogUUID")
	// keyHistoryStart holds the oplog's history start (Engine.HistoryStart).
	keyHistoryStart = []byte("oplogHistoryStart")
	// keyHistoryStartOldest holds the time of the oplog's oldest entry
	// when keyHistoryStart was written, in the same transaction: a devdb
	// from before the history start was kept trims the oplog without
	// updating it, and a different oldest entry shows that it did.
	keyHistoryStartOldest = []byte("oplogHistoryStartOldest")
	keyDocs               = []byte("d")
	keyStats              = []byte("stats")
)

// Options configures Open.
type Options struct {
	// Dir is the data directory; "" means a temporary directory that Close removes.
	Dir string
	// OplogMaxBytes bounds the oplog's total size; 0 means DefaultOplogMaxBytes.
	OplogMaxBytes int64
	// OplogMaxAge bounds the age of retained oplog entries; 0 means no age limit.
	OplogMaxAge time.Duration
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// CompileFilter compiles a partialFilterExpression into a predicate;
	// nil means mql.CompileFilter.
	CompileFilter func(filter bson.D) (func(doc bson.D) bool, error)
	// CheckTimeout bounds the consistency check of an existing data file on
	// open; 0 means DefaultCheckTimeout, negative skips the check.
	CheckTimeout time.Duration
	// OwnBucketOver is the length above which a document or oplog entry is
	// stored in a bucket of its own; 0 means the page size, negative stores
	// every value in one (tests compare that with the default).
	OwnBucketOver int
	// NoopInterval is how often the engine checks whether anything was
	// written since its last check and, when nothing was, writes a no-op
	// oplog entry (OpNoop, msg PeriodicNoopMsg), as a replica set primary
	// does: an idle change stream's postBatchResumeToken, the newest
	// oplog entry and the cluster time then keep up with the clock. It is
	// measured on Now; 0 means DefaultNoopInterval, negative writes none.
	NoopInterval time.Duration
}

// Engine is an open storage engine. It is safe for concurrent use by many
// goroutines: bbolt gives one writer and many concurrent readers, and readers
// never observe a partially applied write.
//
// Durability: the bbolt file is opened with NoSync, so a commit writes every
// changed page into the file (the OS page cache) before Update returns but
// does not fsync. A write acknowledged to a client therefore survives the
// devdb process being killed (kill -9), because the kernel still holds and
// later writes back those pages; only an operating-system crash or power loss
// can lose the last unsynced commits. A background loop fsyncs every 100 ms
// when there were commits (MongoDB's journal commit interval), and Sync forces
// a flush for writeConcern {j: true}. Syncing every commit would cap single
// inserts at the disk's fsync rate, far below MongoDB's own behaviour with
// the default write concern.
type Engine struct {
	db      *bolt.DB
	lock    *os.File // the data directory's lock (nil where unsupported)
	dir     string
	tempDir bool
	opts    Options

	// allocTS is the last cluster time handed out; only the single bbolt
	// writer touches it, inside Update.
	allocTS uint64

	// oplogUUID is local.oplog.rs's UUID, kept in the data directory.
	oplogUUID [16]byte

	// ownBucketOver is the length above which a value is stored in a
	// bucket of its own (see values.go).
	ownBucketOver int

	lastTS   atomic.Uint64
	oldestTS atomic.Uint64
	// historyStart is HistoryStart, packed.
	historyStart atomic.Uint64
	dirty        atomic.Bool

	changedMu sync.Mutex
	changed   chan struct{}
	waiters   waiters

	filterMu sync.Mutex
	filters  map[string]func(bson.D) bool

	stop     chan struct{}
	loopDone chan struct{}
	closeMu  sync.Mutex
	closed   bool
}

// Open opens (or creates) the engine described by opts and starts its
// background flush loop; Close stops it.
func Open(opts Options) (*Engine, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CompileFilter == nil {
		opts.CompileFilter = func(filter bson.D) (func(bson.D) bool, error) {
			f, err := mql.CompileFilter(filter)
			if err != nil {
				return nil, err
			}
			return f.Match, nil
		}
	}
	if opts.OplogMaxBytes <= 0 {
		opts.OplogMaxBytes = DefaultOplogMaxBytes
	}
	e := &Engine{opts: opts, dir: opts.Dir, changed: make(chan struct{}), filters: map[string]func(bson.D) bool{},
		stop: make(chan struct{}), loopDone: make(chan struct{})}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "devdb-*")
		if err != nil {
			return nil, fmt.Errorf("open storage: create temp dir: %w", err)
		}
		e.dir, e.tempDir = d, true
	} else if err := os.MkdirAll(e.dir, 0o750); err != nil {
		return nil, fmt.Errorf("open storage: create data dir: %w", err)
	}
	lock, err := lockDir(e.dir)
	if err != nil {
		e.removeTemp()
		return nil, fmt.Errorf("open storage: %w", err)
	}
	e.lock = lock
	path := filepath.Join(e.dir, "devdb.bbolt")
	if opts.CheckTimeout >= 0 {
		timeout := opts.CheckTimeout
		if timeout == 0 {
			timeout = DefaultCheckTimeout
		}
		if err := checkFile(path, timeout); err != nil && !errors.Is(err, errCheckTimeout) {
			e.unlock()
			var fe *FormatError
			if errors.As(err, &fe) {
				fe.Dir = e.dir
				return nil, fmt.Errorf("open storage: %w", fe)
			}
			return nil, fmt.Errorf("open storage: %w", &DamagedError{Dir: e.dir, Err: err})
		}
	}
	db, err := openBolt(path)
	if err != nil {
		e.unlock()
		e.removeTemp()
		if isDamage(err) {
			err = &DamagedError{Dir: e.dir, Err: err}
		}
		return nil, fmt.Errorf("open storage: open %s: %w", e.dir, err)
	}
	e.db = db
	switch {
	case opts.OwnBucketOver == 0:
		e.ownBucketOver = db.Info().PageSize
	case opts.OwnBucketOver < 0:
		e.ownBucketOver = 0
	default:
		e.ownBucketOver = opts.OwnBucketOver
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if err := checkFormat(m); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketMeta, bucketCatalog, bucketData, bucketOplog} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if err := writeFormat(tx); err != nil {
			return err
		}
		if v := tx.Bucket(bucketMeta).Get(keyTS); len(v) == 8 {
			e.allocTS = binary.BigEndian.Uint64(v)
		}
		if err := e.loadOplogUUID(tx.Bucket(bucketMeta)); err != nil {
			return err
		}
		if k, _ := tx.Bucket(bucketOplog).Cursor().First(); len(k) == 8 {
			e.oldestTS.Store(binary.BigEndian.Uint64(k))
		}
		return e.loadHistoryStart(tx)
	})
	if err == nil {
		err = db.Sync()
	}
	if err != nil {
		_ = db.Close()
		e.unlock()
		e.removeTemp()
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Dir = e.dir
			return nil, fmt.Errorf("open storage: %w", fe)
		}
		return nil, fmt.Errorf("open storage: initialise: %w", err)
	}
	e.lastTS.Store(e.allocTS)
	go e.loop()
	if e.allocTS == 0 {
		// A new data directory: start the oplog, as replSetInitiate does.
		err := e.Update(func(tx *Tx) error {
			return tx.appendOplog(&OplogEntry{Op: OpNoop, Extra: bson.D{{Key: "msg", Value: "initiating set"}}})
		})
		if err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("open storage: start the oplog: %w", err)
		}
	}
	return e, nil
}

// openBolt opens the bbolt file for reading and writing, turning a panic of
// the library on a damaged file into an error.
func openBolt(path string) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("the storage library failed opening it: %v: %w", r, berrors.ErrInvalid)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        2 * time.Second,
		NoSync:         true,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
}

// unlock releases the data directory's lock.
func (e *Engine) unlock() {
	if e.lock != nil {
		_ = e.lock.Close()
		e.lock = nil
	}
}

// Dir returns the data directory in use (the temporary one when Options.Dir was "").
func (e *Engine) Dir() string { return e.dir }

func (e *Engine) removeTemp() {
	if e.tempDir {
		_ = os.RemoveAll(e.dir)
	}
}

// loop flushes commits to stable storage every syncInterval and applies the
// oplog age limit when no writes arrive.
//
// It also writes the periodic no-ops (Options.NoopInterval): at each
// check, when the newest oplog entry is the one the previous check saw.
func (e *Engine) loop() {
	defer close(e.loopDone)
	t := time.NewTicker(syncInterval)
	defer t.Stop()
	ticks := 0
	noops := e.newNoopCheck()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		if noops.every > 0 {
			_, _ = e.noopIfIdle(&noops, e.opts.Now()) // a failed write is tried again at the next check
		}
		if e.dirty.Swap(false) {
			if err := e.db.Sync(); err != nil {
				e.dirty.Store(true)
			}
		}
		ticks++
		if e.opts.OplogMaxAge > 0 && ticks%10 == 0 {
			_ = e.trimByAge()
		}
	}
}

// noopCheck is the state of the periodic no-op writer (Options.NoopInterval).
type noopCheck struct {
	every time.Duration // 0: writes none
	last  time.Time     // the last check
	seen  uint64        // the newest entry at the last check, packed
}

// newNoopCheck returns the no-op writer's state as of now.
func (e *Engine) newNoopCheck() noopCheck {
	every := e.opts.NoopInterval
	if every < 0 {
		return noopCheck{} // none; Now is not read: a test's clock may not be safe to read from the loop
	}
	if every == 0 {
		every = DefaultNoopInterval
	}
	return noopCheck{every: every, last: e.opts.Now(), seen: e.lastTS.Load()}
}

// noopIfIdle is one check of the periodic no-op writer at now: once n.every
// has passed since the last check, it writes a no-op entry (OpNoop, msg
// PeriodicNoopMsg) when the newest entry is still the one the last check
// saw, as MongoDB's no-op writer does, and starts the next period. It
// reports whether it wrote one; after an error the next check tries again.
func (e *Engine) noopIfIdle(n *noopCheck, now time.Time) (bool, error) {
	if n.every <= 0 || now.Sub(n.last) < n.every {
		return false, nil
	}
	wrote := false
	if e.lastTS.Load() == n.seen {
		err := e.Update(func(tx *Tx) error {
			return tx.appendOplog(&OplogEntry{Op: OpNoop, Extra: bson.D{{Key: "msg", Value: PeriodicNoopMsg}}})
		})
		if err != nil {
			return false, fmt.Errorf("write a periodic no-op: %w", err)
		}
		wrote = true
	}
	n.last, n.seen = now, e.lastTS.Load()
	return wrote, nil
}

// Close stops the flush loop, syncs and closes the file; a temporary data
// directory is removed. Close is idempotent.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	close(e.stop)
	<-e.loopDone
	err := e.db.Sync()
	if cerr := e.db.Close(); err == nil {
		err = cerr
	}
	e.unlock()
	e.removeTemp()
	if err != nil {
		return fmt.Errorf("close storage: %w", err)
	}
	return nil
}

// Sync flushes every committed write to stable storage (writeConcern j: true).
func (e *Engine) Sync() error {
	if err := e.db.Sync(); err != nil {
		return fmt.Errorf("sync storage: %w", err)
	}
	return nil
}

// LastOpTime returns the cluster time of the last committed oplog entry (zero
// before the first write). It is a single atomic load.
func (e *Engine) LastOpTime() bson.Timestamp { return unpackTS(e.lastTS.Load()) }

// CommittedOpTime returns the cluster time of the last write a read
// starting now sees: at or after every entry any read has returned so far.
// LastOpTime can lag it for a moment (a writer publishes its time only
// after its commit is visible), so a snapshot that must include what
// clients have already read (a transaction's, a change stream's start)
// takes this one; it costs a read transaction.
func (e *Engine) CommittedOpTime() (bson.Timestamp, error) {
	var ts uint64
	err := e.View(func(tx *Tx) error {
		if v := tx.tx.Bucket(bucketMeta).Get(keyTS); len(v) == 8 {
			ts = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return bson.Timestamp{}, fmt.Errorf("read committed cluster time: %w", err)
	}
	return unpackTS(max(ts, e.lastTS.Load())), nil
}

// OldestOpTime returns the cluster time of the oldest retained oplog entry
// (zero when the oplog is empty and has never been written).
func (e *Engine) OldestOpTime() bson.Timestamp { return unpackTS(e.oldestTS.Load()) }

// HistoryStart returns the earliest cluster time from which the oplog holds
// every entry ever written: just after the newest entry retention removed,
// or the first entry's time while none was removed (zero when the oplog has
// never been written). A reader that needs the entries from a time before
// it has lost history; one from it or later has not, even when the entry
// it last read is gone, as no entry lies between the two.
func (e *Engine) HistoryStart() bson.Timestamp { return unpackTS(e.historyStart.Load()) }

// loadHistoryStart reads the history start from meta, or records it for a
// data directory whose saved one cannot be trusted: its oldest entry's
// time, since what preceded that entry is not known. A saved history start
// is trusted only while the oplog's oldest entry is still the one it was
// saved with: a devdb from before the history start was kept opens the
// same data format and trims the oplog without updating it, and such a
// stale value would let a reader whose next entries were trimmed go on
// from the oldest surviving one instead of losing its history. A history
// start saved without its oldest entry is not trusted either, and a data
// directory written before the history start was kept has none.
func (e *Engine) loadHistoryStart(btx *bolt.Tx) error {
	meta := btx.Bucket(bucketMeta)
	k, _ := btx.Bucket(bucketOplog).Cursor().First()
	if len(k) != 8 {
		// A new data directory (its first entry sets the history start),
		// or an emptied oplog, which no retention leaves: keep what is saved.
		if v := meta.Get(keyHistoryStart); len(v) == 8 {
			e.historyStart.Store(binary.BigEndian.Uint64(v))
		}
		return nil
	}
	oldest := binary.BigEndian.Uint64(k)
	if v, o := meta.Get(keyHistoryStart), meta.Get(keyHistoryStartOldest); len(v) == 8 && len(o) == 8 && binary.BigEndian.Uint64(o) == oldest {
		e.historyStart.Store(binary.BigEndian.Uint64(v))
		return nil
	}
	if err := putHistoryStart(btx, oldest); err != nil {
		return fmt.Errorf("record the oplog's history start: %w", err)
	}
	e.historyStart.Store(oldest)
	return nil
}

// putHistoryStart saves the history start (packed; see HistoryStart) in the
// storage transaction btx, with the time of the oplog's oldest entry as btx
// holds it, which loadHistoryStart compares: call it after any trim in btx.
func putHistoryStart(btx *bolt.Tx, start uint64) error {
	meta := btx.Bucket(bucketMeta)
	if err := meta.Put(keyHistoryStart, u64(start)); err != nil {
		return err
	}
	if k, _ := btx.Bucket(bucketOplog).Cursor().First(); len(k) == 8 {
		return meta.Put(keyHistoryStartOldest, bytes.Clone(k))
	}
	return meta.Delete(keyHistoryStartOldest)
}

// historyStartIn returns the history start as the storage transaction btx
// sees it (packed; see HistoryStart).
func historyStartIn(btx *bolt.Tx) uint64 {
	if v := btx.Bucket(bucketMeta).Get(keyHistoryStart); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	if k, _ := btx.Bucket(bucketOplog).Cursor().First(); len(k) == 8 {
		return binary.BigEndian.Uint64(k)
	}
	return 0
}

// Changed returns a channel that is closed when the next oplog entry is
// committed. Callers take a fresh channel after every wake-up.
func (e *Engine) Changed() <-chan struct{} {
	e.changedMu.Lock()
	defer e.changedMu.Unlock()
	return e.changed
}

func (e *Engine) broadcast() {
	e.changedMu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.changedMu.Unlock()
}

// View runs fn in a read-only transaction that sees a consistent snapshot.
// fn must not retain the Tx or raw document bytes after returning, and
// should not run long: a long read blocks the file from growing.
func (e *Engine) View(fn func(*Tx) error) (err error) {
	defer faultsPanic()()
	defer e.storagePanic(&err)
	return e.db.View(func(btx *bolt.Tx) error {
		return fn(&Tx{e: e, tx: btx})
	})
}

// Update runs fn in the single read-write transaction. If fn returns nil the
// transaction commits atomically (documents, catalog and oplog together);
// otherwise nothing of it is applied and fn's error is returned.
func (e *Engine) Update(fn func(*Tx) error) error {
	tx := &Tx{e: e}
	err := e.update(tx, fn)
	if err != nil {
		return err
	}
	e.dirty.Store(true)
	if tx.oldest != 0 {
		storeMax(&e.oldestTS, tx.oldest)
	}
	if tx.historyStart != 0 {
		storeMax(&e.historyStart, tx.historyStart)
	}
	if tx.maxTS != 0 {
		storeMax(&e.lastTS, tx.maxTS)
		e.broadcast()
		e.notify(tx.heads)
	}
	return nil
}

// storeMax sets a to v unless a already holds a later time. Writers commit
// in cluster-time order under bbolt's single writer but publish their
// times after it is released, so a writer preempted between the two would
// otherwise move the time back: LastOpTime behind writes already
// acknowledged (a transaction's snapshot then misses them) or
// OldestOpTime before history already trimmed.
func storeMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if cur >= v || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

func packTS(ts bson.Timestamp) uint64 { return uint64(ts.T)<<32 | uint64(ts.I) }

func unpackTS(v uint64) bson.Timestamp { return bson.Timestamp{T: uint32(v >> 32), I: uint32(v)} }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// update runs fn and commits in bbolt's read-write transaction; a panic of
// the storage library becomes a *DamagedError (the transaction is rolled
// back).
func (e *Engine) update(tx *Tx, fn func(*Tx) error) (err error) {
	defer faultsPanic()()
	defer e.storagePanic(&err)
	return e.db.Update(func(btx *bolt.Tx) error {
		tx.tx = btx
		if err := fn(tx); err != nil {
			return err
		}
		return tx.finish()
	})
}
