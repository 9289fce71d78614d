package triggers

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
// through its class.
func (r StatusRules) MatchStatus(code int) bool {
	for _, rule := range r {
		if len(rule) != 3 {
			continue
		}
		if rule[1] == 'x' && rule[2] == 'x' {
			if int(rule[0]-'0') == code/100 {
				return true
			}
			continue
		}
		if int(rule[0]-'0')*100+int(rule[1]-'0')*10+int(rule[2]-'0') == code {
			return true
		}
	}
	return false
}

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
		return fmt.Sprintf("%q is not an HTTP status (100 to 599), a class such as 5xx, timeout or connection", s)
	}
	return fmt.Sprintf("%q is not an HTTP status (100 to 599) or a class such as 4xx", s)
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

// checkRuleOverlap reports a status listed (as itself, not through a class)
// in two of success_on, drop_on and retry_on: which one applies would
// otherwise depend on a precedence the reader has to look up.
func (d *decoder) checkRuleOverlap(f map[string]entry, p RetryPolicy) {
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
}
