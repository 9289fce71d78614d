//go:build !unix

package dispatcher

import "net"

// peekSupported: without a non-blocking peek, idle connections cannot be
// checked, so the direct transport is not used (net/http's is).
const peekSupported = false

// idleConnOpen is never called where peekSupported is false.
func idleConnOpen(net.Conn) bool { return false }
