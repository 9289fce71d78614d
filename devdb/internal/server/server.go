// Package devdb is an embedded MongoDB-compatible server: it speaks the
// MongoDB wire protocol, presents itself as a single-node replica-set
// primary and serves CRUD, aggregation and change streams from durable
// storage, so that the unmodified official drivers can use it. It is meant
// for development and tests; production needs a real MongoDB.
//
// Start an instance with Start and connect a driver to Server.URI.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
)

// Server is a running devdb instance. It is safe for concurrent use.
type Server struct {
	opts  Options
	store *storage.Engine
	log   *slog.Logger

	ln         net.Listener
	addr       string // the listener's address, host:port
	advertised string // the address presented in hello (hosts/me/primary)
	// secLn is the secondary member's listener (Options.SecondaryAddr), nil
	// without one; secAdvertised is its address in hello.
	secLn         net.Listener
	secAdvertised string
	tmpDir        string // removed on Close when Options.Data was empty

	handlers map[string]HandlerFunc
	// commands describes the registered commands for listCommands.
	commands map[string]*commandDoc
	cursors  *cursorManager

	started    time.Time
	electionID bson.ObjectID

	// ctx is cancelled by Close; connection and command contexts derive from it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[int64]*conn
	closed bool

	connWG       sync.WaitGroup // connection goroutines
	bgWG         sync.WaitGroup // accept loop and cursor janitor
	nextConnID   atomic.Int64
	totalCreated atomic.Int64
	counters     opCounters

	closeOnce sync.Once
	closeErr  error

	hooks testHooks

	// failPoints are the fail points configured with configureFailPoint
	// (only with Options.EnableTestCommands).
	failPoints failPoints

	// sessions is the logical session cache ($listLocalSessions).
	sessions sessionCache

	// hasViews is set once a view exists (found at start or created), so
	// that commands check for views only then.
	hasViews atomic.Bool
	// hasCollations is set once a collection with a default collation
	// exists (found at start or created), so that commands without a
	// collation read the catalog for the default only then.
	hasCollations atomic.Bool

	// txns are the sessions' multi-document transactions.
	txns txnTable
}

// testHooks let package tests register extra commands and control time;
// production code uses the zero value.
type testHooks struct {
	// register adds commands after the built-in ones.
	register func(*Server)
	// now replaces time.Now for cursor idleness.
	now func() time.Time
	// janitorTicks replaces the janitor's ticker.
	janitorTicks <-chan time.Time
	// afterReap is called by the janitor after each reaping pass.
	afterReap func(reaped int)
	// storageNow replaces the storage engine's clock (cluster and wall
	// times of writes).
	storageNow func() time.Time
	// decodedWrites makes insert decode the documents it could store as
	// the client sent them (storage.Tx.InsertRaw) and store them through
	// the decoded path instead, and write commands decode every document
	// they remove (storage.Tx.DecodeDocuments): the reference the
	// differential tests compare the raw paths with.
	decodedWrites bool
}

// Start opens the storage described by opts, listens on opts.Addr and serves
// connections in background goroutines until Close. Binding a non-loopback
// address requires opts.AllowRemote. ctx bounds only the start-up itself.
func Start(ctx context.Context, opts Options) (*Server, error) {
	return start(ctx, opts, testHooks{})
}

// start is Start with test hooks.
func start(ctx context.Context, opts Options, hooks testHooks) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("start devdb: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start devdb: %w", err)
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		handlers:   map[string]HandlerFunc{},
		commands:   map[string]*commandDoc{},
		conns:      map[int64]*conn{},
		started:    time.Now(),
		electionID: bson.NewObjectID(),
		hooks:      hooks,
	}
	dir := opts.Data
	if dir == "" {
		dir, err = os.MkdirTemp("", "devdb-*")
		if err != nil {
			return nil, fmt.Errorf("start devdb: create temporary data directory: %w", err)
		}
		s.tmpDir = dir
	}
	noopEvery := opts.NoopInterval
	if hooks.storageNow != nil && noopEvery == 0 {
		noopEvery = -1 // a test that sets the clock writes every entry itself, unless it asks for no-ops
	}
	s.store, err = storage.Open(storage.Options{Dir: dir, OplogMaxBytes: opts.OplogMaxBytes, OplogMaxAge: opts.OplogMaxAge,
		NoopInterval: noopEvery, Now: hooks.storageNow})
	if err != nil {
		s.removeTmp()
		return nil, fmt.Errorf("start devdb: open storage in %s: %w", dir, err)
	}
	if err := s.store.View(func(tx *storage.Tx) error {
		dbs, err := tx.Databases()
		if err != nil {
			return err
		}
		for _, d := range dbs {
			cols, err := tx.Collections(d.Name)
			if err != nil {
				return err
			}
			for _, c := range cols {
				if _, _, ok := viewDefinition(c.Options); ok {
					s.hasViews.Store(true)
				}
				if c.DefaultCollation() != nil {
					s.hasCollations.Store(true)
				}
			}
		}
		return nil
	}); err != nil {
		cerr := s.store.Close()
		s.removeTmp()
		return nil, fmt.Errorf("start devdb: read the catalog: %w", errors.Join(err, cerr))
	}
	var lc net.ListenConfig
	s.ln, err = lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		cerr := s.store.Close()
		s.removeTmp()
		return nil, fmt.Errorf("start devdb: listen on %s: %w", opts.Addr, errors.Join(err, cerr))
	}
	s.addr = s.ln.Addr().String()
	s.advertised = advertisedAddr(s.addr)
	if opts.SecondaryAddr != "" {
		if s.secLn, err = lc.Listen(ctx, "tcp", opts.SecondaryAddr); err != nil {
			cerr := errors.Join(s.ln.Close(), s.store.Close())
			s.removeTmp()
			return nil, fmt.Errorf("start devdb: listen on %s (secondary): %w", opts.SecondaryAddr, errors.Join(err, cerr))
		}
		s.secAdvertised = advertisedAddr(s.secLn.Addr().String())
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cursors = newCursorManager(opts.CursorTimeout, s.log, hooks.now)

	s.registerAdmin()
	s.registerCursorCommands()
	s.registerCRUD()
	if opts.EnableTestCommands {
		s.registerTestCommands()
	}
	if hooks.register != nil {
		hooks.register(s)
	}

	s.bgWG.Add(2)
	go func() {
		defer s.bgWG.Done()
		ticks := hooks.janitorTicks
		if ticks == nil {
			t := time.NewTicker(janitorInterval(opts.CursorTimeout))
			defer t.Stop()
			ticks = t.C
		}
		s.cursors.runJanitor(s.ctx, ticks, hooks.afterReap)
	}()
	go func() {
		defer s.bgWG.Done()
		s.acceptLoop(s.ln, false)
	}()
	if s.secLn != nil {
		s.bgWG.Add(1)
		go func() {
			defer s.bgWG.Done()
			s.acceptLoop(s.secLn, true)
		}()
	}
	s.log.Info("devdb listening", "addr", s.addr, "data", dir, "replSet", opts.ReplSetName)
	return s, nil
}

// SecondaryAddr returns the address the secondary member listens on, or ""
// without one (Options.SecondaryAddr).
func (s *Server) SecondaryAddr() string {
	if s.secLn == nil {
		return ""
	}
	return s.secLn.Addr().String()
}

// advertisedAddr is the address presented in hello: the listen address, with
// an unspecified host (0.0.0.0, ::) replaced by the machine's host name.
func advertisedAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil && name != "" {
			return net.JoinHostPort(name, port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// janitorInterval is how often idle cursors are checked: a quarter of the
// timeout, between 10ms and 4s (MongoDB's clientCursorMonitor runs every 4s).
func janitorInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/4, 10*time.Millisecond), 4*time.Second)
}

// URI returns the connection string for this instance:
// mongodb://HOST:PORT/?directConnection=true.
func (s *Server) URI() string {
	return "mongodb://" + s.addr + "/?directConnection=true"
}

// Addr returns the address the server listens on, as host:port.
func (s *Server) Addr() string { return s.addr }

// handle registers h for the command name (case-sensitive, as MongoDB).
// Call it once per alias, before the server starts serving (from Start's
// registration functions). A second registration of the same name replaces
// the first and is logged as an error.
func (s *Server) handle(name string, h HandlerFunc) {
	if _, dup := s.handlers[name]; dup {
		s.log.Error("devdb: command registered twice; the later handler wins", "command", name)
	}
	s.handlers[name] = h
}

// commandDoc describes a registered command as listCommands reports it.
type commandDoc struct {
	help      string
	adminOnly bool // devdb refuses it on any database but admin
	v1        bool // it belongs to MongoDB's Stable API version 1
}

// command registers h for the command name, as handle does, with help
// describing it for listCommands. The returned description may be marked
// further (admin, apiV1).
func (s *Server) command(name, help string, h HandlerFunc) *commandDoc {
	s.handle(name, h)
	d := &commandDoc{help: help}
	s.commands[name] = d
	return d
}

// admin marks the command as refused on any database but admin; invoke
// enforces it (admRequireAdmin) before the handler runs.
func (d *commandDoc) admin() *commandDoc {
	d.adminOnly = true
	return d
}

// apiV1 marks the command as part of MongoDB's Stable API version 1.
func (d *commandDoc) apiV1() *commandDoc {
	d.v1 = true
	return d
}

// acceptLoop accepts connections on ln until it is closed; secondary marks
// them as connections to the secondary member.
func (s *Server) acceptLoop(ln net.Listener, secondary bool) {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (for example EMFILE): back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("devdb: accept failed; retrying", "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0
		s.startConn(nc, secondary)
	}
}

// startConn registers nc and serves it in its own goroutine, or closes it at
// once when the server is closed or at its connection limit.
func (s *Server) startConn(nc net.Conn, secondary bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	if len(s.conns) >= s.opts.MaxConnections {
		n := len(s.conns)
		s.mu.Unlock()
		s.log.Warn("devdb: connection refused because too many open connections", "remote", nc.RemoteAddr().String(), "open", n)
		_ = nc.Close()
		return
	}
	id := s.nextConnID.Add(1)
	s.totalCreated.Add(1)
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{srv: s, id: id, nc: nc, remote: nc.RemoteAddr().String(), ctx: ctx, cancel: cancel, done: make(chan struct{}), secondary: secondary}
	s.conns[id] = c
	s.connWG.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.connWG.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, id)
			s.mu.Unlock()
			close(c.done)
		}()
		c.serve()
	}()
}

// openConnections returns the number of open client connections.
func (s *Server) openConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// CloseClientConnections drops every open client connection and waits for
// their goroutines to finish, but keeps serving new connections. Cursors
// survive (as in MongoDB), so drivers resume change streams on a new
// connection. Tests use it to force driver reconnects and auto-resume.
func (s *Server) CloseClientConnections() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	for _, c := range conns {
		<-c.done
	}
}

// Close stops accepting connections, closes every client connection and
// waits for their goroutines, closes all cursors, closes the storage and
// removes a temporary data directory. It is idempotent: later calls return
// the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*conn, 0, len(s.conns))
		for _, c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		var errs []error
		s.cancel()
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener: %w", err))
		}
		if s.secLn != nil {
			if err := s.secLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, fmt.Errorf("close the secondary's listener: %w", err))
			}
		}
		for _, c := range conns {
			c.close()
		}
		s.connWG.Wait()
		s.bgWG.Wait()
		s.cursors.closeAll()
		if err := s.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close storage: %w", err))
		}
		if err := s.removeTmp(); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("close devdb: %w", errors.Join(errs...))
		}
		s.log.Info("devdb stopped", "addr", s.addr)
	})
	return s.closeErr
}

// removeTmp removes the temporary data directory, if any.
func (s *Server) removeTmp() error {
	if s.tmpDir == "" {
		return nil
	}
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("remove temporary data directory %s: %w", s.tmpDir, err)
	}
	return nil
}
