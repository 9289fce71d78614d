//go:build linux

package faults

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pidSet is the set of child processes whose connections the endpoint
// attributes (see pidSet.peer).
type pidSet struct {
	mu   sync.Mutex
	pids map[int]string // pid → member name
	// byPort maps the local port of a member's connection to the endpoint
	// to the member's pid and when scan last saw it: a member SIGKILLed
	// right after sending leaves requests whose connection the endpoint
	// accepts after the process is gone. Entries older than portMemory are
	// dropped, so a local port reused later by another member is never
	// attributed to the earlier one.
	byPort map[int]portSeen
}

// portSeen is one connection's owner as a scan saw it.
type portSeen struct {
	pid int
	at  time.Time
}

// portMemory is how long a scan's attribution of a local port is used:
// long enough for a connection whose sender was just killed to be
// accepted, far shorter than the kernel's cycle through ephemeral ports.
const portMemory = 5 * time.Second

func newPIDSet() *pidSet { return &pidSet{pids: map[int]string{}, byPort: map[int]portSeen{}} }

// scanEvery records, every d until stop is closed, which registered
// process owns each connection to the endpoint port (see byPort).
func (ps *pidSet) scanEvery(d time.Duration, port int, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		ps.scan(port)
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (ps *pidSet) scan(port int) {
	ports := map[string]int{} // socket inode → local port, for connections to port
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[0] == "sl" || hexPort(fs[2]) != port || fs[9] == "0" {
				continue
			}
			ports[fs[9]] = hexPort(fs[1])
		}
	}
	if len(ports) == 0 {
		return
	}
	found := map[int]int{}
	for _, pid := range ps.list() {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			l, err := os.Readlink(dir + "/" + e.Name())
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			if lp, ok := ports[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")]; ok {
				found[lp] = pid
			}
		}
	}
	now := time.Now()
	ps.mu.Lock()
	for lp, pid := range found {
		ps.byPort[lp] = portSeen{pid: pid, at: now}
	}
	maps.DeleteFunc(ps.byPort, func(_ int, s portSeen) bool { return now.Sub(s.at) > portMemory })
	ps.mu.Unlock()
}

func (ps *pidSet) add(pid int, name string) {
	ps.mu.Lock()
	ps.pids[pid] = name
	ps.mu.Unlock()
}

func (ps *pidSet) name(pid int) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if n, ok := ps.pids[pid]; ok {
		return n
	}
	return fmt.Sprintf("pid %d", pid)
}

func (ps *pidSet) list() []int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]int, 0, len(ps.pids))
	for p := range ps.pids {
		out = append(out, p)
	}
	return out
}

// peer returns the registered process that owns the client end of c (a
// connection accepted on loopback), or pid 0 and why. It finds the client
// socket's inode in /proc/net/tcp (local port = c's remote port, remote
// port = c's local port) and the process holding that inode among its
// file descriptors. The runner's requests carry nothing naming the
// instance, and the suite adds nothing to them: the attribution comes from
// the kernel.
func (ps *pidSet) peer(c net.Conn) sender {
	ra, ok1 := c.RemoteAddr().(*net.TCPAddr)
	la, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return sender{why: "not a TCP connection"}
	}
	inode := socketInode(ra.Port, la.Port)
	if inode == "" || inode == "0" {
		if pid := ps.seen(ra.Port); pid != 0 {
			return sender{pid: pid}
		}
		return sender{why: fmt.Sprintf("the client socket (port %d) was closed before the lookup and no scan saw it", ra.Port)}
	}
	want := "socket:[" + inode + "]"
	for _, pid := range ps.list() {
		if holds(pid, want) {
			return sender{pid: pid}
		}
	}
	if pid := ps.seen(ra.Port); pid != 0 {
		return sender{pid: pid}
	}
	return sender{why: fmt.Sprintf("the client socket (port %d, inode %s) is held by no member: %s", ra.Port, inode, socketHolders(want))}
}

// holds reports whether process pid has the file want ("socket:[inode]")
// among its descriptors; false once pid has exited.
func holds(pid int, want string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == want {
			return true
		}
	}
	return false
}

// socketHolders names every process holding want ("pid 12 (changehook)"),
// or says there is none: an unattributed delivery's diagnosis, read only
// when the lookup among the members failed.
func socketHolders(want string) string {
	procs, _ := os.ReadDir("/proc")
	var names []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || !holds(pid, want) {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		names = append(names, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
	}
	if len(names) == 0 {
		return "no process holds it any more"
	}
	return "held by " + strings.Join(names, ", ")
}

// seen returns the pid a scan saw on the connection from local port p
// within portMemory (0: none).
func (ps *pidSet) seen(p int) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if s, ok := ps.byPort[p]; ok && time.Since(s.at) <= portMemory {
		return s.pid
	}
	return 0
}

// socketInode returns the inode of the TCP socket whose local port is
// local and remote port remote, from /proc/net/tcp and /proc/net/tcp6.
func socketInode(local, remote int) string {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[0] == "sl" {
				continue
			}
			// Inode 0: a socket no process holds any more (TIME_WAIT of an
			// earlier connection on the same ports, or a closed one).
			if hexPort(fs[1]) == local && hexPort(fs[2]) == remote && fs[9] != "0" {
				_ = fh.Close()
				return fs[9]
			}
		}
		_ = fh.Close()
	}
	return ""
}

// hexPort returns the port of a /proc/net/tcp address ("0100007F:1F90").
func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.ParseUint(addr[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(p)
}

// TestPeerAttribution: the endpoint's attribution names a registered
// process holding the client socket, and when none does says why: the
// socket is held by another process (named), or was closed before the
// lookup.
func TestPeerAttribution(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	connect := func() (client, server net.Conn) {
		t.Helper()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
		return client, server
	}
	self := os.Getpid()

	ps := newPIDSet()
	_, server := connect()
	if got := ps.peer(server); got.pid != 0 || !strings.Contains(got.why, fmt.Sprintf("held by no member: held by pid %d (", self)) {
		t.Errorf("unregistered holder: got %+v, want pid 0 naming pid %d as the holder", got, self)
	}

	ps.add(self, "test")
	if got := ps.peer(server); got.pid != self || got.why != "" {
		t.Errorf("registered holder: got %+v, want pid %d", got, self)
	}

	client, server := connect()
	_ = client.Close()
	if got := ps.peer(server); got.pid != 0 || !strings.Contains(got.why, "closed before the lookup") {
		t.Errorf("closed client: got %+v, want pid 0, closed before the lookup", got)
	}
}
