//go:build !unix

package dispatcher

import "net"

// peekSupported: without a non-blocking peek, idle connections cannot be
// checked, so the direct transport is not used (net/http's is).
const peekSupported = false

// idlePeek is never used where peekSupported is false.
type idlePeek struct{}

func (*idlePeek) init(net.Conn) {}

func (*idlePeek) connOpen() bool { return false }
