package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// txnSession starts a driver session with a transaction open on it.
func txnSession(t *testing.T, c *mongo.Client) (*mongo.Session, context.Context) {
	t.Helper()
	sess, err := c.StartSession()
	if err != nil {
		t.Fatalf("start session: %v", err)
	}
	t.Cleanup(func() { sess.EndSession(context.Background()) })
	if err := sess.StartTransaction(); err != nil {
		t.Fatalf("start transaction: %v", err)
	}
	return sess, mongo.NewSessionContext(testContext(t), sess)
}

// findIDs returns the _id values of coll's documents matching filter, in
// natural order, read in ctx (a session context reads in its transaction).
func findIDs(t *testing.T, ctx context.Context, coll *mongo.Collection, filter bson.D) []any {
	t.Helper()
	cur, err := coll.Find(ctx, filter)
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	var docs []bson.D
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatalf("find: %v", err)
	}
	ids := []any{}
	for _, d := range docs {
		ids = append(ids, get(d, "_id"))
	}
	return ids
}

// wantLabel checks that err is a server error with code and error label.
func wantLabel(t *testing.T, err error, code mongoerr.Code, label string) {
	t.Helper()
	var se mongo.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want a server error", err, err)
	}
	if !se.HasErrorCode(int(code)) || !se.HasErrorLabel(label) {
		t.Fatalf("err = %v, want code %d with label %s", err, code, label)
	}
}

func TestTransactionCommitIsAtomicAndVisibleOnlyAfterCommit(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("bank").Collection("accounts")
	if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "a"}, {Key: "balance", Value: 100}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "balance", Value: 0}}}); err != nil {
		t.Fatal(err)
	}
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)

	sess, sctx := txnSession(t, c)
	for _, u := range []struct {
		id  string
		inc int
	}{{"a", -30}, {"b", 30}} {
		if _, err := coll.UpdateByID(sctx, u.id, bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: u.inc}}}}); err != nil {
			t.Fatalf("update %s in the transaction: %v", u.id, err)
		}
	}
	if _, err := coll.InsertOne(sctx, bson.D{{Key: "_id", Value: "log1"}}); err != nil {
		t.Fatal(err)
	}
	balance := func(ctx context.Context, id string) int32 {
		var d bson.D
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
			t.Fatalf("find %s: %v", id, err)
		}
		return get(d, "balance").(int32)
	}
	if got := balance(sctx, "a"); got != 70 {
		t.Errorf("inside the transaction a = %d, want its own write 70", got)
	}
	if got := balance(ctx, "a"); got != 100 {
		t.Errorf("outside the transaction a = %d before commit, want 100", got)
	}
	if got := findIDs(t, ctx, coll, bson.D{{Key: "_id", Value: "log1"}}); len(got) != 0 {
		t.Errorf("outside the transaction the inserted document is visible before commit: %v", got)
	}
	// A marker written outside the transaction before the commit: the
	// stream must show it before any of the transaction's events.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "marker"}}); err != nil {
		t.Fatal(err)
	}
	if err := sess.CommitTransaction(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if a, b := balance(ctx, "a"), balance(ctx, "b"); a != 70 || b != 30 {
		t.Errorf("after commit a, b = %d, %d, want 70, 30", a, b)
	}
	type ev struct {
		Op        string         `bson:"operationType"`
		Time      bson.Timestamp `bson:"clusterTime"`
		Wall      bson.DateTime  `bson:"wallTime"`
		Key       bson.D         `bson:"documentKey"`
		TxnNumber *int64         `bson:"txnNumber"`
		LSID      bson.D         `bson:"lsid"`
	}
	var got []ev
	for len(got) < 4 && cs.Next(ctx) {
		var e ev
		if err := cs.Decode(&e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != 4 {
		t.Fatalf("got %d events (%v), want 4", len(got), cs.Err())
	}
	if got[0].Key[0].Value != "marker" || got[0].TxnNumber != nil {
		t.Errorf("first event %+v, want the marker's insert without txnNumber", got[0])
	}
	wantOps := []string{"update", "update", "insert"}
	wantIDs := []any{"a", "b", "log1"}
	lsid := sess.ID()
	for i, e := range got[1:] {
		if e.Op != wantOps[i] || e.Key[0].Value != wantIDs[i] {
			t.Errorf("event %d = %s %v, want %s %v", i+1, e.Op, e.Key, wantOps[i], wantIDs[i])
		}
		if e.Time != got[1].Time || e.Wall != got[1].Wall || !got[0].Time.Before(e.Time) {
			t.Errorf("event %d clusterTime %v wallTime %v, want the commit's (%v, %v), after the marker's %v",
				i+1, e.Time, e.Wall, got[1].Time, got[1].Wall, got[0].Time)
		}
		if e.TxnNumber == nil || *e.TxnNumber != 1 {
			t.Errorf("event %d txnNumber = %v, want 1", i+1, e.TxnNumber)
		}
		if len(e.LSID) < 2 || e.LSID[0].Key != "id" || e.LSID[1].Key != "uid" {
			t.Errorf("event %d lsid = %v, want {id, uid}", i+1, e.LSID)
		} else if _, id, _ := lsid.Lookup("id").BinaryOK(); !bytesEqual(id, e.LSID[0].Value.(bson.Binary).Data) {
			t.Errorf("event %d lsid.id = %v, want the session's", i+1, e.LSID[0].Value)
		}
	}
	// A retried commit is answered with success again.
	if err := sess.CommitTransaction(ctx); err != nil {
		t.Errorf("second commit: %v", err)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func TestTransactionAbortDiscardsWrites(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("db").Collection("new")
	sess, sctx := txnSession(t, c)
	// The collection does not exist: the transaction creates it implicitly.
	if _, err := coll.InsertOne(sctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if got := findIDs(t, sctx, coll, bson.D{}); len(got) != 1 {
		t.Errorf("inside: %v, want [1]", got)
	}
	if err := sess.AbortTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	names, err := c.Database("db").ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Errorf("collections after abort: %v, want none", names)
	}
	if got := findIDs(t, ctx, coll, bson.D{}); len(got) != 0 {
		t.Errorf("documents after abort: %v", got)
	}
}

func TestTransactionSnapshotIsolationAndWriteConflicts(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("db").Collection("c")
	if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 1}},
		bson.D{{Key: "_id", Value: 2}, {Key: "n", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	sess, sctx := txnSession(t, c)
	if got := findIDs(t, sctx, coll, bson.D{{Key: "n", Value: 1}}); len(got) != 2 {
		t.Fatalf("first read: %v", got)
	}
	// Changes committed after the snapshot are not seen by the transaction.
	if _, err := coll.UpdateByID(ctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}, {Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if got := findIDs(t, sctx, coll, bson.D{{Key: "n", Value: 1}}); len(got) != 2 || got[0] != int32(1) || got[1] != int32(2) {
		t.Errorf("snapshot read after outside writes: %v, want [1 2]", got)
	}
	// Writing a document changed since the snapshot is a write conflict,
	// which aborts the transaction.
	_, err := coll.UpdateByID(sctx, 1, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 3}}}})
	wantLabel(t, err, mongoerr.WriteConflict, "TransientTransactionError")
	err = sess.CommitTransaction(ctx)
	wantLabel(t, err, mongoerr.NoSuchTransaction, "TransientTransactionError")

	// Two transactions writing the same document: the second writer fails.
	s1, ctx1 := txnSession(t, c)
	_, ctx2 := txnSession(t, c)
	if _, err := coll.InsertOne(ctx1, bson.D{{Key: "_id", Value: 10}}); err != nil {
		t.Fatal(err)
	}
	_, err = coll.InsertOne(ctx2, bson.D{{Key: "_id", Value: 10}})
	wantLabel(t, err, mongoerr.WriteConflict, "TransientTransactionError")
	if err := s1.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}

	// A write outside any transaction is not blocked by an open one; the
	// transaction then fails to commit.
	s3, ctx3 := txnSession(t, c)
	if _, err := coll.UpdateByID(ctx3, 10, bson.D{{Key: "$set", Value: bson.D{{Key: "by", Value: "txn"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateByID(ctx, 10, bson.D{{Key: "$set", Value: bson.D{{Key: "by", Value: "outside"}}}}); err != nil {
		t.Fatalf("write outside the transaction: %v", err)
	}
	err = s3.CommitTransaction(ctx)
	wantLabel(t, err, mongoerr.WriteConflict, "TransientTransactionError")
	var d bson.D
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: 10}}).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if get(d, "by") != "outside" {
		t.Errorf("document 10 = %v, want the outside write", d)
	}
}

func TestTransactionCommandRules(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("db").Collection("c")
	_, sctx := txnSession(t, c)
	_, err := coll.EstimatedDocumentCount(sctx)
	wantCode(t, err, mongoerr.OperationNotSupportedInTransaction, "OperationNotSupportedInTransaction")

	// Raw commands: a statement of an unknown transaction, a second
	// readConcern, a commit without a transaction.
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	lsid := sess.ID()
	var lsidDoc bson.D
	if err := bson.Unmarshal(lsid, &lsidDoc); err != nil {
		t.Fatal(err)
	}
	cmd := func(n int64, extra ...bson.E) bson.D {
		d := bson.D{{Key: "find", Value: "c"}, {Key: "lsid", Value: lsidDoc}, {Key: "txnNumber", Value: n}, {Key: "autocommit", Value: false}}
		return append(d, extra...)
	}
	snapshot := bson.E{Key: "readConcern", Value: bson.D{{Key: "level", Value: "snapshot"}}}
	_, err = runCommand(t, c, "db", cmd(5))
	wantLabel(t, err, mongoerr.NoSuchTransaction, "TransientTransactionError")
	mustRun(t, c, "db", cmd(5, bson.E{Key: "startTransaction", Value: true}, snapshot))
	_, err = runCommand(t, c, "db", cmd(5, snapshot))
	wantCode(t, err, mongoerr.InvalidOptions, "")
	// commit and abort only on admin, refused before the transaction is
	// looked at: the open transaction still commits afterwards.
	for _, name := range []string{"commitTransaction", "abortTransaction"} {
		_, err = runCommand(t, c, "db", bson.D{{Key: name, Value: 1}, {Key: "lsid", Value: lsidDoc},
			{Key: "txnNumber", Value: int64(5)}, {Key: "autocommit", Value: false}})
		wantCode(t, err, mongoerr.Unauthorized, "Unauthorized")
		if err == nil || !strings.Contains(err.Error(), name+" may only be run against the admin database.") {
			t.Errorf("%s on db: %v, want MongoDB's message", name, err)
		}
	}
	mustRun(t, c, "admin", bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsidDoc},
		{Key: "txnNumber", Value: int64(5)}, {Key: "autocommit", Value: false}})
	_, err = runCommand(t, c, "db", cmd(5, bson.E{Key: "startTransaction", Value: true}))
	wantCode(t, err, mongoerr.ConflictingOperationInProgress, "")
	_, err = runCommand(t, c, "db", cmd(4, bson.E{Key: "startTransaction", Value: true}))
	wantCode(t, err, mongoerr.TransactionTooOld, "")
	_, err = runCommand(t, c, "db", cmd(6, bson.E{Key: "startTransaction", Value: true}, bson.E{Key: "readConcern", Value: bson.D{{Key: "level", Value: "linearizable"}}}))
	wantCode(t, err, mongoerr.InvalidOptions, "")
	_, err = runCommand(t, c, "db", cmd(7, bson.E{Key: "startTransaction", Value: true}, bson.E{Key: "writeConcern", Value: bson.D{{Key: "w", Value: 1}}}))
	wantCode(t, err, mongoerr.InvalidOptions, "")
	_, err = runCommand(t, c, "admin", bson.D{{Key: "commitTransaction", Value: 1}})
	wantCode(t, err, mongoerr.InvalidOptions, "")

	// A write concern a single node cannot satisfy: the commit is applied
	// and the reply carries a writeConcernError.
	mustRun(t, c, "db", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "wc"}}}},
		{Key: "lsid", Value: lsidDoc}, {Key: "txnNumber", Value: int64(8)}, {Key: "autocommit", Value: false}, {Key: "startTransaction", Value: true}})
	_, err = runCommand(t, c, "admin", bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsidDoc},
		{Key: "txnNumber", Value: int64(8)}, {Key: "autocommit", Value: false}, {Key: "writeConcern", Value: bson.D{{Key: "w", Value: 10}}}})
	var we mongo.WriteException
	if !errors.As(err, &we) || we.WriteConcernError == nil || we.WriteConcernError.Code != int(mongoerr.UnsatisfiableWriteConcern) {
		t.Errorf("commit with w: 10 = %v, want writeConcernError UnsatisfiableWriteConcern", err)
	}
	if got := findIDs(t, ctx, coll, bson.D{{Key: "_id", Value: "wc"}}); len(got) != 1 {
		t.Errorf("document of the commit with a writeConcernError: %v, want it stored", got)
	}

	// A retryable write with a newer txnNumber aborts the session's open
	// transaction.
	mustRun(t, c, "db", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "open"}}}},
		{Key: "lsid", Value: lsidDoc}, {Key: "txnNumber", Value: int64(9)}, {Key: "autocommit", Value: false}, {Key: "startTransaction", Value: true}})
	mustRun(t, c, "db", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "retryable"}}}},
		{Key: "lsid", Value: lsidDoc}, {Key: "txnNumber", Value: int64(10)}})
	_, err = runCommand(t, c, "admin", bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsidDoc},
		{Key: "txnNumber", Value: int64(9)}, {Key: "autocommit", Value: false}})
	wantLabel(t, err, mongoerr.NoSuchTransaction, "TransientTransactionError")
	if got := findIDs(t, ctx, coll, bson.D{{Key: "_id", Value: "open"}}); len(got) != 0 {
		t.Errorf("write of the aborted transaction stored: %v", got)
	}
}

func TestTransactionLifetimeLimit(t *testing.T) {
	s := startTestServer(t, Options{TransactionLifetimeLimit: time.Millisecond}, testHooks{})
	c := connect(t, s, options.Client().SetRetryWrites(false))
	coll := c.Database("db").Collection("c")
	sess, sctx := txnSession(t, c)
	_, err := coll.InsertOne(sctx, bson.D{{Key: "_id", Value: 1}})
	if err != nil && !errors.As(err, new(mongo.ServerError)) {
		t.Fatal(err)
	}
	// Wait (bounded) until the server has aborted the transaction.
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.txns.mu.Lock()
		var tr *transaction
		for _, x := range s.txns.bySession {
			tr = x
		}
		s.txns.mu.Unlock()
		done := false
		if tr != nil {
			tr.mu.Lock()
			done = tr.state == txnAborted
			tr.mu.Unlock()
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the transaction was not aborted after its lifetime limit")
		}
		time.Sleep(time.Millisecond)
	}
	err = sess.CommitTransaction(testContext(t))
	wantLabel(t, err, mongoerr.NoSuchTransaction, "TransientTransactionError")
	if got := findIDs(t, testContext(t), coll, bson.D{}); len(got) != 0 {
		t.Errorf("documents of the expired transaction: %v", got)
	}
}

// TestTransactionExpiringAsItStarts: a transaction whose lifetime limit
// runs out while the command starting it is still being set up is aborted
// cleanly (under -race, the lifetime timer's abort must not race the
// command that arms it), and the writes of every aborted transaction stay
// invisible.
func TestTransactionExpiringAsItStarts(t *testing.T) {
	s := startTestServer(t, Options{TransactionLifetimeLimit: time.Nanosecond}, testHooks{})
	c := connect(t, s)
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: []byte("0123456789abcdef")}}}
	const txns = 300
	for n := int64(1); n <= txns; n++ {
		insert := bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: n}}}},
			{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: n}, {Key: "autocommit", Value: false}, {Key: "startTransaction", Value: true}}
		if _, err := runCommand(t, c, "db", insert); err != nil {
			// The limit may have run out before the insert ran.
			wantLabel(t, err, mongoerr.NoSuchTransaction, "TransientTransactionError")
		}
		abort := bson.D{{Key: "abortTransaction", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: n}, {Key: "autocommit", Value: false}}
		if _, err := runCommand(t, c, "admin", abort); err != nil {
			// Or before the explicit abort.
			wantCode(t, err, mongoerr.NoSuchTransaction, "")
		}
	}
	if got := findIDs(t, testContext(t), c.Database("db").Collection("c"), bson.D{}); len(got) != 0 {
		t.Errorf("documents of aborted transactions: %v", got)
	}
}

func TestTransactionCommitRetriedAfterRestart(t *testing.T) {
	dir := t.TempDir()
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: []byte("0123456789abcdef")}}}
	commit := bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(3)}, {Key: "autocommit", Value: false}}

	s := startTestServer(t, Options{Data: dir}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "db", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}}},
		{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(3)}, {Key: "autocommit", Value: false}, {Key: "startTransaction", Value: true}})
	mustRun(t, c, "admin", commit)
	if err := c.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = startTestServer(t, Options{Data: dir}, testHooks{})
	c = connect(t, s)
	mustRun(t, c, "admin", commit) // the retried commit succeeds again
	abort := append(bson.D{{Key: "abortTransaction", Value: 1}}, commit[1:]...)
	_, err := runCommand(t, c, "admin", abort)
	wantCode(t, err, mongoerr.TransactionCommitted, "")
	other := append(bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(4)}}, commit[3:]...)
	_, err = runCommand(t, c, "admin", other)
	wantLabel(t, err, mongoerr.NoSuchTransaction, "TransientTransactionError")
	if got := findIDs(t, testContext(t), c.Database("db").Collection("c"), bson.D{}); len(got) != 1 {
		t.Errorf("documents after restart: %v, want the committed one", got)
	}
}

// TestTransactionStartAtOperationTime: every event of a transaction reports
// its commit's clusterTime (devdb gives each of its oplog entries a time of
// its own, the first the commit's), commitTransaction answers with that
// time as operationTime, also when retried, and startAtOperationTime is
// inclusive of the events' clusterTime: a stream started at the commit's
// operationTime shows the whole transaction, one started after it (also
// at one of its later entries' times) none of it, and never an event whose
// clusterTime is before the start. A stream resumed from such a stream's
// first postBatchResumeToken (what changehook's resume --from records)
// shows the same.
func TestTransactionStartAtOperationTime(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := startTestServer(t, Options{}, testHooks{storageNow: func() time.Time { return at }})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("txs").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	next := func(ts bson.Timestamp) bson.Timestamp { return bson.Timestamp{T: ts.T, I: ts.I + 1} }
	// Just after the insert of _id 0.
	zero, _ := get(mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}}), "operationTime").(bson.Timestamp)
	before := next(zero)
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: []byte("0123456789abcdef")}}}
	txn := bson.D{{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(1)}, {Key: "autocommit", Value: false}}
	for i := 1; i <= 3; i++ {
		cmd := append(bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: i}}}}}, txn...)
		if i == 1 {
			cmd = append(cmd, bson.E{Key: "startTransaction", Value: true})
		}
		mustRun(t, c, "txs", cmd)
	}
	commit := append(bson.D{{Key: "commitTransaction", Value: 1}}, txn...)
	commitTime, _ := get(mustRun(t, c, "admin", commit), "operationTime").(bson.Timestamp)
	if retried, _ := get(mustRun(t, c, "admin", commit), "operationTime").(bson.Timestamp); retried != commitTime {
		t.Errorf("retried commit's operationTime = %v, want the commit's %v", retried, commitTime)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 99}}); err != nil {
		t.Fatal(err)
	}
	// The events from before the transaction: their clusterTimes.
	all := txnEvents(t, ctx, coll, options.ChangeStream().SetStartAtOperationTime(&before))
	if len(all) != 4 || all[0].id != 1 || all[0].time != commitTime {
		t.Fatalf("events from before the transaction = %+v, want the transaction's 3 then 99, the first at the commit's operationTime %v", all, commitTime)
	}
	for _, e := range all[:3] {
		if e.time != commitTime {
			t.Errorf("transaction event %+v, want clusterTime %v (the commit's)", e, commitTime)
		}
	}
	tests := []struct {
		name  string
		start bson.Timestamp
		want  []int32
	}{
		{"before the transaction", before, []int32{1, 2, 3, 99}},
		{"the commit's operationTime", commitTime, []int32{1, 2, 3, 99}},
		{"its second entry's time", next(commitTime), []int32{99}},
		{"its last entry's time", next(next(commitTime)), []int32{99}},
		{"the next write's time", all[3].time, []int32{99}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := tc.start
			got := txnEvents(t, ctx, coll, options.ChangeStream().SetStartAtOperationTime(&start))
			// Opened with an empty first batch, its postBatchResumeToken
			// is the position before any scan.
			cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&start).SetBatchSize(0))
			if err != nil {
				t.Fatal(err)
			}
			token := cs.ResumeToken()
			_ = cs.Close(ctx)
			resumed := txnEvents(t, ctx, coll, options.ChangeStream().SetResumeAfter(token))
			for _, r := range []struct {
				how    string
				events []txnEvent
			}{{"startAtOperationTime", got}, {"resumed from its first postBatchResumeToken", resumed}} {
				var ids []int32
				for _, e := range r.events {
					ids = append(ids, e.id)
					if e.time.Before(start) {
						t.Errorf("%s %v: event %+v has a clusterTime before the start", r.how, start, e)
					}
				}
				if !slices.Equal(ids, tc.want) {
					t.Errorf("%s %v: events %v, want %v", r.how, start, ids, tc.want)
				}
			}
		})
	}
}

// txnEvent is a change event's documentKey._id and clusterTime.
type txnEvent struct {
	id   int32
	time bson.Timestamp
}

// txnEvents reads coll's change stream opened with opts up to the event
// of _id 99, the last write.
func txnEvents(t *testing.T, ctx context.Context, coll *mongo.Collection, opts *options.ChangeStreamOptionsBuilder) []txnEvent {
	t.Helper()
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, opts.SetMaxAwaitTime(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	var out []txnEvent
	for cs.Next(ctx) {
		ts, inc := cs.Current.Lookup("clusterTime").Timestamp()
		e := txnEvent{id: cs.Current.Lookup("documentKey", "_id").Int32(), time: bson.Timestamp{T: ts, I: inc}}
		out = append(out, e)
		if e.id == 99 {
			return out
		}
	}
	t.Fatalf("stream ended before the last write: %v", cs.Err())
	return nil
}
