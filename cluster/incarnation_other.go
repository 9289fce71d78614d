//go:build !linux

package cluster

// incarnation is unknown outside Linux: a restarted instance then always
// waits for its previous process's leases to expire.
func incarnation(int) string { return "" }

// incarnationDead is never sure outside Linux.
func incarnationDead(string) bool { return false }
