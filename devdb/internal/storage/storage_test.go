package storage

import (
	"bytes"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// testClock is a clock a test moves while an engine reads it from its
// background loop (the age limit's janitor, the periodic no-ops).
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

// now is the clock's time, for Options.Now.
func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// add moves the clock by d and returns its new time.
func (c *testClock) add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func openTest(t *testing.T, opts Options) *Engine {
	t.Helper()
	e, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestKeyStringNumericCollisionAndOrder(t *testing.T) {
	equal := []struct {
		name string
		a, b any
	}{
		{"int32 int64", int32(1), int64(1)},
		{"int32 double", int32(1), 1.0},
		{"zero negzero", 0.0, math.Copysign(0, -1)},
		{"string symbol", "x", bson.Symbol("x")},
		{"decimal int", mustDec(t, "1"), int32(1)},
		{"null undefined", nil, bson.Undefined{}},
		{"big int64 exact double", int64(1 << 60), float64(1 << 60)},
	}
	for _, tc := range equal {
		t.Run("equal/"+tc.name, func(t *testing.T) {
			if !bytes.Equal(KeyString(tc.a), KeyString(tc.b)) {
				t.Fatalf("KeyString(%v) != KeyString(%v)", tc.a, tc.b)
			}
		})
	}
	ordered := []any{bson.MinKey{}, nil, math.NaN(), math.Inf(-1), int64(math.MinInt64), -1.5, int32(-1), 0.0, 0.5, int32(1),
		int64(1<<53 + 1), float64(1 << 62), int64(1<<62 + 1), int64(math.MaxInt64), math.Inf(1), "", "a", "a\x00", "ab", "b",
		bson.D{}, bson.D{{Key: "a", Value: int32(1)}}, bson.A{}, bson.A{int32(1)},
		bson.Binary{Data: []byte{1}}, bson.ObjectID{1}, false, true, bson.DateTime(-1), bson.DateTime(1),
		bson.Timestamp{T: 1}, bson.Regex{Pattern: "a"}, bson.MaxKey{}}
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		if bytes.Compare(KeyString(a), KeyString(b)) >= 0 {
			t.Errorf("KeyString order: %#v should sort before %#v", a, b)
		}
	}
}

func mustDec(t *testing.T, s string) bson.Decimal128 {
	t.Helper()
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestInsertGetAndDuplicateID(t *testing.T) {
	e := openTest(t, Options{})
	err := e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", "c")
		if err != nil {
			return err
		}
		if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: int32(1)}, {Key: "v", Value: "a"}}); err != nil {
			return err
		}
		_, err = tx.Insert(c, bson.D{{Key: "_id", Value: 1.0}, {Key: "v", Value: "b"}})
		var dup *DuplicateKeyError
		if !errors.As(err, &dup) {
			t.Fatalf("second insert: got %v, want DuplicateKeyError", err)
		}
		if want := "E11000 duplicate key error collection: db.c index: _id_ dup key: { _id: 1.0 }"; dup.Error() != want {
			t.Errorf("message = %q, want %q", dup.Error(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = e.View(func(tx *Tx) error {
		c, err := tx.Collection("db", "c")
		if err != nil || c == nil {
			t.Fatalf("collection: %v %v", c, err)
		}
		_, doc, ok, err := tx.Get(c, int64(1))
		if err != nil || !ok {
			t.Fatalf("Get: %v %v", ok, err)
		}
		if v, _ := lookupField(doc, "v"); v != "a" {
			t.Errorf("doc = %v", doc)
		}
		if n, _ := tx.Stats(c); n != 1 {
			t.Errorf("count = %d, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUniqueIndexes(t *testing.T) {
	tests := []struct {
		name    string
		spec    IndexSpec
		docs    []bson.D
		wantDup int // index of the first document that must fail; -1 none
		wantMsg string
	}{
		{"single", IndexSpec{Name: "name_1", Key: bson.D{{Key: "name", Value: int32(1)}}, Unique: true},
			[]bson.D{{{Key: "name", Value: "x"}}, {{Key: "name", Value: "x"}}}, 1,
			`E11000 duplicate key error collection: db.c index: name_1 dup key: { name: "x" }`},
		{"compound distinct", IndexSpec{Name: "a_1_b_-1", Key: bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: int32(-1)}}, Unique: true},
			[]bson.D{{{Key: "a", Value: int32(1)}, {Key: "b", Value: int32(1)}}, {{Key: "a", Value: int32(1)}, {Key: "b", Value: int32(2)}}}, -1, ""},
		{"compound dup", IndexSpec{Name: "a_1_b_-1", Key: bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: int32(-1)}}, Unique: true},
			[]bson.D{{{Key: "a", Value: int32(1)}, {Key: "b", Value: "z"}}, {{Key: "b", Value: "z"}, {Key: "a", Value: int64(1)}}}, 1,
			`E11000 duplicate key error collection: db.c index: a_1_b_-1 dup key: { a: 1, b: "z" }`},
		{"missing is null", IndexSpec{Name: "e_1", Key: bson.D{{Key: "e", Value: int32(1)}}, Unique: true},
			[]bson.D{{{Key: "x", Value: int32(1)}}, {{Key: "x", Value: int32(2)}}}, 1,
			`E11000 duplicate key error collection: db.c index: e_1 dup key: { e: null }`},
		{"sparse skips missing", IndexSpec{Name: "e_1", Key: bson.D{{Key: "e", Value: int32(1)}}, Unique: true, Sparse: true},
			[]bson.D{{{Key: "x", Value: int32(1)}}, {{Key: "x", Value: int32(2)}}}, -1, ""},
		{"multikey", IndexSpec{Name: "t_1", Key: bson.D{{Key: "t", Value: int32(1)}}, Unique: true},
			[]bson.D{{{Key: "t", Value: bson.A{"a", "b", "a"}}}, {{Key: "t", Value: bson.A{"c", "b"}}}}, 1,
			`E11000 duplicate key error collection: db.c index: t_1 dup key: { t: "b" }`},
		{"dotted", IndexSpec{Name: "a.b_1", Key: bson.D{{Key: "a.b", Value: int32(1)}}, Unique: true},
			[]bson.D{{{Key: "a", Value: bson.D{{Key: "b", Value: int32(1)}}}}, {{Key: "a", Value: bson.A{bson.D{{Key: "b", Value: 1.0}}}}}}, 1,
			`E11000 duplicate key error collection: db.c index: a.b_1 dup key: { a.b: 1.0 }`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := openTest(t, Options{})
			err := e.Update(func(tx *Tx) error {
				c, err := tx.EnsureCollection("db", "c")
				if err != nil {
					return err
				}
				if _, err := tx.CreateIndex(c, tc.spec); err != nil {
					return err
				}
				for i, d := range tc.docs {
					d = append(bson.D{{Key: "_id", Value: int32(i)}}, d...)
					_, err := tx.Insert(c, d)
					var dup *DuplicateKeyError
					switch {
					case i == tc.wantDup && !errors.As(err, &dup):
						t.Fatalf("doc %d: got %v, want duplicate key", i, err)
					case i == tc.wantDup && dup.Error() != tc.wantMsg:
						t.Fatalf("doc %d: message %q, want %q", i, dup.Error(), tc.wantMsg)
					case i != tc.wantDup && err != nil:
						t.Fatalf("doc %d: %v", i, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUniqueIndexOnUpdateAndDelete(t *testing.T) {
	e := openTest(t, Options{})
	err := e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", "c")
		if err != nil {
			return err
		}
		if _, err := tx.CreateIndex(c, IndexSpec{Name: "k_1", Key: bson.D{{Key: "k", Value: int32(1)}}, Unique: true}); err != nil {
			return err
		}
		r1, err := tx.Insert(c, bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: "a"}})
		if err != nil {
			return err
		}
		r2, err := tx.Insert(c, bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: "b"}})
		if err != nil {
			return err
		}
		var dup *DuplicateKeyError
		if err := tx.Replace(c, r2, bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: "a"}}, "update"); !errors.As(err, &dup) {
			t.Fatalf("update to taken key: %v", err)
		}
		if err := tx.Replace(c, r1, bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: "c"}}, "update"); err != nil {
			return err
		}
		if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: 3}, {Key: "k", Value: "a"}}); err != nil {
			t.Fatalf("freed key not reusable: %v", err)
		}
		if ok, err := tx.Delete(c, r2); err != nil || !ok {
			t.Fatalf("delete: %v %v", ok, err)
		}
		_, err = tx.Insert(c, bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: "b"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCreateIndexOnDuplicatesFails(t *testing.T) {
	e := openTest(t, Options{})
	err := e.Update(func(tx *Tx) error {
		c, err := tx.EnsureCollection("db", "c")
		if err != nil {
			return err
		}
		for i := range 2 {
			if _, err := tx.Insert(c, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: "same"}}); err != nil {
				return err
			}
		}
		_, err = tx.CreateIndex(c, IndexSpec{Name: "k_1", Key: bson.D{{Key: "k", Value: int32(1)}}, Unique: true})
		return err
	})
	var dup *DuplicateKeyError
	if !errors.As(err, &dup) {
		t.Fatalf("got %v, want duplicate key", err)
	}
	_ = e.View(func(tx *Tx) error {
		c, _ := tx.Collection("db", "c")
		if c != nil {
			t.Errorf("failed transaction left collection %v behind", c)
		}
		return nil
	})
}

func collectOplog(t *testing.T, e *Engine, after bson.Timestamp) []*OplogEntry {
	t.Helper()
	var out []*OplogEntry
	if err := e.oplogAfter(after, func(ent *OplogEntry) bool { out = append(out, ent); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOplogCatalogSequence(t *testing.T) {
	e := openTest(t, Options{})
	steps := []func(tx *Tx) error{
		func(tx *Tx) error {
			c, err := tx.EnsureCollection("db", "a")
			if err != nil {
				return err
			}
			_, err = tx.Insert(c, bson.D{{Key: "_id", Value: 1}})
			return err
		},
		func(tx *Tx) error { _, err := tx.EnsureCollection("db", "b"); return err },
		func(tx *Tx) error { return tx.RenameCollection("db", "a", "db", "b", true) },
		func(tx *Tx) error {
			_, err := tx.ModifyCollection("db", "b", bson.D{{Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}})
			return err
		},
		func(tx *Tx) error {
			c, _ := tx.Collection("db", "b")
			_, doc, _, _ := tx.Get(c, 1)
			rid, _, _, _ := tx.Get(c, 1)
			if err := tx.Replace(c, rid, append(doc, bson.E{Key: "x", Value: 1}), "update"); err != nil {
				return err
			}
			_, err := tx.Delete(c, rid)
			return err
		},
		func(tx *Tx) error { _, err := tx.DropDatabase("db"); return err },
	}
	for i, s := range steps {
		if err := e.Update(s); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	var ops []string
	var prev uint64
	ents := collectOplog(t, e, bson.Timestamp{})
	if len(ents) == 0 || ents[0].Op != OpNoop {
		t.Fatalf("oplog does not start with the %q entry: %+v", OpNoop, ents)
	}
	for _, ent := range ents[1:] {
		ops = append(ops, ent.Op+":"+ent.Coll)
		if packTS(ent.TS) <= prev {
			t.Errorf("TS not increasing: %v after %v", ent.TS, unpackTS(prev))
		}
		prev = packTS(ent.TS)
		if ent.Op == "update" && (!ent.Images || ent.Pre == nil || ent.Doc == nil) {
			t.Errorf("update entry lacks images: %+v", ent)
		}
	}
	want := []string{"create:a", "insert:a", "create:b", "rename:a", "modify:b", "update:b", "delete:b", "drop:b", "dropDatabase:"}
	if len(ops) != len(want) {
		t.Fatalf("ops = %v, want %v", ops, want)
	}
	for i := range want {
		if ops[i] != want[i] {
			t.Fatalf("ops = %v, want %v", ops, want)
		}
	}
	if got := e.LastOpTime(); packTS(got) != prev {
		t.Errorf("LastOpTime = %v, want %v", got, unpackTS(prev))
	}
}

func TestRenameErrors(t *testing.T) {
	e := openTest(t, Options{})
	if err := e.Update(func(tx *Tx) error {
		_, err := tx.EnsureCollection("db", "a")
		if err == nil {
			_, err = tx.EnsureCollection("db", "b")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		from, to string
		code     mongoerr.Code
	}{
		{"missing source", "nope", "x", mongoerr.NamespaceNotFound},
		{"existing target", "a", "b", mongoerr.NamespaceExists},
		{"itself", "a", "a", mongoerr.IllegalOperation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.Update(func(tx *Tx) error { return tx.RenameCollection("db", tc.from, "db", tc.to, false) })
			var se *mongoerr.Error
			if !errors.As(err, &se) || se.Code != tc.code {
				t.Fatalf("got %v, want code %d", err, tc.code)
			}
		})
	}
}

func TestClusterTimeMonotonicAcrossRestartWithClockBackwards(t *testing.T) {
	dir := t.TempDir()
	clock := time.Unix(2_000_000_000, 0)
	now := func() time.Time { return clock }
	insert := func(e *Engine, id int) {
		t.Helper()
		if err := e.Update(func(tx *Tx) error {
			c, err := tx.EnsureCollection("db", "c")
			if err != nil {
				return err
			}
			_, err = tx.Insert(c, bson.D{{Key: "_id", Value: id}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	e, err := Open(Options{Dir: dir, Now: now, NoopInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	insert(e, 1)
	first := e.LastOpTime()
	if first.T != 2_000_000_000 {
		t.Errorf("T = %d, want wall-clock seconds", first.T)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(-time.Hour)
	e2 := openTest(t, Options{Dir: dir, Now: now, NoopInterval: -1})
	if got := e2.LastOpTime(); got != first {
		t.Fatalf("LastOpTime after reopen = %v, want %v", got, first)
	}
	insert(e2, 2)
	if got := e2.LastOpTime(); packTS(got) <= packTS(first) {
		t.Fatalf("TS went backwards: %v <= %v", got, first)
	}
	if n := len(collectOplog(t, e2, bson.Timestamp{})); n != 1+3 { // the initial no-op, then 3 inserts
		t.Fatalf("oplog has %d entries after restart, want 1+3", n)
	}
	_ = e2.View(func(tx *Tx) error {
		c, _ := tx.Collection("db", "c")
		if n, _ := tx.Stats(c); n != 2 {
			t.Errorf("documents after restart = %d, want 2", n)
		}
		return nil
	})
}

func TestOplogRetention(t *testing.T) {
	clock := time.Unix(2_000_000_000, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	tests := []struct {
		name    string
		opts    Options
		advance time.Duration
		maxLeft int
	}{
		{"bytes", Options{OplogMaxBytes: 4096}, 0, 40},
		{"age", Options{OplogMaxAge: time.Minute}, time.Second * 10, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = now
			e := openTest(t, tc.opts)
			for i := range 200 {
				if err := e.Update(func(tx *Tx) error {
					c, err := tx.EnsureCollection("db", "c")
					if err != nil {
						return err
					}
					_, err = tx.Insert(c, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: "0123456789012345678901234567890123456789"}})
					return err
				}); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				clock = clock.Add(tc.advance)
				mu.Unlock()
			}
			ents := collectOplog(t, e, bson.Timestamp{})
			if len(ents) == 0 || len(ents) > tc.maxLeft {
				t.Fatalf("retained %d entries, want 1..%d", len(ents), tc.maxLeft)
			}
			if got := e.OldestOpTime(); got != ents[0].TS {
				t.Errorf("OldestOpTime = %v, want %v", got, ents[0].TS)
			}
			if ents[len(ents)-1].TS != e.LastOpTime() {
				t.Errorf("newest entry trimmed")
			}
		})
	}
}

func TestNewOplogStartsWithNoop(t *testing.T) {
	e := openTest(t, Options{})
	ents := collectOplog(t, e, bson.Timestamp{})
	if len(ents) != 1 || ents[0].Op != OpNoop {
		t.Fatalf("new oplog = %+v, want one %q entry", ents, OpNoop)
	}
	if e.OldestOpTime() != ents[0].TS || e.LastOpTime() != ents[0].TS {
		t.Fatalf("OldestOpTime %v / LastOpTime %v, want both %v", e.OldestOpTime(), e.LastOpTime(), ents[0].TS)
	}
}

func TestChangedBroadcast(t *testing.T) {
	e := openTest(t, Options{})
	ch := e.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any write")
	default:
	}
	var wg sync.WaitGroup
	woke := make([]bool, 3)
	for i := range woke {
		wg.Add(1)
		go func() { defer wg.Done(); <-ch; woke[i] = true }()
	}
	if err := e.Update(func(tx *Tx) error { _, err := tx.EnsureCollection("db", "c"); return err }); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, w := range woke {
		if !w {
			t.Errorf("waiter %d not woken", i)
		}
	}
	if e.Changed() == ch {
		t.Error("Changed returned the closed channel again")
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	e := openTest(t, Options{})
	const writers, per = 4, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range per {
				err := e.Update(func(tx *Tx) error {
					c, err := tx.EnsureCollection("db", "c")
					if err != nil {
						return err
					}
					_, err = tx.Insert(c, bson.D{{Key: "_id", Value: w*per + i}})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range per {
				err := e.View(func(tx *Tx) error {
					c, err := tx.Collection("db", "c")
					if c == nil || err != nil {
						return err
					}
					n, _ := tx.Stats(c)
					var seen int64
					err = tx.Scan(c, 0, func(RecordID, bson.Raw) (bool, error) { seen++; return true, nil })
					if err == nil && seen != n {
						return errors.New("torn read: scan count differs from stats")
					}
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(collectOplog(t, e, bson.Timestamp{})); n != 1+writers*per+1 { // the initial no-op first
		t.Errorf("oplog entries = %d, want %d", n, 1+writers*per+1)
	}
}

// TestLastOpTimeNeverMovesBack writes from several goroutines while another
// reads LastOpTime: writers publish their cluster time after the single
// writer's lock is released, so a writer preempted in between must not move
// LastOpTime back behind a later write already acknowledged (a transaction
// started then would read a snapshot without it).
func TestLastOpTimeNeverMovesBack(t *testing.T) {
	e := openTest(t, Options{})
	const writers, per = 8, 300
	stop := make(chan struct{})
	backwards := make(chan [2]bson.Timestamp, 1)
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		last := e.LastOpTime()
		for {
			select {
			case <-stop:
				return
			default:
			}
			now := e.LastOpTime()
			if now.Before(last) {
				backwards <- [2]bson.Timestamp{last, now}
				return
			}
			last = now
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				err := e.Update(func(tx *Tx) error {
					c, err := tx.EnsureCollection("db", "c")
					if err != nil {
						return err
					}
					_, err = tx.Insert(c, bson.D{{Key: "_id", Value: w*per + i}})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	select {
	case b := <-backwards:
		t.Fatalf("LastOpTime moved back from %v to %v", b[0], b[1])
	default:
	}
}
