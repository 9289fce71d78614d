package triggers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestMatchTimestamps: every plain scalar YAML resolves as a timestamp is
// a date in a match, whatever form of it is written; quoted, it is a
// string.
func TestMatchTimestamps(t *testing.T) {
	tests := []struct {
		yaml string
		want any
	}{
		{"2024-01-05", bson.NewDateTimeFromTime(time.Date(2024, 1, 5, 0, 0, 0, 0, time.UTC))},
		{"2024-1-5", bson.NewDateTimeFromTime(time.Date(2024, 1, 5, 0, 0, 0, 0, time.UTC))},
		{"2024-01-05T10:00:00Z", bson.NewDateTimeFromTime(time.Date(2024, 1, 5, 10, 0, 0, 0, time.UTC))},
		{"2024-01-05t10:00:00Z", bson.NewDateTimeFromTime(time.Date(2024, 1, 5, 10, 0, 0, 0, time.UTC))},
		{"2024-01-05 10:00:00", bson.NewDateTimeFromTime(time.Date(2024, 1, 5, 10, 0, 0, 0, time.UTC))},
		{"2001-12-14t21:59:43.10-05:00", bson.NewDateTimeFromTime(time.Date(2001, 12, 15, 2, 59, 43, 100e6, time.UTC))},
		{"'2024-1-5'", "2024-1-5"},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			src := "triggers: [{name: t, database: d, match: {at: {$gte: " + tt.yaml + "}}, webhook: {url: 'http://h/x'}}]"
			cfg, err := Parse("ts.yaml", []byte(src), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Triggers[0].Match[0].Value.(bson.D)[0].Value
			if got != tt.want {
				t.Errorf("match value %T %v, want %T %v", got, got, tt.want, tt.want)
			}
		})
	}
}

// TestReferenceAfterByteOrderMark: on the first line of a file that starts
// with a UTF-8 byte order mark, an unset variable's column counts from
// after the mark, as yaml.v3's columns do.
func TestReferenceAfterByteOrderMark(t *testing.T) {
	src := "\xef\xbb\xbfmongodb: {uri: \"${NOPE}\"}\ntriggers: [{name: t, webhook: {url: 'http://h/x'}}]\n"
	_, err := Parse("bom.yaml", []byte(src), nil)
	if want := "bom.yaml:1:17: environment variable NOPE is not set"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Parse = %v, want %q", err, want)
	}
}

// TestBreakingLine: a block collection's indentation error is found on the
// line that causes it, whether yaml.v3 names the collection's first line
// or (for a collection on the document's first line) the line itself; a
// problem the prefixes do not reproduce is not attributed to any line.
func TestBreakingLine(t *testing.T) {
	list := "triggers:\n  - name: a\n    database: shop\n  - name: b\n    database: shop\n   ordering: strict\n    enabled: true\n"
	top := "a: 1\nb:\n  c: 2\n d: 3\n"
	tests := []struct {
		name, data, problem string
		line                int
		breaking, start     int
		ok                  bool
	}{
		{"list, reported at its start", list, "did not find expected '-' indicator", 2, 6, 2, true},
		{"top mapping, reported at the line", top, "did not find expected key", 4, 4, 1, true},
		{"another problem", list, "did not find expected key", 2, 0, 0, false},
		{"line out of range", list, "did not find expected '-' indicator", 40, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			breaking, start, ok := breakingLine([]byte(tt.data), tt.problem, tt.line)
			if breaking != tt.breaking || start != tt.start || ok != tt.ok {
				t.Errorf("breakingLine = %d, %d, %v; want %d, %d, %v", breaking, start, ok, tt.breaking, tt.start, tt.ok)
			}
		})
	}
}

// TestSuggestLongInput: a long name (from a URL, say) is compared with the
// candidates in time bounded by theirs, and a suggestion stays the one the
// distance gives.
func TestSuggestLongInput(t *testing.T) {
	names := make([]string, 2000)
	for i := range names {
		names[i] = fmt.Sprintf("trigger_%04d", i)
	}
	long := strings.Repeat("x", 1<<20)
	if got := Suggest(long, names); got != "" {
		t.Errorf("Suggest(1 MiB name) = %q, want none", got)
	}
	if got := Suggest("trigger_0O42", names); got != "trigger_0042" {
		t.Errorf("Suggest(trigger_0O42) = %q, want trigger_0042", got)
	}
}
