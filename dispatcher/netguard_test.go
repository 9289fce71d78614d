package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
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
		{"denied by a v4-mapped rule", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, "10.1.2.3:443", "network.deny ::ffff:10.0.0.0/104"},
		{"denied by a v4-mapped rule, v4-mapped", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, "[::ffff:10.1.2.3]:443", "network.deny ::ffff:10.0.0.0/104"},
		{"outside a v4-mapped rule", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, "11.1.2.3:443", ""},
		// IPv6 ranges that cover every mapped address do not refuse IPv4.
		{"::/0 leaves v4", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::/0")}}, "192.0.2.1:443", ""},
		{"::/0 refuses v6", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::/0")}}, "[2001:db8::1]:443", "network.deny ::/0"},
		{"::ffff:0:0/96 leaves v4", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::ffff:0:0/96")}}, "192.0.2.1:443", ""},
		{"::ffff:0:0/96 leaves v4-mapped", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::ffff:0:0/96")}}, "[::ffff:192.0.2.1]:443", ""},
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

// withProxy sends the Sender's requests through the proxy at proxyURL, as
// HTTP_PROXY and HTTPS_PROXY would (which net/http reads once per
// process, so tests set the Proxy function instead).
func withProxy(t *testing.T, proxyURL string) Option {
	t.Helper()
	pu, err := url.Parse(proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *options) { o.proxy = http.ProxyURL(pu) }
}

// withHosts makes the network guard resolve names by hosts; a name not
// in it does not resolve.
func withHosts(hosts map[string][]string) Option {
	return func(o *options) {
		o.lookup = func(_ context.Context, _, host string) ([]netip.Addr, error) {
			addrs, ok := hosts[host]
			if !ok {
				return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			var out []netip.Addr
			for _, a := range addrs {
				out = append(out, netip.MustParseAddr(a))
			}
			return out, nil
		}
	}
}

// proxyStub is an HTTP proxy that answers every request itself (204 to a
// request in absolute form, 502 to a CONNECT) and records what it was
// asked for.
type proxyStub struct {
	*httptest.Server
	mu    sync.Mutex
	asked []string
}

func newProxyStub(t *testing.T) *proxyStub {
	p := &proxyStub{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.asked = append(p.asked, r.Method+" "+r.RequestURI)
		p.mu.Unlock()
		if r.Method == http.MethodConnect {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxyStub) Asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.asked...)
}

// TestNetGuardThroughProxy: through a proxy the guard cannot see the
// endpoint's address when connecting (only the proxy's), so the target
// host is checked before the request is sent: an IP literal as it is, a
// name by resolving it here and checking every address. A refused target
// fails the attempt permanently with ReasonBlocked, as a direct one does,
// and the proxy is never asked; a name that does not resolve here is not
// sent either under a network.deny (a connection failure), and goes to the
// proxy unchecked under the default policy (behind an egress proxy the
// host may resolve no outside names); an allowed target goes through the
// proxy.
func TestNetGuardThroughProxy(t *testing.T) {
	hosts := map[string][]string{
		"metadata.example.test": {"169.254.169.254"},
		"mixed.example.test":    {"192.0.2.10", "10.0.0.5"},
		"api.example.test":      {"192.0.2.1", "2001:db8::1"},
	}
	deny10 := triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	tests := []struct {
		name   string
		url    string
		policy triggers.NetworkPolicy
		reason string // "" delivered
		rule   string // substring of a blocked attempt's error
	}{
		{"metadata literal", "http://169.254.169.254/latest/meta-data/", triggers.NetworkPolicy{}, ReasonBlocked, "cloud metadata address"},
		{"metadata literal over https", "https://169.254.169.254/latest/meta-data/", triggers.NetworkPolicy{}, ReasonBlocked, "cloud metadata address"},
		{"metadata v6 literal", "http://[fd00:ec2::254]/latest/", triggers.NetworkPolicy{}, ReasonBlocked, "cloud metadata address"},
		{"denied literal", "http://10.1.2.3/internal-admin", deny10, ReasonBlocked, "network.deny 10.0.0.0/8"},
		// (Only ::1 denied: the proxy itself listens on 127.0.0.1.)
		{"unspecified literal", "http://[::]:8080/admin", triggers.NetworkPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("::1/128")}}, ReasonBlocked, "network.deny ::1/128"},
		{"name of the metadata address", "http://metadata.example.test/latest/", triggers.NetworkPolicy{}, ReasonBlocked, "cloud metadata address"},
		{"name with one denied address", "https://mixed.example.test/hook", deny10, ReasonBlocked, "network.deny 10.0.0.0/8"},
		{"name that does not resolve, with a deny list", "http://nowhere.example.test/hook", deny10, ReasonConnection, ""},
		{"name that does not resolve, default policy", "http://nowhere.example.test/hook", triggers.NetworkPolicy{}, "", ""},
		{"allowed literal", "http://192.0.2.1/hook", deny10, "", ""},
		{"allowed name", "http://api.example.test/hook", deny10, "", ""},
		{"nothing to refuse: no lookup", "http://nowhere.example.test/hook", triggers.NetworkPolicy{AllowMetadata: true}, "", ""},
	}
	for _, tt := range tests {
		for _, netHTTP := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s net/http %t", tt.name, netHTTP), func(t *testing.T) {
				proxy := newProxyStub(t)
				m := NewMetrics(nil)
				opts := []Option{WithClock(newFakeClock()), WithMetrics(m), withProxy(t, proxy.URL), withHosts(hosts)}
				if netHTTP {
					opts = append(opts, func(o *options) { o.netHTTPOnly = true })
				}
				s := newTestSender(t, &triggers.Trigger{Name: "p", Network: tt.policy,
					Webhook: triggers.Webhook{URL: tt.url}, Retry: triggers.RetryPolicy{MaxAttempts: 2}}, opts...)
				res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
				asked := proxy.Asked()
				if tt.reason == "" {
					if err != nil || len(asked) != 1 {
						t.Fatalf("Deliver = %+v, %v; the proxy was asked %q; want delivered through it", res, err, asked)
					}
					return
				}
				if res.Reason != tt.reason || err == nil || len(asked) != 0 {
					t.Fatalf("Deliver = %+v, %v; the proxy was asked %q; want reason %s and nothing sent", res, err, asked, tt.reason)
				}
				if tt.reason != ReasonBlocked {
					return
				}
				if res.Attempts != 1 || !strings.Contains(err.Error(), tt.rule) {
					t.Errorf("Deliver = %+v, %v; want one permanent attempt naming %q", res, err, tt.rule)
				}
				if n := m.Counts("p").Attempts[ReasonBlocked]; n != 1 {
					t.Errorf("attempts counted with reason %q: %d, want 1 (%v)", ReasonBlocked, n, m.Counts("p").Attempts)
				}
			})
		}
	}
}

// TestNetGuardTokenRequestThroughProxy: the OAuth2 token request is checked
// as a delivery is: a token URL on a refused address is never sent
// through the proxy, and fails the delivery permanently as blocked.
func TestNetGuardTokenRequestThroughProxy(t *testing.T) {
	proxy := newProxyStub(t)
	clock := newFakeClock()
	s := newTestSender(t, &triggers.Trigger{Name: "p", Retry: triggers.RetryPolicy{MaxAttempts: 5},
		Webhook: triggers.Webhook{URL: "http://192.0.2.1/hook", Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{
			TokenURL: "http://169.254.169.254/token", ClientID: "c", ClientSecret: "sup3rs3cret"}}}},
		WithClock(clock), withProxy(t, proxy.URL))
	res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
	var be *BlockedError
	if res.Reason != ReasonBlocked || res.Attempts != 1 || !errors.As(err, &be) {
		t.Fatalf("Deliver = %+v, %v; want one attempt, the token request blocked", res, err)
	}
	if len(clock.Sleeps()) != 0 {
		t.Errorf("a token request the network guard refuses was retried after %v", clock.Sleeps())
	}
	if asked := proxy.Asked(); len(asked) != 0 {
		t.Fatalf("the proxy was asked %q", asked)
	}
}
