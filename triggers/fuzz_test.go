package triggers

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that any input yields a configuration or an error, never
// a panic, and that a rejected input always carries at least one problem.
func FuzzParse(f *testing.F) {
	for _, glob := range []string{"testdata/good/*.yaml", "testdata/bad/*.yaml", "../triggers.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("triggers: [{name: x, <<: {database: d}, webhook: {url: 'http://h'}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, testEnv)
		switch {
		case err == nil && cfg == nil:
			t.Fatal("nil config and nil error")
		case err != nil:
			ve, ok := err.(*ValidationError)
			if !ok || len(ve.Problems) == 0 {
				t.Fatalf("error %T with no problems: %v", err, err)
			}
		default:
			for _, tr := range cfg.Triggers {
				_ = tr.Pipeline()
				_ = tr.ChangeStreamOptions()
				if _, err := json.Marshal(tr); err != nil {
					t.Fatalf("marshal trigger: %v", err)
				}
			}
		}
	})
}

// TestParseBombs checks that alias and merge-key bombs are rejected
// instead of being expanded: expanded, the last anchor would be 2^40
// copies of the first, which no machine finishes, so a generous bound on
// the time (it takes well under a second) tells the two apart on a loaded
// machine too.
func TestParseBombs(t *testing.T) {
	// chain returns anchors x0 … x40, each made of two references to the
	// one before it.
	chain := func(first, item string) string {
		var b strings.Builder
		b.WriteString(first)
		for i := 1; i <= 40; i++ {
			fmt.Fprintf(&b, item, i, i, i-1, i-1)
		}
		return b.String()
	}
	tests := []struct{ name, src string }{
		{"merge bomb in defaults", strings.Replace(chain("x0: &x0 {database: d}\n", "x%d: &x%d {<<: [*x%d, *x%d]}\n"), "x40:", "defaults:", 1)},
		{"alias bomb in match", "a: &a\n" + indent(chain("x0: &x0 [1, 2]\n", "x%d: &x%d [*x%d, *x%d]\n")) +
			"triggers:\n  - name: t\n    database: d\n    match: {f: {$in: *x40}}\n    webhook: {url: 'http://h'}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			if _, err := Parse("bomb.yaml", []byte(tt.src), testEnv); err == nil {
				t.Fatal("bomb accepted")
			}
			if d, limit := time.Since(start), 30*time.Second*raceSlowdown; d > limit {
				t.Errorf("Parse took %v, more than %v: the bomb was expanded", d, limit)
			}
		})
	}
}

// TestParseHostileInputs checks that inputs with many keys, references or
// problems are parsed in linear time. Each input is parsed at two sizes,
// an eighth of n and n, and the larger may take at most hostileGrowth
// times the smaller's time: about 8 for a linear parse (up to 14 measured:
// the garbage collector's work grows with the heap), 64 for a quadratic
// one. A ratio of two sizes parsed by the same process, each the best of a
// few runs, holds on a loaded machine (and under the race detector), where
// a bound on the time itself did not; the time is the parsing thread's CPU
// time where it can be read (Linux), which other processes do not inflate,
// and a ratio over the bound is measured again, up to three rounds, before
// the test fails.
func TestParseHostileInputs(t *testing.T) {
	tests := []struct {
		name string
		n    int
		src  func(n int) string
	}{
		// Each reference is located in one pass over the scalar, not one
		// pass per reference.
		{"many unset variables", 100_000, func(n int) string {
			return "triggers: [{name: t, database: '" + strings.Repeat("${A}", n) + "', webhook: {url: 'http://h'}}]"
		}},
		// A key is checked against the earlier ones in one lookup, not a
		// scan of them all.
		{"many headers", 50_000, func(n int) string {
			return "triggers: [{name: t, webhook: {url: 'http://h', headers: {" + manyKeys("X-H", ": v", n) + "}}}]\nx: 1"
		}},
		{"many match fields", 50_000, func(n int) string {
			return "triggers: [{name: t, database: d, match: {" + manyKeys("f", ": 1", n) + "}, webhook: {url: 'http://h'}}]\nx: 1"
		}},
		// Each problem is located by a lookup in its mapping, not a scan.
		// What defaults gives every trigger counts once per trigger.
		{"defaults headers in many triggers", 20_000, func(n int) string {
			return "defaults: {webhook: {headers: {" + manyKeys("X-H", ": v", n) + "}}}\ntriggers: [" + manyTriggers(200) + "]"
		}},
		{"defaults retry_on in many triggers", 20_000, func(n int) string {
			return "defaults: {retry: {retry_on: [" + strings.Repeat("500, ", n) + "]}}\ntriggers: [" + manyTriggers(200) + "]"
		}},
		{"many payload problems", 40_000, func(n int) string {
			return "triggers: [{name: t, webhook: {url: 'http://h', payload: {" + manyKeys("f", ": {$concat: [1]}", n) + "}}}]"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := func(n, runs int) time.Duration {
				src := []byte(tt.src(n))
				best := time.Duration(math.MaxInt64)
				for range runs {
					var err error
					best = min(best, onThreadCPU(func() { _, err = Parse("hostile.yaml", src, testEnv) }))
					if err == nil {
						t.Fatalf("input of size %d accepted", n)
					}
				}
				return best
			}
			// A quadratic parse exceeds the bound in every round; a linear
			// one only when a round's small runs were all lucky and its large
			// runs all unlucky, so it gets three rounds.
			var small, large time.Duration
			for range 3 {
				small, large = parse(tt.n/8, 3), parse(tt.n, 2)
				// A floor keeps a tiny small run's timer noise from failing a
				// large one that still takes only milliseconds.
				if large <= hostileGrowth*max(small, 5*time.Millisecond) {
					return
				}
			}
			t.Errorf("Parse took %v of CPU at size %d and %v at %d: %.0f times as long for 8 times the input, more than %d (not linear)",
				small, tt.n/8, large, tt.n, float64(large)/float64(small), hostileGrowth)
		})
	}
}

// hostileGrowth bounds how many times longer TestParseHostileInputs' inputs
// may take at 8 times the size: 8 is linear, 64 quadratic.
const hostileGrowth = 32

// manyKeys returns n flow mapping entries, prefix0 suffix, prefix1 suffix, ...
func manyKeys(prefix, suffix string, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s%d%s", prefix, i, suffix)
	}
	return b.String()
}

// manyTriggers returns n minimal triggers as flow mappings, comma-separated.
func manyTriggers(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{name: t%d, webhook: {url: 'http://h/%d'}}", i, i)
	}
	return b.String()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

// TestLongValuesAreCut: a problem quotes at most the start of a value,
// however long the value is (a megabyte here), so that a hostile or
// mistaken file cannot make validate print megabytes.
func TestLongValuesAreCut(t *testing.T) {
	long := strings.Repeat("v", 1<<20)
	tests := []struct{ name, src string }{
		{"name", "triggers: [{name: " + long + ", webhook: {url: 'http://h/x'}}]"},
		{"collection", "triggers: [{name: t, database: d, collection: $" + long + ", webhook: {url: 'http://h/x'}}]"},
		{"unknown field", "triggers: [{name: t, " + long + ": 1, webhook: {url: 'http://h/x'}}]"},
		{"namespace hint", "triggers: [{name: t, namespace: " + long + ", webhook: {url: 'http://h/x'}}]"},
		{"enum", "triggers: [{name: t, ordering: " + long + ", webhook: {url: 'http://h/x'}}]"},
		{"operation", "triggers: [{name: t, operations: [" + long + "], webhook: {url: 'http://h/x'}}]"},
		{"duration", "triggers: [{name: t, webhook: {url: 'http://h/x', timeout: " + long + "}}]"},
		{"status rule", "triggers: [{name: t, retry: {retry_on: [" + long + "]}, webhook: {url: 'http://h/x'}}]"},
		{"header name", "triggers: [{name: t, webhook: {url: 'http://h/x', headers: {'" + long + " ': v}}}]"},
		{"regex", "triggers: [{name: t, match: {a: {$regex: '" + strings.Repeat("(", 4<<10) + "'}}, webhook: {url: 'http://h/x'}}]"},
		{"operator", "triggers: [{name: t, match: {a: {$" + long + ": 1}}, webhook: {url: 'http://h/x'}}]"},
		{"variable", "triggers: [{name: t, database: '${" + long + "}', webhook: {url: 'http://h/x'}}]"},
		{"tag", "triggers: [{name: t, database: !" + long + " d, webhook: {url: 'http://h/x'}}]"},
		{"anchor", "triggers: [{name: t, database: *" + long + ", webhook: {url: 'http://h/x'}}]"},
		{"deny", "network: {deny: [" + long + "]}\ntriggers: [{name: t, webhook: {url: 'http://h/x'}}]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("long.yaml", []byte(tt.src), testEnv)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if len(p.Message) > 2<<10 {
					t.Errorf("%s: a message of %d bytes: %.300s…", p.Pos, len(p.Message), p.Message)
				}
			}
		})
	}
}
