package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestHello(t *testing.T) {
	s := startTestServer(t, Options{ReplSetName: "rsTest"}, testHooks{})
	c := connect(t, s)
	if err := c.Ping(testContext(t), nil); err != nil {
		t.Fatalf("ping through the driver: %v", err)
	}
	for _, name := range []string{"hello", "isMaster", "ismaster"} {
		t.Run(name, func(t *testing.T) {
			reply := mustRun(t, c, "admin", bson.D{{Key: name, Value: 1}, {Key: "helloOk", Value: true}})
			primaryField := "ismaster"
			if name == "hello" {
				primaryField = "isWritablePrimary"
			}
			want := map[string]any{
				primaryField:                   true,
				"helloOk":                      true,
				"secondary":                    false,
				"setName":                      "rsTest",
				"setVersion":                   int32(1),
				"primary":                      s.Addr(),
				"me":                           s.Addr(),
				"maxBsonObjectSize":            int32(16777216),
				"maxMessageSizeBytes":          int32(48000000),
				"maxWriteBatchSize":            int32(100000),
				"logicalSessionTimeoutMinutes": int32(30),
				"minWireVersion":               int32(0),
				"maxWireVersion":               int32(17),
				"readOnly":                     false,
				"ok":                           1.0,
			}
			for k, v := range want {
				if got := get(reply, k); got != v {
					t.Errorf("%s = %v (%T), want %v (%T)", k, got, got, v, v)
				}
			}
			if hosts, _ := get(reply, "hosts").(bson.A); len(hosts) != 1 || hosts[0] != s.Addr() {
				t.Errorf("hosts = %v, want [%s]", get(reply, "hosts"), s.Addr())
			}
			for _, absent := range []string{"topologyVersion", "compression"} {
				if get(reply, absent) != nil {
					t.Errorf("%s present; it must be left out", absent)
				}
			}
			for _, present := range []string{"electionId", "localTime", "connectionId", "$clusterTime", "operationTime"} {
				if get(reply, present) == nil {
					t.Errorf("%s missing", present)
				}
			}
			if get(reply, "lastWrite", "opTime", "ts") == nil || get(reply, "lastWrite", "majorityWriteDate") == nil {
				t.Errorf("lastWrite = %v", get(reply, "lastWrite"))
			}
		})
	}
	t.Run("helloOk only when asked", func(t *testing.T) {
		if reply := mustRun(t, c, "admin", bson.D{{Key: "hello", Value: 1}}); get(reply, "helloOk") != nil {
			t.Fatalf("helloOk = %v without helloOk in the request", get(reply, "helloOk"))
		}
	})
	t.Run("electionId is stable", func(t *testing.T) {
		a := mustRun(t, c, "admin", bson.D{{Key: "hello", Value: 1}})
		b := mustRun(t, c, "test", bson.D{{Key: "hello", Value: 1}})
		if get(a, "electionId") != get(b, "electionId") {
			t.Fatalf("electionId changed: %v then %v", get(a, "electionId"), get(b, "electionId"))
		}
	})
}

func TestStableAPIClientHandshake(t *testing.T) {
	// With a server API version the driver handshakes over OP_MSG and sends
	// apiVersion/apiStrict on every command.
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s, options.Client().SetServerAPIOptions(options.ServerAPI(options.ServerAPIVersion1).SetStrict(true)))
	mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	mustRun(t, c, "admin", bson.D{{Key: "hello", Value: 1}})
}

func TestAdminCommands(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	tests := []struct {
		name  string
		db    string
		cmd   bson.D
		check func(t *testing.T, reply bson.D)
	}{
		{name: "ping with generic fields", db: "admin", cmd: bson.D{
			{Key: "ping", Value: 1}, {Key: "comment", Value: "hi"}, {Key: "maxTimeMS", Value: 5000},
			{Key: "readConcern", Value: bson.D{{Key: "level", Value: "majority"}}},
			{Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}}},
			{Key: "apiDeprecationErrors", Value: false},
		}},
		{name: "buildInfo", db: "admin", cmd: bson.D{{Key: "buildInfo", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "version") != Version || get(r, "devdb") != true || get(r, "gitVersion") == nil || get(r, "bits") != int32(64) {
				t.Errorf("buildInfo = %v", r)
			}
			va, _ := get(r, "versionArray").(bson.A)
			if len(va) != 4 || va[0] != int32(6) || va[1] != int32(0) {
				t.Errorf("versionArray = %v", va)
			}
			if m, ok := get(r, "modules").(bson.A); !ok || len(m) != 0 {
				t.Errorf("modules = %v", get(r, "modules"))
			}
		}},
		{name: "buildinfo alias on any db", db: "test", cmd: bson.D{{Key: "buildinfo", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "version") != Version {
				t.Errorf("version = %v", get(r, "version"))
			}
		}},
		{name: "getParameter featureCompatibilityVersion", db: "admin", cmd: bson.D{{Key: "getParameter", Value: 1}, {Key: "featureCompatibilityVersion", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "featureCompatibilityVersion", "version") != "6.0" {
				t.Errorf("reply = %v", r)
			}
			if get(r, "logLevel") != nil {
				t.Errorf("unrequested parameter returned: %v", r)
			}
		}},
		{name: "getParameter star", db: "admin", cmd: bson.D{{Key: "getParameter", Value: "*"}}, check: func(t *testing.T, r bson.D) {
			if get(r, "featureCompatibilityVersion") == nil || get(r, "cursorTimeoutMillis") != DefaultCursorTimeout.Milliseconds() {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "getParameter showDetails", db: "admin", cmd: bson.D{{Key: "getParameter", Value: bson.D{{Key: "showDetails", Value: true}}}, {Key: "logLevel", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "logLevel", "value") != int32(0) {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "getLog startupWarnings", db: "admin", cmd: bson.D{{Key: "getLog", Value: "startupWarnings"}}, check: func(t *testing.T, r bson.D) {
			if get(r, "totalLinesWritten") != int32(0) || len(get(r, "log").(bson.A)) != 0 {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "getLog star", db: "admin", cmd: bson.D{{Key: "getLog", Value: "*"}}, check: func(t *testing.T, r bson.D) {
			if len(get(r, "names").(bson.A)) != 2 {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "hostInfo", db: "admin", cmd: bson.D{{Key: "hostInfo", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "system", "numCores") == nil || get(r, "os", "type") == nil {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "getCmdLineOpts", db: "admin", cmd: bson.D{{Key: "getCmdLineOpts", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "parsed", "replication", "replSet") != "rs0" || get(r, "parsed", "storage", "dbPath") != s.tmpDir {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "connectionStatus", db: "admin", cmd: bson.D{{Key: "connectionStatus", Value: 1}, {Key: "showPrivileges", Value: true}}, check: func(t *testing.T, r bson.D) {
			if u, ok := get(r, "authInfo", "authenticatedUsers").(bson.A); !ok || len(u) != 0 || get(r, "authInfo", "authenticatedUserPrivileges") == nil {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "whatsmyuri", db: "admin", cmd: bson.D{{Key: "whatsmyuri", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if you, _ := get(r, "you").(string); !strings.HasPrefix(you, "127.0.0.1:") {
				t.Errorf("you = %v", get(r, "you"))
			}
		}},
		{name: "serverStatus", db: "admin", cmd: bson.D{{Key: "serverStatus", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "process") != "devdb" || get(r, "version") != Version || get(r, "pid") == nil || get(r, "uptimeMillis") == nil {
				t.Errorf("reply = %v", r)
			}
			if cur, _ := get(r, "connections", "current").(int32); cur < 1 {
				t.Errorf("connections = %v", get(r, "connections"))
			}
			if get(r, "opcounters", "command") == nil {
				t.Errorf("opcounters = %v", get(r, "opcounters"))
			}
		}},
		{name: "replSetGetStatus", db: "admin", cmd: bson.D{{Key: "replSetGetStatus", Value: 1}}, check: func(t *testing.T, r bson.D) {
			members, _ := get(r, "members").(bson.A)
			if get(r, "set") != "rs0" || get(r, "myState") != int32(1) || len(members) != 1 {
				t.Fatalf("reply = %v", r)
			}
			if m := members[0].(bson.D); get(m, "stateStr") != "PRIMARY" || get(m, "name") != s.Addr() || get(m, "self") != true {
				t.Errorf("member = %v", m)
			}
		}},
		{name: "startSession", db: "admin", cmd: bson.D{{Key: "startSession", Value: 1}}, check: func(t *testing.T, r bson.D) {
			id, ok := get(r, "id", "id").(bson.Binary)
			if !ok || id.Subtype != 4 || len(id.Data) != 16 || get(r, "timeoutMinutes") != int32(30) {
				t.Errorf("reply = %v", r)
			}
		}},
		{name: "endSessions", db: "admin", cmd: bson.D{{Key: "endSessions", Value: bson.A{}}}},
		{name: "refreshSessions", db: "admin", cmd: bson.D{{Key: "refreshSessions", Value: bson.A{}}}},
		{name: "killSessions", db: "admin", cmd: bson.D{{Key: "killSessions", Value: bson.A{}}}},
		{name: "logout", db: "test", cmd: bson.D{{Key: "logout", Value: 1}}},
		{name: "getFreeMonitoringStatus", db: "admin", cmd: bson.D{{Key: "getFreeMonitoringStatus", Value: 1}}, check: func(t *testing.T, r bson.D) {
			if get(r, "state") != "disabled" {
				t.Errorf("reply = %v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := mustRun(t, c, tt.db, tt.cmd)
			if get(reply, "ok") != 1.0 {
				t.Fatalf("ok = %v", get(reply, "ok"))
			}
			if _, ok := get(reply, "operationTime").(bson.Timestamp); !ok {
				t.Errorf("operationTime = %v", get(reply, "operationTime"))
			}
			if h, ok := get(reply, "$clusterTime", "signature", "hash").(bson.Binary); !ok || len(h.Data) != 20 {
				t.Errorf("$clusterTime = %v", get(reply, "$clusterTime"))
			}
			if tt.check != nil {
				tt.check(t, reply)
			}
		})
	}
}

func TestAdminCommandErrors(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	tests := []struct {
		name    string
		db      string
		cmd     bson.D
		code    mongoerr.Code
		codeStr string
		msg     string
	}{
		{name: "unknown command", db: "admin", cmd: bson.D{{Key: "foo", Value: 1}}, code: 59, codeStr: "CommandNotFound", msg: "no such command: 'foo'"},
		{name: "atlasVersion", db: "admin", cmd: bson.D{{Key: "atlasVersion", Value: 1}}, code: 59, codeStr: "CommandNotFound"},
		{name: "getParameter unknown", db: "admin", cmd: bson.D{{Key: "getParameter", Value: 1}, {Key: "foo", Value: 1}}, code: 72, codeStr: "InvalidOptions", msg: "no option found to get"},
		{name: "getParameter off admin", db: "test", cmd: bson.D{{Key: "getParameter", Value: "*"}}, code: 13},
		{name: "getLog unknown", db: "admin", cmd: bson.D{{Key: "getLog", Value: "nope"}}, code: 96},
		{name: "getLog non-string", db: "admin", cmd: bson.D{{Key: "getLog", Value: 1}}, code: 14, codeStr: "TypeMismatch"},
		{name: "saslStart", db: "admin", cmd: bson.D{{Key: "saslStart", Value: 1}}, code: 18, codeStr: "AuthenticationFailed", msg: "no authentication"},
		{name: "authenticate", db: "admin", cmd: bson.D{{Key: "authenticate", Value: 1}}, code: 18},
		{name: "commitTransaction outside a transaction", db: "admin", cmd: bson.D{{Key: "commitTransaction", Value: 1}}, code: 72, codeStr: "InvalidOptions", msg: "must be run within a transaction"},
		{name: "abortTransaction outside a transaction", db: "admin", cmd: bson.D{{Key: "abortTransaction", Value: 1}}, code: 72},
		{name: "startTransaction without txnNumber", db: "test", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "startTransaction", Value: true}, {Key: "autocommit", Value: false}}, code: 72},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCommand(t, c, tt.db, tt.cmd)
			wantCode(t, err, tt.code, tt.codeStr)
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestDriverTransactionRefusesCommandsNotAllowedInTransactions(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.EndSession(context.Background()) })
	_, err = sess.WithTransaction(testContext(t), func(ctx context.Context) (any, error) {
		return nil, c.Database("test").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err()
	})
	var ce mongo.CommandError
	if !errors.As(err, &ce) || mongoerr.Code(ce.Code) != mongoerr.OperationNotSupportedInTransaction {
		t.Fatalf("transaction error = %v, want OperationNotSupportedInTransaction", err)
	}
}

func TestAuthenticatingClientFailsClearly(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s, options.Client().SetAuth(options.Credential{Username: "u", Password: "p", AuthMechanism: "SCRAM-SHA-256"}))
	err := c.Ping(testContext(t), nil)
	if err == nil || !strings.Contains(err.Error(), "devdb has no authentication") {
		t.Fatalf("ping with credentials = %v, want an error saying devdb has no authentication", err)
	}
}
