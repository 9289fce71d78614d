package triggers

import (
	"errors"
	"slices"
	"testing"
)

// TestBatchMaxBytesOverInflight: a batch.max_bytes above the trigger's
// max_inflight_bytes is reported at the trigger's own max_bytes when it
// sets one; otherwise (from defaults, or the built-in default) at the
// trigger, naming it, since the defaults line alone would not say which
// of many triggers to fix.
func TestBatchMaxBytesOverInflight(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{"from defaults", `defaults:
  batch: { max_events: 10, max_bytes: 2MiB }
triggers:
  - name: t1
    database: shop
    webhook: { url: "http://127.0.0.1:9999/h" }
  - name: small
    database: shop
    max_inflight_bytes: 1MiB
    webhook: { url: "http://127.0.0.1:9999/h" }
`, []string{`c.yaml:7:5: batch.max_bytes: 2097152 bytes (from defaults) is more than trigger "small"'s max_inflight_bytes (1048576): a batch could never fill; lower batch.max_bytes or raise max_inflight_bytes`}},
		{"max_events own, max_bytes from defaults", `defaults:
  batch: { max_bytes: 2MiB }
triggers:
  - name: small
    database: shop
    max_inflight_bytes: 1MiB
    webhook: { url: "http://127.0.0.1:9999/h" }
    batch: { max_events: 10 }
`, []string{`c.yaml:4:5: batch.max_bytes: 2097152 bytes (from defaults) is more than trigger "small"'s max_inflight_bytes (1048576): a batch could never fill; lower batch.max_bytes or raise max_inflight_bytes`}},
		{"own max_bytes", `defaults:
  batch: { max_events: 10, max_bytes: 512KiB }
triggers:
  - name: small
    database: shop
    max_inflight_bytes: 1MiB
    webhook: { url: "http://127.0.0.1:9999/h" }
    batch: { max_bytes: 2MiB }
`, []string{`c.yaml:8:25: batch.max_bytes: 2097152 bytes is more than the trigger's max_inflight_bytes (1048576): a batch could never fill; lower batch.max_bytes or raise max_inflight_bytes`}},
		{"built-in default", `triggers:
  - name: small
    database: shop
    max_inflight_bytes: 512KiB
    webhook: { url: "http://127.0.0.1:9999/h" }
    batch: { max_events: 10 }
`, []string{`c.yaml:2:5: batch.max_bytes: 1048576 bytes (default) is more than trigger "small"'s max_inflight_bytes (524288): a batch could never fill; lower batch.max_bytes or raise max_inflight_bytes`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.src), testEnv)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
