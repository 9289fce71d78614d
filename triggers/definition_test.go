package triggers

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestWriteDefinitionTimeZone: a start_at parsed on a host whose local
// zone has its offset writes the same bytes as on a UTC host (the parse
// gives the first the *Location Local, the second a fixed zone), while
// another instant, or the same instant at another offset, writes others.
func TestWriteDefinitionTimeZone(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip(err)
	}
	const src = "triggers:\n  - name: orders\n    database: shop\n    collection: orders\n" +
		"    start_at: START\n    webhook: { url: \"https://api.example.com/hook\" }\n"
	write := func(t *testing.T, start string, local *time.Location) []byte {
		t.Helper()
		saved := time.Local
		defer func() { time.Local = saved }()
		time.Local = local
		cfg, err := Parse("t.yaml", []byte(strings.Replace(src, "START", start, 1)), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		WriteDefinition(&b, cfg.Triggers[0])
		return b.Bytes()
	}
	tests := []struct {
		name           string
		startA, startB string
		localA, localB *time.Location
		same           bool
	}{
		{name: "local zone has the offset", startA: "2026-01-15T09:00:00+01:00", startB: "2026-01-15T09:00:00+01:00",
			localA: paris, localB: time.UTC, same: true},
		{name: "summer time", startA: "2026-07-15T09:00:00+02:00", startB: "2026-07-15T09:00:00+02:00",
			localA: paris, localB: time.UTC, same: true},
		{name: "another instant", startA: "2026-01-15T09:00:00+01:00", startB: "2026-01-15T10:00:00+01:00",
			localA: paris, localB: paris},
		{name: "same instant, another offset", startA: "2026-01-15T09:00:00+01:00", startB: "2026-01-15T08:00:00Z",
			localA: time.UTC, localB: time.UTC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := write(t, tc.startA, tc.localA), write(t, tc.startB, tc.localB)
			if same := bytes.Equal(a, b); same != tc.same {
				t.Errorf("same bytes = %v, want %v", same, tc.same)
			}
		})
	}
}
