package storage

import (
	"errors"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestPeriodicNoop: the no-op writer writes an entry (OpNoop, msg
// PeriodicNoopMsg) at a check that finds nothing written since the last
// one, none before its interval has passed or when something was
// written, and none when turned off.
func TestPeriodicNoop(t *testing.T) {
	e := openTest(t, Options{NoopInterval: -1}) // the background loop writes none; the test drives the checks
	if n := e.newNoopCheck(); n.every != 0 {
		t.Fatalf("NoopInterval -1: every = %v, want none", n.every)
	}
	if n := openTest(t, Options{}).newNoopCheck(); n.every != DefaultNoopInterval {
		t.Fatalf("NoopInterval 0: every = %v, want %v", n.every, DefaultNoopInterval)
	}
	t0 := time.Now()
	n := noopCheck{every: time.Minute, last: t0, seen: e.lastTS.Load()}
	count := func(t *testing.T) int64 {
		t.Helper()
		var c int64
		if err := e.View(func(tx *Tx) error { c = tx.OplogCount(); return nil }); err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(t *testing.T) {
		t.Helper()
		if err := e.Update(func(tx *Tx) error {
			return tx.appendOplog(&OplogEntry{Op: "insert", DB: "d", Coll: "c", DocumentKey: bson.D{{Key: "_id", Value: 1}}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, at time.Duration, want bool) {
		t.Helper()
		before := count(t)
		wrote, err := e.noopIfIdle(&n, t0.Add(at))
		if err != nil || wrote != want {
			t.Fatalf("check at %v: wrote %v, %v; want %v", at, wrote, err, want)
		}
		if added := count(t) - before; added != map[bool]int64{false: 0, true: 1}[want] {
			t.Fatalf("check at %v added %d entries", at, added)
		}
	}

	check(t, 30*time.Second, false) // before the interval
	check(t, time.Minute, true)     // idle for the interval
	last := e.LastOpTime()
	var ent *OplogEntry
	var derr error
	if err := e.OplogRawAfter(bson.Timestamp{T: last.T, I: last.I - 1}, func(r *RawOplogEntry) bool {
		ent, derr = r.Decode()
		return false
	}); err != nil || derr != nil || ent == nil {
		t.Fatalf("read the no-op: %v, %v", err, derr)
	}
	want := bson.D{{Key: "msg", Value: PeriodicNoopMsg}}
	if ent.Op != OpNoop || ent.TS != last || len(ent.Extra) != 1 || ent.Extra[0] != want[0] {
		t.Fatalf("periodic entry = %+v, want op %q at %v, extra %v", ent, OpNoop, last, want)
	}
	write(t)
	check(t, 2*time.Minute, false) // written during the period
	check(t, 3*time.Minute, true)  // idle again
	check(t, 3*time.Minute+time.Second, false)
}

// TestPeriodicNoopKeepsOpenTransactionsSnapshot: a periodic no-op never
// fails an open transaction, as MongoDB's does not. devdb restarts after
// a quiet period longer than OplogMaxAge (the newest entry survives every
// trim) and a transaction takes that entry as its snapshot; the next no-op's
// commit trims it by age. Nothing after the snapshot was removed, so the
// transaction's next statement goes on (it failed with SnapshotTooOld when
// the check compared the snapshot with the oldest surviving entry rather
// than with the history start); a snapshot after which an entry was
// removed still fails with it.
func TestPeriodicNoopKeepsOpenTransactionsSnapshot(t *testing.T) {
	clock := newTestClock(time.Unix(2_000_000_000, 0))
	now, advance := clock.now, clock.add
	opts := Options{Dir: t.TempDir(), OplogMaxAge: time.Hour, Now: now, NoopInterval: -1} // the test writes the no-ops
	e, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	before := insertN(t, e, "c", 0, 1, 0)
	at := insertN(t, e, "c", 1, 1, 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Hour) // devdb is down
	e = openTest(t, opts)
	stmt := func(snap *Snapshot) error {
		_, err := e.InShadow(snap, func(tx *Tx) error {
			c, err := tx.EnsureCollection("db", "c")
			if err != nil {
				return err
			}
			_, err = tx.Insert(c, bson.D{{Key: "_id", Value: 100}})
			return err
		})
		return err
	}
	snap := &Snapshot{At: at}
	if err := stmt(snap); err != nil {
		t.Fatalf("first statement: %v", err)
	}
	n := noopCheck{every: DefaultNoopInterval, last: now(), seen: e.lastTS.Load()}
	if wrote, err := e.noopIfIdle(&n, advance(DefaultNoopInterval)); err != nil || !wrote {
		t.Fatalf("no-op: wrote %v, %v", wrote, err)
	}
	if oldest := e.OldestOpTime(); !at.Before(oldest) {
		t.Fatalf("the snapshot's entry %v was not trimmed (oldest %v): the test checks nothing", at, oldest)
	}
	if err := stmt(snap); err != nil {
		t.Fatalf("the transaction's next statement, with only a periodic no-op written since its snapshot: %v", err)
	}
	var me *mongoerr.Error
	if err := stmt(&Snapshot{At: before}); !errors.As(err, &me) || me.Code != mongoerr.SnapshotTooOld {
		t.Fatalf("a snapshot before a trimmed entry: %v, want SnapshotTooOld", err)
	}
}
