package triggers

import (
	"errors"
	"math"
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

// TestStartAtTimestampRange: a start_at must be a time a MongoDB timestamp
// (32-bit seconds since 1970) holds, since the stream starts at one; a
// time outside it is refused at its position, never wrapped around (1925
// would otherwise open the stream in 2061).
func TestStartAtTimestampRange(t *testing.T) {
	for _, tc := range []struct {
		at      string
		problem string // "" = accepted
	}{
		{"1970-01-01T00:00:00Z", ""},
		{"2025-01-31T12:00:00Z", ""},
		{"2106-02-07T06:28:15Z", ""},
		{"2106-02-07T06:28:15.999Z", ""},
		{"1925-01-31T12:00:00Z", "c.yaml:4:15: start_at: 1925-01-31T12:00:00Z is outside the times a MongoDB timestamp holds, 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z (a change stream starts at a timestamp)"},
		{"1969-12-31T23:59:59.5Z", "c.yaml:4:15: start_at: 1969-12-31T23:59:59.5Z is outside the times a MongoDB timestamp holds, 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z (a change stream starts at a timestamp)"},
		{"2106-02-07T06:28:16Z", "c.yaml:4:15: start_at: 2106-02-07T06:28:16Z is outside the times a MongoDB timestamp holds, 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z (a change stream starts at a timestamp)"},
		{"2106-02-07T07:28:15+01:00", ""},
	} {
		t.Run(tc.at, func(t *testing.T) {
			src := "triggers:\n  - name: t1\n    database: shop\n    start_at: " + tc.at + "\n    webhook: { url: \"http://127.0.0.1:9999/h\" }\n"
			_, err := Parse("c.yaml", []byte(src), testEnv)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.problem {
				t.Errorf("problems %q, want %q", got, tc.problem)
			}
		})
	}
}

// TestOperationTime: the conversion the runner opens streams with refuses
// what a timestamp cannot hold instead of wrapping it.
func TestOperationTime(t *testing.T) {
	for _, tc := range []struct {
		at   time.Time
		want uint32
		err  bool
	}{
		{time.Unix(0, 0), 0, false},
		{time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC), 1738324800, false},
		{time.Unix(math.MaxUint32, 999_999_999), math.MaxUint32, false},
		{time.Unix(math.MaxUint32+1, 0), 0, true},
		{time.Unix(-1, 500_000_000), 0, true},
		{time.Date(1925, 1, 31, 12, 0, 0, 0, time.UTC), 0, true},
	} {
		ts, err := OperationTime(tc.at)
		if (err != nil) != tc.err || err != nil && !errors.Is(err, ErrOutsideTimestamps) || ts.T != tc.want || ts.I != 0 {
			t.Errorf("OperationTime(%s) = %v, %v; want T %d, error %v", tc.at.UTC().Format(time.RFC3339Nano), ts, err, tc.want, tc.err)
		}
	}
}
