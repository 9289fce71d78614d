// Package textcut bounds text before it is kept, logged or shown: error
// messages, and what they quote of an endpoint's answers.
package textcut

import "strconv"

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
