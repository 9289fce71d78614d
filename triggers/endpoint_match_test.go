package triggers

import (
	"slices"
	"testing"
)

// TestEndpointURLPrefix: an endpoints url_prefix is compared with a
// webhook URL as a URL, not as text: the same endpoint written with
// another host case or its default port shares the limit, and a host or
// path that merely starts with the same letters does not.
func TestEndpointURLPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix, url string
		want        bool
	}{
		{"https://hooks.slack.com/services/", "https://hooks.slack.com/services/T000/B000/XXXX", true},
		{"https://hooks.slack.com/services/", "https://Hooks.Slack.com/services/T000/B000/XXXX", true},
		{"https://hooks.slack.com/services/", "https://hooks.slack.com:443/services/T000/B000/XXXX", true},
		{"HTTPS://HOOKS.SLACK.COM:443/services/", "https://hooks.slack.com/services/T000", true},
		{"http://example.com", "http://example.com:80/x", true},
		{"http://example.com:8080", "http://example.com/x", false},
		{"https://example.com", "http://example.com/x", false},
		{"https://example.com", "https://example.com", true},
		{"https://example.com", "https://example.com/", true},
		{"https://example.com/", "https://example.com/a/b", true},
		{"https://example.com", "https://example.com.evil/", false},
		{"https://example.com", "https://example.community/x", false},
		{"https://example.com/api", "https://example.com/api", true},
		{"https://example.com/api", "https://example.com/api/v1", true},
		{"https://example.com/api", "https://example.com/apix", false},
		{"https://example.com/api/", "https://example.com/api", false},
		{"https://example.com/API", "https://example.com/api/v1", false}, // paths are case-sensitive
		{"https://example.com/hook?team=a", "https://example.com/hook?team=a&x=1", true},
		{"https://example.com/hook?team=a", "https://example.com/hook/x?team=a", false},
		{"https://u:p@example.com/", "https://example.com/x", false},
		{"", "https://example.com/x", false},
	} {
		eps := []*Endpoint{{Name: "e", URLPrefix: tc.prefix}}
		if got := endpointFor(eps, tc.url) != nil; got != tc.want {
			t.Errorf("url_prefix %q, webhook.url %q: match %v, want %v", tc.prefix, tc.url, got, tc.want)
		}
	}
	// The longest prefix wins, whatever the forms.
	eps := []*Endpoint{
		{Name: "host", URLPrefix: "https://EXAMPLE.com"},
		{Name: "api", URLPrefix: "https://example.com:443/api/"},
		{Name: "other", URLPrefix: "https://example.org/api/v1/"},
	}
	for url, want := range map[string]string{
		"https://example.com/api/v1/x": "api",
		"https://example.com/web":      "host",
	} {
		if got := endpointFor(eps, url); got == nil || got.Name != want {
			t.Errorf("webhook.url %q: endpoint %v, want %s", url, got, want)
		}
	}
}

// TestEndpointUnusedWarns: an endpoints entry that no enabled trigger's
// webhook.url falls under is accepted with a warning at the entry: its
// shared limit would silently do nothing.
func TestEndpointUnusedWarns(t *testing.T) {
	src := `endpoints:
  - name: slack
    url_prefix: https://hooks.slack.com/services/
    rate_limit: { per_second: 1 }
  - name: disabled_only
    url_prefix: https://hooks.example.com/
    rate_limit: { per_second: 1 }
  - name: typo
    url_prefix: https://hooks.slak.com/services/
    rate_limit: { per_second: 1 }
triggers:
  - name: t1
    database: shop
    webhook: { url: "https://Hooks.Slack.com:443/services/T000/B000/XXXX" }
  - name: t2
    database: shop
    enabled: false
    webhook: { url: "https://hooks.example.com/x" }
`
	cfg, err := Parse("c.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if ep := cfg.Triggers[0].Webhook.Endpoint; ep == nil || ep.Name != "slack" {
		t.Errorf("t1's endpoint %v, want slack", ep)
	}
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, w.String())
	}
	want := []string{
		`c.yaml:5:5: endpoints: "disabled_only" applies to no enabled trigger (no webhook.url of one is under its url_prefix https://hooks.example.com/): its rate limit limits nothing`,
		`c.yaml:8:5: endpoints: "typo" applies to no enabled trigger (no webhook.url of one is under its url_prefix https://hooks.slak.com/services/): its rate limit limits nothing`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings\n%q\nwant\n%q", got, want)
	}
}
