package triggers

// Numbers as YAML 1.2's core schema reads them. yaml.v3 resolves plain
// scalars with YAML 1.1's rules too: 010 is the octal 8, 0b101 and 1_000
// are integers, 09 is a float. The configuration follows the core schema,
// so every plain scalar is re-resolved here (coreTag) and every integer and
// float is read by parseCoreInt and parseCoreFloat.

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

var (
	// coreDecimalRE, coreOctalRE and coreHexRE are the core schema's
	// integers: 010 is ten, 0o10 eight and 0x10 sixteen.
	coreDecimalRE = regexp.MustCompile(`^[-+]?[0-9]+$`)
	coreOctalRE   = regexp.MustCompile(`^0o[0-7]+$`)
	coreHexRE     = regexp.MustCompile(`^0x[0-9a-fA-F]+$`)
	// coreFloatRE is the core schema's float, besides infinities and NaN.
	coreFloatRE = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)
)

// errNotCoreNumber: the text is not a number of the core schema.
var errNotCoreNumber = errors.New("not a number")

// parseCoreInt reads an integer of YAML 1.2's core schema: decimal digits
// with an optional sign (a leading zero changes nothing: 010 is ten), 0o
// and octal digits, or 0x and hex digits. It returns errNotCoreNumber for
// any other text (0b101, 1_000, 0X1F, -0x1F) and an error wrapping
// strconv.ErrRange for an integer that does not fit 64 bits.
func parseCoreInt(s string) (int64, error) {
	var (
		n   int64
		err error
	)
	switch {
	case coreDecimalRE.MatchString(s):
		n, err = strconv.ParseInt(s, 10, 64)
	case coreOctalRE.MatchString(s):
		n, err = strconv.ParseInt(s[2:], 8, 64)
	case coreHexRE.MatchString(s):
		n, err = strconv.ParseInt(s[2:], 16, 64)
	default:
		return 0, fmt.Errorf("read integer %s: %w", s, errNotCoreNumber)
	}
	if err != nil {
		return 0, fmt.Errorf("read integer %s: %w", s, strconv.ErrRange)
	}
	return n, nil
}

// parseCoreFloat reads a float of YAML 1.2's core schema: a decimal
// number with an optional fraction and exponent, .inf, -.inf or .nan (in
// the core schema's three spellings each). It returns errNotCoreNumber for
// any other text (1_000.5, 0x1p3).
func parseCoreFloat(s string) (float64, error) {
	switch s {
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return math.Inf(1), nil
	case "-.inf", "-.Inf", "-.INF":
		return math.Inf(-1), nil
	case ".nan", ".NaN", ".NAN":
		return math.NaN(), nil
	}
	if !coreFloatRE.MatchString(s) {
		return 0, fmt.Errorf("read number %s: %w", s, errNotCoreNumber)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("read number %s: %w", s, err)
	}
	return f, nil
}

// coreTag returns the core schema's tag for a plain scalar that yaml.v3
// resolved to tag: !!int and !!float for the core schema's numbers only
// (09, a float to yaml.v3, is !!int; so is an octal or hex integer too
// large for yaml.v3), !!str for the other texts yaml.v3 reads as numbers
// (0b101, 1_000, 0X1F, -0o7). The other tags (null, bool, timestamp,
// merge) are kept.
func coreTag(tag, value string) string {
	switch tag {
	case "!!int", "!!float", "!!str":
	default:
		return tag
	}
	if coreDecimalRE.MatchString(value) || coreOctalRE.MatchString(value) || coreHexRE.MatchString(value) {
		return "!!int"
	}
	if _, err := parseCoreFloat(value); err == nil {
		return "!!float"
	}
	return "!!str"
}

// resolveCore is the core schema's tag for the plain scalar text value.
func resolveCore(value string) string {
	return coreTag((&yaml.Node{Kind: yaml.ScalarNode, Value: value}).ShortTag(), value)
}

// yaml11Number reports whether the plain text s is a number to YAML 1.1
// (and to yaml.v3) but a string to the core schema: 0b101, 1_000, 0X1F.
func yaml11Number(s string) bool {
	tag := (&yaml.Node{Kind: yaml.ScalarNode, Value: s}).ShortTag()
	return (tag == "!!int" || tag == "!!float") && coreTag(tag, s) == "!!str"
}

// notCoreNumberHint explains, for a plain scalar v read where a number is
// required, that YAML 1.1's spellings are strings here; "" for any other v.
func notCoreNumberHint(v *yaml.Node) string {
	if v.Kind != yaml.ScalarNode || v.Style != 0 || !yaml11Number(v.Value) {
		return ""
	}
	return " (the configuration is read with YAML 1.2's core schema: an integer is written 1024, 0o17 or 0x1F, " +
		"without digit separators or 0b; 1_024, 0b101 and 0X1F are strings)"
}

// coreNumber returns the value of a scalar tagged !!int or !!float, read
// by the core schema; ok is false for any other node.
func coreNumber(v *yaml.Node) (n float64, ok bool) {
	if v.Kind != yaml.ScalarNode {
		return 0, false
	}
	var err error
	switch v.ShortTag() {
	case "!!int":
		var i int64
		i, err = parseCoreInt(v.Value)
		n = float64(i)
	case "!!float":
		n, err = parseCoreFloat(v.Value)
	default:
		return 0, false
	}
	return n, err == nil
}
