package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/changehook/changehook/triggers"
)

// TestNetGuardControl feeds the dial-time check resolved addresses directly
// (nothing is dialled): metadata addresses are refused by default,
// loopback and private ranges allowed, network.deny refuses its ranges
// (IPv4-mapped IPv6 included), allow_metadata opts out.
func TestNetGuardControl(t *testing.T) {
	deny := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fc00::/7")}
	tests := []struct {
		name    string
		policy  triggers.NetworkPolicy
		address string
		blocked string // substring of the rule; "" = allowed
	}{
		{"metadata v4", triggers.NetworkPolicy{}, "169.254.169.254:80", "cloud metadata"},
		{"metadata v6", triggers.NetworkPolicy{}, "[fd00:ec2::254]:80", "cloud metadata"},
		{"metadata v4-mapped", triggers.NetworkPolicy{}, "[::ffff:169.254.169.254]:80", "cloud metadata"},
		{"metadata allowed", triggers.NetworkPolicy{AllowMetadata: true}, "169.254.169.254:80", ""},
		{"loopback allowed", triggers.NetworkPolicy{}, "127.0.0.1:8080", ""},
		{"private allowed by default", triggers.NetworkPolicy{}, "10.1.2.3:443", ""},
		{"denied v4", triggers.NetworkPolicy{Deny: deny}, "10.1.2.3:443", "network.deny 10.0.0.0/8"},
		{"denied v4-mapped", triggers.NetworkPolicy{Deny: deny}, "[::ffff:10.1.2.3]:443", "network.deny 10.0.0.0/8"},
		{"denied v6", triggers.NetworkPolicy{Deny: deny}, "[fd12::1]:443", "network.deny fc00::/7"},
		{"outside deny", triggers.NetworkPolicy{Deny: deny}, "192.0.2.1:443", ""},
		// The unspecified addresses connect to this host: checked as
		// loopback.
		{"0.0.0.0 as loopback", triggers.NetworkPolicy{Deny: denyLoopback()}, "0.0.0.0:8080", "network.deny 127.0.0.0/8; 0.0.0.0 connects to this host"},
		{"0.0.0.0/8 as loopback", triggers.NetworkPolicy{Deny: denyLoopback()}, "0.1.2.3:8080", "network.deny 127.0.0.0/8"},
		{"0.0.0.0 v4-mapped", triggers.NetworkPolicy{Deny: denyLoopback()}, "[::ffff:0.0.0.0]:8080", "network.deny 127.0.0.0/8"},
		{":: as loopback", triggers.NetworkPolicy{Deny: denyLoopback()}, "[::]:8080", "network.deny ::1/128; :: connects to this host"},
		{":: with a zone", triggers.NetworkPolicy{Deny: denyLoopback()}, "[::%lo]:8080", "network.deny ::1/128"},
		{"0.0.0.0 allowed with loopback", triggers.NetworkPolicy{Deny: deny}, "0.0.0.0:8080", ""},
		{":: allowed with loopback", triggers.NetworkPolicy{}, "[::]:8080", ""},
		{"0.0.0.0/8 denied itself", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")}}, "0.0.0.0:80", "network.deny 0.0.0.0/8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := newNetGuard(tc.policy).control("tcp", tc.address, nil)
			if tc.blocked == "" {
				if err != nil {
					t.Fatalf("control = %v, want allowed", err)
				}
				return
			}
			var be *BlockedError
			if !errors.As(err, &be) || !strings.Contains(be.Error(), tc.blocked) {
				t.Fatalf("control = %v, want blocked by %q", err, tc.blocked)
			}
		})
	}
}

// TestNetGuardBlocksDelivery denies loopback and delivers to a loopback
// receiver: the delivery fails at once, permanently, with ReasonBlocked and a
// clear message, and the receiver sees nothing.
func TestNetGuardBlocksDelivery(t *testing.T) {
	rc := newReceiver(t, statuses(200))
	s := newTestSender(t, &triggers.Trigger{
		Webhook: triggers.Webhook{URL: rc.srv.URL},
		Retry:   triggers.RetryPolicy{MaxAttempts: 5},
		Network: triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
	}, WithClock(newFakeClock()))
	res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
	if err == nil || res.Reason != ReasonBlocked || res.Attempts != 1 {
		t.Fatalf("Deliver = %+v, %v; want one blocked attempt", res, err)
	}
	if !strings.Contains(err.Error(), "blocked by the network guard (network.deny 127.0.0.0/8)") {
		t.Fatalf("error %q does not say why", err)
	}
	if n := len(rc.deliveries()); n != 0 {
		t.Fatalf("receiver saw %d requests", n)
	}
}

// TestNetGuardUnspecifiedAddress: a webhook URL naming an unspecified
// address (http://0.0.0.0:PORT/, http://[::]:PORT/), which Linux connects
// to the local host, is refused by a network.deny of the loopback ranges
// (the README's advice for untrusted URLs), on every transport.
func TestNetGuardUnspecifiedAddress(t *testing.T) {
	rc := newReceiver(t, statuses(204))
	_, port, err := net.SplitHostPort(strings.TrimPrefix(rc.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host       string
		netHTTP    bool
		wantInRule string
	}{
		{"0.0.0.0", false, "network.deny 127.0.0.0/8"},
		{"0.0.0.0", true, "network.deny 127.0.0.0/8"},
		{"[::]", false, "network.deny ::1/128"},
		{"[::]", true, "network.deny ::1/128"},
	} {
		t.Run(fmt.Sprintf("%s net/http %t", tc.host, tc.netHTTP), func(t *testing.T) {
			opts := []Option{WithClock(newFakeClock())}
			if tc.netHTTP {
				opts = append(opts, func(o *options) { o.netHTTPOnly = true })
			}
			s := newTestSender(t, &triggers.Trigger{
				Webhook: triggers.Webhook{URL: "http://" + tc.host + ":" + port + "/admin"},
				Retry:   triggers.RetryPolicy{MaxAttempts: 3},
				Network: triggers.NetworkPolicy{Deny: denyLoopback()},
			}, opts...)
			res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
			if err == nil || res.Reason != ReasonBlocked || res.Attempts != 1 || !strings.Contains(err.Error(), tc.wantInRule) {
				t.Fatalf("Deliver = %+v, %v; want one attempt blocked by %q", res, err, tc.wantInRule)
			}
		})
	}
	if n := len(rc.deliveries()); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
}
