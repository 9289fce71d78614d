package server

import (
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Defaults applied by Start to zero-valued Options fields.
const (
	// DefaultAddr is the listen address when Options.Addr is empty: loopback,
	// on a free port chosen by the kernel.
	DefaultAddr = "127.0.0.1:0"
	// DefaultReplSetName is the replica-set name devdb presents.
	DefaultReplSetName = "rs0"
	// DefaultOplogMaxBytes bounds the oplog when Options.OplogMaxBytes is 0.
	DefaultOplogMaxBytes int64 = 256 << 20
	// DefaultOplogMaxAge bounds oplog retention when Options.OplogMaxAge is 0.
	DefaultOplogMaxAge = 24 * time.Hour
	// DefaultCursorTimeout is how long an idle cursor lives when
	// Options.CursorTimeout is 0 (MongoDB's cursorTimeoutMillis default).
	DefaultCursorTimeout = 10 * time.Minute
	// DefaultMaxConnections bounds concurrently open client connections when
	// Options.MaxConnections is 0.
	DefaultMaxConnections = 10000
)

// Options configures Start. The zero value is a loopback instance on a free
// port with a temporary data directory.
type Options struct {
	// Addr is the TCP listen address; "" means DefaultAddr.
	Addr string
	// Data is the data directory; "" means a temporary directory that Close
	// removes.
	Data string
	// ReplSetName is the replica-set name presented in hello; "" means
	// DefaultReplSetName.
	ReplSetName string
	// OplogMaxBytes bounds the oplog's size; 0 means DefaultOplogMaxBytes.
	OplogMaxBytes int64
	// OplogMaxAge bounds the age of retained oplog entries; 0 means
	// DefaultOplogMaxAge.
	OplogMaxAge time.Duration
	// NoopInterval is how often a server with nothing else written since
	// writes a no-op oplog entry ({op: "n", o: {msg: "periodic noop"}}),
	// as a replica set primary does every periodicNoopIntervalSecs: an
	// idle change stream's postBatchResumeToken then keeps up with the
	// clock. 0 means 10s (MongoDB's default); negative writes none.
	NoopInterval time.Duration
	// AllowRemote must be set to bind a non-loopback address: devdb has no
	// authentication.
	AllowRemote bool
	// Logger receives server logs; nil discards them.
	Logger *slog.Logger
	// CursorTimeout is how long an idle cursor lives before it is reaped;
	// 0 means DefaultCursorTimeout.
	CursorTimeout time.Duration
	// MaxConnections bounds concurrently open client connections; further
	// connections are accepted and closed at once, as MongoDB does when
	// net.maxIncomingConnections is reached. 0 means DefaultMaxConnections.
	MaxConnections int
	// EnableTestCommands enables MongoDB's test commands, as mongod's
	// enableTestCommands parameter: configureFailPoint with the fail points
	// failCommand, failGetMoreAfterCursorCheckout and
	// onPrimaryTransactionalWrite. Off, configureFailPoint does not exist
	// (CommandNotFound). Never enable it for anything but tests.
	EnableTestCommands bool
	// SecondaryAddr, when set, is the listen address of a second member of
	// the replica set: a secondary serving the same data with no replication
	// lag. Both members list each other in hello's hosts, so drivers
	// connecting with replicaSet= discover it and can select it by read
	// preference. Writes sent to it fail with NotWritablePrimary (10107)
	// and reads without a read preference that allows a secondary with
	// NotPrimaryNoSecondaryOk (13435), as on a MongoDB secondary. "" (the
	// default) means a single-member replica set. The same loopback rule as
	// Addr applies.
	SecondaryAddr string
	// TransactionLifetimeLimit aborts a multi-document transaction that is
	// still open this long after it started (MongoDB's
	// transactionLifetimeLimitSeconds); 0 means
	// DefaultTransactionLifetimeLimit.
	TransactionLifetimeLimit time.Duration
}

// withDefaults returns opts with every zero field replaced by its default,
// or an error if a field is invalid.
func (opts Options) withDefaults() (Options, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.ReplSetName == "" {
		opts.ReplSetName = DefaultReplSetName
	}
	if opts.OplogMaxBytes == 0 {
		opts.OplogMaxBytes = DefaultOplogMaxBytes
	}
	if opts.OplogMaxAge == 0 {
		opts.OplogMaxAge = DefaultOplogMaxAge
	}
	if opts.TransactionLifetimeLimit == 0 {
		opts.TransactionLifetimeLimit = DefaultTransactionLifetimeLimit
	}
	if opts.CursorTimeout == 0 {
		opts.CursorTimeout = DefaultCursorTimeout
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case opts.OplogMaxBytes < 0:
		return opts, fmt.Errorf("check options: OplogMaxBytes %d is negative", opts.OplogMaxBytes)
	case opts.OplogMaxAge < 0:
		return opts, fmt.Errorf("check options: OplogMaxAge %v is negative", opts.OplogMaxAge)
	case opts.CursorTimeout < 0:
		return opts, fmt.Errorf("check options: CursorTimeout %v is negative", opts.CursorTimeout)
	case opts.MaxConnections < 0:
		return opts, fmt.Errorf("check options: MaxConnections %d is negative", opts.MaxConnections)
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return opts, fmt.Errorf("check options: address %q: %w", opts.Addr, err)
	}
	if !opts.AllowRemote && !isLoopbackHost(host) {
		return opts, fmt.Errorf("check options: address %q is not a loopback address; devdb has no authentication, set AllowRemote to bind it anyway", opts.Addr)
	}
	if opts.SecondaryAddr != "" {
		host, _, err := net.SplitHostPort(opts.SecondaryAddr)
		if err != nil {
			return opts, fmt.Errorf("check options: secondary address %q: %w", opts.SecondaryAddr, err)
		}
		if !opts.AllowRemote && !isLoopbackHost(host) {
			return opts, fmt.Errorf("check options: secondary address %q is not a loopback address; devdb has no authentication, set AllowRemote to bind it anyway", opts.SecondaryAddr)
		}
	}
	return opts, nil
}

// isLoopbackHost reports whether host names only loopback interfaces.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
