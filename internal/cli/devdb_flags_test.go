package cli

import (
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestDevdbOplogFlagValues: --oplog-max-bytes reads a size as the
// configuration does (the same text, the same number of bytes), and
// --oplog-max-age a Go duration.
func TestDevdbOplogFlagValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"65536", 65536}, {"512KiB", 512 << 10}, {"1MiB", 1 << 20}, {"256MiB", 256 << 20}, {"1GiB", 1 << 30},
		{"1_024KiB", 1 << 20}, {"100B", 100}, {"2TiB", 2 << 40},
	} {
		var f byteSizeFlag
		if err := f.Set(tc.in); err != nil || int64(f) != tc.want {
			t.Errorf("--oplog-max-bytes %s = %d, %v; want %d", tc.in, int64(f), err, tc.want)
		}
		if tc.want < 1<<10 || tc.want > 1<<40 {
			continue
		}
		// The configuration reads the same text as the same size.
		cfg, err := triggers.Parse("t.yaml", []byte("limits: { max_inflight_bytes: "+tc.in+" }\ntriggers:\n  - { name: a, database: d, webhook: { url: \"http://127.0.0.1:1/\" } }\n"), nil)
		if err != nil || cfg.Limits.MaxInflightBytes != tc.want {
			t.Errorf("the configuration reads %s as %v (%v), the flag as %d", tc.in, cfg, err, tc.want)
		} else if cfg.Limits.MaxInflightBytes != int64(f) {
			t.Errorf("%s: configuration %d, flag %d", tc.in, cfg.Limits.MaxInflightBytes, int64(f))
		}
	}
	var d durationFlag
	if err := d.Set("1h30m"); err != nil || time.Duration(d) != 90*time.Minute {
		t.Errorf("--oplog-max-age 1h30m = %v, %v", time.Duration(d), err)
	}
}
