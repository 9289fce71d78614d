// Package childproc runs changehook (or any command) as a child process for
// the benchmark and the fault-injection suite: a free loopback address to
// give it, a bounded buffer for its output, and a handle that waits for its
// exit in the background so that callers can select on it.
package childproc

import (
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// FreeAddr returns a loopback address ("127.0.0.1:PORT") whose port was
// free a moment ago. Another process may take it before it is used.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

// TailBuffer is an io.Writer that keeps only the last Max bytes written to
// it (a child's output). It is safe for concurrent use; the zero value with
// Max set is ready.
type TailBuffer struct {
	Max int

	mu  sync.Mutex
	buf []byte
}

// Write appends p, dropping the oldest bytes beyond Max. It never fails.
func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.Max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the bytes kept.
func (b *TailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// Proc is a started child process whose exit is awaited in the background.
type Proc struct {
	// Cmd is the started command; Cmd.ProcessState is set once Exited is
	// closed.
	Cmd *exec.Cmd

	exited chan struct{}
	err    error
}

// Start starts cmd (with its Stdout and Stderr already set) and waits for
// its exit in the background. The error is cmd.Start's, unwrapped.
func Start(cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited and Err is valid.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is cmd.Wait's result (nil for exit status 0); read it only after
// Exited is closed.
func (p *Proc) Err() error { return p.err }

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.exited
}

// Stop sends SIGTERM and waits up to grace for the process to exit; if it
// has not, Stop SIGKILLs it, waits until it is gone and returns false. It
// returns true when the process exited within grace (whatever its status:
// see Err).
func (p *Proc) Stop(grace time.Duration) bool {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		p.Kill()
		return false
	}
}
