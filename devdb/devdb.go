// Package devdb is an embedded MongoDB-compatible server for development and
// tests: a single-node replica-set primary with durable storage, change
// streams and the commands the official drivers use. `changehook dev` runs
// it and every end-to-end test of changehook talks to it through unmodified
// drivers. Production deployments use a real MongoDB replica set, sharded
// cluster or Atlas instead.
//
// Everything else devdb is made of (wire protocol, storage, command
// handlers, the devdb-only parts of the query language) lives under
// devdb/internal; this package is the whole public surface.
package devdb

import (
	"context"

	"github.com/changehook/changehook/devdb/internal/server"
)

const (
	// Version is the MongoDB version devdb reports in buildInfo.
	Version = server.Version
	// DefaultAddr is the listen address used when Options.Addr is empty:
	// loopback, on a free port chosen by the kernel.
	DefaultAddr = server.DefaultAddr
	// DefaultOplogMaxBytes bounds the oplog's size when
	// Options.OplogMaxBytes is 0; the oldest entries are removed beyond it.
	DefaultOplogMaxBytes = server.DefaultOplogMaxBytes
	// DefaultOplogMaxAge bounds the age of oplog entries when
	// Options.OplogMaxAge is 0; older entries are removed.
	DefaultOplogMaxAge = server.DefaultOplogMaxAge
)

// Options configures Start. The zero value is a loopback instance on a free
// port with a temporary data directory that Close removes.
type Options = server.Options

// Server is a running devdb instance. It is safe for concurrent use.
type Server struct {
	s *server.Server
}

// Start opens the storage described by opts, listens on opts.Addr and serves
// connections in background goroutines until Close. Binding a non-loopback
// address requires opts.AllowRemote (devdb has no authentication). ctx bounds
// only the start-up itself.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := server.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &Server{s: s}, nil
}

// URI returns the connection string for this instance:
// mongodb://HOST:PORT/?directConnection=true.
func (s *Server) URI() string { return s.s.URI() }

// Addr returns the address the server listens on, as host:port.
func (s *Server) Addr() string { return s.s.Addr() }

// SecondaryAddr returns the address of the secondary member
// (Options.SecondaryAddr) as host:port, or "" without one.
func (s *Server) SecondaryAddr() string { return s.s.SecondaryAddr() }

// CloseClientConnections drops every open client connection and waits for
// their goroutines, but keeps serving new connections. Cursors survive (as
// in MongoDB), so drivers see a network error and resume change streams on a
// new connection.
func (s *Server) CloseClientConnections() { s.s.CloseClientConnections() }

// Close stops accepting connections, closes every client connection and
// waits for their goroutines, closes all cursors and the storage, and removes
// a temporary data directory. Later calls return the first call's result.
func (s *Server) Close() error { return s.s.Close() }
