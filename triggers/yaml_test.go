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

// TestCoreSchemaNumbers: integers and floats are read by YAML 1.2's core
// schema wherever they are written (a field, match, project, payload, a
// ${VAR}'s value): a leading zero is decimal (010 is ten, 09 nine), 0o is
// octal and 0x hex.
func TestCoreSchemaNumbers(t *testing.T) {
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"N": "010", "ZIP": "01234"}[name]
		return v, ok
	}
	tests := []struct {
		name, trigger string
		got           func(*Trigger) any
		want          any
	}{
		{"concurrency with a leading zero", "concurrency: 010", func(t *Trigger) any { return t.Concurrency }, 10},
		{"concurrency 09", "concurrency: 09", func(t *Trigger) any { return t.Concurrency }, 9},
		{"concurrency in octal", "concurrency: 0o10", func(t *Trigger) any { return t.Concurrency }, 8},
		{"concurrency in hex", "concurrency: 0x10", func(t *Trigger) any { return t.Concurrency }, 16},
		{"concurrency with a plus sign", "concurrency: +12", func(t *Trigger) any { return t.Concurrency }, 12},
		{"concurrency from a variable", "concurrency: ${N}", func(t *Trigger) any { return t.Concurrency }, 10},
		{"concurrency tagged !!int", "concurrency: !!int 010", func(t *Trigger) any { return t.Concurrency }, 10},
		{"match on a leading zero", "match: {fullDocument.zip: 01234}", func(t *Trigger) any { return t.Match[0].Value }, int32(1234)},
		{"match on 09", "match: {fullDocument.n: 09}", func(t *Trigger) any { return t.Match[0].Value }, int32(9)},
		{"match on a variable", "match:\n      fullDocument.zip: ${ZIP}", func(t *Trigger) any { return t.Match[0].Value }, int32(1234)},
		{"match on a float with a leading zero", "match: {fullDocument.n: 010.5}", func(t *Trigger) any { return t.Match[0].Value }, 10.5},
		{"match on octal", "match: {fullDocument.mode: 0o777}", func(t *Trigger) any { return t.Match[0].Value }, int32(511)},
		{"match on a quoted leading zero", "match: {fullDocument.zip: '01234'}", func(t *Trigger) any { return t.Match[0].Value }, "01234"},
		{"match on a YAML 1.1 number, quoted", "match: {fullDocument.n: '1_000'}", func(t *Trigger) any { return t.Match[0].Value }, "1_000"},
		{"project with a leading zero", "project: {_id: 1, operationType: 1, code: {$literal: 0777}}",
			func(t *Trigger) any { return t.Project[2].Value.(bson.D)[0].Value }, int32(777)},
		{"payload constant with a leading zero", "webhook: {url: 'http://h/x', payload: {code: 0777}}",
			func(t *Trigger) any { return t.Webhook.PayloadSpec.(bson.D)[0].Value }, int32(777)},
		{"rate limit with a leading zero", "webhook: {url: 'http://h/x', rate_limit: {per_second: 010, burst: 020}}",
			func(t *Trigger) any { return *t.Webhook.RateLimit }, RateLimit{PerSecond: 10, Burst: 20}},
		{"rate limit in hex", "webhook: {url: 'http://h/x', rate_limit: {per_second: 0x10}}",
			func(t *Trigger) any { return t.Webhook.RateLimit.PerSecond }, 16.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "defaults: {webhook: {url: 'http://h/x'}}\ntriggers:\n  - name: t\n    database: d\n    ordering: none\n    " + tt.trigger + "\n"
			cfg, err := Parse("n.yaml", []byte(src), env)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(cfg.Triggers[0]); got != tt.want {
				t.Errorf("%s read as %T %v, want %T %v", tt.trigger, got, got, tt.want, tt.want)
			}
		})
	}
}

// TestYAML11NumbersAreNotNumbers: what yaml.v3 reads as a number by YAML
// 1.1's rules but the core schema does not (0b101, 1_000, 0X1F, -0x1F) is
// refused where a number is required, and in match, project and payload,
// where it would silently be a string, with the way to write it.
func TestYAML11NumbersAreNotNumbers(t *testing.T) {
	tests := []struct{ trigger, want string }{
		{"concurrency: 1_024", "n.yaml:6:18: concurrency: expected an integer, got a string (the configuration is read with YAML 1.2's core schema"},
		{"concurrency: 0b101", "n.yaml:6:18: concurrency: expected an integer, got a string (the configuration is read with YAML 1.2's core schema"},
		{"concurrency: 0X1F", "n.yaml:6:18: concurrency: expected an integer, got a string (the configuration is read with YAML 1.2's core schema"},
		{"concurrency: !!int 0b101", `n.yaml:6:18: concurrency: expected an integer such as 10, 0o17 or 0x1F, got "0b101"`},
		{"webhook: {url: 'http://h/x', rate_limit: {per_second: 1_000}}", "n.yaml:6:59: webhook.rate_limit.per_second: expected a number of requests per second above 0 and at most 1000000 (the configuration"},
		{"match: {fullDocument.n: 1_000}", `n.yaml:6:29: "1_000" is a string in YAML 1.2's core schema, not a number`},
		{"match: {fullDocument.n: {$gt: -0x1F}}", `n.yaml:6:35: "-0x1F" is a string in YAML 1.2's core schema, not a number`},
		{"webhook: {url: 'http://h/x', payload: {flags: 0b101}}", `n.yaml:6:51: "0b101" is a string in YAML 1.2's core schema, not a number`},
		{"match: {fullDocument.n: !!float 0x1p3}", `n.yaml:6:29: "0x1p3" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.trigger, func(t *testing.T) {
			src := "defaults: {webhook: {url: 'http://h/x'}}\ntriggers:\n  - name: t\n    database: d\n    ordering: none\n    " + tt.trigger + "\n"
			_, err := Parse("n.yaml", []byte(src), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse: %v\nwant an error with %q", err, tt.want)
			}
		})
	}
}
