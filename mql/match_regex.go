package mql

import (
	"regexp"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// CodeLocation51108 is the code MongoDB reports for an unknown regular
// expression option letter.
const CodeLocation51108 int32 = 51108

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
	var flags strings.Builder
	extended := false
	for _, o := range options {
		switch o {
		case 'i', 'm', 's':
			if !strings.ContainsRune(flags.String(), o) {
				flags.WriteRune(o)
			}
		case 'x':
			extended = true
		case 'u':
		default:
			return nil, Errorf(CodeLocation51108, "", "invalid flag in regex options: %c", o)
		}
	}
	if strings.IndexByte(pattern, 0) >= 0 {
		return nil, badValue("Regular expression cannot contain an embedded null byte")
	}
	if extended {
		pattern = stripExtendedRegex(pattern)
	}
	src := pattern
	if flags.Len() > 0 {
		src = "(?" + flags.String() + ")" + pattern
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, Errorf(CodeLocation51091, "", "Regular expression is invalid: %v", err)
	}
	return re, nil
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
