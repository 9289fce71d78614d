package triggers

import (
	"testing"
	"time"
)

// TestStartAtAfter: a start_at is a planned start while its second is
// after now's (the oplog's resolution); now never is.
func TestStartAtAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	for _, tc := range []struct {
		name string
		s    StartAt
		want bool
	}{
		{"now", StartAt{Now: true}, false},
		{"past", StartAt{Time: now.Add(-time.Hour)}, false},
		{"same second", StartAt{Time: now.Truncate(time.Second)}, false},
		{"next second", StartAt{Time: now.Truncate(time.Second).Add(time.Second)}, true},
		{"future", StartAt{Time: now.Add(time.Hour)}, true},
	} {
		if got := tc.s.After(now); got != tc.want {
			t.Errorf("%s: After = %v, want %v", tc.name, got, tc.want)
		}
	}
}
