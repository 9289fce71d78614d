package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/changehook/changehook/internal/cli"
)

// roleEnv selects the role of this executable: unset, it runs the scenario;
// "runner", it is `changehook run` (the scenario starts itself in that role
// so that it can SIGKILL a real runner process).
const roleEnv = "CHANGEHOOK_BANK_CDC_ROLE"

// runnerMain is the runner process: the changehook command line itself.
func runnerMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, args, cli.OSEnv("example"))
}

// runnerProc is a running changehook runner process.
type runnerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result, set before done is closed
}

// startRunnerProc starts this executable in the runner role with args and
// the extra environment env; its output goes to stderr.
func startRunnerProc(args, env []string, stderr io.Writer) (*runnerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start runner: find this executable: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), roleEnv+"=runner"), env...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start runner: %w", err)
	}
	p := &runnerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *runnerProc) pid() int { return p.cmd.Process.Pid }

// kill sends SIGKILL (no chance to finish deliveries or save checkpoints)
// and waits for the process to end.
func (p *runnerProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill() // fails only when the process already ended
	<-p.done
}

// stop sends SIGTERM and waits for a graceful exit: in-flight deliveries
// finished, checkpoints saved, exit status 0. When ctx ends first the
// process is killed.
func (p *runnerProc) stop(ctx context.Context) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop runner %d: %w", p.pid(), err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("stop runner %d: no graceful exit: %w", p.pid(), ctx.Err())
	}
	if p.err != nil {
		return fmt.Errorf("stop runner %d: %w", p.pid(), p.err)
	}
	return nil
}

// exited reports whether the process ended on its own, and how.
func (p *runnerProc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}
