// Package devdbtest starts an in-process devdb for tests: one call gives a
// server on a free loopback port and a driver client connected to it, both
// closed by t.Cleanup when the test ends.
package devdbtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/changehook/changehook/devdb"
)

// timeout bounds the start-up of the server, the first ping and the
// disconnect at clean-up; none of them normally takes more than a fraction
// of it.
const timeout = 30 * time.Second

// Start starts devdb with the zero Options (loopback, free port, temporary
// data directory) and returns it with a connected client. See StartWith.
func Start(t testing.TB) (*devdb.Server, *mongo.Client) {
	t.Helper()
	return StartWith(t, devdb.Options{})
}

// StartWith starts devdb with opts and returns it with a client connected
// to it (see Connect). The test fails at once if either cannot start. The
// client is disconnected and the server closed when the test and its
// subtests finish, in that order.
func StartWith(t testing.TB, opts devdb.Options) (*devdb.Server, *mongo.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	srv, err := devdb.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start devdb: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close devdb: %v", err)
		}
	})
	return srv, Connect(t, srv.URI())
}

// Connect connects a driver client to uri, applying extra (for example a
// short server selection timeout) after the URI, and pings the deployment
// until it answers, for at most 30 seconds, so that a wrong address fails
// here. The client is disconnected when the test finishes.
func Connect(t testing.TB, uri string, extra ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	opts := append([]*options.ClientOptions{options.Client().ApplyURI(uri)}, extra...)
	client, err := mongo.Connect(opts...)
	if err != nil {
		t.Fatalf("connect to devdb: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = client.Disconnect(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := client.Ping(ctx, nil)
		if err == nil {
			return client
		}
		// A short server selection timeout in extra can end a ping before
		// the client's first handshake completes on a loaded machine (the
		// race detector with every package's tests at once). Each ping
		// waits that timeout out, so pinging again does not spin; timeout
		// still bounds the whole wait.
		if !errors.As(err, new(topology.ServerSelectionError)) || ctx.Err() != nil {
			t.Fatalf("ping devdb: %v", err)
		}
	}
}
