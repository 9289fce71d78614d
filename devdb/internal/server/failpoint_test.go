package server

import (
	"errors"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// startFailPointServer starts a server with test commands and a client
// without retries, so that every fail point firing reaches the test.
func startFailPointServer(t *testing.T, opts ...*options.ClientOptions) (*Server, *mongo.Client) {
	t.Helper()
	s := startTestServer(t, Options{EnableTestCommands: true}, testHooks{})
	all := append([]*options.ClientOptions{options.Client().SetRetryWrites(false).SetRetryReads(false)}, opts...)
	return s, connect(t, s, all...)
}

// setFailPoint configures a fail point and turns it off at cleanup.
func setFailPoint(t *testing.T, c *mongo.Client, name string, mode any, data bson.D) bson.D {
	t.Helper()
	cmd := bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: mode}}
	if data != nil {
		cmd = append(cmd, bson.E{Key: "data", Value: data})
	}
	reply := mustRun(t, c, "admin", cmd)
	t.Cleanup(func() {
		_, _ = runCommand(t, c, "admin", bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: "off"}})
	})
	return reply
}

// count returns the number of documents in test.c.
func count(t *testing.T, c *mongo.Client) int64 {
	t.Helper()
	n, err := c.Database("test").Collection("c").CountDocuments(testContext(t), bson.D{})
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	return n
}

func TestConfigureFailPointNeedsTestCommands(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	_, err := runCommand(t, c, "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "alwaysOn"}})
	wantCode(t, err, mongoerr.CommandNotFound, "CommandNotFound")
}

func TestConfigureFailPointErrors(t *testing.T) {
	_, c := startFailPointServer(t)
	tests := []struct {
		name string
		db   string
		cmd  bson.D
		code mongoerr.Code
	}{
		{"not admin", "test", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "off"}}, mongoerr.Unauthorized},
		{"unknown fail point", "admin", bson.D{{Key: "configureFailPoint", Value: "noSuchFailPoint"}, {Key: "mode", Value: "off"}}, mongoerr.FailPointSetFailed},
		{"missing mode", "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}}, mongoerr.IDLMissingField},
		{"bad mode string", "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "sometimes"}}, mongoerr.BadValue},
		{"bad mode document", "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: bson.D{{Key: "often", Value: 1}}}}, mongoerr.BadValue},
		{"negative times", "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: bson.D{{Key: "times", Value: -1}}}}, mongoerr.BadValue},
		{"probability above 1", "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: bson.D{{Key: "activationProbability", Value: 1.5}}}}, mongoerr.BadValue},
		{"failCommands not an array", "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "alwaysOn"},
			{Key: "data", Value: bson.D{{Key: "failCommands", Value: "insert"}}}}, mongoerr.TypeMismatch},
		{"blockConnection without blockTimeMS", "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "alwaysOn"},
			{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"ping"}}, {Key: "blockConnection", Value: true}}}}, mongoerr.InvalidOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCommand(t, c, tt.db, tt.cmd)
			wantCode(t, err, tt.code, "")
		})
	}
}

func TestFailCommandErrorCodeTimes(t *testing.T) {
	_, c := startFailPointServer(t)
	reply := setFailPoint(t, c, "failCommand", bson.D{{Key: "times", Value: 2}}, bson.D{
		{Key: "failCommands", Value: bson.A{"insert"}}, {Key: "errorCode", Value: 91}, {Key: "errorLabels", Value: bson.A{"MyLabel"}},
	})
	if got := get(reply, "count"); got != int64(0) {
		t.Errorf("count = %v, want 0", got)
	}
	coll := c.Database("test").Collection("c")
	for i := range 2 {
		_, err := coll.InsertOne(testContext(t), bson.D{{Key: "i", Value: i}})
		var se mongo.ServerError
		if !errors.As(err, &se) || !se.HasErrorCode(91) || !se.HasErrorLabel("MyLabel") {
			t.Fatalf("insert %d: err = %v, want code 91 with label MyLabel", i, err)
		}
	}
	if _, err := coll.InsertOne(testContext(t), bson.D{{Key: "i", Value: 2}}); err != nil {
		t.Fatalf("third insert (fail point used up): %v", err)
	}
	if n := count(t, c); n != 1 {
		t.Errorf("documents = %d, want 1 (failed commands must not run)", n)
	}
	// Other commands are untouched; reconfiguring reports the firings.
	mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	reply = mustRun(t, c, "admin", bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "off"}})
	if got := get(reply, "count"); got != int64(2) {
		t.Errorf("count after two firings = %v, want 2", got)
	}
}

func TestFailCommandSkipAndAlwaysOn(t *testing.T) {
	_, c := startFailPointServer(t)
	setFailPoint(t, c, "failCommand", bson.D{{Key: "skip", Value: 2}}, bson.D{
		{Key: "failCommands", Value: bson.A{"ping"}}, {Key: "errorCode", Value: 8},
	})
	for i := range 5 {
		_, err := runCommand(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
		if i < 2 && err != nil {
			t.Fatalf("ping %d (skipped): %v", i, err)
		}
		if i >= 2 {
			wantCode(t, err, mongoerr.UnknownError, "UnknownError")
		}
	}
}

func TestFailCommandAppName(t *testing.T) {
	s, other := startFailPointServer(t)
	target := connect(t, s, options.Client().SetAppName("target").SetRetryWrites(false))
	setFailPoint(t, other, "failCommand", "alwaysOn", bson.D{
		{Key: "failCommands", Value: bson.A{"find"}}, {Key: "errorCode", Value: 2}, {Key: "appName", Value: "target"},
	})
	if _, err := runCommand(t, other, "test", bson.D{{Key: "find", Value: "c"}}); err != nil {
		t.Fatalf("find from another application: %v", err)
	}
	_, err := runCommand(t, target, "test", bson.D{{Key: "find", Value: "c"}})
	wantCode(t, err, mongoerr.BadValue, "")
}

func TestFailCommandCloseConnection(t *testing.T) {
	_, c := startFailPointServer(t)
	setFailPoint(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"insert"}}, {Key: "closeConnection", Value: true},
	})
	_, err := c.Database("test").Collection("c").InsertOne(testContext(t), bson.D{{Key: "a", Value: 1}})
	if !mongo.IsNetworkError(err) {
		t.Fatalf("insert: err = %v, want a network error", err)
	}
	if n := count(t, c); n != 0 {
		t.Errorf("documents = %d, want 0 (the command must not run)", n)
	}
}

func TestFailCommandBlockConnection(t *testing.T) {
	_, c := startFailPointServer(t)
	setFailPoint(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"ping"}}, {Key: "blockConnection", Value: true}, {Key: "blockTimeMS", Value: 100},
	})
	start := time.Now()
	mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("blocked ping took %v, want at least 100ms", d)
	}
}

func TestFailCommandWriteConcernError(t *testing.T) {
	_, c := startFailPointServer(t)
	setFailPoint(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"insert"}},
		{Key: "writeConcernError", Value: bson.D{{Key: "code", Value: 91}, {Key: "errmsg", Value: "Replication is being shut down"}}},
		{Key: "errorLabels", Value: bson.A{"RetryableWriteError"}},
	})
	_, err := runCommand(t, c, "test", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 1}}}}})
	var we mongo.WriteException
	if !errors.As(err, &we) || we.WriteConcernError == nil || we.WriteConcernError.Code != 91 {
		t.Fatalf("insert: err = %v, want a write concern error with code 91", err)
	}
	if !slices.Equal(we.Labels, []string{"RetryableWriteError"}) {
		t.Errorf("errorLabels = %v, want [RetryableWriteError]", we.Labels)
	}
	if n := count(t, c); n != 1 {
		t.Errorf("documents = %d, want 1 (a write concern error comes after the write)", n)
	}
}

// A retryable write failing with a retryable code earns RetryableWriteError
// unless the fail point names its labels, as MongoDB 4.4+ does.
func TestRetryableWriteErrorLabel(t *testing.T) {
	_, c := startFailPointServer(t)
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	insert := func(txn int64) error {
		_, err := runCommand(t, c, "test", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "x", Value: 1}}}},
			{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: txn}})
		return err
	}
	tests := []struct {
		name   string
		data   bson.D
		txn    int64
		labels []string
	}{
		{"computed for a retryable code", bson.D{{Key: "errorCode", Value: 189}}, 1, []string{"RetryableWriteError"}},
		{"none for another code", bson.D{{Key: "errorCode", Value: 11601}}, 2, nil},
		{"overridden by errorLabels", bson.D{{Key: "errorCode", Value: 11600}, {Key: "errorLabels", Value: bson.A{}}}, 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setFailPoint(t, c, "failCommand", bson.D{{Key: "times", Value: 1}}, append(bson.D{{Key: "failCommands", Value: bson.A{"insert"}}}, tt.data...))
			err := insert(tt.txn)
			var ce mongo.CommandError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a command error", err)
			}
			if !slices.Equal(ce.Labels, tt.labels) {
				t.Errorf("labels = %v, want %v", ce.Labels, tt.labels)
			}
		})
	}
}

func TestFailGetMoreAfterCursorCheckout(t *testing.T) {
	s, c := startFailPointServer(t)
	ctx := testContext(t)
	coll := c.Database("test").Collection("c")
	if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "i", Value: 1}}, bson.D{{Key: "i", Value: 2}}}); err != nil {
		t.Fatal(err)
	}
	// A change stream's getMore: the error is resumable, the cursor gone.
	reply := mustRun(t, c, "test", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}},
		{Key: "cursor", Value: bson.D{}}})
	id := get(reply, "cursor", "id").(int64)
	setFailPoint(t, c, "failGetMoreAfterCursorCheckout", bson.D{{Key: "times", Value: 1}}, bson.D{{Key: "errorCode", Value: 6}, {Key: "closeConnection", Value: false}})
	_, err := runCommand(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 6 || !ce.HasErrorLabel("ResumableChangeStreamError") {
		t.Fatalf("getMore: err = %v, want HostUnreachable with ResumableChangeStreamError", err)
	}
	_, err = runCommand(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	wantCode(t, err, mongoerr.CursorNotFound, "")

	// A find cursor's getMore: no label. An unknown cursor is CursorNotFound
	// before the fail point is consulted.
	reply = mustRun(t, c, "test", bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 1}})
	id = get(reply, "cursor", "id").(int64)
	setFailPoint(t, c, "failGetMoreAfterCursorCheckout", bson.D{{Key: "times", Value: 1}}, bson.D{{Key: "errorCode", Value: 6}})
	_, err = runCommand(t, c, "test", bson.D{{Key: "getMore", Value: int64(12345)}, {Key: "collection", Value: "c"}})
	wantCode(t, err, mongoerr.CursorNotFound, "")
	_, err = runCommand(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	if !errors.As(err, &ce) || ce.Code != 6 || len(ce.Labels) != 0 {
		t.Fatalf("getMore of a find cursor: err = %v, want HostUnreachable without labels", err)
	}
	_ = s
}

// onPrimaryTransactionalWrite with the Go driver's retryable writes: the
// connection closes after the first attempt; the write happens exactly once
// whether the first attempt committed (default) or was rolled back
// (failBeforeCommitExceptionCode).
func TestOnPrimaryTransactionalWrite(t *testing.T) {
	tests := []struct {
		name string
		data bson.D
	}{
		{"committed, then the connection closes", nil},
		{"rolled back, then the connection closes", bson.D{{Key: "failBeforeCommitExceptionCode", Value: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startTestServer(t, Options{EnableTestCommands: true}, testHooks{})
			c := connect(t, s) // retryable writes on, as by default
			coll := c.Database("test").Collection("c")
			if _, err := coll.InsertOne(testContext(t), bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 10}}); err != nil {
				t.Fatal(err)
			}
			setFailPoint(t, c, "onPrimaryTransactionalWrite", bson.D{{Key: "times", Value: 1}}, tt.data)
			res, err := coll.UpdateOne(testContext(t), bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "x", Value: 1}}}})
			if err != nil {
				t.Fatalf("update (retried by the driver): %v", err)
			}
			if res.ModifiedCount != 1 {
				t.Errorf("modified = %d, want 1", res.ModifiedCount)
			}
			var doc bson.D
			if err := coll.FindOne(testContext(t), bson.D{}).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			if got := get(doc, "x"); got != int32(11) {
				t.Errorf("x = %v, want 11 (applied exactly once)", got)
			}
		})
	}
}

// Without retryable writes, onPrimaryTransactionalWrite does not fire and
// failBeforeCommitExceptionCode with closeConnection false fails the write.
func TestOnPrimaryTransactionalWriteFails(t *testing.T) {
	_, c := startFailPointServer(t)
	setFailPoint(t, c, "onPrimaryTransactionalWrite", "alwaysOn", bson.D{{Key: "failBeforeCommitExceptionCode", Value: 11601}, {Key: "closeConnection", Value: false}})
	coll := c.Database("test").Collection("c")
	if _, err := coll.InsertOne(testContext(t), bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatalf("ordinary write: %v", err)
	}
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	_, err := runCommand(t, c, "test", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: 2}}}},
		{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(1)}})
	wantCode(t, err, mongoerr.Interrupted, "Interrupted")
	if n := count(t, c); n != 1 {
		t.Errorf("documents = %d, want 1 (the retryable write was rolled back)", n)
	}
}
