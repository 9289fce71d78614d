package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// closeConn closes the server's connection with the given id, if it is
// still open (as a network failure would, from the client's side).
func closeConn(s *Server, id int64) {
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// dropAfterApply wraps the handlers of the retryable write commands so that,
// while armed, the next such command is executed and committed and then its
// connection is closed before the reply is sent: the driver sees a network
// error for a write that was applied, and retries it.
type dropAfterApply struct {
	armed atomic.Bool
	// executed counts handler runs per command while the server is up.
	mu       sync.Mutex
	executed map[string]int
}

func (d *dropAfterApply) register(s *Server) {
	d.executed = map[string]int{}
	for _, name := range []string{"insert", "update", "delete", "findAndModify"} {
		orig := s.handlers[name]
		s.handlers[name] = func(ctx context.Context, req *Request) (bson.D, error) {
			reply, err := orig(ctx, req)
			d.mu.Lock()
			d.executed[name]++
			d.mu.Unlock()
			if d.armed.CompareAndSwap(true, false) {
				closeConn(s, req.ConnID)
			}
			return reply, err
		}
	}
}

// txnMonitor records the txnNumber of every started write command.
type txnMonitor struct {
	mu   sync.Mutex
	txns []int64
}

func (m *txnMonitor) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if v, err := e.Command.LookupErr("txnNumber"); err == nil {
			m.mu.Lock()
			m.txns = append(m.txns, v.Int64())
			m.mu.Unlock()
		}
	}}
}

func (m *txnMonitor) snapshot() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int64(nil), m.txns...)
}

func TestRetryableWriteAppliedOnce(t *testing.T) {
	inc := bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}
	byID := bson.D{{Key: "_id", Value: 1}}
	tests := []struct {
		name    string
		command string
		// seed is inserted before the write under test.
		seed []any
		// write runs the operation under test and checks its result.
		write func(ctx context.Context, coll *mongo.Collection) error
		// want is the collection's content afterwards, by _id.
		want []bson.D
	}{
		{
			name: "insertOne", command: "insert",
			write: func(ctx context.Context, coll *mongo.Collection) error {
				_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}})
				return err
			},
			want: []bson.D{{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(0)}}},
		},
		{
			name: "insertMany", command: "insert",
			write: func(ctx context.Context, coll *mongo.Collection) error {
				res, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}})
				if err == nil && len(res.InsertedIDs) != 2 {
					t.Errorf("InsertedIDs = %v, want 2", res.InsertedIDs)
				}
				return err
			},
			want: []bson.D{{{Key: "_id", Value: int32(1)}}, {{Key: "_id", Value: int32(2)}}},
		},
		{
			name: "updateOne $inc", command: "update", seed: []any{bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}}},
			write: func(ctx context.Context, coll *mongo.Collection) error {
				res, err := coll.UpdateOne(ctx, byID, inc)
				if err == nil && (res.MatchedCount != 1 || res.ModifiedCount != 1) {
					t.Errorf("UpdateOne = %+v, want 1 matched and modified", res)
				}
				return err
			},
			want: []bson.D{{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}}},
		},
		{
			name: "upsert", command: "update",
			write: func(ctx context.Context, coll *mongo.Collection) error {
				res, err := coll.UpdateOne(ctx, byID, inc, options.UpdateOne().SetUpsert(true))
				if err == nil && res.UpsertedID != int32(1) {
					t.Errorf("UpsertedID = %v, want 1", res.UpsertedID)
				}
				return err
			},
			want: []bson.D{{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}}},
		},
		{
			name: "deleteOne", command: "delete", seed: []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}},
			write: func(ctx context.Context, coll *mongo.Collection) error {
				res, err := coll.DeleteOne(ctx, bson.D{})
				if err == nil && res.DeletedCount != 1 {
					t.Errorf("DeletedCount = %d, want 1", res.DeletedCount)
				}
				return err
			},
			want: []bson.D{{{Key: "_id", Value: int32(2)}}},
		},
		{
			name: "findOneAndUpdate $inc", command: "findAndModify", seed: []any{bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 0}}},
			write: func(ctx context.Context, coll *mongo.Collection) error {
				var got bson.D
				err := coll.FindOneAndUpdate(ctx, byID, inc, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&got)
				if err == nil && get(got, "n") != int32(1) {
					t.Errorf("returned %v, want n 1", got)
				}
				return err
			},
			want: []bson.D{{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var drop dropAfterApply
			s := startTestServer(t, Options{}, testHooks{register: drop.register})
			var mon txnMonitor
			c := connect(t, s, options.Client().SetMonitor(mon.monitor()))
			coll := c.Database("test").Collection("retry")
			ctx := testContext(t)
			if len(tc.seed) > 0 {
				if _, err := coll.InsertMany(ctx, tc.seed); err != nil {
					t.Fatalf("seed: %v", err)
				}
			}
			before := mon.snapshot()
			drop.armed.Store(true)
			if err := tc.write(ctx, coll); err != nil {
				t.Fatalf("write: %v (the driver's retry must succeed)", err)
			}
			if drop.armed.Load() {
				t.Fatal("the connection was never dropped")
			}
			txns := mon.snapshot()[len(before):]
			if len(txns) != 2 || txns[0] != txns[1] {
				t.Fatalf("txnNumbers sent = %v, want the same one twice (a retry)", txns)
			}
			got := allDocs(t, coll)
			if len(got) != len(tc.want) {
				t.Fatalf("documents = %v, want %v", got, tc.want)
			}
			for i := range got {
				if !equalDocs(got[i], tc.want[i]) {
					t.Fatalf("documents = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func allDocs(t *testing.T, coll *mongo.Collection) []bson.D {
	t.Helper()
	ctx := testContext(t)
	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	var out []bson.D
	if err := cur.All(ctx, &out); err != nil {
		t.Fatalf("find: %v", err)
	}
	return out
}

func equalDocs(a, b bson.D) bool {
	ra, err1 := bson.Marshal(a)
	rb, err2 := bson.Marshal(b)
	return err1 == nil && err2 == nil && string(ra) == string(rb)
}

// TestRetryableWriteAcrossRestart applies an insert, stops the server before
// the reply is sent and restarts it on the same address and data directory:
// the driver's retry must be answered from the persisted session record.
func TestRetryableWriteAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	applied := make(chan struct{})
	var once sync.Once
	hold := func(s *Server) {
		orig := s.handlers["insert"]
		s.handlers["insert"] = func(ctx context.Context, req *Request) (bson.D, error) {
			reply, err := orig(ctx, req)
			if name, _ := req.Body[0].Value.(string); name == "restart" {
				once.Do(func() { close(applied) })
				// Wait for Close, then make sure no reply is sent: Close
				// cancels command contexts before closing connections.
				<-ctx.Done()
				closeConn(s, req.ConnID)
			}
			return reply, err
		}
	}
	s1 := startTestServer(t, Options{Data: dir}, testHooks{register: hold})
	var mon txnMonitor
	c := connect(t, s1, options.Client().SetMonitor(mon.monitor()))
	coll := c.Database("test").Collection("restart")
	ctx := testContext(t)
	done := make(chan error, 1)
	go func() {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "once"}})
		done <- err
	}()
	select {
	case <-applied:
	case err := <-done:
		t.Fatalf("insert returned before being held: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s2 := startTestServer(t, Options{Data: dir, Addr: s1.Addr()}, testHooks{})
	if err := <-done; err != nil {
		t.Fatalf("insert: %v (the retry after the restart must succeed)", err)
	}
	if txns := mon.snapshot(); len(txns) != 2 || txns[0] != txns[1] {
		t.Fatalf("txnNumbers sent = %v, want one retry", txns)
	}
	c2 := connect(t, s2)
	if n, err := c2.Database("test").Collection("restart").CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("count = %d, %v; want 1", n, err)
	}
}

// TestRetryableWriteCommandRules checks txnNumber handling on a raw
// connection, where the test controls lsid and txnNumber.
func TestRetryableWriteCommandRules(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	r := dialRaw(t, s)
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: make([]byte, 16)}}}
	run := func(cmd bson.D) bson.D {
		t.Helper()
		return r.readReply(r.command(0, append(cmd, bson.E{Key: "$db", Value: "test"})))
	}
	insert := func(txn any, id int) bson.D {
		cmd := bson.D{{Key: "insert", Value: "rules"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: int32(id)}}}},
			{Key: "lsid", Value: lsid}}
		if txn != nil {
			cmd = append(cmd, bson.E{Key: "txnNumber", Value: txn})
		}
		return run(cmd)
	}
	count := func() int32 {
		t.Helper()
		reply := run(bson.D{{Key: "count", Value: "rules"}})
		n, _ := get(reply, "n").(int32)
		return n
	}

	first := insert(int64(5), 1)
	if get(first, "n") != int32(1) || get(first, "retriedStmtIds") != nil {
		t.Fatalf("first insert = %v, want n 1 without retriedStmtIds", first)
	}
	retry := insert(int64(5), 1)
	if get(retry, "ok") != 1.0 || get(retry, "n") != int32(1) || get(retry, "writeErrors") != nil {
		t.Fatalf("retried insert = %v, want the recorded reply", retry)
	}
	if ids, _ := get(retry, "retriedStmtIds").(bson.A); len(ids) != 1 || ids[0] != int32(0) {
		t.Fatalf("retriedStmtIds = %v, want [0]", get(retry, "retriedStmtIds"))
	}
	if n := count(); n != 1 {
		t.Fatalf("count after retry = %d, want 1", n)
	}

	tests := []struct {
		name     string
		cmd      bson.D
		code     mongoerr.Code
		codeName string
	}{
		{
			name: "older txnNumber", code: 225, codeName: "TransactionTooOld",
			cmd: bson.D{{Key: "insert", Value: "rules"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: int32(9)}}}},
				{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(4)}},
		},
		{
			name: "same txnNumber, different command", code: 20, codeName: "IllegalOperation",
			cmd: bson.D{{Key: "delete", Value: "rules"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: int32(1)}}}},
				{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(5)}},
		},
		{
			name: "multi update", code: 72, codeName: "InvalidOptions",
			cmd: bson.D{{Key: "update", Value: "rules"}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}},
				{Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}, {Key: "multi", Value: true}}}},
				{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(6)}},
		},
		{
			name: "delete limit 0", code: 72, codeName: "InvalidOptions",
			cmd: bson.D{{Key: "delete", Value: "rules"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: int32(0)}}}},
				{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(6)}},
		},
		{
			name: "txnNumber without lsid", code: 72, codeName: "InvalidOptions",
			cmd: bson.D{{Key: "insert", Value: "rules"}, {Key: "documents", Value: bson.A{bson.D{}}}, {Key: "txnNumber", Value: int64(6)}},
		},
		{
			name: "txnNumber not a long", code: 14, codeName: "TypeMismatch",
			cmd: bson.D{{Key: "insert", Value: "rules"}, {Key: "documents", Value: bson.A{bson.D{}}},
				{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int32(6)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply := run(tc.cmd)
			if get(reply, "ok") != 0.0 || get(reply, "code") != int32(tc.code) || get(reply, "codeName") != tc.codeName {
				t.Fatalf("reply = %v, want error %d %s", reply, tc.code, tc.codeName)
			}
		})
	}
	if n := count(); n != 1 {
		t.Fatalf("count after refused writes = %d, want 1", n)
	}

	// A newer txnNumber executes; the write without txnNumber is not recorded.
	if reply := insert(int64(6), 2); get(reply, "n") != int32(1) {
		t.Fatalf("txn 6 insert = %v, want n 1", reply)
	}
	if reply := insert(nil, 3); get(reply, "n") != int32(1) {
		t.Fatalf("insert without txnNumber = %v, want n 1", reply)
	}
	if reply := insert(int64(6), 2); get(reply, "n") != int32(1) || get(reply, "retriedStmtIds") == nil {
		t.Fatalf("retried txn 6 = %v, want the recorded reply", reply)
	}
	if n := count(); n != 3 {
		t.Fatalf("count = %d, want 3", n)
	}
}

func TestWithRetriedStmtIDs(t *testing.T) {
	we := func(idx ...int32) bson.E {
		arr := bson.A{}
		for _, i := range idx {
			arr = append(arr, bson.D{{Key: "index", Value: i}, {Key: "code", Value: int32(11000)}})
		}
		return bson.E{Key: "writeErrors", Value: arr}
	}
	tests := []struct {
		name  string
		rw    retryableWrite
		reply bson.D
		want  any
	}{
		{"all executed", retryableWrite{stmts: 3, ordered: true}, bson.D{}, bson.A{int32(0), int32(1), int32(2)}},
		{"ordered stops at the first error", retryableWrite{stmts: 4, ordered: true}, bson.D{we(2)}, bson.A{int32(0), int32(1)}},
		{"unordered skips failures", retryableWrite{stmts: 4}, bson.D{we(0, 2)}, bson.A{int32(1), int32(3)}},
		{"nothing executed", retryableWrite{stmts: 1, ordered: true}, bson.D{we(0)}, nil},
		{"findAndModify", retryableWrite{stmts: 1, findAndModify: true}, bson.D{}, int32(0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := withRetriedStmtIDs(tc.reply, &tc.rw)
			got := get(out, "retriedStmtIds")
			if tc.rw.findAndModify {
				got = get(out, "retriedStmtId")
			}
			if ga, ok := got.(bson.A); ok {
				wa, _ := tc.want.(bson.A)
				if len(ga) != len(wa) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				for i := range ga {
					if ga[i] != wa[i] {
						t.Fatalf("got %v, want %v", got, tc.want)
					}
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRetryableWriteConcurrentDuplicates sends the same retryable insert on
// several connections at once (as a driver may after a socket timeout while
// the first attempt still runs): it is applied once and every copy succeeds.
func TestRetryableWriteConcurrentDuplicates(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: []byte("0123456789abcdef")}}}
	cmd := bson.D{{Key: "insert", Value: "dup"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "x"}}, bson.D{{Key: "_id", Value: "y"}}}},
		{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(1)}, {Key: "$db", Value: "test"}}
	const copies = 8
	conns := make([]*rawConn, copies)
	ids := make([]int32, copies)
	for i := range conns {
		conns[i] = dialRaw(t, s)
	}
	for i, r := range conns { // all in flight before any reply is read
		ids[i] = r.command(0, cmd)
	}
	for i, r := range conns {
		reply := r.readReply(ids[i])
		if get(reply, "ok") != 1.0 || get(reply, "n") != int32(2) || get(reply, "writeErrors") != nil {
			t.Fatalf("copy %d: reply %v, want n 2 without write errors", i, reply)
		}
	}
	reply := conns[0].readReply(conns[0].command(0, bson.D{{Key: "count", Value: "dup"}, {Key: "$db", Value: "test"}}))
	if get(reply, "n") != int32(2) {
		t.Fatalf("count = %v, want 2", get(reply, "n"))
	}
}
