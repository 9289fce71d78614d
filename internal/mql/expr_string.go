package mql

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// stringOperators is the table of string operators.
func stringOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$concat":       fixedOp(0, -1, evalConcat),
		"$toUpper":      unaryOp(evalCase),
		"$toLower":      unaryOp(evalCase),
		"$substr":       namedOp(3, 3, evalSubstrBytes),
		"$substrBytes":  namedOp(3, 3, evalSubstrBytes),
		"$substrCP":     fixedOp(3, 3, evalSubstrCP),
		"$strLenBytes":  unaryOp(evalStrLen),
		"$strLenCP":     unaryOp(evalStrLen),
		"$split":        fixedOp(2, 2, evalSplit),
		"$trim":         compileTrim,
		"$ltrim":        compileTrim,
		"$rtrim":        compileTrim,
		"$indexOfBytes": namedOp(2, 4, evalIndexOf),
		"$indexOfCP":    namedOp(2, 4, evalIndexOf),
		"$strcasecmp":   fixedOp(2, 2, evalStrcasecmp),
		"$regexMatch":   compileRegex,
		"$regexFind":    compileRegex,
		"$regexFindAll": compileRegex,
		"$replaceOne":   compileReplace,
		"$replaceAll":   compileReplace,
	}
}

// aggFormatDouble renders a double as $toString / $convert do: the
// shortest round-trip digits, fixed notation for exponents in [-4, 16),
// "NaN", "Infinity", "-Infinity" and "-0".
func aggFormatDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0 && math.Signbit(f):
		return "-0"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	if exp >= -4 && exp < 16 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	return fmt.Sprintf("%se%s%02d", mant, sign, exp)
}

// aggFormatDoubleG renders a double like C's "%g" (six significant
// digits), which MongoDB uses when coercing to a string in $toUpper,
// $toLower, $substrBytes and $strcasecmp.
func aggFormatDoubleG(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(f, 'e', 5, 64)
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	if exp < -4 || exp >= 6 {
		if strings.Contains(mant, ".") {
			mant = strings.TrimRight(strings.TrimRight(mant, "0"), ".")
		}
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, exp)
	}
	out := strconv.FormatFloat(f, 'f', 5-exp, 64)
	if strings.Contains(out, ".") {
		out = strings.TrimRight(strings.TrimRight(out, "0"), ".")
	}
	return out
}

// aggCoerceString converts v to a string the way MongoDB's string
// coercion does (null and missing are ""), or fails with code 16007.
func aggCoerceString(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bson.Symbol:
		return string(t), nil
	case bson.JavaScript:
		return string(t), nil
	case float64:
		return aggFormatDoubleG(t), nil
	case int32:
		return strconv.FormatInt(int64(t), 10), nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	case bson.Decimal128:
		return t.String(), nil
	case bson.DateTime:
		return aggISODate(t), nil
	case bson.Timestamp:
		return aggISODate(bson.DateTime(int64(t.T) * 1000))[:19] + ":" + strconv.FormatUint(uint64(t.I), 10), nil
	}
	if aggNullish(v) {
		return "", nil
	}
	return "", mongoerr.Errorf(mongoerr.ConvertToStringFailed, "can't convert from BSON type %s to String", TypeName(v))
}

// evalConcat implements $concat: strings only; null or missing yields null.
func evalConcat(_ *evalCtx, vals []any) (any, error) {
	var b strings.Builder
	null := false
	for _, v := range vals {
		if aggNullish(v) {
			null = true
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.ConcatNotString, "$concat only supports strings, not %s", TypeName(v))
		}
		if b.Len()+len(s) > aggMaxValueBytes {
			return nil, aggTooLarge("$concat")
		}
		b.WriteString(s)
	}
	if null {
		return nil, nil
	}
	return b.String(), nil
}

// evalCase implements $toUpper / $toLower (ASCII case mapping, like
// MongoDB).
func evalCase(name string, v any) (any, error) {
	s, err := aggCoerceString(v)
	if err != nil {
		return nil, err
	}
	b := []byte(s)
	for i, c := range b {
		if name == "$toUpper" && c >= 'a' && c <= 'z' {
			b[i] = c - 32
		} else if name == "$toLower" && c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b), nil
}

// evalSubstrBytes implements $substrBytes (and its alias $substr).
func evalSubstrBytes(name string, vals []any) (any, error) {
	s, err := aggCoerceString(vals[0])
	if err != nil {
		return nil, err
	}
	if aggNumKind(vals[1]) == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.SubstrStartNotNumeric, "%s: starting index must be a numeric type (is BSON type %s)", name, TypeName(vals[1]))
	}
	if aggNumKind(vals[2]) == aggKNone {
		return nil, mongoerr.Errorf(mongoerr.SubstrLengthNotNumeric, "%s: length must be a numeric type (is BSON type %s)", name, TypeName(vals[2]))
	}
	if err := substrBytesStartErr(name, vals[1]); err != nil {
		return nil, err
	}
	// MongoDB converts both to longs (truncating toward zero) first.
	startF, lenF := math.Trunc(aggToFloat(vals[1])), math.Trunc(aggToFloat(vals[2]))
	start := int(min(startF, float64(len(s))))
	if start >= len(s) {
		return "", nil
	}
	if start > 0 && !utf8.RuneStart(s[start]) {
		return nil, mongoerr.Errorf(mongoerr.SubstrStartContinuationByte, "%s: Invalid range, starting index is a UTF-8 continuation byte.", name)
	}
	end := len(s)
	if lenF >= 0 && float64(start)+lenF < float64(len(s)) {
		end = start + int(lenF)
	}
	if end < len(s) && !utf8.RuneStart(s[end]) {
		return nil, mongoerr.Errorf(mongoerr.SubstrEndInsideCharacter, "%s: Invalid range, ending index is in the middle of a UTF-8 character.", name)
	}
	return s[start:end], nil
}

// substrBytesStartErr returns the error $substrBytes and $substr (name)
// raise for v, a numeric starting index, when it is negative once
// truncated to an integer, as MongoDB converts it to a long before its
// sign check (-0.5 is the index 0).
func substrBytesStartErr(name string, v any) error {
	if f := math.Trunc(aggToFloat(v)); f < 0 {
		return mongoerr.Errorf(mongoerr.SubstrStartNegative, "%s: starting index must be non-negative (got: %v)", name, f)
	}
	return nil
}

// substrCPInt returns v, argument i of $substrCP (1 the starting index, 2
// the length), as an integer, or the error when it is not a number
// representable as a 32-bit integer.
func substrCPInt(i int, v any) (int64, error) {
	what, notNum, notInt := "starting index", mongoerr.SubstrCPStartNotNumeric, mongoerr.SubstrCPStartNotInt32
	if i == 2 {
		what, notNum, notInt = "length", mongoerr.SubstrCPLengthNotNumeric, mongoerr.SubstrCPLengthNotInt32
	}
	if aggNumKind(v) == aggKNone {
		return 0, mongoerr.Errorf(notNum, "$substrCP: %s must be a numeric type (is BSON type %s)", what, TypeName(v))
	}
	n, ok := aggToInt64Exact(v)
	if !ok || n > math.MaxInt32 || n < math.MinInt32 {
		return 0, mongoerr.Errorf(notInt, "$substrCP: %s cannot be represented as a 32-bit integral value: %s", what, aggFmt(v))
	}
	return n, nil
}

// substrCPNegativeErr returns the error $substrCP raises when n, its
// argument i as substrCPInt returned it, is negative.
func substrCPNegativeErr(i int, n int64) error {
	switch {
	case n >= 0:
		return nil
	case i == 2:
		return mongoerr.Errorf(mongoerr.SubstrCPLengthNegative, "$substrCP: length must be a nonnegative integer.")
	}
	return mongoerr.Errorf(mongoerr.SubstrCPStartNegative, "$substrCP: the starting index must be nonnegative integer.")
}

// evalSubstrCP implements $substrCP (code point indexes).
func evalSubstrCP(_ *evalCtx, vals []any) (any, error) {
	s, err := aggCoerceString(vals[0])
	if err != nil {
		return nil, err
	}
	start, err := substrCPInt(1, vals[1])
	if err != nil {
		return nil, err
	}
	length, err := substrCPInt(2, vals[2])
	if err != nil {
		return nil, err
	}
	// MongoDB checks the length's sign before the start's.
	if err := substrCPNegativeErr(2, length); err != nil {
		return nil, err
	}
	if err := substrCPNegativeErr(1, start); err != nil {
		return nil, err
	}
	i, cp := 0, int64(0)
	for i < len(s) && cp < start {
		_, n := utf8.DecodeRuneInString(s[i:])
		i += n
		cp++
	}
	j, got := i, int64(0)
	for j < len(s) && got < length {
		_, n := utf8.DecodeRuneInString(s[j:])
		j += n
		got++
	}
	return s[i:j], nil
}

// evalStrLen implements $strLenBytes and $strLenCP.
func evalStrLen(name string, v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		code := mongoerr.StrLenBytesNotString
		if name == "$strLenCP" {
			code = mongoerr.StrLenCPNotString
		}
		return nil, mongoerr.Errorf(code, "%s requires a string argument, found: %s", name, TypeName(v))
	}
	if name == "$strLenCP" {
		return int32(utf8.RuneCountInString(s)), nil
	}
	return int32(len(s)), nil
}

// splitSeparatorErr returns the error $split raises for sep, a string
// separator, when it is empty.
func splitSeparatorErr(sep any) error {
	if sep == "" {
		return mongoerr.Errorf(mongoerr.SplitEmptySeparator, "$split requires a non-empty separator")
	}
	return nil
}

// evalSplit implements $split.
func evalSplit(_ *evalCtx, vals []any) (any, error) {
	if aggNullish(vals[0]) || aggNullish(vals[1]) {
		return nil, nil
	}
	s, ok := vals[0].(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SplitInputNotString, "$split requires an expression that evaluates to a string as a first argument, found: %s", TypeName(vals[0]))
	}
	sep, ok := vals[1].(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SplitSeparatorNotString, "$split requires an expression that evaluates to a string as a second argument, found: %s", TypeName(vals[1]))
	}
	if err := splitSeparatorErr(sep); err != nil {
		return nil, err
	}
	parts := strings.Split(s, sep)
	out := make(bson.A, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

// aggDefaultTrim is the set of code points $trim removes by default.
const aggDefaultTrim = "\x00 \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"

// trimNode is $trim / $ltrim / $rtrim.
type trimNode struct {
	name         string
	input, chars exprNode
}

func compileTrim(name string, arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TrimNotObject, "%s only supports an object as an argument, found: %s", name, TypeName(arg))
	}
	n := &trimNode{name: name}
	err := aggCompileNamedArgs(d, func(key string) error {
		return mongoerr.Errorf(mongoerr.TrimUnknownArgument, "%s found an unknown argument: %s", name, key)
	}, aggArg{"input", &n.input}, aggArg{"chars", &n.chars})
	if err != nil {
		return nil, err
	}
	if n.input == nil {
		return nil, mongoerr.Errorf(mongoerr.TrimMissingInput, "%s requires an 'input' field", name)
	}
	return n, nil
}

func (n *trimNode) eval(c *evalCtx) (any, error) {
	in, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	if aggNullish(in) {
		return nil, nil
	}
	s, ok := in.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TrimInputNotString, "%s requires its input to be a string, got %s (of type %s) instead.", n.name, aggFmt(in), TypeName(in))
	}
	cut := aggDefaultTrim
	if n.chars != nil {
		cv, err := n.chars.eval(c)
		if err != nil {
			return nil, err
		}
		if aggNullish(cv) {
			return nil, nil
		}
		cs, ok := cv.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TrimCharsNotString, "%s requires 'chars' to be a string, got %s (of type %s) instead.", n.name, aggFmt(cv), TypeName(cv))
		}
		cut = cs
	}
	switch n.name {
	case "$ltrim":
		return strings.TrimLeft(s, cut), nil
	case "$rtrim":
		return strings.TrimRight(s, cut), nil
	}
	return strings.Trim(s, cut), nil
}

// indexOfBound returns v, a start or end index of $indexOfBytes,
// $indexOfCP or $indexOfArray (name), or the error when it is not a
// nonnegative integral number.
func indexOfBound(name string, v any) (int64, error) {
	n, ok := aggToInt64Exact(v)
	if !ok || aggNumKind(v) == aggKNone {
		return 0, mongoerr.Errorf(mongoerr.IndexOfStartNotIntegral, "%s requires an integral starting index, found a value of type: %s, with value: %s", name, TypeName(v), aggFmt(v))
	}
	if n < 0 {
		if name == "$indexOfArray" {
			return 0, mongoerr.Errorf(mongoerr.IndexOfStartNegative, "$indexOfArray requires a nonnegative starting index, found: %d", n)
		}
		return 0, mongoerr.Errorf(mongoerr.IndexOfStartNegative, "%s requires a nonnegative start index, found: %d", name, n)
	}
	return n, nil
}

// evalIndexOf implements $indexOfBytes and $indexOfCP.
func evalIndexOf(name string, vals []any) (any, error) {
	if aggNullish(vals[0]) {
		return nil, nil
	}
	s, ok := vals[0].(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IndexOfNotString, "%s requires a string as the first argument, found: %s", name, TypeName(vals[0]))
	}
	sub, ok := vals[1].(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IndexOfSubstringNotString, "%s requires a string as the second argument, found: %s", name, TypeName(vals[1]))
	}
	cp := name == "$indexOfCP"
	length := len(s)
	if cp {
		length = utf8.RuneCountInString(s)
	}
	bounds := [2]int{0, length}
	for i := 2; i < len(vals); i++ {
		n, err := indexOfBound(name, vals[i])
		if err != nil {
			return nil, err
		}
		bounds[i-2] = int(min(n, int64(length)+1))
	}
	start, end := bounds[0], bounds[1]
	if start > length || start > end {
		return int32(-1), nil
	}
	if !cp {
		i := strings.Index(s[start:end], sub)
		if i < 0 {
			return int32(-1), nil
		}
		return int32(start + i), nil
	}
	runes := []rune(s)
	hay := string(runes[start:min(end, len(runes))])
	i := strings.Index(hay, sub)
	if i < 0 {
		return int32(-1), nil
	}
	return int32(start + utf8.RuneCountInString(hay[:i])), nil
}

// evalStrcasecmp implements $strcasecmp (ASCII case folding).
func evalStrcasecmp(_ *evalCtx, vals []any) (any, error) {
	a, err := aggCoerceString(vals[0])
	if err != nil {
		return nil, err
	}
	b, err := aggCoerceString(vals[1])
	if err != nil {
		return nil, err
	}
	r := strings.Compare(aggASCIILower(a), aggASCIILower(b))
	return int32(r), nil
}

func aggASCIILower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// regexNode is $regexMatch / $regexFind / $regexFindAll.
type regexNode struct {
	name                  string
	input, regex, options exprNode
	compiled              *regexp.Regexp // set when regex and options are constants
}

func compileRegex(name string, arg any) (exprNode, error) {
	args, err := aggNamedArgs(name, arg, []string{"input", "regex"}, []string{"options"})
	if err != nil {
		return nil, err
	}
	n := &regexNode{name: name, input: args["input"], regex: args["regex"], options: args["options"]}
	rc, rok := n.regex.(constNode)
	oc, ook := n.options.(constNode)
	if rok && (n.options == nil || ook) {
		var opt any = Missing
		if ook {
			opt = oc.v
		}
		re, err := aggBuildRegex(name, rc.v, opt)
		if err != nil {
			return nil, err
		}
		n.compiled = re
	}
	return n, nil
}

// aggBuildRegex compiles a pattern (string or bson.Regex) with options,
// returning nil for a null pattern.
func aggBuildRegex(name string, pat, opts any) (*regexp.Regexp, error) {
	var pattern, flags string
	switch t := pat.(type) {
	case string:
		pattern = t
	case bson.Regex:
		pattern, flags = t.Pattern, t.Options
	default:
		if aggNullish(pat) {
			return nil, nil
		}
		return nil, mongoerr.Errorf(mongoerr.RegexPatternBadType, "%s needs 'regex' to be of type string or regex", name)
	}
	if !aggNullish(opts) {
		o, ok := opts.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.RegexOptionsNotString, "%s needs 'options' to be of type string", name)
		}
		if flags != "" && o != "" {
			return nil, mongoerr.Errorf(mongoerr.RegexOptionsTwice, "%s found regex option(s) specified in both 'regex' and 'option' fields", name)
		}
		if o != "" {
			flags = o
		}
	}
	if strings.ContainsRune(pattern, 0) {
		return nil, mongoerr.Errorf(mongoerr.RegexNullByte, "%s: regular expression cannot contain an embedded null byte", name)
	}
	src, bad := regexSource(pattern, flags)
	if bad != 0 {
		return nil, mongoerr.Errorf(mongoerr.RegexBadOption, "%s invalid flag in regex options: %c", name, bad)
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.RegexCompileFailed, "Invalid Regex in %s: %v", name, err)
	}
	return re, nil
}

func (n *regexNode) eval(c *evalCtx) (any, error) {
	in, err := n.input.eval(c)
	if err != nil {
		return nil, err
	}
	re := n.compiled
	if re == nil {
		pat, err := n.regex.eval(c)
		if err != nil {
			return nil, err
		}
		opts, err := evalOpt(c, n.options)
		if err != nil {
			return nil, err
		}
		if re, err = aggBuildRegex(n.name, pat, opts); err != nil {
			return nil, err
		}
	}
	if !aggNullish(in) {
		if _, ok := in.(string); !ok {
			return nil, mongoerr.Errorf(mongoerr.RegexInputNotString, "%s needs 'input' to be of type string", n.name)
		}
	}
	if aggNullish(in) || re == nil {
		switch n.name {
		case "$regexMatch":
			return false, nil
		case "$regexFind":
			return nil, nil
		}
		return bson.A{}, nil
	}
	s := in.(string)
	switch n.name {
	case "$regexMatch":
		return re.MatchString(s), nil
	case "$regexFind":
		m := re.FindStringSubmatchIndex(s)
		if m == nil {
			return nil, nil
		}
		return aggRegexResult(s, m), nil
	}
	all := re.FindAllStringSubmatchIndex(s, -1)
	out := make(bson.A, 0, len(all))
	for _, m := range all {
		out = append(out, aggRegexResult(s, m))
	}
	return out, nil
}

// aggRegexResult builds {match, idx, captures} with idx in code points.
func aggRegexResult(s string, m []int) bson.D {
	caps := bson.A{}
	for i := 2; i+1 < len(m); i += 2 {
		if m[i] < 0 {
			caps = append(caps, nil)
			continue
		}
		caps = append(caps, s[m[i]:m[i+1]])
	}
	return bson.D{
		{Key: "match", Value: s[m[0]:m[1]]},
		{Key: "idx", Value: int32(utf8.RuneCountInString(s[:m[0]]))},
		{Key: "captures", Value: caps},
	}
}

// replaceNode is $replaceOne / $replaceAll.
type replaceNode struct {
	name                     string
	input, find, replacement exprNode
}

func compileReplace(name string, arg any) (exprNode, error) {
	args, err := aggNamedArgs(name, arg, []string{"input", "find", "replacement"}, nil)
	if err != nil {
		return nil, err
	}
	return &replaceNode{name: name, input: args["input"], find: args["find"], replacement: args["replacement"]}, nil
}

func (n *replaceNode) eval(c *evalCtx) (any, error) {
	var vals [3]any
	for i, x := range []exprNode{n.input, n.find, n.replacement} {
		v, err := x.eval(c)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	names := [3]string{"input", "find", "replacement"}
	null := false
	for i, v := range vals {
		if aggNullish(v) {
			null = true
			continue
		}
		if _, ok := v.(string); !ok {
			return nil, mongoerr.Errorf(mongoerr.StringArgumentNotString, "%s requires that '%s' be a string, found: %s", n.name, names[i], aggFmt(v))
		}
	}
	if null {
		return nil, nil
	}
	s, f, r := vals[0].(string), vals[1].(string), vals[2].(string)
	count := 1
	if n.name == "$replaceAll" {
		count = strings.Count(s, f)
	}
	if int64(len(s))+int64(count)*int64(len(r)-len(f)) > aggMaxValueBytes {
		return nil, aggTooLarge(n.name)
	}
	if n.name == "$replaceOne" {
		return strings.Replace(s, f, r, 1), nil
	}
	return strings.ReplaceAll(s, f, r), nil
}
