package textcut

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUTF8(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exact", 5, "exact"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes: not split
		{"€€", 4, "€"}, // € is three bytes
		{"𝄞x", 3, ""},  // a four-byte rune at the start
		{"abc", 0, ""},
		{"abc", -1, ""},
	}
	for _, tt := range tests {
		if got := UTF8(tt.s, tt.n); got != tt.want {
			t.Errorf("UTF8(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestMarked(t *testing.T) {
	long := strings.Repeat("é", 1000) // 2000 bytes
	tests := []struct {
		name     string
		s        string
		n        int
		want     string // "" to check only the bound, the mark and the prefix
		wantMark string
	}{
		{name: "short", s: "short", n: 512, want: "short"},
		{name: "exact", s: "exact", n: 5, want: "exact"},
		{name: "ascii", s: strings.Repeat("a", 100), n: 40, want: strings.Repeat("a", 15) + "…[truncated: 100 bytes]"},
		{name: "utf-8", s: long, n: 512, wantMark: "…[truncated: 2000 bytes]"},
		{name: "smaller than the mark", s: long, n: 3, want: "…[truncated: 2000 bytes]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Marked(tt.s, tt.n)
			if tt.want != "" {
				if got != tt.want {
					t.Fatalf("Marked = %q, want %q", got, tt.want)
				}
				return
			}
			if len(got) > tt.n || !strings.HasSuffix(got, tt.wantMark) || !utf8.ValidString(got) ||
				!strings.HasPrefix(tt.s, strings.TrimSuffix(got, tt.wantMark)) {
				t.Fatalf("Marked = %q (%d bytes), want at most %d bytes of the start and %q", got, len(got), tt.n, tt.wantMark)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes
	tests := []struct {
		name, s, want string
	}{
		{"short", "msg_1", `"msg_1"`},
		{"escaped", "a\"b\x00", `"a\"b\x00"`},
		{"exact", strings.Repeat("a", QuoteLimit), `"` + strings.Repeat("a", QuoteLimit) + `"`},
		{"long", strings.Repeat("x", 100000), `"` + strings.Repeat("x", QuoteLimit) + `"… (100000 bytes)`},
		{"utf-8 not split", long, `"` + strings.Repeat("é", QuoteLimit/2) + `"… (300 bytes)`},
		{"invalid utf-8", "\xff" + strings.Repeat("x", QuoteLimit), `"\xff` + strings.Repeat("x", QuoteLimit-1) + `"… (201 bytes)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quote(tt.s); got != tt.want {
				t.Errorf("Quote = %.300q, want %.300q", got, tt.want)
			}
		})
	}
}

func TestTerminal(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, ünïcode, 日本", "plain text, ünïcode, 日本"},
		{"two\nlines\tand a tab", "two\nlines\tand a tab"},
		{"\x1b]0;PWNED\x07\x1b[31mRED\x1b[0m", `\x1b]0;PWNED\x07\x1b[31mRED\x1b[0m`},
		{"cr\rover", `cr\x0dover`},
		{"del\x7f c1\u009b[2J", `del\x7f c1\x9b[2J`},
		{"bidi \u202eevil\u2066", `bidi \u202eevil\u2066`},
	} {
		if got := Terminal(tc.in); got != tc.want {
			t.Errorf("Terminal(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
