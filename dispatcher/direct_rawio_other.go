//go:build !linux

package dispatcher

import (
	"io"
	"net"
)

// connIO returns what a direct connection reads and writes through: nc
// itself (raw system calls are used on Linux only).
func connIO(nc net.Conn) io.ReadWriter { return nc }
