package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/changehook/changehook/devdb/internal/wire"
)

// conn is one client connection, served by one goroutine.
type conn struct {
	srv    *Server
	id     int64
	nc     net.Conn
	remote string

	// ctx is cancelled when the connection closes; commands run under it.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed once serve has returned and the connection is
	// deregistered from the server.
	done chan struct{}

	closeOnce sync.Once
	// nextReqID numbers this connection's replies; only serve touches it.
	nextReqID int32
	// appName is the application name of the handshake (hello's
	// client.application.name); only the serving goroutine touches it.
	appName string
	// secondary: the connection came in on the secondary member's listener.
	secondary bool
	// pooled is the pooled buffer the reply being answered was encoded into
	// (see replyBuf); serve gives it back once the reply is written.
	pooled *[]byte
}

// Replies of at least pooledReplySize bytes (and at most
// maxPooledReplySize) are encoded into buffers from replyPool and given
// back once written: a change stream's getMore over a backlog answers with
// megabytes each time, and a new buffer of that size is zeroed and, on the
// first touch of each page, faulted in.
const (
	pooledReplySize    = 64 << 10
	maxPooledReplySize = 16 << 20
)

var replyPool sync.Pool // of *[]byte

// replyBuf returns an empty buffer of at least size bytes' capacity for the
// reply being encoded: for a large reply, a pooled one, which serve gives
// back once the reply is written; else a new one.
func (c *conn) replyBuf(size int) []byte {
	if size < pooledReplySize || size > maxPooledReplySize {
		return make([]byte, 0, size)
	}
	bp, _ := replyPool.Get().(*[]byte)
	if bp == nil || cap(*bp) < size {
		b := make([]byte, 0, size) // a smaller pooled buffer is left to the collector
		bp = &b
	}
	c.pooled = bp
	return (*bp)[:0]
}

// releaseReply gives the buffer of the reply just written back to the pool.
func (c *conn) releaseReply() {
	if c.pooled != nil {
		replyPool.Put(c.pooled)
		c.pooled = nil
	}
}

// close closes the socket, which ends serve's read, then cancels the
// connection's commands. Safe to call from any goroutine, more than once.
//
// The order matters: a command the cancellation interrupts (a getMore
// waiting for changes answers CursorKilled) must find its socket already
// closed, so that its client sees the connection drop — a network error,
// which drivers resume a change stream after — and never that error,
// which they do not resume after. So it is in MongoDB, where the command
// of a client that is gone has no one to answer.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		_ = c.nc.Close()
		c.cancel()
	})
}

// serve reads messages and answers them until the client disconnects, a
// message cannot be framed, or the connection is closed. A panic is
// recovered and closes only this connection.
func (c *conn) serve() {
	defer c.close()
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("devdb: connection handler panicked; closing the connection",
				"conn", c.id, "remote", c.remote, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	log := c.srv.log.With("conn", c.id, "remote", c.remote)
	log.Debug("devdb: connection accepted")
	br := bufio.NewReaderSize(c.nc, 64<<10)
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		msg, err := wire.ReadMessage(br, wire.MaxMessageSize)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), c.ctx.Err() != nil:
				log.Debug("devdb: connection closed")
			default:
				log.Warn("devdb: closing connection after a read error", "err", err)
			}
			return
		}
		reply, err := c.srv.handleMessage(c, msg)
		if err != nil {
			log.Warn("devdb: closing connection after an invalid message", "err", err, "opCode", msg.Header.OpCode)
			return
		}
		if reply == nil {
			continue
		}
		if _, err := bw.Write(reply); err != nil {
			log.Debug("devdb: write failed; closing connection", "err", err)
			return
		}
		if err := bw.Flush(); err != nil {
			log.Debug("devdb: write failed; closing connection", "err", err)
			return
		}
		c.releaseReply()
	}
}

// replyID returns a fresh request id for a reply on this connection.
func (c *conn) replyID() int32 {
	c.nextReqID++
	return c.nextReqID
}

// errUnsupportedOpCode is returned by handleMessage for opcodes devdb does
// not accept; the connection is closed.
var errUnsupportedOpCode = errors.New("unsupported opcode")

// handleMessage answers one message. A nil reply means none is due
// (moreToCome). An error means the connection must be closed.
func (s *Server) handleMessage(c *conn, msg wire.Message) ([]byte, error) {
	switch msg.Header.OpCode {
	case wire.OpMsg:
		return s.handleOpMsg(c, msg)
	case wire.OpQuery:
		return s.handleOpQuery(c, msg)
	case wire.OpCompressed:
		return nil, fmt.Errorf("handle message: OP_COMPRESSED refused (devdb does not advertise compression): %w", errUnsupportedOpCode)
	default:
		return nil, fmt.Errorf("handle message: opcode %d: %w", msg.Header.OpCode, errUnsupportedOpCode)
	}
}
