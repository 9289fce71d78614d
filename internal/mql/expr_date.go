package mql

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // Olson time zones for $dateToString and date parts without a system tzdata.

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// dateOperators is the table of date operators.
func dateOperators() map[string]exprCompiler {
	ops := map[string]exprCompiler{
		"$dateToString":   argOnly(compileDateToString),
		"$dateFromString": argOnly(compileDateFromString),
	}
	for name := range datePartOperators {
		ops[name] = compileDatePart
	}
	return ops
}

// datePartOperators are the operators that return one part of a date,
// given as an expression or as {date, timezone}.
var datePartOperators = map[string]bool{
	"$year": true, "$month": true, "$dayOfMonth": true, "$hour": true, "$minute": true,
	"$second": true, "$millisecond": true, "$dayOfYear": true, "$dayOfWeek": true, "$week": true,
	"$isoWeek": true, "$isoWeekYear": true, "$isoDayOfWeek": true,
}

// aggISODate renders a date as MongoDB's ISO string with milliseconds,
// "2021-01-01T00:00:00.000Z".
func aggISODate(d bson.DateTime) string {
	return time.UnixMilli(int64(d)).UTC().Format("2006-01-02T15:04:05.000Z")
}

// aggParseTZ resolves a timezone argument: null/missing is UTC; a string is
// "UTC"/"GMT", an offset "+hh", "+hhmm", "+hh:mm", or an Olson name.
func aggParseTZ(v any) (*time.Location, error) {
	if aggNullish(v) {
		return time.UTC, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TimezoneNotString, "timezone must evaluate to a string, found %s", TypeName(v))
	}
	switch s {
	case "UTC", "GMT", "Z", "utc":
		return time.UTC, nil
	}
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		body := strings.ReplaceAll(s[1:], ":", "")
		var h, m int
		var err1, err2 error
		switch len(body) {
		case 2:
			h, err1 = strconv.Atoi(body)
		case 4:
			h, err1 = strconv.Atoi(body[:2])
			m, err2 = strconv.Atoi(body[2:])
		default:
			err1 = fmt.Errorf("bad offset")
		}
		if err1 == nil && err2 == nil && h < 100 && m < 60 && !strings.ContainsAny(body, "+- ") {
			off := h*3600 + m*60
			if s[0] == '-' {
				off = -off
			}
			return time.FixedZone(s, off), nil
		}
	} else if s != "" && !strings.HasPrefix(s, ".") && !strings.Contains(s, "..") {
		if loc, err := time.LoadLocation(s); err == nil && s != "Local" {
			return loc, nil
		}
	}
	return nil, mongoerr.Errorf(mongoerr.UnknownTimezone, "unrecognized time zone identifier: \"%s\"", s)
}

// aggIsUTCZone reports whether the timezone argument tz, resolved to loc
// by aggParseTZ, names UTC itself: "UTC" or an offset of zero such as
// "+00:00" (Olson zones that happen to be at offset zero do not count).
func aggIsUTCZone(tz any, loc *time.Location) bool {
	return tz == "UTC" || aggIsZeroOffset(tz, loc)
}

// aggIsZeroOffset reports whether the timezone argument tz, resolved to
// loc, is a UTC offset of zero ("+00", "+0000", "+00:00").
func aggIsZeroOffset(tz any, loc *time.Location) bool {
	s, _ := tz.(string)
	if s == "" || (s[0] != '+' && s[0] != '-') {
		return false
	}
	_, off := time.Unix(0, 0).In(loc).Zone()
	return off == 0
}

// aggToDate coerces a date, timestamp or ObjectID to a date.
func aggToDate(v any) (bson.DateTime, error) {
	switch t := v.(type) {
	case bson.DateTime:
		return t, nil
	case bson.Timestamp:
		return bson.DateTime(int64(t.T) * 1000), nil
	case bson.ObjectID:
		return bson.NewDateTimeFromTime(t.Timestamp()), nil
	}
	return 0, mongoerr.Errorf(mongoerr.ConvertToDateFailed, "can't convert from BSON type %s to Date", TypeName(v))
}

// aggFormatDate renders t (already in its zone) with MongoDB's format
// specifiers.
func aggFormatDate(t time.Time, format string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(format) {
			return "", mongoerr.Errorf(mongoerr.DateFormatTrailingPercent, "Unmatched '%%' at end of format string")
		}
		i++
		switch format[i] {
		case '%':
			b.WriteByte('%')
		case 'Y':
			if err := aggDateComponentInRange(t.Year()); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'L':
			fmt.Fprintf(&b, "%03d", t.Nanosecond()/1e6)
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday())+1)
		case 'u':
			fmt.Fprintf(&b, "%d", aggISODayOfWeek(t))
		case 'U':
			fmt.Fprintf(&b, "%02d", aggWeekOfYear(t))
		case 'G':
			y, _ := t.ISOWeek()
			if err := aggDateComponentInRange(y); err != nil {
				return "", err
			}
			fmt.Fprintf(&b, "%04d", y)
		case 'V':
			_, w := t.ISOWeek()
			fmt.Fprintf(&b, "%02d", w)
		case 'z':
			_, off := t.Zone()
			sign := '+'
			if off < 0 {
				sign, off = '-', -off
			}
			fmt.Fprintf(&b, "%c%02d%02d", sign, off/3600, off%3600/60)
		case 'Z':
			// Minutes east of UTC, signed only when negative ("270", "-300").
			_, off := t.Zone()
			fmt.Fprintf(&b, "%d", off/60)
		case 'b':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		default:
			return "", mongoerr.Errorf(mongoerr.DateFormatBadCharacter, "Invalid format character '%%%c' in format string", format[i])
		}
	}
	return b.String(), nil
}

// aggDateComponentInRange fails as MongoDB does for a year that a
// four-digit format specifier cannot print (outside 0-9999).
func aggDateComponentInRange(n int) error {
	if n < 0 || n > 9999 {
		return mongoerr.Errorf(mongoerr.DateComponentOutOfRange, "Could not convert date to string: date component was outside the supported range of 0-9999: %d", n)
	}
	return nil
}

// aggISODayOfWeek returns the ISO day of week (Monday 1 … Sunday 7).
func aggISODayOfWeek(t time.Time) int {
	d := int(t.Weekday())
	if d == 0 {
		return 7
	}
	return d
}

// aggWeekOfYear returns the week of the year with weeks starting on Sunday
// (days before the first Sunday are week 0), as %U and $week.
func aggWeekOfYear(t time.Time) int {
	return (t.YearDay() - 1 + 7 - int(t.Weekday())) / 7
}

// dateToStringNode is $dateToString.
type dateToStringNode struct {
	date, format, timezone, onNull exprNode
}

func compileDateToString(arg any) (exprNode, error) {
	args, err := aggNamedArgs("$dateToString", arg, []string{"date"}, []string{"format", "timezone", "onNull"})
	if err != nil {
		return nil, err
	}
	n := &dateToStringNode{date: args["date"], format: args["format"], timezone: args["timezone"], onNull: args["onNull"]}
	if c, ok := n.format.(constNode); ok {
		s, ok := c.v.(string)
		if !ok && !aggNullish(c.v) {
			return nil, mongoerr.Errorf(mongoerr.DateToStringFormatNotString, "$dateToString requires that 'format' be a string, found: %s with value %s", TypeName(c.v), aggFmt(c.v))
		}
		if ok {
			if _, err := aggFormatDate(time.Unix(0, 0).UTC(), s); err != nil {
				return nil, err
			}
		}
	}
	if c, ok := n.timezone.(constNode); ok {
		if _, err := aggParseTZ(c.v); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *dateToStringNode) eval(c *evalCtx) (any, error) {
	d, err := n.date.eval(c)
	if err != nil {
		return nil, err
	}
	format := ""
	if n.format != nil {
		fv, err := n.format.eval(c)
		if err != nil {
			return nil, err
		}
		if aggNullish(fv) {
			return nil, nil
		}
		s, ok := fv.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.DateToStringFormatNotString, "$dateToString requires that 'format' be a string, found: %s with value %s", TypeName(fv), aggFmt(fv))
		}
		format = s
	}
	tzv, err := evalOpt(c, n.timezone)
	if err != nil {
		return nil, err
	}
	loc, err := aggParseTZ(tzv)
	if err != nil {
		return nil, err
	}
	if n.timezone != nil && aggNullish(tzv) {
		return nil, nil
	}
	if format == "" && n.format == nil {
		// The default format ends in "Z" only when the result is in UTC:
		// no timezone, "UTC" or a zero offset.
		format = "%Y-%m-%dT%H:%M:%S.%L"
		if n.timezone == nil || aggIsUTCZone(tzv, loc) {
			format = "%Y-%m-%dT%H:%M:%S.%LZ"
		}
	}
	if aggNullish(d) {
		if n.onNull != nil {
			return n.onNull.eval(c)
		}
		return nil, nil
	}
	dt, err := aggToDate(d)
	if err != nil {
		return nil, err
	}
	return aggFormatDate(time.UnixMilli(int64(dt)).In(loc), format)
}

// datePartNode is $year, $month, ... in either form: an expression or
// {date, timezone}.
type datePartNode struct {
	name     string
	date, tz exprNode
}

func compileDatePart(name string, arg any) (exprNode, error) {
	if d, ok := arg.(bson.D); ok && len(d) > 0 && !strings.HasPrefix(d[0].Key, "$") {
		n := &datePartNode{name: name}
		err := aggCompileNamedArgs(d, func(key string) error {
			return mongoerr.Errorf(mongoerr.DateUnknownOption, "unrecognized option to %s: \"%s\". Options must be date and timezone", name, key)
		}, aggArg{"date", &n.date}, aggArg{"timezone", &n.tz})
		if err != nil {
			return nil, err
		}
		if n.date == nil {
			return nil, mongoerr.Errorf(mongoerr.DateMissingDate, "missing 'date' argument to %s, provided: %s", name, aggFmt(d))
		}
		return n, nil
	}
	nodes, err := compileArgs(name, arg, 1, 1)
	if err != nil {
		return nil, err
	}
	return &datePartNode{name: name, date: nodes[0]}, nil
}

// evalTimezone evaluates an operator's optional timezone argument tz (nil:
// not given, UTC): null reports a given timezone that is null or missing,
// which makes the operator's result null.
func evalTimezone(c *evalCtx, tz exprNode) (loc *time.Location, null bool, err error) {
	tzv, err := evalOpt(c, tz)
	if err != nil {
		return nil, false, err
	}
	if tz != nil && aggNullish(tzv) {
		return nil, true, nil
	}
	loc, err = aggParseTZ(tzv)
	return loc, false, err
}

func (n *datePartNode) eval(c *evalCtx) (any, error) {
	v, err := n.date.eval(c)
	if err != nil {
		return nil, err
	}
	loc, null, err := evalTimezone(c, n.tz)
	if err != nil || null {
		return nil, err
	}
	if aggNullish(v) {
		return nil, nil
	}
	d, err := aggToDate(v)
	if err != nil {
		return nil, err
	}
	t := time.UnixMilli(int64(d)).In(loc)
	switch n.name {
	case "$year":
		return int32(t.Year()), nil
	case "$month":
		return int32(t.Month()), nil
	case "$dayOfMonth":
		return int32(t.Day()), nil
	case "$hour":
		return int32(t.Hour()), nil
	case "$minute":
		return int32(t.Minute()), nil
	case "$second":
		return int32(t.Second()), nil
	case "$millisecond":
		return int32(t.Nanosecond() / 1e6), nil
	case "$dayOfYear":
		return int32(t.YearDay()), nil
	case "$dayOfWeek":
		return int32(t.Weekday()) + 1, nil
	case "$week":
		return int32(aggWeekOfYear(t)), nil
	case "$isoWeek":
		_, w := t.ISOWeek()
		return int32(w), nil
	case "$isoWeekYear":
		y, _ := t.ISOWeek()
		return int64(y), nil
	case "$isoDayOfWeek":
		return int32(aggISODayOfWeek(t)), nil
	}
	return nil, mongoerr.Errorf(mongoerr.InternalError, "unknown date part %s", n.name)
}

// dateFromStringNode is $dateFromString.
type dateFromStringNode struct {
	dateString, format, timezone, onError, onNull exprNode
}

func compileDateFromString(arg any) (exprNode, error) {
	args, err := aggNamedArgs("$dateFromString", arg, []string{"dateString"}, []string{"format", "timezone", "onError", "onNull"})
	if err != nil {
		return nil, err
	}
	return &dateFromStringNode{dateString: args["dateString"], format: args["format"], timezone: args["timezone"], onError: args["onError"], onNull: args["onNull"]}, nil
}

func (n *dateFromStringNode) eval(c *evalCtx) (any, error) {
	sv, err := n.dateString.eval(c)
	if err != nil {
		return nil, err
	}
	tzv, err := evalOpt(c, n.timezone)
	if err != nil {
		return nil, err
	}
	fv, err := evalOpt(c, n.format)
	if err != nil {
		return nil, err
	}
	if n.timezone != nil && aggNullish(tzv) || n.format != nil && aggNullish(fv) {
		return nil, nil
	}
	loc, err := aggParseTZ(tzv)
	if err != nil {
		return nil, err
	}
	if aggNullish(sv) {
		if n.onNull != nil {
			return n.onNull.eval(c)
		}
		return nil, nil
	}
	fail := func(e error) (any, error) {
		if n.onError != nil {
			return n.onError.eval(c)
		}
		return nil, e
	}
	s, ok := sv.(string)
	if !ok {
		return fail(mongoerr.Errorf(mongoerr.ConversionFailure, "$dateFromString requires that 'dateString' be a string, found: %s with value %s", TypeName(sv), aggFmt(sv)))
	}
	var d bson.DateTime
	var zoned bool
	if n.format != nil {
		f, ok := fv.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.DateFromStringFormatNotString, "$dateFromString requires that 'format' be a string, found: %s with value %s", TypeName(fv), aggFmt(fv))
		}
		if err := aggValidateFromStringFormat(f); err != nil {
			return nil, err
		}
		d, zoned, err = aggParseDateFormatZone(s, f, loc)
	} else {
		d, zoned, err = aggParseDateStringZone(s, loc)
	}
	if err != nil {
		return fail(mongoerr.Errorf(mongoerr.ConversionFailure, "Error parsing date string '%s'; %s", s, err.Error()))
	}
	if zoned && n.timezone != nil && !aggIsZeroOffset(tzv, loc) {
		// The manual: with a timezone argument the dateString must not
		// carry zone information such as a trailing "Z" or an offset
		// (MongoDB lets a zero offset argument through).
		return fail(mongoerr.Errorf(mongoerr.ConversionFailure, "you cannot pass in a date/time string with time zone information together with a timezone argument"))
	}
	return d, nil
}

// aggParseDateString parses the ISO-8601-like strings $toDate and
// $dateFromString accept. A string without a zone is read in loc (UTC when
// nil).
func aggParseDateString(s string, loc *time.Location) (bson.DateTime, error) {
	d, _, err := aggParseDateStringZone(s, loc)
	return d, err
}

// aggParseDateStringZone is aggParseDateString that also reports whether
// the string carried its own zone ("Z", an offset or an abbreviation).
func aggParseDateStringZone(s string, loc *time.Location) (bson.DateTime, bool, error) {
	if loc == nil {
		loc = time.UTC
	}
	zoned := []string{
		"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04Z07:00",
		"2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05.999999999Z07",
		"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05.999999999 MST",
		// An offset after a space, as in the manual's "2018-03-20 11:00:06 +0500".
		"2006-01-02 15:04:05.999999999 -0700", "2006-01-02 15:04:05.999999999 -07:00",
		"2006-01-02T15:04:05.999999999 -0700", "2006-01-02T15:04:05.999999999 -07:00",
		"2006-01-02 15:04 -0700", "2006-01-02 15:04 -07:00",
	}
	for _, l := range zoned {
		if t, err := time.Parse(l, s); err == nil {
			return bson.NewDateTimeFromTime(t), true, nil
		}
	}
	local := []string{
		"2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05.999999999",
		"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02", "2006/01/02", "2006/01/02 15:04:05", "2006-01",
		"Jan 2, 2006", "January 2, 2006", "2 Jan 2006", "2006-01-02T15",
	}
	for _, l := range local {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return bson.NewDateTimeFromTime(t), false, nil
		}
	}
	return 0, false, mongoerr.Errorf(mongoerr.ConversionFailure, "an incomplete date/time string has been found, with elements missing: \"%s\"", s)
}

// aggValidateFromStringFormat checks a $dateFromString format: every '%'
// must be followed by one of the specifiers MongoDB parses (%d %G %H %L
// %m %M %S %u %V %Y %z %Z %%). The day-of-year and week specifiers that
// $dateToString prints (%j %U %w) are not among them. A bad format is an
// error onError does not catch.
func aggValidateFromStringFormat(format string) error {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		if i+1 >= len(format) {
			return mongoerr.Errorf(mongoerr.DateFormatTrailingPercent, "Unmatched '%%' at end of format string")
		}
		i++
		if !strings.ContainsRune("dGHLmMSuVYzZ%", rune(format[i])) {
			return mongoerr.Errorf(mongoerr.DateFormatBadCharacter, "Invalid format character '%%%c' in format string", format[i])
		}
	}
	return nil
}

// aggParseDateFormatZone parses s with MongoDB format specifiers.
// It also reports whether the string carried its own zone (%z or %Z).
func aggParseDateFormatZone(s, format string, loc *time.Location) (bson.DateTime, bool, error) {
	year, month, day, hour, minute, sec, ms := 1970, 1, 1, 0, 0, 0, 0
	// ISO 8601 week date parts (%G, %V, %u); iso is set when any is given.
	isoYear, isoWeek, isoDay, iso := -1, 1, 1, false
	var zone *time.Location
	pos := 0
	num := func(width int) (int, error) {
		start := pos
		sign := 1
		if pos < len(s) && (s[pos] == '-' || s[pos] == '+') && width > 4 {
			if s[pos] == '-' {
				sign = -1
			}
			pos++
		}
		for pos < len(s) && pos-start < width && s[pos] >= '0' && s[pos] <= '9' {
			pos++
		}
		if pos == start {
			return 0, fmt.Errorf("expected digits at position %d", start)
		}
		n, err := strconv.Atoi(strings.TrimLeft(s[start:pos], "+-"))
		return n * sign, err
	}
	var err error
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			if pos >= len(s) || s[pos] != c {
				return 0, false, fmt.Errorf("format mismatch at position %d", pos)
			}
			pos++
			continue
		}
		if i+1 >= len(format) {
			return 0, false, mongoerr.Errorf(mongoerr.DateFormatTrailingPercent, "Unmatched '%%' at end of format string")
		}
		i++
		switch format[i] {
		case 'Y':
			year, err = num(4)
		case 'G':
			isoYear, err = num(4)
			iso = true
		case 'V':
			isoWeek, err = num(2)
			iso = true
		case 'u':
			isoDay, err = num(1)
			iso = true
		case 'm':
			month, err = num(2)
		case 'd':
			day, err = num(2)
		case 'H':
			hour, err = num(2)
		case 'M':
			minute, err = num(2)
		case 'S':
			sec, err = num(2)
		case 'L':
			ms, err = num(3)
		case 'z', 'Z':
			end := pos
			for end < len(s) && strings.IndexByte("+-:0123456789Z", s[end]) >= 0 {
				end++
			}
			zone, err = aggParseTZ(s[pos:end])
			pos = end
		case '%':
			if pos >= len(s) || s[pos] != '%' {
				return 0, false, fmt.Errorf("format mismatch at position %d", pos)
			}
			pos++
		default:
			return 0, false, mongoerr.Errorf(mongoerr.DateFormatBadCharacter, "Invalid format character '%%%c' in format string", format[i])
		}
		if err != nil {
			return 0, false, err
		}
	}
	if pos != len(s) {
		return 0, false, fmt.Errorf("trailing data at position %d", pos)
	}
	if zone != nil {
		loc = zone
	}
	if iso {
		if isoYear < 0 {
			isoYear = year
		}
		if isoWeek < 1 || isoWeek > 53 || isoDay < 1 || isoDay > 7 {
			return 0, false, fmt.Errorf("the parsed date was invalid")
		}
		// Monday of ISO week 1 is the Monday on or before January 4th.
		jan4 := time.Date(isoYear, time.January, 4, 0, 0, 0, 0, time.UTC)
		week1 := jan4.AddDate(0, 0, 1-aggISODayOfWeek(jan4))
		d := week1.AddDate(0, 0, (isoWeek-1)*7+isoDay-1)
		year, month, day = d.Year(), int(d.Month()), d.Day()
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, ms*1e6, loc)
	if t.Month() != time.Month(month) || t.Day() != day {
		return 0, false, fmt.Errorf("the parsed date was invalid")
	}
	return bson.NewDateTimeFromTime(t), zone != nil, nil
}
