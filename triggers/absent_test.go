package triggers

import (
	"testing"
	"time"
)

// TestEmptyDurationIsAbsent: a duration field written "" (or as a ${VAR}
// whose variable is empty) reads exactly as the file without that key, in
// a trigger, in the defaults section and under a merge key: its value
// comes from the merge key, then the defaults section, then the built-in
// default. Each case parses both files and compares everything Parse
// returns: the configuration (the defaults section included) or the
// problems.
func TestEmptyDurationIsAbsent(t *testing.T) {
	tests := []struct {
		name string
		// with has the field as ""; without omits it. They keep their
		// other lines where they are, so that positions compare.
		with, without string
		// want is a value Parse must give with (a check that the case
		// tests what it says); wantErr the exact error instead.
		want    func(*Config) (got, want time.Duration)
		wantErr string
	}{
		{
			name: "webhook.timeout falls back to the defaults section",
			with: `defaults: { webhook: { timeout: 5s } }
triggers:
  - { name: t, webhook: { url: "http://h/x", timeout: "" } }
`,
			without: `defaults: { webhook: { timeout: 5s } }
triggers:
  - { name: t, webhook: { url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Triggers[0].Webhook.Timeout, 5 * time.Second },
		},
		{
			name: "an empty ${VAR} is the same",
			with: `defaults: { webhook: { timeout: 5s } }
triggers:
  - { name: t, webhook: { url: "http://h/x", timeout: "${EMPTY}" } }
`,
			without: `defaults: { webhook: { timeout: 5s } }
triggers:
  - { name: t, webhook: { url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Triggers[0].Webhook.Timeout, 5 * time.Second },
		},
		{
			name: "an unquoted empty ${VAR} is the same",
			with: `defaults: { webhook: { timeout: 5s } }
triggers:
  - name: t
    webhook:
      url: "http://h/x"
      timeout: ${EMPTY}
`,
			without: `defaults: { webhook: { timeout: 5s } }
triggers:
  - name: t
    webhook:
      url: "http://h/x"
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Triggers[0].Webhook.Timeout, 5 * time.Second },
		},
		{
			name: "retry backoffs: the defaults section's max_backoff passes the check",
			with: `defaults: { retry: { initial_backoff: 1s, max_backoff: 5m } }
triggers:
  - { name: t, retry: { initial_backoff: 2m, max_backoff: "" }, webhook: { url: "http://h/x" } }
`,
			without: `defaults: { retry: { initial_backoff: 1s, max_backoff: 5m } }
triggers:
  - { name: t, retry: { initial_backoff: 2m }, webhook: { url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Triggers[0].Retry.MaxBackoff, 5 * time.Minute },
		},
		{
			name: "retry backoffs: the defaults section's max_backoff fails the check, reported at the trigger's initial_backoff",
			with: `defaults: { retry: { max_backoff: 90s } }
triggers:
  - { name: t, retry: { initial_backoff: 2m, max_backoff: "" }, webhook: { url: "http://h/x" } }
`,
			without: `defaults: { retry: { max_backoff: 90s } }
triggers:
  - { name: t, retry: { initial_backoff: 2m }, webhook: { url: "http://h/x" } }
`,
			wantErr: "e.yaml:3:42: retry: max_backoff (1m30s, from defaults) must not be shorter than initial_backoff (2m0s)",
		},
		{
			name: "circuit.max_probe_interval",
			with: `defaults: { circuit: { max_probe_interval: 30s } }
triggers:
  - { name: t, circuit: { max_probe_interval: "" }, webhook: { url: "http://h/x" } }
`,
			without: `defaults: { circuit: { max_probe_interval: 30s } }
triggers:
  - { name: t, circuit: { }, webhook: { url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) {
				return c.Triggers[0].Circuit.MaxProbeInterval, 30 * time.Second
			},
		},
		{
			name: "batch.max_wait",
			with: `defaults: { batch: { max_events: 10, max_wait: 2s } }
triggers:
  - { name: t, batch: { max_wait: "" }, webhook: { url: "http://h/x" } }
`,
			without: `defaults: { batch: { max_events: 10, max_wait: 2s } }
triggers:
  - { name: t, batch: { }, webhook: { url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Triggers[0].Batch.MaxWait, 2 * time.Second },
		},
		{
			name: "in the defaults section: the built-in default",
			with: `defaults: { webhook: { timeout: "" }, retry: { max_backoff: "" } }
triggers:
  - { name: t, webhook: { url: "http://h/x" } }
`,
			without: `defaults: { webhook: { }, retry: { } }
triggers:
  - { name: t, webhook: { url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Triggers[0].Webhook.Timeout, DefaultTimeout },
		},
		{
			name: "under a merge key: the merged value",
			with: `defaults: { webhook: &hook { timeout: 5s } }
triggers:
  - { name: t, webhook: { <<: *hook, url: "http://h/x", timeout: "" } }
`,
			without: `defaults: { webhook: &hook { timeout: 5s } }
triggers:
  - { name: t, webhook: { <<: *hook, url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Triggers[0].Webhook.Timeout, 5 * time.Second },
		},
		{
			name: "cluster.renew_every: lease_ttl/3",
			with: `cluster: { lease_ttl: 6s, renew_every: "" }
triggers:
  - { name: t, webhook: { url: "http://h/x" } }
`,
			without: `cluster: { lease_ttl: 6s }
triggers:
  - { name: t, webhook: { url: "http://h/x" } }
`,
			want: func(c *Config) (time.Duration, time.Duration) { return c.Cluster.RenewEvery, 2 * time.Second },
		},
		{
			name: "an empty key is still a key: set twice is reported",
			with: `triggers:
  - { name: t, webhook: { url: "http://h/x", timeout: "", timeout: 5s } }
`,
			without: `triggers:
  - { name: t, webhook: { url: "http://h/x", timeout: 5s, timeout: 5s } }
`,
			wantErr: `e.yaml:2:59: webhook: duplicate field "timeout" (first set at line 2)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			with, withErr := parseForCompare(t, tt.with)
			without, withoutErr := parseForCompare(t, tt.without)
			if withErr != withoutErr {
				t.Errorf("errors differ:\n\"\":     %s\nabsent: %s", withErr, withoutErr)
			}
			if with != without {
				t.Errorf("configurations differ:\n--- \"\" ---\n%s\n--- absent ---\n%s", with, without)
			}
			if withErr != tt.wantErr {
				t.Errorf("error = %q, want %q", withErr, tt.wantErr)
			}
			if tt.want != nil && withErr == "" {
				cfg, _ := Parse("e.yaml", []byte(tt.with), testEnv)
				if got, want := tt.want(cfg); got != want {
					t.Errorf("value = %s, want %s", got, want)
				}
			}
		})
	}
}

// parseForCompare parses src and returns the configuration as JSON, the
// defaults section included ("" on error), and the error text.
func parseForCompare(t *testing.T, src string) (cfgJSON, errText string) {
	t.Helper()
	cfg, err := Parse("e.yaml", []byte(src), testEnv)
	if err != nil {
		return "", err.Error()
	}
	out, err := encodeJSON(struct {
		*Config
		Defaults *Trigger `json:"defaults"`
	}{cfg, cfg.Defaults}, " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out), ""
}
