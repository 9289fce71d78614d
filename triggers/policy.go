package triggers

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/changehook/changehook/internal/textcut"
	"gopkg.in/yaml.v3"
)

// StatusRule is one entry of retry.retry_on, retry.success_on or
// retry.drop_on: an HTTP status code ("409"), a status class ("5xx"), or,
// in retry_on only, RuleTimeout or RuleConnection.
type StatusRule string

// The conditions that retry.retry_on may name besides statuses.
const (
	// RuleTimeout: the attempt timed out (no response in webhook.timeout).
	// A 408 response is the status rule "408".
	RuleTimeout StatusRule = "timeout"
	// RuleConnection: no response at all: refused, reset, DNS, TLS.
	RuleConnection StatusRule = "connection"
)

// StatusRules is a list of StatusRule.
type StatusRules []StatusRule

// DefaultRetryOn returns retry.retry_on when omitted: 408, 429, 5xx,
// timeout and connection.
func DefaultRetryOn() StatusRules {
	return StatusRules{"408", "429", "5xx", RuleTimeout, RuleConnection}
}

// DefaultSuccessOn returns retry.success_on when omitted: 2xx.
func DefaultSuccessOn() StatusRules { return StatusRules{"2xx"} }

// MatchStatus reports whether an HTTP status code is listed, as a code or
// through its class. It looks at one list alone: which of a retry
// policy's lists decides a status is RetryPolicy.ListOf's answer.
func (r StatusRules) MatchStatus(code int) bool {
	return r.hasCode(code) || r.hasClass(code)
}

// hasCode reports whether code is listed as itself ("429").
func (r StatusRules) hasCode(code int) bool {
	for _, rule := range r {
		if n, ok := rule.code(); ok && n == code {
			return true
		}
	}
	return false
}

// hasClass reports whether code's class ("4xx" for 429) is listed.
func (r StatusRules) hasClass(code int) bool {
	for _, rule := range r {
		if c, ok := rule.class(); ok && code >= 0 && c == code/100 {
			return true
		}
	}
	return false
}

// code returns the status a code rule ("429") names.
func (r StatusRule) code() (int, bool) {
	if len(r) != 3 || !isDigit(r[0]) || !isDigit(r[1]) || !isDigit(r[2]) {
		return 0, false
	}
	return int(r[0]-'0')*100 + int(r[1]-'0')*10 + int(r[2]-'0'), true
}

// class returns the hundreds digit of a class rule ("4xx": 4).
func (r StatusRule) class() (int, bool) {
	if len(r) != 3 || !isDigit(r[0]) || r[1] != 'x' || r[2] != 'x' {
		return 0, false
	}
	return int(r[0] - '0'), true
}

// isDigit reports whether c is an ASCII digit.
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// StatusList names the list of a RetryPolicy that decides a response
// status (RetryPolicy.ListOf).
type StatusList int

// The lists a status can fall in.
const (
	// ListNone: no list names the status, as a code or through its class.
	ListNone StatusList = iota
	// ListSuccessOn: retry.success_on; the event is delivered.
	ListSuccessOn
	// ListDropOn: retry.drop_on; the event is acknowledged without a dead
	// letter.
	ListDropOn
	// ListRetryOn: retry.retry_on; the attempt failed and is retried.
	ListRetryOn
)

// String returns the list's field name ("retry_on"; "" for ListNone).
func (l StatusList) String() string {
	switch l {
	case ListSuccessOn:
		return "success_on"
	case ListDropOn:
		return "drop_on"
	case ListRetryOn:
		return "retry_on"
	}
	return ""
}

// ListOf returns the list of p that decides an HTTP response status: the
// most specific rule wins, so a list naming the status by its code beats
// one naming its class, whichever lists they are and whether they are set
// or defaults (with drop_on: [4xx] and the default retry_on, a 429 is
// retried and a 404 dropped; with retry_on: [202], a 202 is retried
// despite success_on's 2xx). Equally specific rules in two lists, which
// Parse refuses unless one of them is a default, go to success_on, then
// drop_on, then retry_on. nil SuccessOn and RetryOn are their defaults
// (DefaultSuccessOn, DefaultRetryOn), as in WithDefaults. Every user of the
// three lists decides a status through ListOf.
func (p RetryPolicy) ListOf(status int) StatusList {
	success, retry := p.SuccessOn, p.RetryOn
	if success == nil {
		success = defaultSuccessOn
	}
	if retry == nil {
		retry = defaultRetryOn
	}
	lists := [...]struct {
		list  StatusList
		rules StatusRules
	}{{ListSuccessOn, success}, {ListDropOn, p.DropOn}, {ListRetryOn, retry}}
	for _, l := range lists {
		if l.rules.hasCode(status) {
			return l.list
		}
	}
	for _, l := range lists {
		if l.rules.hasClass(status) {
			return l.list
		}
	}
	return ListNone
}

// defaultSuccessOn and defaultRetryOn are ListOf's defaults. Read-only.
var (
	defaultSuccessOn = DefaultSuccessOn()
	defaultRetryOn   = DefaultRetryOn()
)

// Has reports whether cond (RuleTimeout or RuleConnection) is listed.
func (r StatusRules) Has(cond StatusRule) bool { return slices.Contains(r, cond) }

// checkStatusRule reports what is wrong with one rule ("" when valid).
func checkStatusRule(s string, conditions bool) string {
	if conditions && (s == string(RuleTimeout) || s == string(RuleConnection)) {
		return ""
	}
	if len(s) == 3 && s[0] >= '1' && s[0] <= '5' && s[1:] == "xx" {
		return ""
	}
	if n, err := strconv.Atoi(s); err == nil && len(s) == 3 && n >= 100 && n <= 599 {
		return ""
	}
	if conditions {
		return fmt.Sprintf("%s is not an HTTP status (100 to 599), a class such as 5xx, timeout or connection", textcut.Quote(s))
	}
	return fmt.Sprintf("%s is not an HTTP status (100 to 599) or a class such as 4xx", textcut.Quote(s))
}

// statusRules decodes one of retry_on, success_on and drop_on: a list of
// rules (an empty list is allowed and means none). Integers and strings are
// both accepted for codes.
func (d *decoder) statusRules(e entry, field string, def StatusRules, conditions bool) StatusRules {
	if !e.set() {
		return def
	}
	v := deref(e.val)
	if d.poisoned[v] {
		return def
	}
	var items []*yaml.Node
	switch {
	case v.Kind == yaml.SequenceNode:
		items = v.Content
	case v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null":
		items = []*yaml.Node{v}
	default:
		d.errorf(v, "%s: expected a list of HTTP statuses or classes such as [409, 4xx], got %s", field, describe(v))
		return def
	}
	if !d.spend(v, len(items)) {
		return def
	}
	out := StatusRules{}
	for _, it := range items {
		it = deref(it)
		if it.Kind != yaml.ScalarNode || d.poisoned[it] {
			if !d.poisoned[it] {
				d.errorf(it, "%s: expected an HTTP status or class such as 409 or 5xx, got %s", field, describe(it))
			}
			continue
		}
		s := strings.ToLower(it.Value)
		if msg := checkStatusRule(s, conditions); msg != "" {
			d.errorf(it, "%s: %s", field, msg)
			continue
		}
		if slices.Contains(out, StatusRule(s)) {
			d.errorf(it, "%s: %s is listed twice", field, s)
			continue
		}
		out = append(out, StatusRule(s))
	}
	return out
}

// checkRuleOverlap reports a status code or class listed in two of
// success_on, drop_on and retry_on: which one applies would otherwise
// depend on a precedence the reader has to look up. A code in one and its
// class in another is no error (ListOf: a code beats a class); a class the
// file sets whose codes another list names gets a warning about t
// (warnClassOverlap), none when t is nil (the defaults section itself:
// each trigger that gets its lists is warned about).
func (d *decoder) checkRuleOverlap(t *Trigger, f map[string]entry, p RetryPolicy) {
	lists := []struct {
		field string
		rules StatusRules
	}{{"success_on", p.SuccessOn}, {"drop_on", p.DropOn}, {"retry_on", p.RetryOn}}
	for i := range lists {
		for j := i + 1; j < len(lists); j++ {
			for _, r := range lists[j].rules {
				if slices.Contains(lists[i].rules, r) && f[lists[j].field].set() {
					d.errorf(deref(f[lists[j].field].val), "retry.%s: %s is also in retry.%s; list each status in one of success_on, drop_on and retry_on", lists[j].field, r, lists[i].field)
				}
			}
		}
	}
	if t != nil {
		d.warnClassOverlap(t, f, p)
	}
}

// warnClassOverlap warns about each class that the file sets in one of
// success_on, drop_on and retry_on while another of them, set or default,
// lists codes of that class: ListOf gives those codes to the other list (a
// code beats a class), which a reader of the class alone would not expect.
// Each is a warning about trigger t, whose retry policy p is, at the class
// as written: in t's own retry section, or in the defaults section's when
// t gets the list from there.
func (d *decoder) warnClassOverlap(t *Trigger, f map[string]entry, p RetryPolicy) {
	lists := []struct {
		field string
		list  StatusList
		rules StatusRules
		verb  string // what happens to a status of the list
	}{{"success_on", ListSuccessOn, p.SuccessOn, "taken as delivered"}, {"drop_on", ListDropOn, p.DropOn, "dropped"}, {"retry_on", ListRetryOn, p.RetryOn, "retried"}}
	for i, x := range lists {
		e := f[x.field]
		if !e.set() || d.poisoned[deref(e.val)] {
			continue
		}
		for _, it := range ruleNodes(e) {
			class, ok := StatusRule(strings.ToLower(it.Value)).class()
			if !ok || !slices.Contains(x.rules, StatusRule(strings.ToLower(it.Value))) {
				continue
			}
			var parts []string
			for j, y := range lists {
				if j == i {
					continue
				}
				var codes []string
				for _, r := range y.rules {
					if n, ok := r.code(); ok && n/100 == class && p.ListOf(n) == y.list {
						codes = append(codes, string(r))
					}
				}
				if len(codes) == 0 {
					continue
				}
				is, them, list := "is", "it", y.field
				if len(codes) > 1 {
					is, them = "are", "them"
				}
				if !f[y.field].set() {
					list = "the default " + y.field
				}
				parts = append(parts, fmt.Sprintf("%s %s %s (%s lists %s)", joinAnd(codes), is, y.verb, list, them))
			}
			if len(parts) > 0 {
				d.warnTrigger(t, it, "retry.%s: %s: %s; a code beats a class", x.field, strings.ToLower(it.Value), strings.Join(parts, ", "))
			}
		}
	}
}

// ruleNodes returns the scalars of a status rule list as written.
func ruleNodes(e entry) []*yaml.Node {
	v := deref(e.val)
	switch {
	case v.Kind == yaml.SequenceNode:
		out := make([]*yaml.Node, 0, len(v.Content))
		for _, it := range v.Content {
			if it = deref(it); it.Kind == yaml.ScalarNode {
				out = append(out, it)
			}
		}
		return out
	case v.Kind == yaml.ScalarNode:
		return []*yaml.Node{v}
	}
	return nil
}

// joinAnd joins words as "a", "a and b", "a, b and c".
func joinAnd(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// RateLimit is a token bucket: PerSecond requests per second on average,
// at most Burst at once. Every attempt takes a token; a trigger without one
// waits (its stream reading slows down), nothing is dropped.
type RateLimit struct {
	// PerSecond is the sustained rate (> 0; fractions allowed: 0.5 is one
	// request every two seconds).
	PerSecond float64 `json:"per_second"`
	// Burst is the bucket size (default: PerSecond rounded up, at least 1).
	Burst int `json:"burst"`
}

// Endpoint is one entry of the top-level endpoints section: a rate limit
// shared by every trigger whose webhook URL starts with URLPrefix.
type Endpoint struct {
	// Name identifies the endpoint (the key of its shared limiter).
	Name string `json:"name"`
	// URLPrefix selects the triggers: those whose webhook URL it is a
	// prefix of, compared as URLs (scheme and host in any case, a default
	// port equal to none, the prefix ending at a path segment or at the
	// end of the host); the longest matching prefix wins. It may carry a
	// token: it is only shown redacted.
	URLPrefix string `json:"-"`
	// RateLimit is shared by the endpoint's triggers.
	RateLimit RateLimit `json:"rate_limit"`
}

// MarshalJSON writes the endpoint with its URL prefix redacted.
func (e Endpoint) MarshalJSON() ([]byte, error) {
	return marshalJSON(struct {
		Name      string    `json:"name"`
		URLPrefix string    `json:"url_prefix"`
		RateLimit RateLimit `json:"rate_limit"`
	}{e.Name, RedactURL(e.URLPrefix), e.RateLimit})
}

// NetworkPolicy is the network section: which resolved addresses webhook
// requests may connect to. It is checked when a connection is dialled, on
// the address DNS returned, so a name that re-resolves elsewhere (DNS
// rebinding) cannot bypass it; a request sent through a proxy is checked
// before it is sent, on its host's addresses as resolved locally.
// Loopback and private ranges are allowed by default: changehook is
// self-hosted and often delivers inside its own network.
type NetworkPolicy struct {
	// Deny lists the refused ranges.
	Deny []netip.Prefix `json:"deny"`
	// AllowMetadata false (the default) refuses the cloud metadata
	// addresses (MetadataAddrs), from which a webhook URL could read
	// instance credentials.
	AllowMetadata bool `json:"allow_metadata"`
}

// MetadataAddrs returns the cloud metadata service addresses that
// NetworkPolicy refuses unless AllowMetadata: 169.254.169.254 (AWS, GCP,
// Azure, …) and fd00:ec2::254 (AWS over IPv6).
func MetadataAddrs() []netip.Addr {
	return []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")}
}

// rateLimit decodes a {per_second, burst} mapping.
func (d *decoder) rateLimit(e entry, field string) *RateLimit {
	f := d.fields(e.val, field, []string{"per_second", "burst"})
	if f == nil {
		return nil
	}
	rl := &RateLimit{}
	ps := f["per_second"]
	if !ps.set() {
		d.errorf(deref(e.val), "%s: missing field \"per_second\"", field)
		return nil
	}
	v := deref(ps.val)
	if d.poisoned[v] {
		return nil
	}
	n, ok := coreNumber(v)
	if !ok || !(n > 0) || n > 1e6 {
		d.errorf(v, "%s.per_second: expected a number of requests per second above 0 and at most 1000000%s", field, notCoreNumberHint(v))
		return nil
	}
	rl.PerSecond = n
	rl.Burst = d.integer(f["burst"], field+".burst", max(1, int(math.Ceil(n))), 1, 1_000_000)
	return rl
}

// network decodes the top-level network section.
func (d *decoder) network(e entry) NetworkPolicy {
	p := NetworkPolicy{Deny: []netip.Prefix{}}
	if !e.set() {
		return p
	}
	f := d.fields(e.val, "network", []string{"deny", "allow_metadata"})
	if f == nil {
		return p
	}
	p.AllowMetadata = d.boolean(f["allow_metadata"], "network.allow_metadata", false)
	if de := f["deny"]; de.set() {
		v := deref(de.val)
		if v.Kind != yaml.SequenceNode {
			d.errorf(v, "network.deny: expected a list of CIDR ranges such as [10.0.0.0/8], got %s", describe(v))
			return p
		}
		for _, it := range v.Content {
			s, ok := d.str(entry{val: it}, "network.deny")
			if !ok {
				continue
			}
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				if a, aerr := netip.ParseAddr(s); aerr == nil {
					pfx = netip.PrefixFrom(a, a.BitLen())
				} else {
					d.errorf(deref(it), "network.deny: %q is not a CIDR range such as 10.0.0.0/8 or an IP address", s)
					continue
				}
			}
			p.Deny = append(p.Deny, pfx.Masked())
		}
	}
	return p
}

// endpoints decodes the top-level endpoints section. nodes gets each
// endpoint's node, for warnings about it.
func (d *decoder) endpoints(e entry, nodes map[*Endpoint]*yaml.Node) []*Endpoint {
	if !e.set() {
		return nil
	}
	v := deref(e.val)
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, "endpoints: expected a list of endpoints, got %s", describe(v))
		return nil
	}
	var out []*Endpoint
	names := map[string]bool{}
	for _, it := range v.Content {
		f := d.fields(it, "endpoint", []string{"name", "url_prefix", "rate_limit"})
		if f == nil {
			continue
		}
		ep := &Endpoint{}
		at := deref(it)
		if n := f["name"]; !n.set() {
			d.errorf(at, "endpoint: missing field \"name\"")
		} else if s, ok := d.str(n, "endpoints.name"); ok {
			ep.Name = s
			if s == "" {
				d.errorf(deref(n.val), "endpoints.name: must not be empty")
			} else if names[s] {
				d.errorf(deref(n.val), "endpoints.name: %q is used twice", s)
			}
			names[s] = true
		}
		if u := f["url_prefix"]; !u.set() {
			d.errorf(at, "endpoint: missing field \"url_prefix\"")
		} else if s, ok := d.str(u, "endpoints.url_prefix"); ok {
			ep.URLPrefix = s
			if msg := checkWebhookURL(s); msg != "" {
				d.errorf(deref(u.val), "endpoints.url_prefix: %s", msg)
			}
		}
		if r := f["rate_limit"]; !r.set() {
			d.errorf(at, "endpoint: missing field \"rate_limit\"")
		} else if rl := d.rateLimit(r, "endpoints.rate_limit"); rl != nil {
			ep.RateLimit = *rl
		}
		nodes[ep] = at
		out = append(out, ep)
	}
	return out
}

// endpointFor returns the endpoint whose URLPrefix is the longest prefix of
// url (nil: none), as urlPrefixMatch compares them.
func endpointFor(eps []*Endpoint, url string) *Endpoint {
	var best *Endpoint
	bestLen := -1
	for _, ep := range eps {
		if n, ok := urlPrefixMatch(ep.URLPrefix, url); ok && n > bestLen {
			best, bestLen = ep, n
		}
	}
	return best
}

// urlPrefixMatch reports whether the URL prefix matches rawURL and how
// long (specific) the match is. Both are compared as URLs, not as text:
// the schemes and hosts case-insensitively, a default port (80 for http,
// 443 for https) equal to none, the user information exactly; the
// prefix's path must end at a path segment of the URL's ("/api" matches
// "/api" and "/api/x", not "/apix"; "/api/" matches "/api/x"), and
// without one any path matches, the host ending where the URL's does
// (https://example.com does not match https://example.com.evil/). A
// prefix with a query matches its own path only, with a query that starts
// with the prefix's.
func urlPrefixMatch(prefix, rawURL string) (int, bool) {
	if prefix == "" {
		return 0, false
	}
	p, err := url.Parse(prefix)
	if err != nil {
		return 0, false
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, false
	}
	if !strings.EqualFold(p.Scheme, u.Scheme) || !strings.EqualFold(p.Hostname(), u.Hostname()) ||
		portOrDefault(p) != portOrDefault(u) || p.User.String() != u.User.String() {
		return 0, false
	}
	pp, up := p.EscapedPath(), u.EscapedPath()
	switch {
	case p.RawQuery != "" || p.ForceQuery:
		if pp != up || !strings.HasPrefix(u.RawQuery, p.RawQuery) {
			return 0, false
		}
	case pp == "" || pp == "/":
	case up == pp, strings.HasPrefix(up, pp) && (strings.HasSuffix(pp, "/") || up[len(pp)] == '/'):
	default:
		return 0, false
	}
	return len(pp) + len(p.RawQuery), true
}

// portOrDefault returns u's port, its scheme's default when it has none.
func portOrDefault(u *url.URL) string {
	if port := u.Port(); port != "" {
		return port
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

// isNull reports whether e's value is an explicit null.
func isNull(e entry) bool {
	v := deref(e.val)
	return v != nil && v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null"
}

// applyPolicy decodes the network and endpoints sections and hands them to
// the triggers (every trigger carries the network policy; each webhook its
// endpoint).
func (d *decoder) applyPolicy(cfg *Config, top map[string]entry) {
	cfg.Network = d.network(top["network"])
	at := map[*Endpoint]*yaml.Node{}
	cfg.Endpoints = d.endpoints(top["endpoints"], at)
	used := map[*Endpoint]bool{}
	for _, t := range cfg.Triggers {
		t.Network = cfg.Network
		t.Webhook.Endpoint = endpointFor(cfg.Endpoints, t.Webhook.URL)
		if t.Enabled && t.Webhook.Endpoint != nil {
			used[t.Webhook.Endpoint] = true
		}
	}
	for _, ep := range cfg.Endpoints {
		if !used[ep] && ep.URLPrefix != "" {
			d.warnf(at[ep], "endpoints: %q applies to no enabled trigger (no webhook.url of one is under its url_prefix %s): its rate limit limits nothing",
				ep.Name, RedactURL(ep.URLPrefix))
		}
	}
}
