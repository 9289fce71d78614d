package dispatcher

import "net/netip"

// BlockedError is the dial error of an address the network guard refuses:
// network.deny lists it, or it is a cloud metadata address and
// network.allow_metadata is false. Deliveries to it fail permanently with
// ReasonBlocked.
type BlockedError struct {
	// Addr is the resolved address that was refused.
	Addr netip.Addr
	// Rule says why: the network.deny CIDR, or "cloud metadata address".
	Rule string
}

// Error names the address and the rule.
func (e *BlockedError) Error() string {
	return "address " + e.Addr.String() + " is blocked by the network guard (" + e.Rule + ")"
}
