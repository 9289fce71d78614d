//go:build linux

package faults

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// pidSet is the set of child processes whose connections the endpoint
// attributes (see pidSet.peer).
type pidSet struct {
	mu   sync.Mutex
	pids map[int]string // pid → member name
}

func newPIDSet() *pidSet { return &pidSet{pids: map[int]string{}} }

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

// peer returns the pid of the registered process that owns the client end
// of c (a connection accepted on loopback), or 0. It finds the client
// socket's inode in /proc/net/tcp (local port = c's remote port, remote
// port = c's local port) and the process holding that inode among its
// file descriptors. The runner's requests carry nothing naming the
// instance, and the suite adds nothing to them: the attribution comes from
// the kernel.
func (ps *pidSet) peer(c net.Conn) int {
	ra, ok1 := c.RemoteAddr().(*net.TCPAddr)
	la, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0
	}
	inode := socketInode(ra.Port, la.Port)
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	for _, pid := range ps.list() {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // exited
		}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == want {
				return pid
			}
		}
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
			if hexPort(fs[1]) == local && hexPort(fs[2]) == remote {
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
