//go:build unix && !linux

package dispatcher

import "syscall"

// peek is a non-blocking MSG_PEEK read of one byte from the socket fd; it
// returns the call's error, nil when a byte or the end of the stream is
// there.
func peek(fd uintptr) error {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
	return err
}
