package mql

import (
	"bytes"
	"regexp"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// regexMatch implements $regex and regex values in filters: strings and
// symbols match by regular-expression search, and a stored regex matches
// when its pattern and options equal the query's.
type regexMatch struct {
	pattern, options string
	re               *regexp.Regexp
}

// newRegexMatch compiles pattern with MongoDB's options: i (case
// insensitive), m (^ and $ match at line breaks), s (. matches newline),
// x (extended: unescaped whitespace and #-comments are ignored) and u
// (accepted; matching is always UTF-8). Go's RE2 syntax differs from PCRE
// in backreferences and lookaround, which fail to compile here.
func newRegexMatch(pattern, options string) (*regexMatch, error) {
	re, err := compileQueryRegex(pattern, options)
	if err != nil {
		return nil, err
	}
	return &regexMatch{pattern: pattern, options: options, re: re}, nil
}

// compileQueryRegex compiles a MongoDB regular expression with its options.
func compileQueryRegex(pattern, options string) (*regexp.Regexp, error) {
	src, bad := regexSource(pattern, options)
	if bad != 0 {
		return nil, mongoerr.Errorf(mongoerr.RegexBadOption, "invalid flag in regex options: %c", bad)
	}
	if strings.IndexByte(pattern, 0) >= 0 {
		return nil, badValue("Regular expression cannot contain an embedded null byte")
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.RegexInvalid, "Regular expression is invalid: %v", err)
	}
	return re, nil
}

// regexSource translates a MongoDB pattern and its option letters into Go
// regexp source, for filters ($regex) and expressions ($regexMatch, ...)
// alike: i, m and s become one inline flag group, x strips extended-mode
// whitespace and comments, u is accepted (matching is always UTF-8). bad is
// the first unknown option letter, 0 when every letter is known; callers
// report it with their own error code.
func regexSource(pattern, options string) (src string, bad rune) {
	var flags []byte
	extended := false
	for _, o := range options {
		switch o {
		case 'i', 'm', 's':
			if bytes.IndexByte(flags, byte(o)) < 0 {
				flags = append(flags, byte(o))
			}
		case 'x':
			extended = true
		case 'u':
		default:
			return "", o
		}
	}
	if extended {
		pattern = stripExtendedRegex(pattern)
	}
	if len(flags) == 0 {
		return pattern, 0
	}
	return "(?" + string(flags) + ")" + pattern, 0
}

// stripExtendedRegex removes the whitespace and #-comments that PCRE's extended
// mode ignores: outside character classes and not escaped.
func stripExtendedRegex(p string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			b.WriteByte(c)
			b.WriteByte(p[i+1])
			i++
			continue
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			continue
		case c == '#':
			for i < len(p) && p[i] != '\n' {
				i++
			}
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (r *regexMatch) test(v any) bool {
	switch x := v.(type) {
	case string:
		return r.re.MatchString(x)
	case bson.Symbol:
		return r.re.MatchString(string(x))
	case bson.Regex:
		return x.Pattern == r.pattern && x.Options == r.options
	}
	return false
}
