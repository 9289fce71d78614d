package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"

	"github.com/changehook/changehook/triggers"
)

// BlockedError is the dial error of an address the network guard refuses:
// network.deny lists it, or it is a cloud metadata address and
// network.allow_metadata is false. Deliveries to it fail permanently with
// ReasonBlocked.
type BlockedError struct {
	// Addr is the resolved address that was refused.
	Addr netip.Addr
	// Rule says why: the network.deny range, or "cloud metadata address".
	Rule string
}

// Error names the address and the rule.
func (e *BlockedError) Error() string {
	return "address " + e.Addr.String() + " is blocked by the network guard (" + e.Rule + ")"
}

// netGuard checks dialled addresses against a NetworkPolicy.
type netGuard struct {
	deny     []denyRule
	metadata []netip.Addr // refused unless allow_metadata
	// lookup resolves a name (nil: net.DefaultResolver.LookupNetIP).
	lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// denyRule is a network.deny range as the guard compares it: an IPv4 range
// written in IPv4-mapped IPv6 form longer than /96 (::ffff:10.0.0.0/104) is
// compared as the IPv4 range it covers (10.0.0.0/8), since addresses are
// compared unmapped; text is the range as written, for the error.
type denyRule struct {
	prefix netip.Prefix
	text   string
}

// newNetGuard returns the guard of p.
func newNetGuard(p triggers.NetworkPolicy) *netGuard {
	g := &netGuard{}
	for _, d := range p.Deny {
		r := denyRule{prefix: d, text: d.String()}
		if d.Addr().Is4In6() && d.Bits() > 96 {
			r.prefix = netip.PrefixFrom(d.Addr().Unmap(), d.Bits()-96)
		}
		g.deny = append(g.deny, r)
	}
	if !p.AllowMetadata {
		g.metadata = triggers.MetadataAddrs()
	}
	return g
}

// check returns a *BlockedError when addr may not be dialled. An address
// that connects to this host although it is not a loopback address (see
// reachedAs) is checked as the loopback address it reaches too, so that a
// network.deny of the loopback ranges refuses it. Addresses are compared
// unmapped (::ffff:10.1.2.3 as 10.1.2.3), so an IPv6 range that covers the
// mapped addresses (::/0, ::ffff:0:0/96) refuses no IPv4 address.
func (g *netGuard) check(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	for _, m := range g.metadata {
		if addr == m {
			return &BlockedError{Addr: addr, Rule: "cloud metadata address; set network.allow_metadata: true to allow it"}
		}
	}
	reached, local := reachedAs(addr)
	for _, r := range g.deny {
		p := r.prefix
		if p.Contains(addr) {
			return &BlockedError{Addr: addr, Rule: "network.deny " + r.text}
		}
		if local && p.Contains(reached) {
			return &BlockedError{Addr: addr, Rule: "network.deny " + r.text + "; " + addr.String() +
				" connects to this host, as " + reached.String() + " does"}
		}
	}
	return nil
}

// reachedAs returns the loopback address an unspecified destination
// reaches: Linux (like most systems) connects 0.0.0.0 to this host as
// 127.0.0.1 and :: as ::1. The rest of 0.0.0.0/8 ("this network") is
// judged as 0.0.0.0 rather than trusted. ok is false for any other
// address (addr unmapped, without a zone).
func reachedAs(addr netip.Addr) (loopback netip.Addr, ok bool) {
	switch {
	case addr.Is4() && addr.As4()[0] == 0:
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	case addr == netip.IPv6Unspecified():
		return netip.IPv6Loopback(), true
	}
	return netip.Addr{}, false
}

// control is a net.Dialer Control function: it runs after DNS resolution,
// before the connection is made, with the address actually dialled, so a
// name that resolves (or re-resolves) to a refused address cannot reach it.
// Through a proxy it sees the proxy's address only: proxy checks the
// target then.
func (g *netGuard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		host, _, serr := net.SplitHostPort(address)
		if serr != nil {
			return &BlockedError{Rule: "unparseable address"}
		}
		a, perr := netip.ParseAddr(host)
		if perr != nil {
			return &BlockedError{Rule: "unparseable address"}
		}
		return g.check(a)
	}
	return g.check(ap.Addr())
}

// refusesNothing reports whether g refuses no address (no network.deny,
// network.allow_metadata true): a target then needs no check.
func (g *netGuard) refusesNothing() bool { return len(g.deny) == 0 && len(g.metadata) == 0 }

// checkHost checks the host of a request's URL (without brackets or port)
// before the request is sent through a proxy, where control only ever sees
// the proxy's address: an IP literal as it is; a name by resolving it here
// and checking every address it has, since any of them may be the one the
// proxy connects to. The proxy resolves the name again, so this is a check
// of the name's addresses as resolved here. The error is a *BlockedError
// for a refused address, or, with a network.deny, the resolution's failure
// (a name this host cannot resolve is not sent: the check could not be
// made). Without a network.deny (the default: only the metadata addresses
// refused) a name this host cannot resolve goes to the proxy unchecked:
// behind an egress proxy the host often resolves no outside names at all,
// and every webhook would fail.
func (g *netGuard) checkHost(ctx context.Context, host string) error {
	if g.refusesNothing() {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return g.check(a)
	}
	lookup := g.lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	addrs, err := lookup(ctx, "ip", host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		if len(g.deny) == 0 {
			return nil
		}
		return fmt.Errorf("resolve %s to check it against the network guard (network.deny) before sending it through the proxy: %w", host, err)
	}
	for _, a := range addrs {
		if err := g.check(a); err != nil {
			return err
		}
	}
	return nil
}

// proxy returns a Transport's Proxy function: next's answer, after
// checking the request's target host (checkHost) whenever next sends the
// request through a proxy. Its error fails the request before anything is
// sent (net/http returns it from RoundTrip as it is). nil for a nil next.
func (g *netGuard) proxy(next func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	if next == nil {
		return nil
	}
	return func(req *http.Request) (*url.URL, error) {
		p, err := next(req)
		if err != nil || p == nil {
			return p, err
		}
		if err := g.checkHost(req.Context(), req.URL.Hostname()); err != nil {
			return nil, err
		}
		return p, nil
	}
}
