package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/changehook/changehook/internal/childproc"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is one reading of a process's resource use from /proc.
type procSample struct {
	CPU time.Duration // user + system CPU time so far
	// Sys is the system part of CPU: the time the process's threads spent
	// in the kernel (system calls, page faults, being put to sleep and
	// woken up).
	Sys time.Duration
	// MinFlt is the minor page faults so far: mostly the first touch of
	// each page of memory the process maps (its heap growing), each a
	// trap into the kernel — on some virtual machines a costly one.
	MinFlt int64
	RSS    int64         // resident set size now, bytes
	HWM    int64         // peak resident set size so far, bytes
	Taken  time.Duration // clock offset when sampled
}

// machineSample is the machine's CPU time so far, summed over its CPUs
// (/proc/stat's "cpu" line): Busy is everything but idle and iowait —
// user, nice, system, and what no process is charged with: interrupts,
// softirqs (loopback TCP's delivery among them) and steal (time the
// hypervisor gave to other guests) — and Total all of it.
type machineSample struct{ Busy, Total time.Duration }

// readMachine reads machineSample from /proc/stat.
func readMachine() (machineSample, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineSample{}, fmt.Errorf("read machine CPU time: %w", err)
	}
	return parseMachineStat(b)
}

// parseMachineStat parses the first line of /proc/stat: "cpu" and user,
// nice, system, idle, iowait, irq, softirq, steal (later kernels), then
// guest and guest_nice, which user and nice already include.
func parseMachineStat(stat []byte) (machineSample, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return machineSample{}, fmt.Errorf("parse /proc/stat: first line %q is not the cpu total", line)
	}
	var s machineSample
	for i, field := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil || n < 0 {
			return machineSample{}, fmt.Errorf("parse /proc/stat: cpu field %d %q is not a tick count", i+1, field)
		}
		d := time.Duration(n) * time.Second / clockTicks
		s.Total += d
		if i != 3 && i != 4 { // idle, iowait
			s.Busy += d
		}
	}
	return s, nil
}

// readProc reads pid's CPU time and minor page faults (/proc/PID/stat) and
// RSS (/proc/PID/status).
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read process stats: %w", err)
	}
	if s.CPU, s.Sys, s.MinFlt, err = parseStat(stat); err != nil {
		return s, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process status: %w", err)
	}
	s.RSS, s.HWM, err = parseStatusRSS(status)
	return s, err
}

// readSwitches returns the context switches, voluntary and involuntary, of
// all of pid's threads so far (/proc/PID/task/*/status). A thread that
// exits is no longer counted; Go keeps its threads, so over a drain the
// difference of two readings is the process's switches.
func readSwitches(pid int) (int64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read process threads: %w", err)
	}
	var total int64
	for _, e := range ents {
		status, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return 0, fmt.Errorf("read thread status: %w", err)
		}
		n, err := parseStatusSwitches(status)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// parseStatusSwitches returns voluntary_ctxt_switches plus
// nonvoluntary_ctxt_switches from the contents of a /proc status file.
func parseStatusSwitches(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	var total int64
	found := 0
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "voluntary_ctxt_switches" && name != "nonvoluntary_ctxt_switches") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc status %s: %w", name, err)
		}
		total += n
		found++
	}
	if found != 2 {
		return 0, errors.New("parse /proc status: voluntary_ctxt_switches or nonvoluntary_ctxt_switches missing")
	}
	return total, nil
}

// parseStat returns utime+stime, stime and minflt from the contents of
// /proc/PID/stat. The command name (field 2) may contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(stat []byte) (cpu, sys time.Duration, minflt int64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("parse /proc/PID/stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// After the name: state(3) ppid(4) ... minflt(10) ... utime(14)
	// stime(15): indexes 7, 11, 12.
	if len(f) < 13 {
		return 0, 0, 0, fmt.Errorf("parse /proc/PID/stat: %d fields after the name, want at least 13", len(f))
	}
	var v [3]int64
	for j, k := range [...]struct {
		i    int
		name string
	}{{7, "minflt"}, {11, "utime"}, {12, "stime"}} {
		if v[j], err = strconv.ParseInt(f[k.i], 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("parse /proc/PID/stat %s: %w", k.name, err)
		}
	}
	return time.Duration(v[1]+v[2]) * time.Second / clockTicks, time.Duration(v[2]) * time.Second / clockTicks, v[0], nil
}

// parseStatusRSS returns VmRSS and VmHWM (bytes) from /proc/PID/status.
func parseStatusRSS(status []byte) (rss, hwm int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	found := 0
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			return 0, 0, fmt.Errorf("parse /proc/PID/status: unexpected line %q", line)
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse /proc/PID/status: %w", err)
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("parse /proc/PID/status: VmRSS or VmHWM missing")
	}
	return rss, hwm, nil
}

// buildChangehook compiles ./cmd/changehook of the module containing the
// working directory into dir and returns the binary's path.
func buildChangehook(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build changehook: find the module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("build changehook: run the benchmark inside the changehook module (or pass -changehook)")
	}
	bin := filepath.Join(dir, "changehook")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/changehook")
	cmd.Dir = filepath.Dir(gomod)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build changehook: %w\n%s", err, msg)
	}
	return bin, nil
}

// runnerProc is a `changehook run` child process.
type runnerProc struct {
	*childproc.Proc
	admin  string
	stderr *childproc.TailBuffer
}

// startRunner starts `changehook run -c cfg` with its admin server on
// adminAddr.
func startRunner(bin, cfg, adminAddr string) (*runnerProc, error) {
	p := &runnerProc{admin: adminAddr, stderr: &childproc.TailBuffer{Max: 64 << 10}}
	cmd := exec.Command(bin, "run", "-c", cfg, "--admin-addr", adminAddr, "--log-level", "warn")
	cmd.Stdout = p.stderr
	cmd.Stderr = p.stderr
	proc, err := childproc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start runner: %w", err)
	}
	p.Proc = proc
	return p, nil
}

// waitReady polls the runner's /readyz until every trigger's stream is open.
func (p *runnerProc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/readyz", nil)
		if err != nil {
			return fmt.Errorf("wait for runner: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("wait for runner: it exited (%v):\n%s", p.Err(), p.stderr)
		case <-ctx.Done():
			return fmt.Errorf("wait for runner: not ready within %v:\n%s", timeout, p.stderr)
		case <-tick.C:
		}
	}
}

// sample reads the runner's resource use now.
func (p *runnerProc) sample(c *clock) (procSample, error) {
	s, err := readProc(p.Cmd.Process.Pid)
	s.Taken = c.now()
	return s, err
}

// metrics returns the runner's /metrics (Prometheus text).
func (p *runnerProc) metrics(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("read runner metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read runner metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("read runner metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read runner metrics: HTTP %d", resp.StatusCode)
	}
	return body, nil
}

// waitStats reads, from the runner's /metrics, how long the bench
// trigger's watch loop has waited for the stream and for delivery
// (changehook_watch_wait_seconds_total), and when (the benchmark's clock).
type waitStats struct {
	At               time.Duration
	Stream, Delivery float64 // seconds
}

// waits scrapes the runner's wait counters.
func (p *runnerProc) waits(ctx context.Context, c *clock) (waitStats, error) {
	body, err := p.metrics(ctx)
	if err != nil {
		return waitStats{}, err
	}
	w, err := parseWaitMetrics(body)
	w.At = c.now()
	return w, err
}

// parseWaitMetrics returns the changehook_watch_wait_seconds_total series
// of the trigger "bench" from a Prometheus text exposition.
func parseWaitMetrics(text []byte) (waitStats, error) {
	var w waitStats
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "changehook_watch_wait_seconds_total{")
		if !ok {
			continue
		}
		labels, val, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, `trigger="bench"`) {
			continue
		}
		var dst *float64
		switch {
		case strings.Contains(labels, `on="stream"`):
			dst = &w.Stream
		case strings.Contains(labels, `on="delivery"`):
			dst = &w.Delivery
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return w, fmt.Errorf("parse runner metrics: %s: %w", line, err)
		}
		*dst = f
		found++
	}
	if err := sc.Err(); err != nil {
		return w, fmt.Errorf("parse runner metrics: %w", err)
	}
	if found != 2 {
		return w, errors.New(`parse runner metrics: changehook_watch_wait_seconds_total{trigger="bench"} on="stream" or on="delivery" missing`)
	}
	return w, nil
}

// gcStats reads the runner's garbage collections and the bytes it
// allocated so far from its /metrics (the Go collector's
// go_gc_duration_seconds_count and go_memstats_alloc_bytes_total), and
// its wait counters (see waits).
func (p *runnerProc) gcStats(ctx context.Context, c *clock) (gcs, alloc int64, w waitStats, err error) {
	body, err := p.metrics(ctx)
	if err != nil {
		return 0, 0, w, err
	}
	w, wErr := parseWaitMetrics(body)
	w.At = c.now()
	gcs, alloc, err = parseGCMetrics(body)
	return gcs, alloc, w, errors.Join(err, wErr)
}

// parseGCMetrics returns go_gc_duration_seconds_count and
// go_memstats_alloc_bytes_total from a Prometheus text exposition.
func parseGCMetrics(text []byte) (gcs, alloc int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		var dst *int64
		switch {
		case !ok:
			continue
		case name == "go_gc_duration_seconds_count":
			dst = &gcs
		case name == "go_memstats_alloc_bytes_total":
			dst = &alloc
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse runner metrics %s: %w", name, err)
		}
		*dst = int64(f)
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("parse runner metrics: %w", err)
	}
	if found != 2 {
		return 0, 0, errors.New("parse runner metrics: go_gc_duration_seconds_count or go_memstats_alloc_bytes_total missing")
	}
	return gcs, alloc, nil
}

// stop sends SIGTERM, waits up to grace for a clean exit, then SIGKILLs.
// It returns the child's final rusage-based CPU time and peak RSS.
func (p *runnerProc) stop(grace time.Duration) (cpu time.Duration, maxRSS int64, err error) {
	if !p.Stop(grace) {
		err = fmt.Errorf("stop runner: no clean exit within %v:\n%s", grace, p.stderr)
	}
	if ru, ok := p.Cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		maxRSS = ru.Maxrss << 10 // kilobytes on Linux
	}
	return cpu, maxRSS, err
}

// failures polls the runner's /api/triggers every 250 ms until ctx ends
// and reports the first trigger that failed (the runner keeps running when
// a trigger fails, so its exit cannot tell).
func (p *runnerProc) failures(ctx context.Context) <-chan error {
	out := make(chan error, 1)
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		client := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := failedTrigger(ctx, client, "http://"+p.admin+"/api/triggers"); err != nil {
				out <- err
				return
			}
		}
	}()
	return out
}

// failedTrigger returns an error naming the first failed trigger listed at
// url, or nil (also when the runner cannot be asked).
func failedTrigger(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Triggers []struct {
			Name      string `json:"name"`
			State     string `json:"state"`
			LastError string `json:"last_error"`
		} `json:"triggers"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body) != nil {
		return nil
	}
	for _, t := range body.Triggers {
		if t.State == "failed" {
			return fmt.Errorf("trigger %s failed: %s", t.Name, t.LastError)
		}
	}
	return nil
}

// waitDelivered waits until rec has every event, the runner exits or a
// trigger fails, ctx ends or timeout passes.
func (p *runnerProc) waitDelivered(ctx context.Context, rec *receiver, timeout time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := p.failures(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.wait(ctx, timeout) }()
	select {
	case err := <-done:
		return err
	case err := <-failed:
		return fmt.Errorf("wait for deliveries: %w", err)
	case <-p.Exited():
		return fmt.Errorf("wait for deliveries: the runner exited (%v)", p.Err())
	}
}
