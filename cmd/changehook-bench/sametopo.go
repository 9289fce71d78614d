package main

// Same-topology baselines (a′) and (b′): baselines (a) and (b) with their
// client in a child process (this binary, re-executed in a client mode),
// devdb and the receiver staying in the benchmark process — the topology
// of the changehook drains, whose runner is a child process. The child's
// CPU is read from /proc as the runner's is; comparing (a′)+(b′) with
// (a)+(b) shows what the process boundary itself costs.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/childproc"
)

// clientChildArg, as the first argument, runs this binary as the client
// of a same-topology baseline (see runClientChild).
const clientChildArg = "same-topology-client"

// clientChild is a same-topology baseline's client process.
type clientChild struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *childproc.TailBuffer
	exited chan struct{}
}

// startClientChild starts this binary in client mode with args and waits
// for it to be ready (connected, its bodies built).
func startClientChild(ctx context.Context, args ...string) (*clientChild, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start baseline client: %w", err)
	}
	cmd := exec.Command(self, append([]string{clientChildArg}, args...)...)
	c := &clientChild{cmd: cmd, stderr: &childproc.TailBuffer{Max: 16 << 10}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	if c.in, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("start baseline client: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start baseline client: %w", err)
	}
	c.out = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start baseline client: %w", err)
	}
	if _, err := c.line(ctx, "ready"); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

// line reads the child's next line, which must start with want, and
// returns the rest of it.
func (c *clientChild) line(ctx context.Context, want string) (string, error) {
	type result struct {
		s   string
		err error
	}
	got := make(chan result, 1)
	go func() {
		s, err := c.out.ReadString('\n')
		got <- result{s, err}
	}()
	select {
	case r := <-got:
		rest, ok := strings.CutPrefix(strings.TrimSpace(r.s), want)
		if r.err != nil || !ok {
			return "", fmt.Errorf("baseline client: expected %q, got %q (%v):\n%s", want, r.s, r.err, c.stderr)
		}
		return strings.TrimSpace(rest), nil
	case <-ctx.Done():
		c.kill()
		return "", fmt.Errorf("baseline client: %w", ctx.Err())
	}
}

// run starts the child's work and returns the rate it reports and its CPU
// time between ready and done (read from /proc while it waits to be let
// go).
func (c *clientChild) run(ctx context.Context) (rate float64, cpu time.Duration, err error) {
	pid := c.cmd.Process.Pid
	before, err := readProc(pid)
	if err != nil {
		c.kill()
		return 0, 0, err
	}
	if _, err := io.WriteString(c.in, "go\n"); err != nil {
		c.kill()
		return 0, 0, fmt.Errorf("baseline client: %w", err)
	}
	rest, err := c.line(ctx, "done")
	if err != nil {
		c.kill()
		return 0, 0, err
	}
	after, err := readProc(pid)
	if err != nil {
		c.kill()
		return 0, 0, err
	}
	if rate, err = strconv.ParseFloat(rest, 64); err != nil {
		c.kill()
		return 0, 0, fmt.Errorf("baseline client: rate %q: %w", rest, err)
	}
	_ = c.in.Close() // lets it exit
	if err := c.cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("baseline client: %w:\n%s", err, c.stderr)
	}
	return rate, after.CPU - before.CPU, nil
}

func (c *clientChild) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// sameTopology runs baseline (a′) or (b′): the child started with args
// does the work; it returns the rate the child reports, the child's CPU
// per event and this process's (devdb and the receiver) over the same
// span.
func sameTopology(ctx context.Context, n int, args ...string) (rate float64, client, host time.Duration, err error) {
	c, err := startClientChild(ctx, args...)
	if err != nil {
		return 0, 0, 0, err
	}
	var cpu time.Duration
	host, err = cpuPerEvent(n, func() (err error) {
		rate, cpu, err = c.run(ctx)
		return err
	})
	if err != nil {
		return 0, 0, 0, err
	}
	return rate, cpu / time.Duration(n), host, nil
}

// baselineASep is baseline (a′): the change stream of (a) read by a child
// process, streamReads times (a child each), each read of a backlog written
// just before it (see streamReads); the rate and both CPU figures are each
// the median of the reads, reads every read's rate.
func (b *bench) baselineASep(ctx context.Context) (rate float64, client, host time.Duration, reads []float64, err error) {
	var clients, hosts []float64
	for i := range streamReads {
		coll := fmt.Sprintf("base_a_sep_%d", i)
		_, op, err := b.backlog(ctx, coll, b.cfg.n)
		if err != nil {
			return 0, 0, 0, nil, err
		}
		r, c, h, err := sameTopology(ctx, b.cfg.n, "a", b.db.URI(), benchDB, coll, strconv.Itoa(b.cfg.n),
			strconv.FormatUint(uint64(op.T), 10), strconv.FormatUint(uint64(op.I), 10))
		if err != nil {
			return 0, 0, 0, nil, err
		}
		reads, clients, hosts = append(reads, r), append(clients, float64(c)), append(hosts, float64(h))
	}
	return median(reads), time.Duration(median(clients)), time.Duration(median(hosts)), reads, nil
}

// baselineBSep is baseline (b′): the POSTs of (b), with 1 and -concurrency
// in flight, from a child process; the client's CPU per request with 1 in
// flight (seqClient: what one request at a time costs a bare client across
// the process boundary, strict's floor), and for the latter the client's and
// this process's.
func (b *bench) baselineBSep(ctx context.Context) (seq, par float64, seqClient, client, host time.Duration, err error) {
	for _, w := range []int{1, b.cfg.concurrency} {
		rec, err := startReceiver(b.clock, b.cfg.n, 0)
		if err != nil {
			return 0, 0, 0, 0, 0, err
		}
		r, c, h, err := sameTopology(ctx, b.cfg.n, "b", rec.url(), strconv.Itoa(b.cfg.n), strconv.Itoa(w))
		rec.close()
		if err != nil {
			return 0, 0, 0, 0, 0, err
		}
		if w == 1 {
			seq, seqClient = r, c
		} else {
			par, client, host = r, c, h
		}
	}
	return seq, par, seqClient, client, host, nil
}

// runClientChild is the client mode: args are "a URI DB COLL N T I" (read
// N change events of DB.COLL from operation time {T, I}) or "b URL N
// WORKERS" (POST N event bodies to URL, WORKERS in flight). It prepares
// (connects; builds the bodies), prints "ready", waits for a line on
// stdin, does the work, prints "done RATE" (events/s, as (a) and (b)
// measure them) and exits when stdin closes.
func runClientChild(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	ready := func() error {
		fmt.Fprintln(stdout, "ready")
		if _, err := in.ReadString('\n'); err != nil {
			return fmt.Errorf("wait for go: %w", err)
		}
		return nil
	}
	var rate float64
	switch {
	case len(args) == 7 && args[0] == "a":
		n, err1 := strconv.Atoi(args[4])
		t, err2 := strconv.ParseUint(args[5], 10, 32)
		i, err3 := strconv.ParseUint(args[6], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("client (a′): %w", err)
		}
		if err := ready(); err != nil {
			return err
		}
		var err error
		if rate, err = baselineStream(ctx, args[1], args[2], args[3], n, bson.Timestamp{T: uint32(t), I: uint32(i)}, newClock()); err != nil {
			return err
		}
	case len(args) == 4 && args[0] == "b":
		n, err1 := strconv.Atoi(args[2])
		w, err2 := strconv.Atoi(args[3])
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("client (b′): %w", err)
		}
		bodies, err := eventBodies(n)
		if err != nil {
			return err
		}
		if err := ready(); err != nil {
			return err
		}
		if rate, err = baselinePost(ctx, args[1], bodies, w); err != nil {
			return err
		}
	default:
		return fmt.Errorf("client: unexpected arguments %q", args)
	}
	fmt.Fprintf(stdout, "done %g\n", rate)
	_, _ = io.Copy(io.Discard, in)
	return nil
}
