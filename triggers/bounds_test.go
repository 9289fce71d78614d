package triggers

import (
	"testing"
	"time"
)

// TestBoundsAreInclusive: the values at the bounds testdata/bad's range
// errors name are accepted.
func TestBoundsAreInclusive(t *testing.T) {
	tests := []struct {
		name, src string
		got       func(*Config) any
		want      any
	}{
		{"a duration at MaxDuration", `triggers: [{name: t, webhook: {url: "http://h/x"}, circuit: {max_probe_interval: 87600h}}]`,
			func(c *Config) any { return c.Triggers[0].Circuit.MaxProbeInterval }, MaxDuration},
		{"webhook.timeout at its maximum", `triggers: [{name: t, webhook: {url: "http://h/x", timeout: 1h}}]`,
			func(c *Config) any { return c.Triggers[0].Webhook.Timeout }, MaxTimeout},
		{"checkpoint.idle_interval at its minimum", "checkpoint: {idle_interval: 1s}\ntriggers: [{name: t, webhook: {url: \"http://h/x\"}}]",
			func(c *Config) any { return c.Checkpoint.IdleInterval }, MinCheckpointIdleInterval},
		{"cluster.renew_every at its minimum", "cluster: {lease_ttl: 1s, renew_every: 100ms}\ntriggers: [{name: t, webhook: {url: \"http://h/x\"}}]",
			func(c *Config) any { return c.Cluster.RenewEvery }, MinRenewEvery},
		{"cluster.renew_every at its maximum", "cluster: {lease_ttl: 10s, renew_every: 3.5s}\ntriggers: [{name: t, webhook: {url: \"http://h/x\"}}]",
			func(c *Config) any { return c.Cluster.RenewEvery }, MaxRenewEvery(10 * time.Second)},
		{"history.retention at its maximum", "history: {retention: 87600h}\ntriggers: [{name: t, webhook: {url: \"http://h/x\"}}]",
			func(c *Config) any { return c.History.Retention }, MaxHistoryRetention},
		{"a size at its maximum", "limits: {max_inflight_bytes: 1TiB}\ntriggers: [{name: t, webhook: {url: \"http://h/x\"}}]",
			func(c *Config) any { return c.Limits.MaxInflightBytes }, MaxInflightBytes},
		{"an integer at its maximum", "triggers: [{name: t, ordering: none, concurrency: 1024, webhook: {url: \"http://h/x\"}}]",
			func(c *Config) any { return c.Triggers[0].Concurrency }, MaxConcurrency},
		{"an integer at its maximum, in hex", "triggers: [{name: t, ordering: none, concurrency: 0x400, webhook: {url: \"http://h/x\"}}]",
			func(c *Config) any { return c.Triggers[0].Concurrency }, MaxConcurrency},
		{"a plus sign and a fraction", `triggers: [{name: t, webhook: {url: "http://h/x", timeout: "+1.5s"}}]`,
			func(c *Config) any { return c.Triggers[0].Webhook.Timeout }, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("b.yaml", []byte(tt.src), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(cfg); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
