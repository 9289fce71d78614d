package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/triggers"
)

func devdbCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "devdb", "devdb [--addr HOST:PORT] [--data DIR] [--allow-remote] [--oplog-max-bytes SIZE] [--oplog-max-age DURATION] [--enable-test-commands] [--secondary-addr HOST:PORT]",
		"changehook devdb                                  # 127.0.0.1:27017, data in ./devdb-data",
		"changehook devdb --addr 127.0.0.1:0 --data /tmp/d  # any free port",
		"mongosh 'mongodb://127.0.0.1:27017/?directConnection=true'   # from another terminal: any MongoDB client")
	addr := fs.String("addr", "127.0.0.1:27017", "listen `address` (host:port; port 0 picks a free one)")
	data := fs.String("data", "devdb-data", "data `directory` (created if missing; kept across restarts)")
	allowRemote := fs.Bool("allow-remote", false, "allow binding a non-loopback address (devdb has NO authentication)")
	var oplogBytes byteSizeFlag
	fs.Var(&oplogBytes, "oplog-max-bytes", fmt.Sprintf("bound the oplog's `size`, in bytes or with KiB, MiB or GiB such as 512MiB: the oldest entries beyond it are removed (0: %d MiB)", devdb.DefaultOplogMaxBytes>>20))
	var oplogAge durationFlag
	fs.Var(&oplogAge, "oplog-max-age", fmt.Sprintf("bound the age of oplog entries (a `duration` such as 90m or 48h): older ones are removed (0: %dh)", devdb.DefaultOplogMaxAge/time.Hour))
	testCommands := fs.Bool("enable-test-commands", false, "enable MongoDB's test commands (configureFailPoint: failCommand, failGetMoreAfterCursorCheckout, onPrimaryTransactionalWrite) for driver and fault tests; never for real data")
	secondary := fs.String("secondary-addr", "", "also serve a secondary member of the replica set on this `address` (same data, no lag; for read-preference tests); drivers find it with ?replicaSet=rs0")
	var lf logFlags
	lf.registerNoConfig(fs, devdbLogLevel)
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, "unexpected argument %q", fs.Arg(0))
	}
	log, err := newLogger(env.Stderr, lf.format, pick(lf.level, devdbLogLevel))
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	remote, err := isRemote(*addr)
	if err != nil {
		return usageError(env, fs, "invalid --addr: %v", err)
	}
	listen := *addr // the address the remote checks below name
	if *secondary != "" {
		secRemote, err := isRemote(*secondary)
		if err != nil {
			return usageError(env, fs, "invalid --secondary-addr: %v", err)
		}
		if secRemote && !remote {
			remote, listen = true, *secondary
		}
	}
	if remote && !*allowRemote {
		fmt.Fprintf(env.Stderr, "changehook devdb: refusing to listen on %s: devdb has no authentication, so anyone who can reach it can read and change every database.\nUse a loopback address (127.0.0.1) or pass --allow-remote if you really mean it.\n", listen)
		return ExitUsage
	}
	if remote {
		fmt.Fprintf(env.Stderr, "WARNING: devdb is listening on %s without authentication: anyone who can reach this address can read and change every database. Never use devdb for production data.\n", listen)
	}
	srv, err := devdb.Start(ctx, devdb.Options{
		Addr: *addr, Data: *data, AllowRemote: *allowRemote, Logger: log,
		OplogMaxBytes: int64(oplogBytes), OplogMaxAge: time.Duration(oplogAge), EnableTestCommands: *testCommands,
		SecondaryAddr: *secondary,
	})
	if err != nil {
		flagName := "--addr"
		if *secondary != "" && listenedOn(err, *secondary) {
			flagName = "--secondary-addr"
		}
		return fail(env, "devdb", addrInUseHint(err, flagName)) // devdb.Start errors say "start devdb: …"
	}
	fmt.Fprintln(env.Stdout, srv.URI())
	fmt.Fprintf(env.Stderr, "devdb %s listening on %s, data in %s. Press Ctrl-C to stop.\n", devdb.Version, srv.Addr(), *data)
	if a := srv.SecondaryAddr(); a != "" {
		fmt.Fprintf(env.Stderr, "a secondary of the same data listens on %s (connect with ?replicaSet=rs0 to use both).\n", a)
	}
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return fail(env, "devdb", fmt.Errorf("stop devdb: %w", err))
	}
	fmt.Fprintln(env.Stderr, "devdb stopped.")
	return ExitOK
}

// devdbLogLevel is devdb's log level unless --log-level says otherwise.
const devdbLogLevel = "warn"

// addrInUseHint adds to err, devdb.Start's, what to do when the address
// given by flagName (--addr, --secondary-addr) is taken, as the admin
// server's error does for --admin-addr.
func addrInUseHint(err error, flagName string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (another devdb or MongoDB listening there? pass %s 127.0.0.1:0 for any free port)", err, flagName)
	}
	return err
}

// listenedOn reports whether err is a failure to listen on addr's port.
func listenedOn(err error, addr string) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Addr == nil {
		return false
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	_, opPort, err := net.SplitHostPort(op.Addr.String())
	return err == nil && opPort == port
}

// isRemote reports whether addr binds something other than a loopback
// address. An empty host (all interfaces) is remote; a host name is resolved
// only when it is "localhost".
// An address that is not HOST:PORT with a port from 0 to 65535 and a host
// that is empty, an IP address or a host name is an error saying which part
// is wrong.
func isRemote(addr string) (bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%q is not HOST:PORT: %w", addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return false, fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host == "localhost" {
		return false, nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		if !validHostName(host) {
			return false, fmt.Errorf("%q: %q is neither an IP address nor a host name", addr, host)
		}
		return true, nil
	}
	return !ip.IsLoopback(), nil
}

// validHostName reports whether h is a syntactically valid DNS host name
// that cannot be mistaken for an IPv4 address (999.1.1.1 is neither).
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return h == "" // empty host: all interfaces
	}
	allNumeric := true
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-':
				allNumeric = false
			case r >= '0' && r <= '9':
			default:
				return false
			}
		}
	}
	return !allNumeric
}

// byteSizeFlag is a flag holding a size in bytes, written as the
// configuration writes sizes (max_inflight_bytes, batch.max_bytes): a
// whole number of bytes, or one with a binary unit B, KiB, MiB, GiB or
// TiB ("512MiB", "1GiB"; underscores may group digits). Its errors say
// which forms are accepted; the flag package adds the flag's name.
type byteSizeFlag int64

// String implements flag.Value.
func (f *byteSizeFlag) String() string { return strconv.FormatInt(int64(*f), 10) }

// Set implements flag.Value.
func (f *byteSizeFlag) Set(s string) error {
	const forms = "use bytes, or a whole number with KiB, MiB, GiB or TiB, such as 268435456 or 256MiB"
	n, err := triggers.ParseByteSize(s)
	if errors.Is(err, triggers.ErrNegativeSize) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %s", err, forms)
	}
	*f = byteSizeFlag(n)
	return nil
}

// durationFlag is a flag holding a duration as Go writes one (90m, 24h,
// 1h30m), which is how the configuration writes durations. Its errors say
// which forms are accepted (and that days are written in hours); the flag
// package adds the flag's name.
type durationFlag time.Duration

// String implements flag.Value.
func (f *durationFlag) String() string { return time.Duration(*f).String() }

// Set implements flag.Value.
func (f *durationFlag) Set(s string) error {
	const forms = "use a number with a unit ns, us, ms, s, m or h, such as 90m, 24h or 1h30m"
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return fmt.Errorf("not a duration: d (days) is not a unit; write %dh for %s", n*24, s)
		}
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return fmt.Errorf("not a duration: %s", forms)
	case d < 0:
		return errors.New("a duration cannot be negative")
	}
	*f = durationFlag(d)
	return nil
}
