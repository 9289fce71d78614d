package mql

import "testing"

// TestRegexSource checks the option handling shared by $regex filters and
// the $regexMatch family of expressions.
func TestRegexSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pattern, options string
		want                   string
		bad                    rune
	}{
		{"no options", "^a.c$", "", "^a.c$", 0},
		{"flags in order", "a", "mi", "(?mi)a", 0},
		{"repeated flag once", "a", "iis", "(?is)a", 0},
		{"u accepted", "a", "u", "a", 0},
		{"extended strips space and comments", "a b # note\nc", "x", "abc", 0},
		{"extended keeps escaped and class space", `a\ b[ ]`, "x", `a\ b[ ]`, 0},
		{"extended with flag", "a b", "xi", "(?i)ab", 0},
		{"unknown letter", "a", "iz", "", 'z'},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, bad := regexSource(tc.pattern, tc.options)
			if got != tc.want || bad != tc.bad {
				t.Fatalf("regexSource(%q, %q) = %q, %q; want %q, %q", tc.pattern, tc.options, got, bad, tc.want, tc.bad)
			}
		})
	}
}
