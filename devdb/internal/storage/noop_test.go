package storage

import (
	"testing"
	"time"

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
