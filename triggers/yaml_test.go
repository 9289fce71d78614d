package triggers

import (
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
