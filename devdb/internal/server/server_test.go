package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
)

func TestStartOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "defaults", opts: Options{}},
		{name: "localhost", opts: Options{Addr: "localhost:0"}},
		{name: "ipv4 non-loopback refused", opts: Options{Addr: "0.0.0.0:0"}, wantErr: "AllowRemote"},
		{name: "non-loopback allowed", opts: Options{Addr: "0.0.0.0:0", AllowRemote: true}},
		{name: "bad address", opts: Options{Addr: "nonsense"}, wantErr: "address"},
		{name: "negative cursor timeout", opts: Options{CursorTimeout: -1}, wantErr: "CursorTimeout"},
		{name: "negative oplog size", opts: Options{OplogMaxBytes: -1}, wantErr: "OplogMaxBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(testContext(t), tt.opts)
			if tt.wantErr != "" {
				if err == nil {
					_ = s.Close()
					t.Fatalf("Start succeeded, want error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func TestCloseIsIdempotentAndRemovesTempDir(t *testing.T) {
	s, err := Start(testContext(t), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, s)
	mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	dir := s.tmpDir
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("temporary data directory: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temporary data directory still there after Close: %v", err)
	}
	if nc, err := net.Dial("tcp", s.Addr()); err == nil {
		_ = nc.Close()
		t.Fatal("server still accepts connections after Close")
	}
}

func TestURI(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	if want := "mongodb://" + s.Addr() + "/?directConnection=true"; s.URI() != want {
		t.Fatalf("URI = %q, want %q", s.URI(), want)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr = %q, want 127.0.0.1 with a chosen port", s.Addr())
	}
}

func TestHandlerPanicKeepsConnection(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s, options.Client().SetMaxPoolSize(1))
	for range 2 {
		_, err := runCommand(t, c, "admin", bson.D{{Key: "testPanic", Value: 1}})
		wantCode(t, err, mongoerr.InternalError, "InternalError")
		mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	}
	_, err := runCommand(t, c, "admin", bson.D{{Key: "testPlainError", Value: 1}})
	wantCode(t, err, mongoerr.InternalError, "InternalError")
	if got := s.totalCreated.Load(); got > 3 {
		// 1 monitoring + 1 pooled (+1 RTT monitor at most): a panic must not cost a reconnect.
		t.Fatalf("%d connections created, want the pooled one reused", got)
	}
}

func TestCloseClientConnections(t *testing.T) {
	var h cursorHarness
	s := startTestServer(t, Options{}, testHooks{register: h.register})
	c := connect(t, s)
	src := newSliceSource(t, 20)
	h.add(src)
	reply := mustRun(t, c, "test", bson.D{{Key: "testCursor", Value: "c"}, {Key: "batchSize", Value: 5}})
	id := get(reply, "cursor", "id").(int64)

	s.CloseClientConnections()
	if n := s.openConnections(); n != 0 {
		t.Fatalf("%d connections open right after CloseClientConnections", n)
	}
	// The pooled connection is dead: the first command may fail with a
	// network error, after which the driver reconnects.
	_, err := runCommand(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	if err != nil && !mongo.IsNetworkError(err) {
		t.Fatalf("first command after dropping connections: %v, want success or a network error", err)
	}
	mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	// Cursors survive a dropped connection, as in MongoDB.
	more := mustRun(t, c, "test", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}})
	if got := len(get(more, "cursor", "nextBatch").(bson.A)); got != 15 {
		t.Fatalf("getMore after reconnect returned %d documents, want 15", got)
	}
}

// closeProbe is a net.Conn whose Close records whether ctx had ended.
type closeProbe struct {
	net.Conn
	ctx          context.Context
	endedAtClose atomic.Bool
}

func (p *closeProbe) Close() error {
	p.endedAtClose.Store(p.ctx.Err() != nil)
	return nil
}

// waitUntil polls cond until it holds, failing the test after
// rawIOTimeout (a hang detector).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(rawIOTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		<-tick.C
	}
}

// TestConnCloseClosesTheSocketFirst: a connection's socket is closed before
// its commands are canceled, so a command the cancellation interrupts
// cannot answer on it (see conn.close).
func TestConnCloseClosesTheSocketFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &closeProbe{ctx: ctx}
	c := &conn{nc: p, ctx: ctx, cancel: cancel}
	c.close()
	if p.endedAtClose.Load() {
		t.Fatal("the connection's context was canceled before its socket was closed")
	}
	if ctx.Err() == nil {
		t.Fatal("close left the connection's context alive")
	}
}

// TestDroppedConnectionDoesNotAnswerItsWaitingGetMore: a change stream's
// getMore waiting for changes when its connection is dropped gets no reply
// (its client sees the connection close, and resumes), not the
// CursorKilled its interrupted wait ends with, which drivers do not resume
// after.
func TestDroppedConnectionDoesNotAnswerItsWaitingGetMore(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	for range 20 {
		r := dialRaw(t, s)
		id := r.command(0, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$changeStream", Value: bson.D{}}}}},
			{Key: "cursor", Value: bson.D{}}, {Key: "$db", Value: "drop"}})
		reply := r.readReply(id)
		cursorID, _ := get(reply, "cursor", "id").(int64)
		if cursorID == 0 {
			t.Fatalf("aggregate $changeStream: %v", reply)
		}
		r.command(0, bson.D{{Key: "getMore", Value: cursorID}, {Key: "collection", Value: "c"},
			{Key: "maxTimeMS", Value: int64(30_000)}, {Key: "$db", Value: "drop"}})
		waitUntil(t, "the getMore pinned its cursor", func() bool {
			s.cursors.mu.Lock()
			defer s.cursors.mu.Unlock()
			c := s.cursors.cursors[cursorID]
			return c != nil && c.inUse
		})
		s.CloseClientConnections()
		r.expectClosed()
	}
}

func TestMaxConnections(t *testing.T) {
	s := startTestServer(t, Options{MaxConnections: 2}, testHooks{})
	var conns []*rawConn
	for range 2 {
		r := dialRaw(t, s)
		id := r.command(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
		if ok := get(r.readReply(id), "ok"); ok != 1.0 {
			t.Fatalf("ping ok = %v", ok)
		}
		conns = append(conns, r)
	}
	extra := dialRaw(t, s)
	extra.expectClosed()
	// Closing one frees a slot.
	sc := serverConn(t, s, conns[0])
	_ = conns[0].nc.Close()
	<-sc.done
	r := dialRaw(t, s)
	id := r.command(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	if ok := get(r.readReply(id), "ok"); ok != 1.0 {
		t.Fatalf("ping after a slot freed: ok = %v", ok)
	}
}

// serverConn returns the server side of a raw connection that has completed
// at least one request.
func serverConn(t *testing.T, s *Server, r *rawConn) *conn {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if c.remote == r.nc.LocalAddr().String() {
			return c
		}
	}
	t.Fatalf("no server connection for %s", r.nc.LocalAddr())
	return nil
}

func TestMalformedInputClosesOnlyThatConnection(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ping := func() {
		t.Helper()
		mustRun(t, c, "admin", bson.D{{Key: "ping", Value: 1}})
	}
	pingDoc, _ := bson.Marshal(bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	header := func(length int32, op int32) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b, uint32(length))
		binary.LittleEndian.PutUint32(b[12:], uint32(op))
		return b
	}
	badChecksum := wire.AppendMsg(nil, 1, 0, wire.FlagChecksumPresent, pingDoc)
	badChecksum[len(badChecksum)-1] ^= 0xff
	unknownFlag := wire.AppendMsg(nil, 1, 0, 1<<5, pingDoc)
	badBSON := wire.AppendMsg(nil, 1, 0, 0, pingDoc)
	badBSON[16+4+1+4] = 0x66 // first element's type byte
	tests := []struct {
		name string
		in   []byte
	}{
		{name: "length below header", in: header(5, wire.OpMsg)},
		{name: "length above maximum", in: header(wire.MaxMessageSize+1, wire.OpMsg)},
		{name: "compressed", in: append(header(25, wire.OpCompressed), make([]byte, 9)...)},
		{name: "unknown opcode", in: header(16, 9999)},
		{name: "legacy OP_INSERT", in: append(header(20, 2002), 0, 0, 0, 0)},
		{name: "bad checksum", in: badChecksum},
		{name: "unknown required flag", in: unknownFlag},
		{name: "invalid BSON", in: badBSON},
		{name: "garbage", in: bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, s)
			r.send(tt.in)
			r.expectClosed()
			ping()
		})
	}
}

func TestOversizedCommandGetsBSONObjectTooLarge(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	r := dialRaw(t, s)
	big := bson.D{{Key: "ping", Value: 1}, {Key: "pad", Value: strings.Repeat("x", wire.MaxCommandSize)}, {Key: "$db", Value: "admin"}}
	id := r.command(0, big)
	reply := r.readReply(id)
	if get(reply, "code") != int32(mongoerr.BSONObjectTooLarge) || get(reply, "ok") != 0.0 {
		t.Fatalf("reply = %v, want BSONObjectTooLarge", reply)
	}
	// The connection stays usable.
	id = r.command(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	if get(r.readReply(id), "ok") != 1.0 {
		t.Fatal("ping after an oversized command failed")
	}
}

func TestOpMsgRequests(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	tests := []struct {
		name     string
		cmd      bson.D
		wantCode mongoerr.Code
	}{
		{name: "missing $db", cmd: bson.D{{Key: "ping", Value: 1}}, wantCode: mongoerr.OpMsgMissingDB},
		{name: "non-string $db", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: 1}}, wantCode: mongoerr.TypeMismatch},
		{name: "invalid db name", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "a.b"}}, wantCode: mongoerr.InvalidNamespace},
		{name: "unknown command", cmd: bson.D{{Key: "foo", Value: 1}, {Key: "$db", Value: "admin"}}, wantCode: mongoerr.CommandNotFound},
		{name: "command names are case-sensitive", cmd: bson.D{{Key: "PING", Value: 1}, {Key: "$db", Value: "admin"}}, wantCode: mongoerr.CommandNotFound},
		{name: "ping", cmd: bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, s)
			reply := r.readReply(r.command(0, tt.cmd))
			if tt.wantCode == 0 {
				if get(reply, "ok") != 1.0 {
					t.Fatalf("reply = %v, want ok", reply)
				}
			} else if get(reply, "code") != int32(tt.wantCode) || get(reply, "ok") != 0.0 {
				t.Fatalf("reply = %v, want code %d", reply, tt.wantCode)
			}
			for _, f := range []string{"operationTime", "$clusterTime"} {
				if get(reply, f) == nil {
					t.Errorf("reply lacks %s: %v", f, reply)
				}
			}
		})
	}

	t.Run("moreToCome gets no reply", func(t *testing.T) {
		r := dialRaw(t, s)
		r.command(wire.FlagMoreToCome, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
		r.command(wire.FlagMoreToCome, bson.D{{Key: "nosuch", Value: 1}, {Key: "$db", Value: "admin"}})
		id := r.command(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
		if get(r.readReply(id), "ok") != 1.0 { // readReply checks responseTo == id
			t.Fatal("ping after moreToCome messages failed")
		}
	})

	t.Run("checksummed request gets a checksummed reply", func(t *testing.T) {
		r := dialRaw(t, s)
		b, _ := bson.Marshal(bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
		r.send(wire.AppendMsg(nil, 77, 0, wire.FlagChecksumPresent, b))
		m, err := wire.ReadMessage(r.nc, 0)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := wire.ParseMsg(m) // verifies the checksum
		if err != nil || reply.Flags&wire.FlagChecksumPresent == 0 || m.Header.ResponseTo != 77 {
			t.Fatalf("reply %+v, err %v", reply, err)
		}
	})

	t.Run("document sequence appended to body", func(t *testing.T) {
		var got bson.D
		srv := startTestServer(t, Options{}, testHooks{register: func(s *Server) {
			s.handle("echoSeq", func(_ context.Context, req *Request) (bson.D, error) {
				got = req.Body
				return bson.D{{Key: "n", Value: int32(dispatchArrayLen(req.Body, "documents"))}}, nil
			})
		}})
		r := dialRaw(t, srv)
		body, _ := bson.Marshal(bson.D{{Key: "echoSeq", Value: "c"}, {Key: "$db", Value: "test"}})
		d1, _ := bson.Marshal(bson.D{{Key: "_id", Value: 1}, {Key: "sub", Value: bson.D{{Key: "x", Value: 1}}}})
		id := r.nextID()
		r.send(wire.AppendMsgSequence(wire.AppendMsg(nil, id, 0, 0, body), "documents", d1, d1))
		reply := r.readReply(id)
		if get(reply, "n") != int32(2) {
			t.Fatalf("reply = %v, want n 2", reply)
		}
		docs := get(got, "documents").(bson.A)
		if _, ok := docs[0].(bson.D); !ok {
			t.Fatalf("sequence document decoded as %T, want bson.D", docs[0])
		}
		if sub := get(docs[0].(bson.D), "sub"); sub == nil {
			t.Fatalf("nested document lost: %v", docs[0])
		}
	})
}

func TestLegacyOpQuery(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	query := func(t *testing.T, ns string, cmd bson.D) *wire.Reply {
		t.Helper()
		r := dialRaw(t, s)
		b, _ := bson.Marshal(cmd)
		r.send(wire.AppendQuery(nil, 42, ns, b))
		m, err := wire.ReadMessage(r.nc, 0)
		if err != nil {
			t.Fatalf("read OP_REPLY: %v", err)
		}
		if m.Header.OpCode != wire.OpReply || m.Header.ResponseTo != 42 {
			t.Fatalf("reply header = %+v, want OP_REPLY to 42", m.Header)
		}
		rep, err := wire.ParseReply(m)
		if err != nil || len(rep.Documents) != 1 {
			t.Fatalf("parse OP_REPLY: %v %+v", err, rep)
		}
		return rep
	}
	decode := func(t *testing.T, raw bson.Raw) bson.D {
		var d bson.D
		if err := bson.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("isMaster handshake", func(t *testing.T) {
		rep := query(t, "admin.$cmd", bson.D{{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true}, {Key: "client", Value: bson.D{{Key: "driver", Value: bson.D{{Key: "name", Value: "raw"}}}}}})
		d := decode(t, rep.Documents[0])
		if get(d, "ismaster") != true || get(d, "helloOk") != true || get(d, "maxWireVersion") != MaxWireVersion || get(d, "ok") != 1.0 {
			t.Fatalf("isMaster reply = %v", d)
		}
	})
	t.Run("wrapped in $query", func(t *testing.T) {
		rep := query(t, "test.$cmd", bson.D{{Key: "$query", Value: bson.D{{Key: "hello", Value: 1}}}, {Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "primary"}}}})
		if d := decode(t, rep.Documents[0]); get(d, "isWritablePrimary") != true {
			t.Fatalf("hello reply = %v", d)
		}
	})
	t.Run("other commands refused", func(t *testing.T) {
		rep := query(t, "admin.$cmd", bson.D{{Key: "ping", Value: 1}})
		if d := decode(t, rep.Documents[0]); get(d, "code") != int32(mongoerr.UnsupportedOpQueryCommand) {
			t.Fatalf("reply = %v, want UnsupportedOpQueryCommand", d)
		}
	})
	t.Run("legacy find refused", func(t *testing.T) {
		rep := query(t, "test.coll", bson.D{{Key: "a", Value: 1}})
		if rep.ResponseFlags&wire.ReplyQueryFailure == 0 {
			t.Fatalf("flags = %#x, want QueryFailure", rep.ResponseFlags)
		}
		if d := decode(t, rep.Documents[0]); get(d, "$err") == nil {
			t.Fatalf("reply = %v, want $err", d)
		}
	})
}

func TestConcurrentClients(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s, options.Client().SetMaxPoolSize(16))
	errc := make(chan error, 16)
	for range 16 {
		go func() {
			var err error
			for range 50 {
				if err = c.Database("admin").RunCommand(testContext(t), bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
					break
				}
			}
			errc <- err
		}()
	}
	for range 16 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if st := mustRun(t, c, "admin", bson.D{{Key: "serverStatus", Value: 1}}); get(st, "opcounters", "command").(int64) < 800 {
		t.Fatalf("opcounters = %v", get(st, "opcounters"))
	}
}

func TestRetryableWritesAccepted(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	// retryWrites is on by default: against a replica-set primary the driver
	// sends lsid and txnNumber with every write.
	var sawTxn atomic.Int32
	c := connect(t, s, options.Client().SetRetryWrites(true).SetMonitor(&event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName == "insert" || e.CommandName == "update" || e.CommandName == "findAndModify" {
				if _, err := e.Command.LookupErr("txnNumber"); err == nil {
					sawTxn.Add(1)
				}
			}
		},
	}))
	coll := c.Database("test").Collection("retry")
	ctx := testContext(t)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 1}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	var got bson.D
	if err := coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&got); err != nil {
		t.Fatalf("findAndModify: %v", err)
	}
	if get(got, "n") != int32(3) {
		t.Fatalf("document = %v, want n 3", got)
	}
	if sawTxn.Load() != 3 {
		t.Fatalf("%d writes carried txnNumber, want 3", sawTxn.Load())
	}
}

// BenchmarkPingRoundTrip measures command round trips through the Go driver.
func BenchmarkPingRoundTrip(b *testing.B) {
	s, err := Start(context.Background(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	db := c.Database("admin")
	cmd := bson.D{{Key: "ping", Value: 1}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := db.RunCommand(ctx, cmd).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAsCommandError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		code       mongoerr.Code
		codeName   string
		unexpected bool
	}{
		{name: "command error", err: mongoerr.Errorf(mongoerr.CursorNotFound, "x"), code: 43, codeName: "CursorNotFound"},
		{name: "wrapped command error", err: fmt.Errorf("run: %w", &mongoerr.Error{Code: 280, Message: "m", Labels: []string{"L"}}), code: 280, codeName: "ChangeStreamFatalError"},
		{name: "mql error", err: fmt.Errorf("filter: %w", mongoerr.Errorf(mongoerr.BadValue, "bad")), code: 2, codeName: "BadValue"},
		{name: "storage error", err: fmt.Errorf("insert: %w", &mongoerr.Error{Code: 11000, Message: "E11000"}), code: 11000, codeName: "DuplicateKey"},
		{name: "document too large", err: fmt.Errorf("parse: %w", wire.ErrDocumentTooLarge), code: 10334, codeName: "BSONObjectTooLarge"},
		{name: "cancelled", err: fmt.Errorf("scan: %w", context.Canceled), code: 11601, codeName: "Interrupted"},
		{name: "deadline", err: fmt.Errorf("scan: %w", context.DeadlineExceeded), code: 50, codeName: "MaxTimeMSExpired"},
		{name: "malformed", err: fmt.Errorf("parse: %w", wire.ErrMalformed), code: 22, codeName: "InvalidBSON"},
		{name: "anything else", err: errors.New("boom"), code: 1, codeName: "InternalError", unexpected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce, unexpected := asCommandError(tt.err)
			if ce.Code != tt.code || ce.Code.String() != tt.codeName || unexpected != tt.unexpected {
				t.Fatalf("got %d %s unexpected=%v, want %d %s unexpected=%v", ce.Code, ce.Code.String(), unexpected, tt.code, tt.codeName, tt.unexpected)
			}
		})
	}
}
