package storage

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// insertN inserts n documents into db.coll in one transaction, each padded
// with pad bytes, and returns the cluster time of the last.
func insertN(t *testing.T, e *Engine, coll string, from, n, pad int) bson.Timestamp {
	t.Helper()
	if err := e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", coll)
		if err != nil {
			return err
		}
		for i := range n {
			if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: from + i}, {Key: "pad", Value: strings.Repeat("x", pad)}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return e.LastOpTime()
}

// TestOplogReadFailsWhenTrimmedBetweenChunks trims the oplog while a reader
// is between two of its read transactions: the next read must report the
// lost history, never go on from whatever entry survived.
func TestOplogReadFailsWhenTrimmedBetweenChunks(t *testing.T) {
	e := openTest(t, Options{OplogMaxBytes: 4 << 20})
	insertN(t, e, "c", 0, 3*oplogChunk, 100)
	var seen []int
	trimmed := false
	err := e.OplogRawAfter(e.OldestOpTime(), func(r *RawOplogEntry) bool {
		if r.Op == "insert" && r.Coll == "c" {
			ent, err := r.Decode()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := lookupField(ent.DocumentKey, "_id")
			seen = append(seen, int(id.(int32)))
		}
		if !trimmed {
			// Written and trimmed before the reader's next chunk: the
			// big entries push every entry it has not read out.
			trimmed = true
			insertN(t, e, "big", 0, 6, 1<<20)
		}
		return true
	})
	if !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("read across a trim: %v, want ErrHistoryLost", err)
	}
	for i, id := range seen {
		if id != i {
			t.Fatalf("entries passed before the error skip from %d to %d", i-1, id)
		}
	}
	if len(seen) == 0 || len(seen) >= 3*oplogChunk {
		t.Fatalf("read %d entries before the error, want the first chunk's", len(seen))
	}
}

// TestOplogReadScansPastLongSkippedRuns puts more writes to another
// collection than one read scans before the only entry the reader wants:
// the read must reach it, not take the scan bound for the end of the oplog.
func TestOplogReadScansPastLongSkippedRuns(t *testing.T) {
	e := openTest(t, Options{})
	start := e.LastOpTime()
	insertN(t, e, "other", 0, oplogScanChunk+100, 0)
	want := insertN(t, e, "watched", 0, 1, 0)
	var got []bson.Timestamp
	err := e.OplogRawAfterIn(start, func(h *OplogEntry) bool { return h.Coll == "watched" }, func(r *RawOplogEntry) bool {
		if r.Raw != nil && r.Op == "insert" {
			got = append(got, r.TS)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("entries read = %v, want the watched insert at %v", got, want)
	}
}

// TestCommittedOpTimeIncludesUnpublishedCommit stands for a writer whose
// commit is visible but whose time is not yet published (LastOpTime
// behind): CommittedOpTime, which snapshots that must include what clients
// have read take, is not behind.
func TestCommittedOpTimeIncludesUnpublishedCommit(t *testing.T) {
	e := openTest(t, Options{})
	before := e.LastOpTime()
	at := insertN(t, e, "c", 0, 1, 0)
	e.lastTS.Store(packTS(before)) // the publication not yet made
	got, err := e.CommittedOpTime()
	if err != nil {
		t.Fatal(err)
	}
	if got != at {
		t.Fatalf("CommittedOpTime = %v, want the visible commit's %v (LastOpTime %v)", got, at, e.LastOpTime())
	}
}

// TestCommitTxnTooOldWhileTrimUnpublished stands for a trim whose new
// oldest time is not yet published: a transaction whose snapshot is older
// than the retained oplog must still fail with SnapshotTooOld, not commit
// over writes it can no longer see.
func TestCommitTxnTooOldWhileTrimUnpublished(t *testing.T) {
	e := openTest(t, Options{OplogMaxBytes: 2 << 20})
	if err := e.Update(func(tx *Tx) error { return setN(tx, 1, 0) }); err != nil {
		t.Fatal(err)
	}
	snap := &Snapshot{At: e.LastOpTime()}
	ops, err := e.InShadow(snap, func(tx *Tx) error { return setN(tx, 1, 10) })
	if err != nil {
		t.Fatal(err)
	}
	oldest := e.OldestOpTime()
	// Another writer changes the document, then big writes trim its entry.
	if err := e.Update(func(tx *Tx) error { return setN(tx, 1, 5) }); err != nil {
		t.Fatal(err)
	}
	insertN(t, e, "big", 0, 4, 1<<20)
	if !oldest.Before(e.OldestOpTime()) {
		t.Fatalf("oplog not trimmed: oldest %v", e.OldestOpTime())
	}
	e.oldestTS.Store(packTS(oldest)) // the publication not yet made
	_, err = e.CommitTxn(snap.At, ops, &TxnInfo{LSID: bson.D{{Key: "id", Value: "s"}}, TxnNumber: 1}, nil)
	var me *mongoerr.Error
	if !errors.As(err, &me) || me.Code != mongoerr.SnapshotTooOld {
		t.Fatalf("commit after the trim: %v, want SnapshotTooOld", err)
	}
	_ = e.View(func(tx *Tx) error {
		if got := docsOf(t, tx); got[1] != 5 {
			t.Errorf("document = %v, want the other writer's 5 kept", fmt.Sprint(got[1]))
		}
		return nil
	})
}

// TestOplogHistoryStartAfterTrim: retention that removes a reader's last
// entry A, but nothing after it, loses no history for that reader, only
// for one before A. The history start is kept across a restart, and a data
// directory written before it was kept starts its history at its oldest
// entry.
func TestOplogHistoryStartAfterTrim(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		// trim writes what removes A (written with pad bytes), moving
		// the clock.
		trim func(t *testing.T, e *Engine, clock *testClock)
		pad  int
	}{
		{"age, by the next write", Options{OplogMaxAge: time.Hour}, func(t *testing.T, e *Engine, clock *testClock) {
			clock.add(2 * time.Hour)
			insertN(t, e, "other", 0, 1, 0)
		}, 0},
		{"age, by the janitor", Options{OplogMaxAge: time.Hour}, func(t *testing.T, e *Engine, clock *testClock) {
			clock.add(time.Second)
			insertN(t, e, "other", 0, 1, 0)
			clock.add(2 * time.Hour)
			if err := e.trimByAge(); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"size", Options{OplogMaxBytes: 32 << 10}, func(t *testing.T, e *Engine, clock *testClock) {
			clock.add(time.Second)
			insertN(t, e, "other", 0, 1, 20<<10)
		}, 20 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock(time.Unix(2_000_000_000, 0))
			tc.opts.Dir, tc.opts.Now = t.TempDir(), clock.now
			tc.opts.NoopInterval = -1 // the test moves the clock: no entry of the engine's own
			e, err := Open(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = e.Close() }()
			insertN(t, e, "other", -1, 1, 0) // its create entry before A
			a := insertN(t, e, "c", 0, 1, tc.pad)
			tc.trim(t, e, clock)
			if !a.Before(e.OldestOpTime()) {
				t.Fatalf("A (%v) not trimmed: oldest %v", a, e.OldestOpTime())
			}
			after := unpackTS(packTS(a) + 1)
			if got := e.HistoryStart(); got != after {
				t.Fatalf("HistoryStart = %v, want just after A: %v", got, after)
			}
			read := func(from bson.Timestamp) (int, error) {
				n := 0
				err := e.OplogRawAfter(from, func(*RawOplogEntry) bool { n++; return true })
				return n, err
			}
			if n, err := read(a); err != nil || n == 0 {
				t.Fatalf("read after A: %d entries, %v; want the later ones", n, err)
			}
			if _, err := read(unpackTS(packTS(a) - 1)); !errors.Is(err, ErrHistoryLost) {
				t.Fatalf("read from A: %v, want ErrHistoryLost", err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e, err = Open(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.HistoryStart(); got != after {
				t.Fatalf("HistoryStart after a restart = %v, want %v", got, after)
			}
			// A data directory from before the history start was kept.
			if err := e.db.Update(func(btx *bolt.Tx) error { return btx.Bucket(bucketMeta).Delete(keyHistoryStart) }); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if e, err = Open(tc.opts); err != nil {
				t.Fatal(err)
			}
			if got := e.HistoryStart(); got != e.OldestOpTime() {
				t.Fatalf("HistoryStart of an older data directory = %v, want its oldest entry's %v", got, e.OldestOpTime())
			}
		})
	}
}

// TestOplogHistoryStartAfterOlderDevdb: a devdb from before the history
// start was kept opens the same data format and trims the oplog without
// updating the saved history start. Opened again by this version, the data
// directory's history starts at its oldest entry whenever that entry is not
// the one the history start was saved with, so a reader whose next entries
// were trimmed loses its history instead of reading on from the oldest
// surviving entry. While the oldest entry is unchanged the saved history
// start holds.
func TestOplogHistoryStartAfterOlderDevdb(t *testing.T) {
	tests := []struct {
		name string
		// older changes the closed data directory as an older devdb would.
		older func(t *testing.T, btx *bolt.Tx)
		// trusted: the saved history start holds; else it is the oldest
		// entry's time.
		trusted bool
		// lost: a read after the reader's last entry fails.
		lost bool
	}{
		{"nothing trimmed", func(*testing.T, *bolt.Tx) {}, true, false},
		// What preceded the oldest entry is not known: lost, as for a
		// data directory written before the history start was kept.
		{"the reader's own entry trimmed", func(t *testing.T, btx *bolt.Tx) { trimOldest(t, btx, 1) }, false, true},
		{"entries after the reader trimmed", func(t *testing.T, btx *bolt.Tx) { trimOldest(t, btx, 4) }, false, true},
		{"saved without its oldest entry", func(t *testing.T, btx *bolt.Tx) {
			if err := btx.Bucket(bucketMeta).Delete(keyHistoryStartOldest); err != nil {
				t.Fatal(err)
			}
		}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock(time.Unix(2_000_000_000, 0))
			opts := Options{Dir: t.TempDir(), Now: clock.now, OplogMaxAge: time.Hour,
				NoopInterval: -1} // the test moves the clock: no entry of the engine's own
			e, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			a := insertN(t, e, "c", 0, 1, 0)
			clock.add(2 * time.Hour)
			reader := insertN(t, e, "c", 1, 1, 0) // trims A and all before it
			clock.add(time.Second)
			insertN(t, e, "c", 2, 5, 0) // entries the reader has not read yet
			saved := unpackTS(packTS(a) + 1)
			if got := e.HistoryStart(); got != saved {
				t.Fatalf("HistoryStart = %v, want just after A: %v", got, saved)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(opts.Dir+"/devdb.bbolt", 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(btx *bolt.Tx) error { tc.older(t, btx); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second open reads what the first saved
				if e, err = Open(opts); err != nil {
					t.Fatal(err)
				}
				want := saved
				if !tc.trusted {
					want = e.OldestOpTime()
				}
				if got := e.HistoryStart(); got != want {
					t.Errorf("HistoryStart = %v, want %v (oldest entry %v)", got, want, e.OldestOpTime())
				}
				var got []bson.Timestamp
				err := e.OplogRawAfter(reader, func(r *RawOplogEntry) bool { got = append(got, r.TS); return true })
				if lost := errors.Is(err, ErrHistoryLost); lost != tc.lost || (!lost && err != nil) {
					t.Errorf("read after the reader's %v: entries %v, err %v; want history lost: %t", reader, got, err, tc.lost)
				}
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// trimOldest deletes the n oldest oplog entries, as a devdb from before the
// history start was kept trims them: meta is left as it is.
func trimOldest(t *testing.T, btx *bolt.Tx, n int) {
	t.Helper()
	oplog := btx.Bucket(bucketOplog)
	c := oplog.Cursor()
	for k, v := c.First(); k != nil && n > 0; k, v = c.First() {
		var err error
		if v == nil {
			err = oplog.DeleteBucket(bytes.Clone(k))
		} else {
			err = c.Delete()
		}
		if err != nil {
			t.Fatal(err)
		}
		n--
	}
}
