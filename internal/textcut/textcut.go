// Package textcut bounds text before it is kept, logged or shown: error
// messages, and what they quote of an endpoint's answers.
package textcut

import (
	"strconv"
	"unicode/utf8"
)

// UTF8 returns s cut to at most n bytes (n ≥ 0) without splitting a UTF-8
// sequence: s itself when it is short enough. A cut string may end up to
// three bytes short of n.
func UTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && cut > n-4 && !runeStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// runeStart reports whether b starts a UTF-8 sequence (or is ASCII).
func runeStart(b byte) bool { return b&0xC0 != 0x80 }

// Marked returns s when it has at most n bytes; otherwise the start of s
// (cut as UTF8 cuts) followed by a mark that says it was cut and how long
// s was, "…[truncated: 8388630 bytes]", the whole at most n bytes (just
// the mark when n is too small to hold more).
func Marked(s string, n int) string {
	if len(s) <= n {
		return s
	}
	mark := "…[truncated: " + strconv.Itoa(len(s)) + " bytes]"
	return UTF8(s, n-len(mark)) + mark
}

// QuoteLimit is how many bytes of its input Quote keeps.
const QuoteLimit = 200

// Quote returns s quoted as strconv.Quote quotes it, for an error message
// or a page that names what a client sent (an id, a cursor, a query
// value): s whole when it has at most QuoteLimit bytes; otherwise its
// start (cut as UTF8 cuts) quoted, then "…" and how long s was,
// `"abc"… (100000 bytes)`. A client's input of any length is so shown in
// at most about 4*QuoteLimit+30 bytes (every byte escaped).
func Quote(s string) string {
	if len(s) <= QuoteLimit {
		return strconv.Quote(s)
	}
	return strconv.Quote(UTF8(s, QuoteLimit)) + "… (" + strconv.Itoa(len(s)) + " bytes)"
}

// Terminal returns s with what a terminal would act on rather than show
// written as escapes: control characters other than newline and tab (ESC
// starts the sequences that retitle a window, recolour or clear it), DEL,
// the C1 controls and the bidirectional overrides that reorder what is
// shown. For text another party chose (an endpoint's answer, a server's
// error, a certificate's names) printed to a terminal. s itself when it
// has none.
func Terminal(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	for _, r := range s {
		switch {
		case !unsafeRune(r):
			b = utf8.AppendRune(b, r)
		case r < 0x100:
			b = append(b, `\x`...)
			b = append(b, hexDigits[r>>4], hexDigits[r&0xF])
		default:
			b = append(b, `\u`...)
			b = append(b, hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
		}
	}
	return string(b)
}

const hexDigits = "0123456789abcdef"

// unsafeRune reports whether Terminal escapes r.
func unsafeRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20 || r == 0x7F || r >= 0x80 && r <= 0x9F:
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
