package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// serverError returns the code and message of err: a command error, or the
// first write error of a write or bulk write exception.
func serverError(t *testing.T, err error) (mongoerr.Code, string) {
	t.Helper()
	var ce mongo.CommandError
	var we mongo.WriteException
	var bwe mongo.BulkWriteException
	switch {
	case errors.As(err, &ce):
		return mongoerr.Code(ce.Code), ce.Message
	case errors.As(err, &we) && len(we.WriteErrors) > 0:
		return mongoerr.Code(we.WriteErrors[0].Code), we.WriteErrors[0].Message
	case errors.As(err, &bwe) && len(bwe.WriteErrors) > 0:
		return mongoerr.Code(bwe.WriteErrors[0].Code), bwe.WriteErrors[0].Message
	}
	t.Fatalf("err = %v (%T), want a server error", err, err)
	return 0, ""
}

// watchStream opens a change stream on w with a short await time, closed at
// cleanup.
func watchStream(t *testing.T, w interface {
	Watch(context.Context, any, ...options.Lister[options.ChangeStreamOptions]) (*mongo.ChangeStream, error)
}, opts *options.ChangeStreamOptionsBuilder) *mongo.ChangeStream {
	t.Helper()
	if opts == nil {
		opts = options.ChangeStream()
	}
	cs, err := w.Watch(testContext(t), mongo.Pipeline{}, opts.SetMaxAwaitTime(100*time.Millisecond))
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close(context.Background()) })
	return cs
}

// nextEvent waits for the next event of cs and returns it.
func nextEvent(t *testing.T, cs *mongo.ChangeStream) bson.D {
	t.Helper()
	if !cs.Next(testContext(t)) {
		t.Fatalf("change stream ended: %v", cs.Err())
	}
	var d bson.D
	if err := bson.Unmarshal(cs.Current, &d); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return d
}

// nsOp is a write a client sends to the collection coll of database db.
type nsOp func(ctx context.Context, db *mongo.Database, coll string) error

var (
	nsInsert nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
		return err
	}
	nsInsertMany nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).InsertMany(ctx, []any{bson.D{{Key: "x", Value: 1}}, bson.D{{Key: "x", Value: 2}}})
		return err
	}
	nsUpdate nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 2}}}})
		return err
	}
	nsUpsert nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).UpdateOne(ctx, bson.D{{Key: "x", Value: 9}}, bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}}, options.UpdateOne().SetUpsert(true))
		return err
	}
	nsReplace nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).ReplaceOne(ctx, bson.D{}, bson.D{{Key: "x", Value: 3}})
		return err
	}
	nsDelete nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).DeleteMany(ctx, bson.D{})
		return err
	}
	nsFindAndUpdate nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		err := db.Collection(coll).FindOneAndUpdate(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 4}}}}).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		return err
	}
	nsFindAndDelete nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		err := db.Collection(coll).FindOneAndDelete(ctx, bson.D{}).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		return err
	}
	nsBulkWrite nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).BulkWrite(ctx, []mongo.WriteModel{
			mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "x", Value: 5}}),
			mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "x", Value: 5}}),
		})
		return err
	}
	nsCreate nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		return db.RunCommand(ctx, bson.D{{Key: "create", Value: coll}}).Err()
	}
	nsCreateView nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		return db.CreateView(ctx, coll, "src", mongo.Pipeline{})
	}
	nsCreateIndex nsOp = func(ctx context.Context, db *mongo.Database, coll string) error {
		_, err := db.Collection(coll).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "x", Value: 1}}})
		return err
	}
)

// nsRename returns a renameCollection of from to to (namespaces).
func nsRename(from, to string) nsOp {
	return func(ctx context.Context, db *mongo.Database, _ string) error {
		return db.Client().Database("admin").RunCommand(ctx, bson.D{{Key: "renameCollection", Value: from}, {Key: "to", Value: to}}).Err()
	}
}

// nsAggregate returns the write of an aggregate on db.src whose last stage is
// stage (a $out or $merge naming its target).
func nsAggregate(stage bson.D) nsOp {
	return func(ctx context.Context, db *mongo.Database, _ string) error {
		cur, err := db.Collection("src").Aggregate(ctx, mongo.Pipeline{stage})
		if err == nil {
			err = cur.Close(ctx)
		}
		return err
	}
}

// TestWritesToSystemNamespaces sends each kind of write to system
// namespaces and to names MongoDB refuses, expecting MongoDB 6.0's codes
// and messages (its userAllowedWriteNS, userAllowedCreateNS,
// isLegalClientSystemNS, rename and $out/$merge target checks), and checks that
// the system collections clients may use stay writable.
func TestWritesToSystemNamespaces(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	if _, err := c.Database("sysns").Collection("src").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	target := func(db, coll string) bson.D { return bson.D{{Key: "db", Value: db}, {Key: "coll", Value: coll}} }
	const invalidNS, cannotWrite = "Invalid system namespace: ", "cannot write to "
	tests := []struct {
		name     string
		op       nsOp
		db, coll string
		code     mongoerr.Code // 0: the write succeeds
		msg      string
	}{
		{"insert system.foo", nsInsert, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"insertMany system.foo", nsInsertMany, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"insert system.views", nsInsert, "sysns", "system.views", mongoerr.InvalidNamespace, cannotWrite + "sysns.system.views"},
		{"insert system.profile", nsInsert, "sysns", "system.profile", mongoerr.InvalidNamespace, cannotWrite + "sysns.system.profile"},
		{"insert admin.system.foo", nsInsert, "admin", "system.foo", mongoerr.InvalidNamespace, invalidNS + "admin.system.foo"},
		{"insert local.oplog.rs", nsInsert, "local", "oplog.rs", mongoerr.InvalidNamespace, cannotWrite + "local.oplog.rs"},
		{"insert .system. inside the name", nsInsert, "sysns", "a.system.b", mongoerr.BadValue, "Invalid namespace: sysns.a.system.b"},
		{"update system.foo", nsUpdate, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"upsert system.foo", nsUpsert, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"replace system.views", nsReplace, "sysns", "system.views", mongoerr.InvalidNamespace, cannotWrite + "sysns.system.views"},
		{"update local.oplog.rs", nsUpdate, "local", "oplog.rs", mongoerr.InvalidNamespace, cannotWrite + "local.oplog.rs"},
		{"delete system.foo", nsDelete, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"delete system.views", nsDelete, "sysns", "system.views", mongoerr.InvalidNamespace, cannotWrite + "sysns.system.views"},
		{"delete local.oplog.rs", nsDelete, "local", "oplog.rs", mongoerr.InvalidNamespace, cannotWrite + "local.oplog.rs"},
		{"findAndModify update system.foo", nsFindAndUpdate, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"findAndModify remove system.views", nsFindAndDelete, "sysns", "system.views", mongoerr.InvalidNamespace, cannotWrite + "sysns.system.views"},
		{"bulk write system.foo", nsBulkWrite, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"create system.foo", nsCreate, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"create view system.foo", nsCreateView, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"create view system.views", nsCreateView, "sysns", "system.views", mongoerr.InvalidNamespace, "Cannot create a view called 'system.views': this is a reserved system namespace"},
		{"create .system. inside the name", nsCreate, "sysns", "a.system.b", mongoerr.BadValue, "Invalid namespace: sysns.a.system.b"},
		{"createIndexes system.foo", nsCreateIndex, "sysns", "system.foo", mongoerr.InvalidNamespace, invalidNS + "sysns.system.foo"},
		{"createIndexes system.views", nsCreateIndex, "sysns", "system.views", mongoerr.InvalidNamespace, cannotWrite + "sysns.system.views"},
		{"createIndexes system.profile", nsCreateIndex, "sysns", "system.profile", mongoerr.InvalidNamespace, cannotWrite + "sysns.system.profile"},
		{"createIndexes local.oplog.rs", nsCreateIndex, "local", "oplog.rs", mongoerr.InvalidNamespace, cannotWrite + "local.oplog.rs"},
		{"$out system.foo", nsAggregate(bson.D{{Key: "$out", Value: "system.foo"}}), "sysns", "", mongoerr.OutToSystemCollection, "Can't $out to special collection: system.foo"},
		{"$out system.js", nsAggregate(bson.D{{Key: "$out", Value: "system.js"}}), "sysns", "", mongoerr.OutToSystemCollection, "Can't $out to special collection: system.js"},
		{"$out admin.system.foo", nsAggregate(bson.D{{Key: "$out", Value: target("admin", "system.foo")}}), "sysns", "", mongoerr.OutToSystemCollection, "Can't $out to special collection: system.foo"},
		{"$out config.x", nsAggregate(bson.D{{Key: "$out", Value: target("config", "x")}}), "sysns", "", mongoerr.OutToInternalDatabase, "Can't $out to internal database: config"},
		{"$merge system.foo", nsAggregate(bson.D{{Key: "$merge", Value: bson.D{{Key: "into", Value: "system.foo"}}}}), "sysns", "", mongoerr.MergeToSystemCollection, "Cannot $merge to special collection: system.foo"},
		{"$merge system.views", nsAggregate(bson.D{{Key: "$merge", Value: "system.views"}}), "sysns", "", mongoerr.MergeToSystemCollection, "Cannot $merge to special collection: system.views"},
		{"$merge local.x", nsAggregate(bson.D{{Key: "$merge", Value: bson.D{{Key: "into", Value: target("local", "x")}}}}), "sysns", "", mongoerr.MergeToInternalDatabase, "Cannot $merge to internal database: local"},

		// The system collections clients may use.
		{"create system.js", nsCreate, "sysns", "system.js", 0, ""},
		{"insert system.js", nsInsert, "sysns", "system.js", 0, ""},
		{"update system.js", nsUpdate, "sysns", "system.js", 0, ""},
		{"replace system.js", nsReplace, "sysns", "system.js", 0, ""},
		{"upsert system.js", nsUpsert, "sysns", "system.js", 0, ""},
		{"findAndModify update system.js", nsFindAndUpdate, "sysns", "system.js", 0, ""},
		{"bulk write system.js", nsBulkWrite, "sysns", "system.js", 0, ""},
		{"createIndexes system.js", nsCreateIndex, "sysns", "system.js", 0, ""},
		{"findAndModify remove system.js", nsFindAndDelete, "sysns", "system.js", 0, ""},
		{"delete system.js", nsDelete, "sysns", "system.js", 0, ""},
		{"insert system.js of another database", nsInsert, "other", "system.js", 0, ""},
		{"create system.profile", nsCreate, "sysns", "system.profile", 0, ""},
		{"create system.views", nsCreate, "sysns", "system.views", 0, ""},
		{"insert admin.x", nsInsert, "admin", "x", 0, ""},

		{"rename onto system.foo", nsRename("sysns.src", "sysns.system.foo"), "", "", mongoerr.IllegalOperation, "error with target namespace: " + invalidNS + "sysns.system.foo"},
		{"rename onto system.views", nsRename("sysns.src", "sysns.system.views"), "", "", mongoerr.IllegalOperation, "error with target namespace: " + cannotWrite + "sysns.system.views"},
		{"rename onto .system. inside the name", nsRename("sysns.src", "sysns.a.system.b"), "", "", mongoerr.IllegalOperation, "error with target namespace: Invalid namespace: sysns.a.system.b"},
		{"rename system.profile", nsRename("sysns.system.profile", "sysns.p"), "", "", mongoerr.IllegalOperation, "error with source namespace: " + cannotWrite + "sysns.system.profile"},
		{"rename onto system.js", nsRename("sysns.src", "other.system.js"), "", "", mongoerr.IllegalOperation, "renaming system.js collection or renaming to system.js is not allowed"},
		{"rename system.js", nsRename("sysns.system.js", "sysns.js"), "", "", mongoerr.IllegalOperation, "renaming system.js collection or renaming to system.js is not allowed"},
		{"rename onto the oplog", nsRename("sysns.src", "local.oplog.rs"), "", "", mongoerr.IllegalOperation, "can't rename to live oplog while replicating"},
		{"rename the oplog", nsRename("local.oplog.rs", "local.x"), "", "", mongoerr.IllegalOperation, "can't rename live oplog while replicating"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op(ctx, c.Database(tc.db), tc.coll)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				return
			}
			code, msg := serverError(t, err)
			if code != tc.code || msg != tc.msg {
				t.Fatalf("err = %d %q, want %d (%s) %q", code, msg, tc.code, tc.code, tc.msg)
			}
		})
	}
	// Nothing refused was created.
	for _, db := range []string{"sysns", "admin", "local", "config"} {
		names, err := c.Database(db).ListCollectionNames(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			switch n {
			case "src", "system.js", "system.profile", "system.views", "x", "oplog.rs":
			default:
				t.Errorf("a refused write created %s.%s", db, n)
			}
		}
	}
}

// TestSystemWritesInTransactions: inside a multi-document transaction
// MongoDB refuses writes to system collections, also to those clients may
// write outside one, with Location50791 (insert, update and delete check
// that before the namespace, findAndModify after it), the profiler's
// collection with OperationNotSupportedInTransaction, and the creation of a
// system collection with OperationNotSupportedInTransaction; the refusal
// aborts the transaction.
func TestSystemWritesInTransactions(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("sysns")
	if _, err := db.Collection("system.js").InsertOne(ctx, bson.D{{Key: "_id", Value: "f"}, {Key: "value", Value: "1"}}); err != nil {
		t.Fatal(err)
	}
	const inTxn = "Cannot write to system collection sysns.system.js within a transaction."
	tests := []struct {
		name string
		op   nsOp
		coll string
		code mongoerr.Code
		msg  string
	}{
		{"insert", nsInsert, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"update", nsUpdate, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"upsert", nsUpsert, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"replace", nsReplace, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"delete", nsDelete, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"findAndModify update", nsFindAndUpdate, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"findAndModify remove", nsFindAndDelete, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"bulk write", nsBulkWrite, "system.js", mongoerr.SystemCollectionWriteTxn, inTxn},
		{"insert system.views", nsInsert, "system.views", mongoerr.SystemCollectionWriteTxn, "Cannot write to system collection sysns.system.views within a transaction."},
		{"insert system.foo", nsInsert, "system.foo", mongoerr.SystemCollectionWriteTxn, "Cannot write to system collection sysns.system.foo within a transaction."},
		{"findAndModify system.views", nsFindAndUpdate, "system.views", mongoerr.InvalidNamespace, "cannot write to sysns.system.views"},
		{"insert system.profile", nsInsert, "system.profile", mongoerr.OperationNotSupportedInTransaction, "Cannot run command against the 'sysns.system.profile' collection in a transaction."},
		{"create system.js", nsCreate, "system.js", mongoerr.OperationNotSupportedInTransaction, "Cannot create system collection sysns.system.js within a transaction."},
		{"createIndexes on a new system collection", nsCreateIndex, "system.users", mongoerr.OperationNotSupportedInTransaction, "Cannot create system collection sysns.system.users within a transaction."},
		{"create system.foo", nsCreate, "system.foo", mongoerr.InvalidNamespace, "Invalid system namespace: sysns.system.foo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, sctx := txnSession(t, c)
			code, msg := serverError(t, tc.op(sctx, db, tc.coll))
			if code != tc.code || msg != tc.msg {
				t.Fatalf("err = %d %q, want %d (%s) %q", code, msg, tc.code, tc.code, tc.msg)
			}
			// The transaction is over: its next statement has no
			// transaction to run in.
			_, err := db.Collection("plain").CountDocuments(sctx, bson.D{})
			wantLabel(t, err, mongoerr.NoSuchTransaction, "TransientTransactionError")
		})
	}
	var fn bson.D
	if err := db.Collection("system.js").FindOne(ctx, bson.D{}).Decode(&fn); err != nil || get(fn, "value") != "1" {
		t.Fatalf("system.js after the refused writes: %v, %v; want {_id: f, value: 1}", fn, err)
	}
	// Ordinary collections are still written in transactions.
	sess, sctx := txnSession(t, c)
	if _, err := db.Collection("plain").InsertOne(sctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := sess.CommitTransaction(sctx); err != nil {
		t.Fatal(err)
	}
}

// TestChangeStreamsSkipSystemCollections: as on MongoDB, whose change
// streams leave out every system.* namespace, database and deployment
// streams report no write to system.js (nor its creation with
// showExpandedEvents), and a stream on system.js itself is refused.
func TestChangeStreamsSkipSystemCollections(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("sysns")
	dbStream := watchStream(t, db, options.ChangeStream().SetShowExpandedEvents(true))
	clusterStream := watchStream(t, c, nil)
	js := db.Collection("system.js")
	if _, err := js.InsertOne(ctx, bson.D{{Key: "_id", Value: "f"}, {Key: "value", Value: "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.UpdateOne(ctx, bson.D{{Key: "_id", Value: "f"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "value", Value: "2"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "f"}}, bson.D{{Key: "value", Value: "3"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.DeleteOne(ctx, bson.D{{Key: "_id", Value: "f"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("after").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"create", "insert"} {
		ev := nextEvent(t, dbStream)
		if get(ev, "operationType") != want || get(ev, "ns", "coll") != "after" {
			t.Fatalf("database stream: %v, want the %s of sysns.after", ev, want)
		}
	}
	if ev := nextEvent(t, clusterStream); get(ev, "operationType") != "insert" || get(ev, "ns", "coll") != "after" {
		t.Fatalf("deployment stream: %v, want the insert into sysns.after", ev)
	}
	_, err := js.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(100*time.Millisecond))
	code, msg := serverError(t, err)
	if code != mongoerr.InvalidNamespace || msg != "$changeStream may not be opened on the internal sysns.system.js collection" {
		t.Fatalf("watch system.js: %d %q, want InvalidNamespace", code, msg)
	}
}

// TestNamespaceRules checks the rules on namespaces a command cannot reach
// through devdb: the internal databases' system collections, which devdb
// never creates, and the names MongoDB's rules single out.
func TestNamespaceRules(t *testing.T) {
	tests := []struct {
		db, coll    string
		write, crea mongoerr.Code // 0: allowed
	}{
		{"db", "x", 0, 0},
		{"db", "system.js", 0, 0},
		{"db", "system.users", 0, 0},
		{"db", "system.views", mongoerr.InvalidNamespace, 0},
		{"db", "system.profile", mongoerr.InvalidNamespace, 0},
		{"db", "system.foo", mongoerr.InvalidNamespace, mongoerr.InvalidNamespace},
		{"db", "system.roles", mongoerr.InvalidNamespace, mongoerr.InvalidNamespace},
		{"db", "system.version", mongoerr.InvalidNamespace, mongoerr.InvalidNamespace},
		{"db", "system.resharding.x", 0, 0},
		{"db", "system.buckets.x", 0, 0},
		{"db", "system.buckets.", mongoerr.InvalidNamespace, mongoerr.InvalidNamespace},
		{"db", "system.buckets..x", mongoerr.InvalidNamespace, mongoerr.InvalidNamespace},
		{"db", "system.sessions", mongoerr.InvalidNamespace, mongoerr.InvalidNamespace},
		{"db", "x.system.y", mongoerr.BadValue, mongoerr.BadValue},
		{"admin", "system.roles", 0, 0},
		{"admin", "system.version", 0, 0},
		{"admin", "system.keys", 0, 0},
		{"admin", "system.backup_users", 0, 0},
		{"admin", "system.new_users", mongoerr.InvalidNamespace, mongoerr.InvalidNamespace},
		{"config", "system.sessions", 0, 0},
		{"config", "system.indexBuilds", 0, 0},
		{"config", "system.preimages", 0, 0},
		{"config", "cache.chunks.db.system.sessions", 0, 0},
		{"config", "x.system.y", mongoerr.BadValue, mongoerr.BadValue},
		{"local", "system.replset", 0, 0},
		{"local", "system.healthlog", 0, 0},
		{"local", "oplog.rs", mongoerr.InvalidNamespace, 0},
		{"local", "oplog.x", mongoerr.InvalidNamespace, 0},
		{"local", "startup_log", 0, 0},
	}
	code := func(err error) mongoerr.Code {
		var me *mongoerr.Error
		if errors.As(err, &me) {
			return me.Code
		}
		return 0
	}
	for _, tc := range tests {
		if got := code(checkWriteNS(tc.db, tc.coll)); got != tc.write {
			t.Errorf("checkWriteNS(%s.%s) = %d, want %d", tc.db, tc.coll, got, tc.write)
		}
		if got := code(checkCreateNS(tc.db, tc.coll)); got != tc.crea {
			t.Errorf("checkCreateNS(%s.%s) = %d, want %d", tc.db, tc.coll, got, tc.crea)
		}
	}
}
