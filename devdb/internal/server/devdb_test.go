package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
)

// testContext returns a context bounded by the test's deadline (or 30s).
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogger writes server logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// startTestServer starts a server with test hooks and closes it at cleanup.
func startTestServer(t *testing.T, opts Options, hooks testHooks) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := start(testContext(t), opts, hooks)
	if err != nil {
		t.Fatalf("start devdb: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close devdb: %v", err)
		}
	})
	return s
}

// connect returns a driver client for s, disconnected at cleanup.
func connect(t *testing.T, s *Server, opts ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	all := append([]*options.ClientOptions{options.Client().ApplyURI(s.URI())}, opts...)
	c, err := mongo.Connect(all...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// runCommand runs cmd on db and decodes the reply. The context has no
// deadline: with one the driver would add maxTimeMS, which getMore refuses
// for non-awaitData cursors (as MongoDB does).
func runCommand(t *testing.T, c *mongo.Client, db string, cmd bson.D) (bson.D, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var reply bson.D
	err := c.Database(db).RunCommand(ctx, cmd).Decode(&reply)
	return reply, err
}

// mustRun runs cmd and fails the test on error.
func mustRun(t *testing.T, c *mongo.Client, db string, cmd bson.D) bson.D {
	t.Helper()
	reply, err := runCommand(t, c, db, cmd)
	if err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
	return reply
}

// wantCode checks that err is a server error with code (and, if not empty,
// the code name).
func wantCode(t *testing.T, err error, code mongoerr.Code, name string) {
	t.Helper()
	var ce mongo.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want a command error with code %d", err, err, code)
	}
	if mongoerr.Code(ce.Code) != code || (name != "" && ce.Name != name) {
		t.Fatalf("err = code %d %s %q, want code %d %s", ce.Code, ce.Name, ce.Message, code, name)
	}
}

// get returns the value at a dotted path of d, or nil.
func get(d bson.D, path ...string) any {
	var v any = d
	for _, k := range path {
		doc, ok := v.(bson.D)
		if !ok {
			return nil
		}
		v, ok = cmdField(doc, k)
		if !ok {
			return nil
		}
	}
	return v
}

// sliceSource is a CursorSource over fixed documents, for cursor tests that
// do not depend on CRUD.
type sliceSource struct {
	mu      sync.Mutex
	docs    []bson.Raw
	pos     int
	calls   []batchCall
	closed  atomic.Int32
	endless bool // awaitable: never exhausted

	// gate, when set, blocks NextBatch until it is closed or ctx is done,
	// after signalling entered.
	gate    chan struct{}
	entered chan struct{}
	// done, when set, runs as NextBatch returns a batch.
	done func()
}

// batchCall records one NextBatch call.
type batchCall struct {
	n, maxBytes int
	await       time.Duration
}

func newSliceSource(t *testing.T, n int) *sliceSource {
	t.Helper()
	src := &sliceSource{}
	for i := range n {
		b, err := bson.Marshal(bson.D{{Key: "_id", Value: int32(i)}, {Key: "pad", Value: "x"}})
		if err != nil {
			t.Fatal(err)
		}
		src.docs = append(src.docs, b)
	}
	return src
}

func (s *sliceSource) NextBatch(ctx context.Context, n, maxBytes int, await time.Duration) ([]bson.Raw, bool, error) {
	if s.gate != nil {
		s.entered <- struct{}{}
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	if s.done != nil {
		defer s.done()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, batchCall{n: n, maxBytes: maxBytes, await: await})
	var out []bson.Raw
	size := 0
	for s.pos < len(s.docs) && (n <= 0 || len(out) < n) && size+len(s.docs[s.pos]) <= maxBytes {
		size += len(s.docs[s.pos])
		out = append(out, s.docs[s.pos])
		s.pos++
	}
	return out, !s.endless && s.pos == len(s.docs), nil
}

func (s *sliceSource) ReplyFields() bson.D {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bson.D{{Key: "position", Value: int32(s.pos)}}
}

func (s *sliceSource) Close() { s.closed.Add(1) }

func (s *sliceSource) batchCalls() []batchCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]batchCall(nil), s.calls...)
}

// cursorHarness registers the test command {testCursor: coll, ...}, which
// opens a cursor over the next source pushed with add.
type cursorHarness struct {
	mu      sync.Mutex
	sources []*sliceSource
}

func (h *cursorHarness) add(src *sliceSource) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sources = append(h.sources, src)
}

func (h *cursorHarness) register(s *Server) {
	s.handle("testCursor", func(ctx context.Context, req *Request) (bson.D, error) {
		h.mu.Lock()
		if len(h.sources) == 0 {
			h.mu.Unlock()
			return nil, mongoerr.Errorf(mongoerr.BadValue, "no test source queued")
		}
		src := h.sources[0]
		h.sources = h.sources[1:]
		h.mu.Unlock()
		var opts CursorOptions
		if v, ok := cmdField(req.Body, "batchSize"); ok {
			n, err := intValue("batchSize", v)
			if err != nil {
				return nil, err
			}
			opts.BatchSize, opts.ZeroBatch = int(n), n == 0
		}
		opts.SingleBatch = get(req.Body, "singleBatch") == true
		opts.Awaitable = get(req.Body, "awaitable") == true
		return s.cursorFirstBatch(ctx, req.DB+"."+req.Body[0].Value.(string), src, opts)
	})
	s.handle("testPanic", func(context.Context, *Request) (bson.D, error) {
		panic("testPanic: a deliberate handler panic")
	})
	s.handle("testPlainError", func(context.Context, *Request) (bson.D, error) {
		return nil, errors.New("disk on fire")
	})
}

// rawConn is a hand-driven wire connection, for malformed-input tests.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	id int32
}

func dialRaw(t *testing.T, s *Server) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(rawIOTimeout))
	return &rawConn{t: t, nc: nc}
}

// rawIOTimeout bounds each exchange on a rawConn (a send and the reads after
// it), so that a server that never answers fails the test instead of hanging
// it. It is a hang detector, not a speed check: a slow machine, or the race
// detector with every package's tests running at once, must stay far inside it.
const rawIOTimeout = time.Minute

// send writes b and gives the exchange it starts a fresh deadline.
func (r *rawConn) send(b []byte) {
	r.t.Helper()
	_ = r.nc.SetDeadline(time.Now().Add(rawIOTimeout))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// nextID returns a fresh request id.
func (r *rawConn) nextID() int32 { r.id++; return r.id }

// command sends cmd as an OP_MSG (with flags) and returns the id used.
func (r *rawConn) command(flags uint32, cmd bson.D) int32 {
	r.t.Helper()
	b, err := bson.Marshal(cmd)
	if err != nil {
		r.t.Fatal(err)
	}
	id := r.nextID()
	r.send(wire.AppendMsg(nil, id, 0, flags, b))
	return id
}

// readReply reads one OP_MSG reply and checks it answers requestID.
func (r *rawConn) readReply(requestID int32) bson.D {
	r.t.Helper()
	m, err := wire.ReadMessage(r.nc, 0)
	if err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	if m.Header.ResponseTo != requestID {
		r.t.Fatalf("reply answers %d, want %d", m.Header.ResponseTo, requestID)
	}
	msg, err := wire.ParseMsg(m)
	if err != nil {
		r.t.Fatalf("parse reply: %v", err)
	}
	var d bson.D
	if err := bson.Unmarshal(msg.Body, &d); err != nil {
		r.t.Fatalf("decode reply: %v", err)
	}
	return d
}

// expectClosed checks that the server closes the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	var buf [1]byte
	_, err := r.nc.Read(buf[:])
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isConnReset(err) {
		r.t.Fatalf("read after bad input = %v, want the connection closed", err)
	}
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
