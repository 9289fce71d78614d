package mql

import (
	"slices"
	"strings"
)

// collationLocales lists the locales MongoDB's collation accepts (the
// manual's "Collation Locales and Default Parameters", ICU locale IDs) with
// the variants each accepts as "<locale>@collation=<variant>".
var collationLocales = map[string][]string{
	"af": nil, "sq": nil, "am": nil, "ar": {"compat"}, "hy": nil, "as": nil,
	"az": {"search"}, "be": nil, "bn": {"traditional"}, "bs": {"search"},
	"bs_Cyrl": nil, "bg": nil, "my": nil, "ca": {"search"}, "chr": nil,
	"zh": {"big5han", "gb2312han", "unihan", "zhuyin"}, "zh_Hant": nil,
	"hr": {"search"}, "cs": {"search"}, "da": {"search"}, "nl": nil, "dz": nil,
	"en": nil, "en_US": nil, "en_US_POSIX": nil, "eo": nil, "et": nil, "ee": nil,
	"fo": nil, "fil": nil, "fi": {"search", "traditional"}, "fr": nil,
	"fr_CA": nil, "gl": {"search"}, "ka": nil,
	"de": {"search", "eor", "phonebook"}, "de_AT": {"phonebook"}, "el": nil,
	"gu": nil, "ha": nil, "haw": nil, "he": nil, "hi": nil, "hu": nil,
	"is": {"search"}, "ig": nil, "smn": {"search"}, "id": nil, "ga": nil,
	"it": nil, "ja": nil, "kl": {"search"}, "kn": {"traditional"}, "kk": nil,
	"km": nil, "kok": nil, "ko": {"search", "searchjl", "unihan"}, "ky": nil,
	"lkt": nil, "lo": nil, "lt": nil, "dsb": nil, "lb": nil, "mk": nil,
	"ms": nil, "ml": nil, "mt": nil, "mr": nil, "mn": nil, "ne": nil,
	"se": {"search"}, "nb": {"search"}, "nn": {"search"}, "or": nil, "om": nil,
	"ps": nil, "fa": nil, "fa_AF": nil, "pl": nil, "pt": nil, "pa": nil,
	"ro": nil, "ru": nil, "sr": nil, "sr_Latn": {"search"},
	"si": {"dictionary"}, "sk": {"search"}, "sl": nil,
	"es": {"search", "traditional"}, "sw": nil, "sv": {"search"}, "ta": nil,
	"te": nil, "th": nil, "bo": nil, "to": nil, "tr": {"search"}, "uk": nil,
	"hsb": nil, "ur": nil, "ug": nil, "vi": {"traditional"}, "wae": nil,
	"cy": nil, "yi": {"search"}, "yo": nil, "zu": nil,
}

// bcp47Variants maps ICU collation variant names to their BCP 47 "co"
// values where the two differ.
var bcp47Variants = map[string]string{
	"phonebook":   "phonebk",
	"traditional": "trad",
	"dictionary":  "dict",
	"gb2312han":   "gb2312",
}

// lookupLocale resolves a MongoDB (ICU) locale ID such as "en_US" or
// "de@collation=phonebook" into a BCP 47 language tag and the -u-
// keywords it implies ("co-phonebk", "va-posix"); known is false for a
// locale MongoDB refuses.
func lookupLocale(id string) (base string, keywords []string, known bool) {
	loc, variant, hasVariant := strings.Cut(id, "@")
	variants, ok := collationLocales[loc]
	if !ok {
		return "", nil, false
	}
	if hasVariant {
		v, ok := strings.CutPrefix(variant, "collation=")
		if !ok || !slices.Contains(variants, v) {
			return "", nil, false
		}
		if b, ok := bcp47Variants[v]; ok {
			v = b
		}
		keywords = append(keywords, "co-"+v)
	}
	if loc == "en_US_POSIX" {
		return "en-US", append(keywords, "va-posix"), true
	}
	return strings.ReplaceAll(loc, "_", "-"), keywords, true
}

// suggestLocale returns the accepted locale closest to an unknown one, as
// MongoDB suggests the locale ICU would have used ("en_us" → "en_US",
// "en_GB" → "en", "de@collation=x" → "de"), or "" when there is none.
func suggestLocale(id string) string {
	loc, _, _ := strings.Cut(id, "@")
	parts := strings.FieldsFunc(loc, func(r rune) bool { return r == '_' || r == '-' })
	for i, p := range parts {
		switch {
		case i == 0:
			parts[i] = strings.ToLower(p)
		case len(p) == 4:
			parts[i] = strings.ToUpper(p[:1]) + strings.ToLower(p[1:])
		default:
			parts[i] = strings.ToUpper(p)
		}
	}
	for n := len(parts); n > 0; n-- {
		cand := strings.Join(parts[:n], "_")
		if _, ok := collationLocales[cand]; ok {
			return cand
		}
	}
	return ""
}

// localeDefaults returns the default options of a locale: MongoDB's
// defaults, with the locale-specific ones of its "Collation Default
// Parameters" table (upper case first for Danish and Maltese, shifted
// variable weighting for Thai, backwards secondary weights for Canadian
// French).
func localeDefaults(id, loc string) collationSpec {
	s := collationSpec{
		locale:      id,
		caseFirst:   "off",
		strength:    3,
		alternate:   "non-ignorable",
		maxVariable: "punct",
	}
	switch loc {
	case "da", "mt":
		s.caseFirst = "upper"
	case "th":
		s.alternate = "shifted"
	case "fr-CA":
		s.backwards = true
	}
	return s
}
