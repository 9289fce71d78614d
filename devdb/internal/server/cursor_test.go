package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// fakeClock is a manually advanced clock for cursor idleness.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func openCursor(t *testing.T, h *cursorHarness, s *Server, n int, extra ...bson.E) (*sliceSource, int64, bson.D) {
	t.Helper()
	src := newSliceSource(t, n)
	h.add(src)
	c := connect(t, s)
	reply := mustRun(t, c, "test", append(bson.D{{Key: "testCursor", Value: "c"}}, extra...))
	id, _ := get(reply, "cursor", "id").(int64)
	return src, id, reply
}

func TestCursorIterationThroughDriver(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s)
	tests := []struct {
		name      string
		docs      int
		batchSize int32
		wantCalls []int // n passed to NextBatch: first batch then each getMore
	}{
		{name: "default first batch then unlimited getMore", docs: 250, wantCalls: []int{101, 0}},
		{name: "batchSize across several getMores", docs: 25, batchSize: 10, wantCalls: []int{10, 10, 10}},
		{name: "exhausted in first batch", docs: 3, batchSize: 10, wantCalls: []int{10}},
		{name: "empty", docs: 0, wantCalls: []int{101}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newSliceSource(t, tt.docs)
			h.add(src)
			cmd := bson.D{{Key: "testCursor", Value: "c"}}
			opts := options.RunCmd()
			if tt.batchSize > 0 {
				cmd = append(cmd, bson.E{Key: "batchSize", Value: tt.batchSize})
			}
			cur, err := c.Database("test").RunCommandCursor(context.Background(), cmd, opts)
			if err != nil {
				t.Fatalf("RunCommandCursor: %v", err)
			}
			if tt.batchSize > 0 {
				cur.SetBatchSize(tt.batchSize)
			}
			var got []bson.D
			if err := cur.All(context.Background(), &got); err != nil {
				t.Fatalf("iterate: %v", err)
			}
			if len(got) != tt.docs {
				t.Fatalf("got %d documents, want %d", len(got), tt.docs)
			}
			for i, d := range got {
				if get(d, "_id") != int32(i) {
					t.Fatalf("document %d = %v", i, d)
				}
			}
			calls := src.batchCalls()
			if len(calls) != len(tt.wantCalls) {
				t.Fatalf("NextBatch calls = %+v, want n sequence %v", calls, tt.wantCalls)
			}
			for i, call := range calls {
				if call.n != tt.wantCalls[i] || call.maxBytes != cursorMaxBatchBytes || call.await != 0 {
					t.Errorf("call %d = %+v, want n %d, maxBytes %d, no await", i, call, tt.wantCalls[i], cursorMaxBatchBytes)
				}
			}
			if src.closed.Load() != 1 {
				t.Errorf("source closed %d times, want 1", src.closed.Load())
			}
			if n := s.cursors.len(); n != 0 {
				t.Errorf("%d cursors still registered", n)
			}
		})
	}
}

func TestCursorReplyShape(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s)
	t.Run("first batch and getMore", func(t *testing.T) {
		src := newSliceSource(t, 5)
		h.add(src)
		reply := mustRun(t, c, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "batchSize", Value: 2}})
		cur := get(reply, "cursor").(bson.D)
		keys := []string{}
		for _, e := range cur {
			keys = append(keys, e.Key)
		}
		if want := []string{"firstBatch", "position", "id", "ns"}; len(keys) != 4 || keys[0] != want[0] || keys[1] != want[1] || keys[2] != want[2] || keys[3] != want[3] {
			t.Fatalf("cursor keys = %v, want %v", keys, want)
		}
		id := get(cur, "id").(int64)
		if id <= 0 || get(cur, "ns") != "test.c" || get(cur, "position") != int32(2) {
			t.Fatalf("cursor = %v", cur)
		}
		more := mustRun(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: 2}})
		if get(more, "cursor", "id") != id || len(get(more, "cursor", "nextBatch").(bson.A)) != 2 || get(more, "cursor", "position") != int32(4) {
			t.Fatalf("getMore = %v", more)
		}
		last := mustRun(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
		if get(last, "cursor", "id") != int64(0) || len(get(last, "cursor", "nextBatch").(bson.A)) != 1 {
			t.Fatalf("last getMore = %v", last)
		}
		_, err := runCommand(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
		wantCode(t, err, mongoerr.CursorNotFound, "CursorNotFound")
	})
	t.Run("singleBatch closes", func(t *testing.T) {
		src := newSliceSource(t, 5)
		h.add(src)
		reply := mustRun(t, c, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "batchSize", Value: 2}, {Key: "singleBatch", Value: true}})
		if get(reply, "cursor", "id") != int64(0) || src.closed.Load() != 1 {
			t.Fatalf("reply = %v, closed %d", reply, src.closed.Load())
		}
	})
	t.Run("batchSize 0 gives an empty first batch and an open cursor", func(t *testing.T) {
		src := newSliceSource(t, 0)
		h.add(src)
		reply := mustRun(t, c, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "batchSize", Value: 0}})
		if id, _ := get(reply, "cursor", "id").(int64); id == 0 || len(get(reply, "cursor", "firstBatch").(bson.A)) != 0 || len(src.batchCalls()) != 0 {
			t.Fatalf("reply = %v, calls %v", reply, src.batchCalls())
		}
	})
}

func TestGetMoreErrors(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s)
	_, id, _ := openCursor(t, &h, s, 10, bson.E{Key: "batchSize", Value: 1})
	tests := []struct {
		name string
		cmd  bson.D
		code mongoerr.Code
	}{
		{name: "unknown id", cmd: bson.D{{Key: "getMore", Value: id + 1}, {Key: "collection", Value: "c"}}, code: mongoerr.CursorNotFound},
		{name: "wrong collection", cmd: bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "other"}}, code: mongoerr.Unauthorized},
		{name: "id not a long", cmd: bson.D{{Key: "getMore", Value: int32(1)}, {Key: "collection", Value: "c"}}, code: mongoerr.TypeMismatch},
		{name: "missing collection", cmd: bson.D{{Key: "getMore", Value: id}}, code: mongoerr.IDLMissingField},
		{name: "collection not a string", cmd: bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: 1}}, code: mongoerr.TypeMismatch},
		{name: "negative batchSize", cmd: bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: -1}}, code: mongoerr.IDLValueOutOfRange},
		{name: "maxTimeMS on a non-awaitable cursor", cmd: bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 100}}, code: mongoerr.BadValue},
		{name: "maxTimeMS 0 on a non-awaitable cursor", cmd: bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: 0}}, code: mongoerr.BadValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCommand(t, c, "test", tt.cmd)
			wantCode(t, err, tt.code, "")
		})
	}
	t.Run("other database", func(t *testing.T) {
		_, err := runCommand(t, c, "otherdb", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
		wantCode(t, err, mongoerr.Unauthorized, "Unauthorized")
		var ce mongo.CommandError
		if want := "Requested getMore on namespace 'otherdb.c', but cursor belongs to a different namespace test.c"; !errors.As(err, &ce) || ce.Message != want {
			t.Errorf("message %v, want %q", err, want)
		}
	})
	// None of the failures above consumed or killed the cursor.
	more := mustRun(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	if n := len(get(more, "cursor", "nextBatch").(bson.A)); n != 9 {
		t.Fatalf("getMore after errors returned %d documents, want 9", n)
	}
}

func TestKillCursors(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s)
	src, id, _ := openCursor(t, &h, s, 10, bson.E{Key: "batchSize", Value: 1})
	reply := mustRun(t, c, "test", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id, int64(12345)}}})
	if k := get(reply, "cursorsKilled").(bson.A); len(k) != 1 || k[0] != id {
		t.Fatalf("cursorsKilled = %v", k)
	}
	if nf := get(reply, "cursorsNotFound").(bson.A); len(nf) != 1 || nf[0] != int64(12345) {
		t.Fatalf("cursorsNotFound = %v", nf)
	}
	for _, f := range []string{"cursorsAlive", "cursorsUnknown"} {
		if a, ok := get(reply, f).(bson.A); !ok || len(a) != 0 {
			t.Fatalf("%s = %v", f, get(reply, f))
		}
	}
	if src.closed.Load() != 1 {
		t.Fatalf("killed source closed %d times", src.closed.Load())
	}
	_, err := runCommand(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	wantCode(t, err, mongoerr.CursorNotFound, "CursorNotFound")

	again := mustRun(t, c, "test", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id}}})
	if nf := get(again, "cursorsNotFound").(bson.A); len(nf) != 1 {
		t.Fatalf("second kill: %v", again)
	}
	_, err = runCommand(t, c, "test", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{int32(1)}}})
	wantCode(t, err, mongoerr.TypeMismatch, "TypeMismatch")
	_, err = runCommand(t, c, "test", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{int64(7), "x"}}})
	wantCode(t, err, mongoerr.TypeMismatch, "TypeMismatch")
	if err == nil || !strings.Contains(err.Error(), "'killCursors.cursors.1' is the wrong type 'string'") {
		t.Errorf("second id of the wrong type: %v, want the message naming cursors.1", err)
	}

	t.Run("driver Close kills", func(t *testing.T) {
		src := newSliceSource(t, 10)
		h.add(src)
		cur, err := c.Database("test").RunCommandCursor(context.Background(), bson.D{{Key: "testCursor", Value: "c"}, {Key: "batchSize", Value: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if !cur.Next(context.Background()) {
			t.Fatal(cur.Err())
		}
		if err := cur.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if src.closed.Load() != 1 || s.cursors.len() != 0 {
			t.Fatalf("after driver Close: source closed %d, %d cursors", src.closed.Load(), s.cursors.len())
		}
	})
}

func TestCursorInUse(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	src := newSliceSource(t, 10)
	h.add(src)
	c1 := connect(t, s)
	c2 := connect(t, s)
	reply := mustRun(t, c1, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "batchSize", Value: 1}})
	id := get(reply, "cursor", "id").(int64)

	src.gate = make(chan struct{})
	src.entered = make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := runCommand(t, c1, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: 1}})
		done <- err
	}()
	<-src.entered
	_, err := runCommand(t, c2, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	wantCode(t, err, mongoerr.CursorInUse, "CursorInUse")
	// A pinned cursor is never reaped.
	if n := s.cursors.reap(time.Now().Add(24 * time.Hour)); n != 0 {
		t.Fatalf("reaped %d cursors in use", n)
	}
	close(src.gate)
	if err := <-done; err != nil {
		t.Fatalf("pinned getMore: %v", err)
	}
	src.gate = nil
	if s.cursors.len() != 1 {
		t.Fatalf("%d cursors, want the cursor still open", s.cursors.len())
	}
}

func TestKillCursorInUse(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	src := newSliceSource(t, 10)
	h.add(src)
	c1 := connect(t, s)
	c2 := connect(t, s)
	id := get(mustRun(t, c1, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "batchSize", Value: 1}}), "cursor", "id").(int64)
	src.gate = make(chan struct{}) // never opened: only cancellation ends the getMore
	src.entered = make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := runCommand(t, c1, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
		done <- err
	}()
	<-src.entered
	reply := mustRun(t, c2, "test", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id}}})
	if k := get(reply, "cursorsKilled").(bson.A); len(k) != 1 {
		t.Fatalf("killCursors = %v", reply)
	}
	// MongoDB interrupts the getMore (killOperation with CursorKilled).
	wantError(t, <-done, mongoerr.CursorKilled, "Executor error during getMore :: caused by :: operation was interrupted")
	if src.closed.Load() != 1 || s.cursors.len() != 0 {
		t.Fatalf("source closed %d times, %d cursors left", src.closed.Load(), s.cursors.len())
	}
}

func TestAwaitableCursor(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s)
	src := newSliceSource(t, 0)
	src.endless = true
	h.add(src)
	reply := mustRun(t, c, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "awaitable", Value: true}})
	id := get(reply, "cursor", "id").(int64)
	if id == 0 {
		t.Fatalf("awaitable cursor closed on an empty first batch: %v", reply)
	}
	for _, tc := range []struct {
		maxTimeMS any
		want      time.Duration
	}{
		{maxTimeMS: nil, want: time.Second},
		{maxTimeMS: int64(250), want: 250 * time.Millisecond},
		{maxTimeMS: int32(5), want: 5 * time.Millisecond},
		// An explicit 0 is a zero wait (MongoDB's maxTimeMS.value_or(1000)),
		// not the default.
		{maxTimeMS: int64(0), want: 0},
	} {
		cmd := bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}}
		if tc.maxTimeMS != nil {
			cmd = append(cmd, bson.E{Key: "maxTimeMS", Value: tc.maxTimeMS})
		}
		more := mustRun(t, c, "test", cmd)
		if get(more, "cursor", "id") != id {
			t.Fatalf("empty batch closed the awaitable cursor: %v", more)
		}
		calls := src.batchCalls()
		if last := calls[len(calls)-1]; last.await != tc.want {
			t.Fatalf("maxTimeMS %v: await = %v, want %v", tc.maxTimeMS, last.await, tc.want)
		}
	}
	if first := src.batchCalls()[0]; first.await != 0 {
		t.Fatalf("first batch awaited %v, want 0", first.await)
	}
}

func TestCursorReaping(t *testing.T) {
	var h cursorHarness
	clock := newFakeClock()
	ticks := make(chan time.Time)
	reaped := make(chan int)
	s := startTestServer(t, Options{CursorTimeout: time.Minute}, testHooks{
		register:     h.register,
		now:          clock.now,
		janitorTicks: ticks,
		afterReap:    func(n int) { reaped <- n },
	})
	c := connect(t, s)
	srcA, idA, _ := openCursor(t, &h, s, 10, bson.E{Key: "batchSize", Value: 1})
	clock.advance(40 * time.Second)
	srcB, idB, _ := openCursor(t, &h, s, 10, bson.E{Key: "batchSize", Value: 1})

	tick := func() int {
		ticks <- clock.now()
		return <-reaped
	}
	if n := tick(); n != 0 {
		t.Fatalf("reaped %d cursors before any timed out", n)
	}
	clock.advance(30 * time.Second) // A idle 70s, B idle 30s
	// Using B resets its idle time.
	mustRun(t, c, "test", bson.D{{Key: "getMore", Value: idB}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: 1}})
	if n := tick(); n != 1 {
		t.Fatalf("reaped %d cursors, want 1", n)
	}
	if srcA.closed.Load() != 1 || srcB.closed.Load() != 0 {
		t.Fatalf("closed: A %d, B %d", srcA.closed.Load(), srcB.closed.Load())
	}
	_, err := runCommand(t, c, "test", bson.D{{Key: "getMore", Value: idA}, {Key: "collection", Value: "c"}})
	wantCode(t, err, mongoerr.CursorNotFound, "CursorNotFound")
	clock.advance(61 * time.Second)
	if n := tick(); n != 1 || srcB.closed.Load() != 1 {
		t.Fatalf("reaped %d, B closed %d", n, srcB.closed.Load())
	}
}

func TestCloseClosesCursors(t *testing.T) {
	var h cursorHarness
	s, err := start(testContext(t), Options{Logger: testLogger(t)}, testHooks{register: h.register})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	src, id, _ := openCursor(t, &h, s, 10, bson.E{Key: "batchSize", Value: 1})
	if id == 0 {
		t.Fatal("cursor not open")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if src.closed.Load() != 1 {
		t.Fatalf("source closed %d times after server Close", src.closed.Load())
	}
}

func TestCursorIDsArePositiveAndUnique(t *testing.T) {
	m := newCursorManager(time.Minute, testLogger(t), nil)
	seen := map[int64]bool{}
	for range 1000 {
		id := m.register("db.c", &sliceSource{}, CursorOptions{})
		if id <= 0 || seen[id] {
			t.Fatalf("cursor id %d is not positive or repeats", id)
		}
		seen[id] = true
	}
	m.closeAll()
	if m.len() != 0 {
		t.Fatalf("%d cursors after closeAll", m.len())
	}
}

func TestCloseDuringAwaitingGetMore(t *testing.T) {
	var h cursorHarness
	s, err := start(testContext(t), Options{Logger: testLogger(t)}, testHooks{register: h.register})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	src := newSliceSource(t, 0)
	src.endless = true
	h.add(src)
	c := connect(t, s)
	id := get(mustRun(t, c, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "awaitable", Value: true}}), "cursor", "id").(int64)
	src.gate = make(chan struct{}) // never opened: only cancellation ends the getMore
	src.entered = make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, err := runCommand(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "maxTimeMS", Value: int64(time.Hour / time.Millisecond)}})
		done <- err
	}()
	<-src.entered
	if err := s.Close(); err != nil { // must not wait for the hour-long await
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("getMore succeeded although the server closed")
	}
	if src.closed.Load() != 1 {
		t.Fatalf("source closed %d times", src.closed.Load())
	}
}

// TestKillCursorsAfterGetMoreBatch: a killCursors that lands after a
// getMore built its batch (past its last interruption point) leaves that
// batch to be returned with the cursor's id, as on MongoDB, and the next
// getMore fails with CursorNotFound: an id of 0 would tell the client the
// cursor was exhausted when it was killed.
func TestKillCursorsAfterGetMoreBatch(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s)
	src, id, _ := openCursor(t, &h, s, 10, bson.E{Key: "batchSize", Value: 1})
	src.done = func() {
		src.done = nil
		if !s.cursors.kill(id) {
			t.Error("kill of the cursor in use failed")
		}
	}
	more := mustRun(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: int32(2)}})
	if n := len(get(more, "cursor", "nextBatch").(bson.A)); n != 2 {
		t.Fatalf("getMore returned %d documents, want the 2 it built", n)
	}
	if got := get(more, "cursor", "id"); got != id {
		t.Fatalf("cursor id in the reply = %v, want %d (not exhausted: killed)", got, id)
	}
	_, err := runCommand(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	wantCode(t, err, mongoerr.CursorNotFound, "CursorNotFound")
	if src.closed.Load() != 1 {
		t.Fatalf("killed source closed %d times, want 1", src.closed.Load())
	}
}
