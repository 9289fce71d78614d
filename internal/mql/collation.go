package mql

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/text/collate"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"

	"github.com/changehook/changehook/internal/mongoerr"
)

// CollationVersion is the collator version MongoDB 6.0 reports in a
// collation document (the version of the ICU library it is built with). A
// collation document naming another version is refused with
// IncompatibleCollationVersion (174), as MongoDB refuses it.
const CollationVersion = "57.1"

// Collation is a validated collation document: language-aware string
// comparison for one locale and set of options. A nil *Collation is the
// "simple" binary comparison, which every comparison function of this
// package uses when given nil. A Collation is immutable and safe for
// concurrent use; ParseCollation returns one shared instance per distinct
// specification.
//
// Strings compare by their collation keys (Key): a byte string computed by
// golang.org/x/text/collate for the locale and strength, so that two strings
// are equal under the collation exactly when their keys are equal. MongoDB's
// options map onto x/text as follows: strength 1-4 and alternate "shifted"
// are x/text's levels and variable weighting; numericOrdering and backwards
// are x/text's options; strength 5 (identical) breaks ties by the NFD code
// points; caseLevel adds a level of letter case (upper or lower) after the
// compared levels; caseFirst "upper" inverts the case order at the case and
// tertiary levels ("lower" is the locale's default order, as "off" is);
// normalization has no effect because x/text always normalizes; maxVariable
// "space" orders as "punct" (x/text fixes the variable top). The order of
// individual strings can differ from ICU's where x/text's tables differ.
type Collation struct {
	spec collationSpec
	// doc is the full collation document (every field, as listCollections
	// and listIndexes show it).
	doc bson.D
	// tag is the language tag the x/text collator is made for.
	tag language.Tag
	// pool holds x/text collators with their key buffers: a collate.Collator
	// is not safe for concurrent use.
	pool sync.Pool
}

// collationSpec is the parsed collation document.
type collationSpec struct {
	locale          string
	caseLevel       bool
	caseFirst       string // "upper", "lower" or "off"
	strength        int
	numericOrdering bool
	alternate       string // "non-ignorable" or "shifted"
	maxVariable     string // "punct" or "space"
	normalization   bool
	backwards       bool
}

// collator is one pooled x/text collator and its key buffer.
type collator struct {
	c   *collate.Collator
	buf collate.Buffer
}

// collationCache shares parsed collations between commands, keyed by the
// canonical specification; it is bounded (cleared when full).
var collationCache = struct {
	sync.Mutex
	m map[collationSpec]*Collation
}{m: map[collationSpec]*Collation{}}

const collationCacheMax = 256

// ParseCollation validates a collation document as MongoDB does and returns
// its collation, or nil for the simple binary collation ({locale:
// "simple"}). Errors are MongoDB's: a missing locale is NoSuchKey (4); a
// field of the wrong type TypeMismatch (14); an unknown locale BadValue (2)
// "Field 'locale' is invalid in: …" (with a suggestion when one is close);
// an out-of-range strength, unknown caseFirst, alternate or maxVariable
// value, an unknown field, or other fields beside locale "simple"
// FailedToParse (9); backwards with strength 1 or caseFirst without
// caseLevel at strength 1 or 2 BadValue (2); another version
// IncompatibleCollationVersion (174).
func ParseCollation(doc bson.D) (*Collation, error) {
	var locale string
	ok := false
	for _, e := range doc {
		if e.Key == "locale" {
			s, isStr := e.Value.(string)
			if !isStr {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "\"locale\" had the wrong type. Expected string, found %s", TypeName(e.Value))
			}
			locale, ok = s, true
			break
		}
	}
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.NoSuchKey, "Missing expected field \"locale\"")
	}
	if strings.IndexByte(locale, 0) >= 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "Field 'locale' cannot contain null byte. Collation spec: %s", FormatValue(doc))
	}
	if locale == "simple" {
		if len(doc) > 1 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "If locale=simple, no other fields should be present in: %s", FormatValue(doc))
		}
		return nil, nil
	}
	if locale == "" {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "Field 'locale' cannot be the empty string in: %s", FormatValue(doc))
	}
	base, keywords, known := lookupLocale(locale)
	if !known {
		msg := "Field 'locale' is invalid in: " + FormatValue(doc)
		if s := suggestLocale(locale); s != "" {
			msg += ". Did you mean '" + s + "'?"
		}
		return nil, mongoerr.Errorf(mongoerr.BadValue, "%s", msg)
	}
	spec := localeDefaults(locale, base)
	parsed := 1
	if v, found, err := collationBool(doc, "caseLevel"); err != nil {
		return nil, err
	} else if found {
		spec.caseLevel, parsed = v, parsed+1
	}
	if v, found, err := collationString(doc, "caseFirst"); err != nil {
		return nil, err
	} else if found {
		if v != "upper" && v != "lower" && v != "off" {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Field 'caseFirst' must be 'upper', 'lower', or 'off'. Got: %s", v)
		}
		spec.caseFirst, parsed = v, parsed+1
	}
	if v, found, err := collationInt(doc, "strength"); err != nil {
		return nil, err
	} else if found {
		if v < 1 || v > 5 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Field 'strength' must be an integer 1 through 5. Got: %d", v)
		}
		spec.strength, parsed = int(v), parsed+1
	}
	if v, found, err := collationBool(doc, "numericOrdering"); err != nil {
		return nil, err
	} else if found {
		spec.numericOrdering, parsed = v, parsed+1
	}
	if v, found, err := collationString(doc, "alternate"); err != nil {
		return nil, err
	} else if found {
		if v != "non-ignorable" && v != "shifted" {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Field 'alternate' must be 'non-ignorable' or 'shifted'. Got: %s", v)
		}
		spec.alternate, parsed = v, parsed+1
	}
	if v, found, err := collationString(doc, "maxVariable"); err != nil {
		return nil, err
	} else if found {
		if v != "punct" && v != "space" {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Field 'maxVariable' must be 'punct' or 'space'. Got: %s", v)
		}
		spec.maxVariable, parsed = v, parsed+1
	}
	if v, found, err := collationBool(doc, "normalization"); err != nil {
		return nil, err
	} else if found {
		spec.normalization, parsed = v, parsed+1
	}
	if v, found, err := collationBool(doc, "backwards"); err != nil {
		return nil, err
	} else if found {
		spec.backwards, parsed = v, parsed+1
	}
	if v, found, err := collationString(doc, "version"); err != nil {
		return nil, err
	} else if found {
		if v != CollationVersion {
			return nil, mongoerr.Errorf(mongoerr.IncompatibleCollationVersion, "Requested collation version %s but the only available collator version was %s. Requested collation spec: %s", v, CollationVersion, FormatValue(doc))
		}
		parsed++
	}
	if parsed < len(doc) {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Collation spec contains unknown field. Collation spec: %s", FormatValue(doc))
	}
	if spec.backwards && spec.strength == 1 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "'backwards' is invalid with 'strength' of 1 in: %s", FormatValue(spec.document()))
	}
	if spec.caseFirst != "off" && !spec.caseLevel && spec.strength <= 2 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "'caseFirst' is invalid unless 'caseLevel' is on or 'strength' is greater than 2 in: %s", FormatValue(spec.document()))
	}
	return cachedCollation(spec, base, keywords), nil
}

// cachedCollation returns the shared Collation for spec, creating it.
func cachedCollation(spec collationSpec, base string, keywords []string) *Collation {
	collationCache.Lock()
	defer collationCache.Unlock()
	if c, ok := collationCache.m[spec]; ok {
		return c
	}
	if len(collationCache.m) >= collationCacheMax {
		clear(collationCache.m)
	}
	c := &Collation{spec: spec, doc: spec.document(), tag: spec.languageTag(base, keywords)}
	c.pool.New = func() any {
		return &collator{c: collate.New(c.tag)}
	}
	collationCache.m[spec] = c
	return c
}

// document renders the specification with every field, in MongoDB's order.
func (s collationSpec) document() bson.D {
	return bson.D{
		{Key: "locale", Value: s.locale},
		{Key: "caseLevel", Value: s.caseLevel},
		{Key: "caseFirst", Value: s.caseFirst},
		{Key: "strength", Value: int32(s.strength)},
		{Key: "numericOrdering", Value: s.numericOrdering},
		{Key: "alternate", Value: s.alternate},
		{Key: "maxVariable", Value: s.maxVariable},
		{Key: "normalization", Value: s.normalization},
		{Key: "backwards", Value: s.backwards},
		{Key: "version", Value: CollationVersion},
	}
}

// languageTag builds the BCP 47 tag (with -u- collation keywords) that
// configures x/text's collator for the specification. Case handling and
// the identical level are not x/text options; Key adds them.
func (s collationSpec) languageTag(base string, keywords []string) language.Tag {
	kw := append([]string(nil), keywords...)
	if s.alternate == "shifted" {
		kw = append(kw, "ka-shifted")
	}
	if s.backwards {
		kw = append(kw, "kb-true")
	}
	if s.numericOrdering {
		kw = append(kw, "kn-true")
	}
	// Strength 5 is level 4 plus the identical level Key appends itself.
	kw = append(kw, "ks-level"+strconv.Itoa(min(s.strength, 4)))
	slices.Sort(kw)
	t, err := language.Parse(base + "-u-" + strings.Join(kw, "-"))
	if err != nil {
		// Every base and keyword comes from the locale table, so this is
		// unreachable; fall back to the bare language rather than fail.
		return language.Make(base)
	}
	return t
}

// Document returns the full collation document (every option, with the
// locale's defaults filled in), as listCollections and listIndexes show a
// collection's or an index's collation. It returns {locale: "simple"} for
// the nil (simple) collation.
func (c *Collation) Document() bson.D {
	if c == nil {
		return bson.D{{Key: "locale", Value: "simple"}}
	}
	return append(bson.D(nil), c.doc...)
}

// SameCollation reports whether a and b compare strings identically
// (both simple, or the same specification): an index can serve a query
// only when its collation is the query's.
func SameCollation(a, b *Collation) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.spec == b.spec
}

// Key returns the collation key of s: two strings compare under c as
// bytes.Compare orders their keys. For the nil (simple) collation the key
// is s itself.
func (c *Collation) Key(s string) []byte {
	if c == nil {
		return []byte(s)
	}
	return c.AppendKey(nil, s)
}

// AppendKey appends the collation key of s (see Key) to dst.
func (c *Collation) AppendKey(dst []byte, s string) []byte {
	if c == nil {
		return append(dst, s...)
	}
	in := s
	if c.spec.caseFirst == "upper" {
		in = swapCase(s)
	}
	col := c.pool.Get().(*collator)
	col.buf.Reset()
	dst = append(dst, col.c.KeyFromString(&col.buf, in)...)
	c.pool.Put(col)
	if c.spec.caseLevel && c.spec.strength <= 2 {
		dst = append(dst, 0, 0)
		dst = appendCaseLevel(dst, s, c.spec.caseFirst == "upper")
	}
	if c.spec.strength == 5 {
		dst = append(dst, 0, 0)
		dst = append(dst, norm.NFD.String(s)...)
	}
	return dst
}

// CompareStrings compares two strings under c (bytewise for nil) and
// returns -1, 0 or +1.
func (c *Collation) CompareStrings(a, b string) int {
	if c == nil {
		return strings.Compare(a, b)
	}
	if a == b {
		return 0
	}
	var ka, kb [64]byte
	return bytes.Compare(c.AppendKey(ka[:0], a), c.AppendKey(kb[:0], b))
}

// appendCaseLevel appends one byte per cased letter of s: 1 for the case
// that sorts first (lower, or upper with upperFirst) and 2 for the other.
func appendCaseLevel(dst []byte, s string, upperFirst bool) []byte {
	for _, r := range s {
		switch {
		case unicode.IsLower(r):
			if upperFirst {
				dst = append(dst, 2)
			} else {
				dst = append(dst, 1)
			}
		case unicode.IsUpper(r), unicode.IsTitle(r):
			if upperFirst {
				dst = append(dst, 1)
			} else {
				dst = append(dst, 2)
			}
		}
	}
	return dst
}

// swapCase swaps the case of every cased letter, which inverts the
// tertiary order of case variants while leaving the other levels as they
// are (caseFirst "upper").
func swapCase(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case unicode.IsLower(r):
			return unicode.ToUpper(r)
		case unicode.IsUpper(r):
			return unicode.ToLower(r)
		}
		return r
	}, s)
}

// collationBool extracts an optional boolean field of a collation document.
func collationBool(doc bson.D, name string) (v, found bool, err error) {
	for _, e := range doc {
		if e.Key != name {
			continue
		}
		b, ok := e.Value.(bool)
		if !ok {
			return false, false, mongoerr.Errorf(mongoerr.TypeMismatch, "%q had the wrong type. Expected bool, found %s", name, TypeName(e.Value))
		}
		return b, true, nil
	}
	return false, false, nil
}

// collationString extracts an optional string field of a collation document.
func collationString(doc bson.D, name string) (v string, found bool, err error) {
	for _, e := range doc {
		if e.Key != name {
			continue
		}
		s, ok := e.Value.(string)
		if !ok {
			return "", false, mongoerr.Errorf(mongoerr.TypeMismatch, "%q had the wrong type. Expected string, found %s", name, TypeName(e.Value))
		}
		return s, true, nil
	}
	return "", false, nil
}

// collationInt extracts an optional integral number field of a collation
// document (any numeric type holding an integer, as bsonExtractIntegerField
// accepts).
func collationInt(doc bson.D, name string) (v int64, found bool, err error) {
	for _, e := range doc {
		if e.Key != name {
			continue
		}
		switch TypeNumber(e.Value) {
		case 1, 16, 18, 19:
		default:
			return 0, false, mongoerr.Errorf(mongoerr.TypeMismatch, "Expected field %q to have numeric type, but found %s", name, TypeName(e.Value))
		}
		f, _ := ToFloat64(e.Value)
		i, ok := ToInt64(e.Value)
		if !ok || math.Trunc(f) != f || float64(i) != f {
			return 0, false, mongoerr.Errorf(mongoerr.BadValue, "Expected field %q to have a value exactly representable as a 64-bit integer, but found %s: %s", name, name, FormatValue(e.Value))
		}
		return i, true, nil
	}
	return 0, false, nil
}
