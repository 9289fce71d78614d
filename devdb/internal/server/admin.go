package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// Identity devdb presents: a MongoDB 6.0 server (wire version 17).
const (
	// Version is the MongoDB version devdb reports in buildInfo and
	// serverStatus; it matches MaxWireVersion.
	Version = "6.0.19"
	// MinWireVersion is the oldest wire protocol version devdb speaks.
	MinWireVersion int32 = 0
	// MaxWireVersion is the newest wire protocol version devdb speaks
	// (17 = MongoDB 6.0).
	MaxWireVersion int32 = 17
	// FeatureCompatibilityVersion is reported by getParameter.
	FeatureCompatibilityVersion = "6.0"
	// helloMaxWriteBatchSize is hello's helloMaxWriteBatchSize.
	helloMaxWriteBatchSize int32 = 100000
	// admSessionTimeoutMinutes is hello's logicalSessionTimeoutMinutes.
	admSessionTimeoutMinutes int32 = 30
	// admReplTerm is the constant election term of the single node.
	admReplTerm int64 = 1
)

// admVersionArray is buildInfo's versionArray for Version.
func admVersionArray() bson.A { return bson.A{int32(6), int32(0), int32(19), int32(0)} }

// admNoAuth is the error for every authentication command.
func admNoAuth() error {
	return mongoerr.Errorf(mongoerr.AuthenticationFailed, "devdb has no authentication: connect without credentials (remove the user name, password and authMechanism from the connection string)")
}

// registerAdmin registers the handshake, diagnostic, session and refusal
// commands.
func (s *Server) registerAdmin() {
	s.command("hello", "report this server's role in the replica set and its limits (the handshake)", s.cmdHello).apiV1()
	s.command("isMaster", "the former name of hello", s.cmdHello)
	s.command("ismaster", "the former name of hello", s.cmdHello)
	s.command("ping", "answer ok: the server is reachable", admOK).apiV1()
	s.command("buildInfo", "report the MongoDB version devdb presents", s.cmdBuildInfo)
	s.command("buildinfo", "the lower-case name of buildInfo", s.cmdBuildInfo)
	s.command("getParameter", "report server parameters", s.cmdGetParameter).admin()
	s.command("getLog", "report the in-memory log (always empty in devdb)", cmdGetLog).admin()
	s.command("hostInfo", "describe the machine devdb runs on", s.cmdHostInfo)
	s.command("getCmdLineOpts", "report the command line devdb was started with", s.cmdGetCmdLineOpts)
	s.command("connectionStatus", "report the connection's authentication (devdb has none)", cmdConnectionStatus)
	s.command("whatsmyuri", "report the client's address as the server sees it", cmdWhatsMyURI)
	s.command("serverStatus", "report server statistics", s.cmdServerStatus)
	s.command("replSetGetStatus", "report the replica set's members", s.cmdReplSetGetStatus).admin()
	s.command("getFreeMonitoringStatus", "report free monitoring (always disabled)", cmdFreeMonitoring)
	s.command("startSession", "start a logical session", s.cmdStartSession)
	s.command("endSessions", "end logical sessions, aborting their transactions", s.cmdEndSessions).apiV1()
	s.command("killSessions", "kill sessions, aborting their transactions and closing their cursors", s.cmdKillSessions)
	s.command("killAllSessions", "kill the sessions of the given users (devdb: all)", s.cmdKillSessions)
	s.command("killAllSessionsByPattern", "kill the sessions matching patterns (devdb: all)", s.cmdKillSessions)
	s.command("refreshSessions", "keep sessions alive", admOK).apiV1()
	s.command("logout", "end the connection's authentication (devdb has none)", admOK)
	// Run by invokeInTxn; invoke refuses them outside a transaction.
	s.command("abortTransaction", "abort the session's multi-document transaction", admOK).admin().apiV1()
	s.command("commitTransaction", "commit the session's multi-document transaction", admOK).admin().apiV1()
	for _, name := range []string{"saslStart", "saslContinue", "authenticate", "getnonce"} {
		s.command(name, "refused: devdb has no authentication", func(context.Context, *Request) (bson.D, error) { return nil, admNoAuth() })
	}
	s.command("explain", "explain how a find, aggregate, count, distinct, update, delete or findAndModify runs", s.cmdExplain).apiV1()
	s.command("listCommands", "list the commands this server implements", s.cmdListCommands)
}

// admOK answers {ok: 1}.
func admOK(context.Context, *Request) (bson.D, error) { return bson.D{}, nil }

// admRequireAdmin fails a command MongoDB accepts only on the admin database
// (registered with admin) when req names another database. MongoDB checks it
// before anything else about the command (its pre-parse authorization check),
// so a transaction's commit sent elsewhere is refused without touching the
// transaction.
func (s *Server) admRequireAdmin(req *Request) error {
	if d := s.commands[req.Name]; d != nil && d.adminOnly && req.DB != "admin" {
		return mongoerr.Errorf(mongoerr.Unauthorized, "%s may only be run against the admin database.", req.Name)
	}
	return nil
}

// admOpTimeDoc is a replication optime {ts, t}.
func admOpTimeDoc(ts bson.Timestamp) bson.D {
	return bson.D{{Key: "ts", Value: ts}, {Key: "t", Value: admReplTerm}}
}

// admOpTimeDate is the wall time of an optime (its seconds).
func admOpTimeDate(ts bson.Timestamp) bson.DateTime {
	return bson.DateTime(int64(ts.T) * 1000)
}

// cmdHello answers hello / isMaster / ismaster as the primary of the
// replica set, or as its secondary on a connection to the secondary member
// (Options.SecondaryAddr). It leaves out topologyVersion (so drivers poll
// rather than stream) and compression (so they never compress).
func (s *Server) cmdHello(_ context.Context, req *Request) (bson.D, error) {
	if client, ok := cmdField(req.Body, "client"); ok {
		s.log.Debug("devdb: client handshake", "conn", req.ConnID, "remote", req.Remote, "client", client)
		if req.conn != nil {
			req.conn.appName = handshakeAppName(client)
		}
	}
	ts := s.store.LastOpTime()
	reply := bson.D{}
	if v, ok := cmdField(req.Body, "helloOk"); ok && v == true {
		reply = append(reply, bson.E{Key: "helloOk", Value: true})
	}
	hosts, me := bson.A{s.advertised}, s.advertised
	if s.secLn != nil {
		hosts = append(hosts, s.secAdvertised)
	}
	secondary := req.conn != nil && req.conn.secondary
	if secondary {
		me = s.secAdvertised
	}
	reply = append(reply,
		bson.E{Key: "hosts", Value: hosts},
		bson.E{Key: "setName", Value: s.opts.ReplSetName},
		bson.E{Key: "setVersion", Value: int32(1)},
	)
	if req.Name == "hello" {
		reply = append(reply, bson.E{Key: "isWritablePrimary", Value: !secondary})
	} else {
		reply = append(reply, bson.E{Key: "ismaster", Value: !secondary})
	}
	reply = append(reply,
		bson.E{Key: "secondary", Value: secondary},
		bson.E{Key: "primary", Value: s.advertised},
		bson.E{Key: "me", Value: me},
	)
	if !secondary {
		reply = append(reply, bson.E{Key: "electionId", Value: s.electionID})
	}
	reply = append(reply,
		bson.E{Key: "lastWrite", Value: bson.D{
			{Key: "opTime", Value: admOpTimeDoc(ts)},
			{Key: "lastWriteDate", Value: admOpTimeDate(ts)},
			{Key: "majorityOpTime", Value: admOpTimeDoc(ts)},
			{Key: "majorityWriteDate", Value: admOpTimeDate(ts)},
		}},
		bson.E{Key: "maxBsonObjectSize", Value: int32(wire.MaxDocumentSize)},
		bson.E{Key: "maxMessageSizeBytes", Value: int32(wire.MaxMessageSize)},
		bson.E{Key: "maxWriteBatchSize", Value: helloMaxWriteBatchSize},
		bson.E{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		bson.E{Key: "logicalSessionTimeoutMinutes", Value: admSessionTimeoutMinutes},
		bson.E{Key: "connectionId", Value: admConnID(req.ConnID)},
		bson.E{Key: "minWireVersion", Value: MinWireVersion},
		bson.E{Key: "maxWireVersion", Value: MaxWireVersion},
		bson.E{Key: "readOnly", Value: false},
	)
	return reply, nil
}

// handshakeAppName returns client.application.name of a handshake's client
// document, or "".
func handshakeAppName(client any) string {
	d, _ := client.(bson.D)
	app, _ := cmdField(d, "application")
	ad, _ := app.(bson.D)
	name, _ := cmdField(ad, "name")
	s, _ := name.(string)
	return s
}

// admConnID is a connection id as MongoDB encodes it: int32 while it fits.
func admConnID(id int64) any {
	if id <= 1<<31-1 {
		return int32(id)
	}
	return id
}

// cmdBuildInfo answers buildInfo with devdb's identity; devdb: true lets
// tools tell devdb from MongoDB.
func (s *Server) cmdBuildInfo(context.Context, *Request) (bson.D, error) {
	return bson.D{
		{Key: "version", Value: Version},
		{Key: "gitVersion", Value: "devdb"},
		{Key: "modules", Value: bson.A{}},
		{Key: "allocator", Value: "system"},
		{Key: "javascriptEngine", Value: "none"},
		{Key: "sysInfo", Value: "deprecated"},
		{Key: "versionArray", Value: admVersionArray()},
		{Key: "openssl", Value: bson.D{{Key: "running", Value: "disabled"}, {Key: "compiled", Value: "disabled"}}},
		{Key: "buildEnvironment", Value: bson.D{
			{Key: "distmod", Value: "devdb"},
			{Key: "target_arch", Value: runtime.GOARCH},
			{Key: "target_os", Value: runtime.GOOS},
			{Key: "cc", Value: runtime.Version()},
		}},
		{Key: "bits", Value: int32(64)},
		{Key: "debug", Value: false},
		{Key: "maxBsonObjectSize", Value: int32(wire.MaxDocumentSize)},
		{Key: "storageEngines", Value: bson.A{"devdb"}},
		{Key: "devdb", Value: true},
	}, nil
}

// parameters returns the server parameters getParameter knows.
func (s *Server) parameters() bson.D {
	return bson.D{
		{Key: "authenticationMechanisms", Value: bson.A{}},
		{Key: "cursorTimeoutMillis", Value: s.opts.CursorTimeout.Milliseconds()},
		{Key: "featureCompatibilityVersion", Value: bson.D{{Key: "version", Value: FeatureCompatibilityVersion}}},
		{Key: "logLevel", Value: int32(0)},
		{Key: "maxBSONDepth", Value: int32(100)},
		{Key: "quiet", Value: false},
	}
}

// admIsGenericField reports whether name is a field MongoDB accepts on every
// command; such fields are never parameter names.
func admIsGenericField(name string) bool {
	switch name {
	case "$db", "lsid", "txnNumber", "$clusterTime", "$readPreference", "readConcern", "writeConcern",
		"apiVersion", "apiStrict", "apiDeprecationErrors", "comment", "maxTimeMS", "$audit", "$client",
		"autocommit", "startTransaction":
		return true
	}
	return false
}

// cmdGetParameter answers {getParameter: 1, <name>: 1, ...},
// {getParameter: "*"} (all) and {getParameter: {allParameters, showDetails}}.
// No known parameter requested → InvalidOptions "no option found to get".
func (s *Server) cmdGetParameter(_ context.Context, req *Request) (bson.D, error) {
	all, details := false, false
	switch v := req.Body[0].Value.(type) {
	case string:
		all = v == "*"
	case bson.D:
		for _, e := range v {
			switch e.Key {
			case "allParameters":
				all = admTruthy(e.Value)
			case "showDetails":
				details = admTruthy(e.Value)
			default:
				return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field 'getParameter.%s' is an unknown field.", e.Key)
			}
		}
	}
	var reply bson.D
	for _, p := range s.parameters() {
		if !all {
			if _, asked := cmdField(req.Body[1:], p.Key); !asked || admIsGenericField(p.Key) {
				continue
			}
		}
		if details {
			p.Value = bson.D{{Key: "value", Value: p.Value}, {Key: "settableAtRuntime", Value: false}, {Key: "settableAtStartup", Value: false}}
		}
		reply = append(reply, p)
	}
	if len(reply) == 0 {
		return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "no option found to get")
	}
	return reply, nil
}

// admTruthy is MongoDB's truthiness for option values.
func admTruthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int32:
		return x != 0
	case int64:
		return x != 0
	case float64:
		return x != 0
	case nil, bson.Undefined:
		return false
	}
	return true
}

// cmdGetLog answers getLog: "*" lists the logs; "global" and
// "startupWarnings" are empty (devdb keeps no in-memory log).
func cmdGetLog(_ context.Context, req *Request) (bson.D, error) {
	name, ok := req.Body[0].Value.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Argument to getLog must be of type String; found %s", mql.TypeName(req.Body[0].Value))
	}
	switch name {
	case "*":
		return bson.D{{Key: "names", Value: bson.A{"global", "startupWarnings"}}}, nil
	case "global", "startupWarnings":
		return bson.D{{Key: "totalLinesWritten", Value: int32(0)}, {Key: "log", Value: bson.A{}}}, nil
	}
	return nil, mongoerr.Errorf(mongoerr.OperationFailed, "No log named '%s'", name)
}

// cmdHostInfo answers hostInfo with what the Go runtime knows.
func (s *Server) cmdHostInfo(context.Context, *Request) (bson.D, error) {
	host, _ := os.Hostname()
	return bson.D{
		{Key: "system", Value: bson.D{
			{Key: "currentTime", Value: bson.NewDateTimeFromTime(time.Now())},
			{Key: "hostname", Value: host},
			{Key: "cpuAddrSize", Value: int32(64)},
			{Key: "numCores", Value: int32(runtime.NumCPU())},
			{Key: "cpuArch", Value: runtime.GOARCH},
			{Key: "numaEnabled", Value: false},
		}},
		{Key: "os", Value: bson.D{{Key: "type", Value: runtime.GOOS}, {Key: "name", Value: runtime.GOOS}}},
		{Key: "extra", Value: bson.D{}},
	}, nil
}

// cmdGetCmdLineOpts answers getCmdLineOpts with devdb's effective options.
func (s *Server) cmdGetCmdLineOpts(context.Context, *Request) (bson.D, error) {
	host, port, _ := net.SplitHostPort(s.addr)
	dbPath := s.opts.Data
	if dbPath == "" {
		dbPath = s.tmpDir
	}
	return bson.D{
		{Key: "argv", Value: bson.A{"devdb"}},
		{Key: "parsed", Value: bson.D{
			{Key: "net", Value: bson.D{{Key: "bindIp", Value: host}, {Key: "port", Value: port}}},
			{Key: "replication", Value: bson.D{{Key: "replSet", Value: s.opts.ReplSetName}}},
			{Key: "storage", Value: bson.D{{Key: "dbPath", Value: dbPath}}},
		}},
	}, nil
}

// cmdConnectionStatus reports no authenticated users (devdb has no auth).
func cmdConnectionStatus(_ context.Context, req *Request) (bson.D, error) {
	info := bson.D{
		{Key: "authenticatedUsers", Value: bson.A{}},
		{Key: "authenticatedUserRoles", Value: bson.A{}},
	}
	if v, ok := cmdField(req.Body, "showPrivileges"); ok && admTruthy(v) {
		info = append(info, bson.E{Key: "authenticatedUserPrivileges", Value: bson.A{}})
	}
	return bson.D{{Key: "authInfo", Value: info}}, nil
}

// cmdWhatsMyURI answers whatsmyuri with the client's address.
func cmdWhatsMyURI(_ context.Context, req *Request) (bson.D, error) {
	return bson.D{{Key: "you", Value: req.Remote}}, nil
}

// cmdServerStatus answers a minimal serverStatus.
func (s *Server) cmdServerStatus(context.Context, *Request) (bson.D, error) {
	host, _ := os.Hostname()
	up := time.Since(s.started)
	cur := int32(s.openConnections())
	return bson.D{
		{Key: "host", Value: host},
		{Key: "version", Value: Version},
		{Key: "process", Value: "devdb"},
		{Key: "pid", Value: int64(os.Getpid())},
		{Key: "uptime", Value: up.Seconds()},
		{Key: "uptimeMillis", Value: up.Milliseconds()},
		{Key: "uptimeEstimate", Value: int64(up.Seconds())},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "connections", Value: bson.D{
			{Key: "current", Value: cur},
			{Key: "available", Value: int32(s.opts.MaxConnections) - cur},
			{Key: "totalCreated", Value: s.totalCreated.Load()},
		}},
		{Key: "opcounters", Value: bson.D{
			{Key: "insert", Value: s.counters.insert.Load()},
			{Key: "query", Value: s.counters.query.Load()},
			{Key: "update", Value: s.counters.update.Load()},
			{Key: "delete", Value: s.counters.delete.Load()},
			{Key: "getmore", Value: s.counters.getmore.Load()},
			{Key: "command", Value: s.counters.command.Load()},
		}},
		{Key: "metrics", Value: bson.D{{Key: "cursor", Value: bson.D{
			{Key: "open", Value: bson.D{{Key: "total", Value: int64(s.cursors.len())}}},
		}}}},
	}, nil
}

// cmdReplSetGetStatus answers replSetGetStatus with the single PRIMARY member.
func (s *Server) cmdReplSetGetStatus(_ context.Context, req *Request) (bson.D, error) {
	ts := s.store.LastOpTime()
	now := bson.NewDateTimeFromTime(time.Now())
	return bson.D{
		{Key: "set", Value: s.opts.ReplSetName},
		{Key: "date", Value: now},
		{Key: "myState", Value: int32(1)},
		{Key: "term", Value: admReplTerm},
		{Key: "heartbeatIntervalMillis", Value: int64(2000)},
		{Key: "optimes", Value: bson.D{
			{Key: "lastCommittedOpTime", Value: admOpTimeDoc(ts)},
			{Key: "appliedOpTime", Value: admOpTimeDoc(ts)},
			{Key: "durableOpTime", Value: admOpTimeDoc(ts)},
		}},
		{Key: "members", Value: bson.A{bson.D{
			{Key: "_id", Value: int32(0)},
			{Key: "name", Value: s.advertised},
			{Key: "health", Value: 1.0},
			{Key: "state", Value: int32(1)},
			{Key: "stateStr", Value: "PRIMARY"},
			{Key: "uptime", Value: int32(time.Since(s.started).Seconds())},
			{Key: "optime", Value: admOpTimeDoc(ts)},
			{Key: "optimeDate", Value: admOpTimeDate(ts)},
			{Key: "electionTime", Value: bson.Timestamp{T: uint32(s.started.Unix()), I: 1}},
			{Key: "electionDate", Value: bson.NewDateTimeFromTime(s.started)},
			{Key: "self", Value: true},
		}}},
	}, nil
}

// cmdFreeMonitoring reports free monitoring as disabled.
func cmdFreeMonitoring(context.Context, *Request) (bson.D, error) {
	return bson.D{{Key: "state", Value: "disabled"}}, nil
}

// cmdStartSession returns a fresh session id (a random UUID, subtype 4) and
// adds it to the logical session cache.
func (s *Server) cmdStartSession(context.Context, *Request) (bson.D, error) {
	id, err := admNewUUID()
	if err != nil {
		return nil, fmt.Errorf("start session: %w", err)
	}
	var k [16]byte
	copy(k[:], id)
	s.sessions.touch(k, s.now())
	return bson.D{
		{Key: "id", Value: bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: id}}}},
		{Key: "timeoutMinutes", Value: admSessionTimeoutMinutes},
	}, nil
}
