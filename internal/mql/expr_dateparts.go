package mql

import (
	"math"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// dateArithOperators is the table of the date arithmetic operators
// ($dateAdd $dateSubtract $dateDiff $dateTrunc) and of the operators that
// take dates apart and put them together ($dateToParts $dateFromParts).
// They work in the calendar of their timezone argument (UTC when absent),
// which is resolved as $dateToString resolves it.
func dateArithOperators() map[string]exprCompiler {
	return map[string]exprCompiler{
		"$dateAdd":       compileDateAdd,
		"$dateSubtract":  compileDateAdd,
		"$dateDiff":      argOnly(compileDateDiff),
		"$dateTrunc":     argOnly(compileDateTrunc),
		"$dateFromParts": argOnly(compileDateFromParts),
		"$dateToParts":   argOnly(compileDateToParts),
	}
}

// aggTimeUnit is a unit of $dateAdd, $dateDiff and $dateTrunc.
type aggTimeUnit int

const (
	unitMillisecond aggTimeUnit = iota
	unitSecond
	unitMinute
	unitHour
	unitDay
	unitWeek
	unitMonth
	unitQuarter
	unitYear
)

var aggTimeUnits = map[string]aggTimeUnit{
	"millisecond": unitMillisecond, "second": unitSecond, "minute": unitMinute, "hour": unitHour,
	"day": unitDay, "week": unitWeek, "month": unitMonth, "quarter": unitQuarter, "year": unitYear,
}

// aggUnitName is the name of a unit, as arguments spell it.
func aggUnitName(u aggTimeUnit) string {
	for name, v := range aggTimeUnits {
		if v == u {
			return name
		}
	}
	return ""
}

// aggUnitMillis is the length of the fixed-length units.
var aggUnitMillis = [...]int64{unitMillisecond: 1, unitSecond: 1000, unitMinute: 60_000, unitHour: 3_600_000}

// aggParseTimeUnit resolves a unit argument of op.
func aggParseTimeUnit(op string, v any) (aggTimeUnit, error) {
	s, ok := v.(string)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.DateUnitNotString, "%s requires 'unit' to be a string, but got %s", op, TypeName(v))
	}
	u, ok := aggTimeUnits[s]
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.DateUnitUnknown, "%s parameter 'unit' value cannot be recognized as a time unit: %s", op, s)
	}
	return u, nil
}

// aggDateArithUnit resolves the unit argument of $dateAdd or
// $dateSubtract (op), which have their own codes for a bad unit, not
// $dateDiff's and $dateTrunc's.
func aggDateArithUnit(op string, v any) (aggTimeUnit, error) {
	us, ok := v.(string)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.DateArithUnitNotString, "%s expects string defining the time unit", op)
	}
	unit, ok := aggTimeUnits[us]
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "unknown time unit value: %s", us)
	}
	return unit, nil
}

// aggParseStartOfWeek resolves a startOfWeek argument of op: a day's
// full or three-letter English name in any case.
func aggParseStartOfWeek(op string, v any) (time.Weekday, error) {
	s, ok := v.(string)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.StartOfWeekNotString, "%s requires 'startOfWeek' to be a string, but got %s", op, TypeName(v))
	}
	low := strings.ToLower(s)
	for d := time.Sunday; d <= time.Saturday; d++ {
		full := strings.ToLower(d.String())
		if low == full || low == full[:3] {
			return d, nil
		}
	}
	return 0, mongoerr.Errorf(mongoerr.StartOfWeekUnknown, "%s parameter 'startOfWeek' value cannot be recognized as a day of a week: %s", op, s)
}

// aggObjectArgs compiles the object argument of op into its named slots;
// notObject and unknown build the errors for a non-object argument and an
// unrecognized name.
func aggObjectArgs(arg any, notObject func() error, unknown func(string) error, args ...aggArg) error {
	d, ok := arg.(bson.D)
	if !ok {
		return notObject()
	}
	return aggCompileNamedArgs(d, unknown, args...)
}

// aggEvalAll evaluates nodes in order (nil nodes yield Missing).
func aggEvalAll(c *evalCtx, nodes ...exprNode) ([]any, error) {
	out := make([]any, len(nodes))
	for i, n := range nodes {
		v, err := evalOpt(c, n)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// aggCivilDay numbers the calendar day of t (in its own location) from
// 1970-01-01.
func aggCivilDay(t time.Time) int64 {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// aggFloorDiv is a/b rounded toward negative infinity (b > 0).
func aggFloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// aggTimeToDate converts t to a date, failing when it is outside what a
// BSON date holds.
func aggTimeToDate(op string, t time.Time) (bson.DateTime, error) {
	const limitSec = math.MaxInt64 / 1000
	if s := t.Unix(); s > limitSec || s < -limitSec || t.Year() > 292_000_000 || t.Year() < -292_000_000 {
		return 0, mongoerr.Errorf(mongoerr.DateArithOverflow, "%s overflowed", op)
	}
	return bson.DateTime(t.UnixMilli()), nil
}

// dateAddNode is $dateAdd or $dateSubtract.
type dateAddNode struct {
	name                    string
	start, unit, amount, tz exprNode
}

func compileDateAdd(name string, arg any) (exprNode, error) {
	n := &dateAddNode{name: name}
	err := aggObjectArgs(arg,
		func() error {
			return mongoerr.Errorf(mongoerr.DateArithNotObject, "%s expects an object as its argument, found: %s", name, TypeName(arg))
		},
		func(k string) error {
			return mongoerr.Errorf(mongoerr.DateArithUnknownField, "Unrecognized argument to %s: %s. Expected arguments are startDate, unit, amount, and optionally timezone.", name, k)
		},
		aggArg{"startDate", &n.start}, aggArg{"unit", &n.unit}, aggArg{"amount", &n.amount}, aggArg{"timezone", &n.tz})
	if err != nil {
		return nil, err
	}
	if n.start == nil || n.unit == nil || n.amount == nil {
		return nil, mongoerr.Errorf(mongoerr.DateArithMissingField, "%s requires startDate, unit, and amount to be present", name)
	}
	return n, nil
}

// eval is null when any argument is null or missing. As in MongoDB, the
// unit is checked before a null amount or timezone is noticed, and the
// start date and amount after the timezone.
func (n *dateAddNode) eval(c *evalCtx) (any, error) {
	v, err := aggEvalAll(c, n.start, n.unit, n.amount, n.tz)
	if err != nil {
		return nil, err
	}
	if aggNullish(v[0]) || aggNullish(v[1]) {
		return nil, nil
	}
	unit, err := aggDateArithUnit(n.name, v[1])
	if err != nil {
		return nil, err
	}
	if aggNullish(v[2]) || n.tz != nil && aggNullish(v[3]) {
		return nil, nil
	}
	loc, err := aggParseTZ(v[3])
	if err != nil {
		return nil, err
	}
	start, err := aggToDate(v[0])
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.DateArithStartNotDate, "%s requires startDate to be convertible to a date", n.name)
	}
	amount, err := dateArithAmount(n.name, v[2])
	if err != nil {
		return nil, err
	}
	if n.name == "$dateSubtract" {
		amount = -amount
	}
	return aggDateAdd(n.name, start, unit, amount, loc)
}

// dateArithAmount returns v, the non-null amount of $dateAdd or
// $dateSubtract (op), or the error when it is not an integral number or,
// for $dateSubtract, is the one long that cannot be negated. The bounds
// that depend on the unit are aggDateAdd's.
func dateArithAmount(op string, v any) (int64, error) {
	amount, ok := aggToInt64Exact(v)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.DateArithAmountNotInt, "%s expects integer amount of time units", op)
	}
	if op == "$dateSubtract" && amount == math.MinInt64 {
		return 0, mongoerr.Errorf(mongoerr.DateSubtractMinAmount, "invalid $dateSubtract 'amount' parameter value: %d", amount)
	}
	return amount, nil
}

// aggDateAddMaxAmount is, per unit, the bound (exclusive) on the amount
// MongoDB's dateAdd accepts: roughly the span of a 64-bit count of
// milliseconds in that unit.
var aggDateAddMaxAmount = func() map[aggTimeUnit]int64 {
	maxDays := int64(math.MaxUint64/86_400_000 + 1)
	maxYears := maxDays/365 + 1
	return map[aggTimeUnit]int64{
		unitYear: maxYears, unitQuarter: maxYears * 4, unitMonth: maxYears * 12,
		unitWeek: maxDays / 7, unitDay: maxDays, unitHour: maxDays * 24,
		unitMinute: maxDays * 24 * 60, unitSecond: maxDays * 24 * 60 * 60,
	}
}()

// aggDateAdd adds amount units to d: fixed-length units exactly, days and
// weeks in local wall-clock time, months, quarters and years in the local
// calendar with the day clamped to the end of a shorter month.
func aggDateAdd(op string, d bson.DateTime, unit aggTimeUnit, amount int64, loc *time.Location) (bson.DateTime, error) {
	overflow := mongoerr.Errorf(mongoerr.DateArithOverflow, "%s overflowed", op)
	if m, ok := aggDateAddMaxAmount[unit]; ok && (amount <= -m || amount >= m) {
		return 0, mongoerr.Errorf(mongoerr.DateAddAmountInvalid, "invalid dateAdd 'amount' parameter value: %d %s", amount, aggUnitName(unit))
	}
	if unit <= unitHour {
		step := aggUnitMillis[unit]
		if amount > math.MaxInt64/step || amount < math.MinInt64/step {
			return 0, overflow
		}
		delta := amount * step
		r := int64(d) + delta
		if (delta > 0 && r < int64(d)) || (delta < 0 && r > int64(d)) {
			return 0, overflow
		}
		return bson.DateTime(r), nil
	}
	// Bound the calendar arithmetic far beyond any representable date so
	// that int conversions below cannot wrap.
	const maxDays = 1 << 37
	lt := d.Time().In(loc)
	switch unit {
	case unitDay, unitWeek:
		days := amount
		if unit == unitWeek {
			days = amount * 7
		}
		if amount > maxDays || amount < -maxDays {
			return 0, overflow
		}
		y, m, dd := lt.Date()
		return aggTimeToDate(op, time.Date(y, m, dd+int(days), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), loc))
	}
	months := amount
	switch unit {
	case unitQuarter:
		months = amount * 3
	case unitYear:
		months = amount * 12
	}
	if amount > maxDays || amount < -maxDays {
		return 0, overflow
	}
	y, m, dd := lt.Date()
	total := int64(y)*12 + int64(m) - 1 + months
	ny, nm := int(aggFloorDiv(total, 12)), time.Month(total-aggFloorDiv(total, 12)*12+1)
	if last := time.Date(ny, nm+1, 0, 0, 0, 0, 0, time.UTC).Day(); dd > last {
		dd = last
	}
	return aggTimeToDate(op, time.Date(ny, nm, dd, lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), loc))
}

// dateDiffNode is $dateDiff.
type dateDiffNode struct {
	start, end, unit, tz, startOfWeek exprNode
}

func compileDateDiff(arg any) (exprNode, error) {
	n := &dateDiffNode{}
	err := aggObjectArgs(arg,
		func() error {
			return mongoerr.Errorf(mongoerr.DateDiffNotObject, "$dateDiff only supports an object as its argument")
		},
		func(k string) error {
			return mongoerr.Errorf(mongoerr.DateDiffUnknownField, "Unrecognized argument to $dateDiff: %s", k)
		},
		aggArg{"startDate", &n.start}, aggArg{"endDate", &n.end}, aggArg{"unit", &n.unit},
		aggArg{"timezone", &n.tz}, aggArg{"startOfWeek", &n.startOfWeek})
	if err != nil {
		return nil, err
	}
	switch {
	case n.start == nil:
		return nil, mongoerr.Errorf(mongoerr.DateDiffMissingStart, "Missing 'startDate' parameter to $dateDiff")
	case n.end == nil:
		return nil, mongoerr.Errorf(mongoerr.DateDiffMissingEnd, "Missing 'endDate' parameter to $dateDiff")
	case n.unit == nil:
		return nil, mongoerr.Errorf(mongoerr.DateDiffMissingUnit, "Missing 'unit' parameter to $dateDiff")
	}
	return n, nil
}

// eval returns, as a long, how many unit boundaries lie between startDate
// and endDate in the timezone's calendar (negative when endDate is
// earlier); null when an argument, or startOfWeek for unit week, is null
// or missing.
func (n *dateDiffNode) eval(c *evalCtx) (any, error) {
	v, err := aggEvalAll(c, n.start, n.end, n.unit, n.tz, n.startOfWeek)
	if err != nil {
		return nil, err
	}
	if aggNullish(v[0]) || aggNullish(v[1]) || aggNullish(v[2]) || n.tz != nil && aggNullish(v[3]) ||
		v[2] == "week" && n.startOfWeek != nil && aggNullish(v[4]) {
		return nil, nil
	}
	start, err := aggToDate(v[0])
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.DateDiffNotDate, "$dateDiff requires 'startDate' to be a date, but got %s", TypeName(v[0]))
	}
	end, err := aggToDate(v[1])
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.DateDiffNotDate, "$dateDiff requires 'endDate' to be a date, but got %s", TypeName(v[1]))
	}
	unit, err := aggParseTimeUnit("$dateDiff", v[2])
	if err != nil {
		return nil, err
	}
	loc, err := aggParseTZ(v[3])
	if err != nil {
		return nil, err
	}
	sow := time.Sunday
	if unit == unitWeek && n.startOfWeek != nil {
		if sow, err = aggParseStartOfWeek("$dateDiff", v[4]); err != nil {
			return nil, err
		}
	}
	return aggDateDiff(start, end, unit, loc, sow)
}

// aggDateDiff counts the unit boundaries crossed from a to b.
func aggDateDiff(a, b bson.DateTime, unit aggTimeUnit, loc *time.Location, sow time.Weekday) (any, error) {
	if unit == unitMillisecond {
		x, y := int64(a), int64(b)
		r := y - x
		if y >= 0 && x < 0 && r < 0 || y < 0 && x >= 0 && r >= 0 {
			return nil, mongoerr.Errorf(mongoerr.DateDiffOverflow, "dateDiff overflowed")
		}
		return r, nil
	}
	ta, tb := a.Time().In(loc), b.Time().In(loc)
	if unit <= unitHour {
		// Boundaries of seconds, minutes and hours fall on the local
		// clock: shift by the part of the UTC offset that is not a whole
		// number of units (India's half hour), so that a daylight-saving
		// jump does not count as crossed hours.
		step := aggUnitMillis[unit]
		shift := func(t time.Time) int64 {
			_, off := t.Zone()
			return int64(t.UnixMilli()) + (int64(off)*1000)%step
		}
		return aggFloorDiv(shift(tb), step) - aggFloorDiv(shift(ta), step), nil
	}
	switch unit {
	case unitDay:
		return aggCivilDay(tb) - aggCivilDay(ta), nil
	case unitWeek:
		// Day 0 (1970-01-01) was a Thursday; count weeks that start on sow.
		offset := int64((int(time.Thursday) - int(sow) + 7) % 7)
		return aggFloorDiv(aggCivilDay(tb)+offset, 7) - aggFloorDiv(aggCivilDay(ta)+offset, 7), nil
	}
	ya, ma, _ := ta.Date()
	yb, mb, _ := tb.Date()
	switch unit {
	case unitMonth:
		return int64(yb-ya)*12 + int64(mb-ma), nil
	case unitQuarter:
		return int64(yb-ya)*4 + int64((int(mb)-1)/3-(int(ma)-1)/3), nil
	}
	return int64(yb - ya), nil
}

// dateTruncNode is $dateTrunc.
type dateTruncNode struct {
	date, unit, binSize, tz, startOfWeek exprNode
}

func compileDateTrunc(arg any) (exprNode, error) {
	n := &dateTruncNode{}
	err := aggObjectArgs(arg,
		func() error {
			return mongoerr.Errorf(mongoerr.DateTruncNotObject, "$dateTrunc only supports an object as its argument")
		},
		func(k string) error {
			return mongoerr.Errorf(mongoerr.DateTruncUnknownField, "Unrecognized argument to $dateTrunc: %s. Expected arguments are date, unit, and optionally, binSize, timezone, startOfWeek", k)
		},
		aggArg{"date", &n.date}, aggArg{"unit", &n.unit}, aggArg{"binSize", &n.binSize},
		aggArg{"timezone", &n.tz}, aggArg{"startOfWeek", &n.startOfWeek})
	if err != nil {
		return nil, err
	}
	if n.date == nil {
		return nil, mongoerr.Errorf(mongoerr.DateTruncMissingDate, "Missing 'date' parameter to $dateTrunc")
	}
	if n.unit == nil {
		return nil, mongoerr.Errorf(mongoerr.DateTruncMissingUnit, "Missing 'unit' parameter to $dateTrunc")
	}
	return n, nil
}

// dateTruncBinSize returns v, the non-null binSize of $dateTrunc, or the
// error when it is not a positive integral number.
func dateTruncBinSize(v any) (int64, error) {
	b, ok := aggToInt64Exact(v)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.DateTruncBinSizeNotInt, "$dateTrunc requires 'binSize' to be a 64-bit integer, but got value '%s' of type %s", aggFmt(v), TypeName(v))
	}
	if b <= 0 {
		return 0, mongoerr.Errorf(mongoerr.DateTruncBinSizeNotPositive, "$dateTrunc requires 'binSize' to be greater than 0, but got value %d", b)
	}
	return b, nil
}

// eval truncates date down to the start of its bin of binSize units; bins
// count from 2000-01-01T00:00:00 in the timezone, weeks from the first
// startOfWeek day on or after it. The result is null when an argument, or
// startOfWeek for unit week, is null or missing.
func (n *dateTruncNode) eval(c *evalCtx) (any, error) {
	v, err := aggEvalAll(c, n.date, n.unit, n.binSize, n.tz, n.startOfWeek)
	if err != nil {
		return nil, err
	}
	if aggNullish(v[0]) || aggNullish(v[1]) || n.binSize != nil && aggNullish(v[2]) || n.tz != nil && aggNullish(v[3]) ||
		v[1] == "week" && n.startOfWeek != nil && aggNullish(v[4]) {
		return nil, nil
	}
	d, err := aggToDate(v[0])
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.DateTruncNotDate, "$dateTrunc requires 'date' to be a date, but got %s", TypeName(v[0]))
	}
	unit, err := aggParseTimeUnit("$dateTrunc", v[1])
	if err != nil {
		return nil, err
	}
	bin := int64(1)
	if n.binSize != nil {
		b, err := dateTruncBinSize(v[2])
		if err != nil {
			return nil, err
		}
		bin = b
	}
	loc, err := aggParseTZ(v[3])
	if err != nil {
		return nil, err
	}
	sow := time.Sunday
	if unit == unitWeek && n.startOfWeek != nil {
		if sow, err = aggParseStartOfWeek("$dateTrunc", v[4]); err != nil {
			return nil, err
		}
	}
	return aggDateTrunc(d, unit, bin, loc, sow)
}

// aggDateTrunc is the start of the bin holding d.
func aggDateTrunc(d bson.DateTime, unit aggTimeUnit, bin int64, loc *time.Location, sow time.Weekday) (bson.DateTime, error) {
	overflow := mongoerr.Errorf(mongoerr.DateTruncOverflow, "dateTrunc overflowed")
	ref := time.Date(2000, 1, 1, 0, 0, 0, 0, loc)
	if unit <= unitHour {
		step := aggUnitMillis[unit]
		if bin > math.MaxInt64/step/4 {
			// Wider than the whole date range: the one bin holding d
			// starts before every representable date.
			return 0, overflow
		}
		width := step * bin
		dist := int64(d) - ref.UnixMilli()
		return bson.DateTime(ref.UnixMilli() + aggFloorDiv(dist, width)*width), nil
	}
	// MongoDB refuses bins of more than 1e11 calendar units.
	if bin > 100_000_000_000 {
		return 0, mongoerr.Errorf(mongoerr.DateTruncBinSizeUnsupported, "dateTrunc unsupported binSize value")
	}
	lt := d.Time().In(loc)
	switch unit {
	case unitDay:
		days := aggCivilDay(lt) - aggCivilDay(ref)
		return aggTimeToDate("$dateTrunc", time.Date(2000, 1, 1+int(aggFloorDiv(days, bin)*bin), 0, 0, 0, 0, loc))
	case unitWeek:
		first := 1 + (int(sow)-int(time.Saturday)+7)%7 // 2000-01-01 was a Saturday
		weeks := aggFloorDiv(aggCivilDay(lt)-aggCivilDay(time.Date(2000, 1, first, 0, 0, 0, 0, time.UTC)), 7)
		return aggTimeToDate("$dateTrunc", time.Date(2000, 1, first+7*int(aggFloorDiv(weeks, bin)*bin), 0, 0, 0, 0, loc))
	}
	per := bin
	switch unit {
	case unitQuarter:
		per = bin * 3
	case unitYear:
		per = bin * 12
	}
	y, m, _ := lt.Date()
	months := int64(y-2000)*12 + int64(m) - 1
	return aggTimeToDate("$dateTrunc", time.Date(2000, time.Month(1+aggFloorDiv(months, per)*per), 1, 0, 0, 0, 0, loc))
}

// dateFromPartsNode is $dateFromParts in its calendar form (year, month,
// day) or its ISO week form (isoWeekYear, isoWeek, isoDayOfWeek).
type dateFromPartsNode struct {
	iso   bool
	parts [7]exprNode // year|isoWeekYear, month|isoWeek, day|isoDayOfWeek, hour, minute, second, millisecond
	tz    exprNode
}

var (
	aggCalendarParts = [7]string{"year", "month", "day", "hour", "minute", "second", "millisecond"}
	aggISOParts      = [7]string{"isoWeekYear", "isoWeek", "isoDayOfWeek", "hour", "minute", "second", "millisecond"}
	aggPartDefaults  = [7]int64{0, 1, 1, 0, 0, 0, 0}
)

func compileDateFromParts(arg any) (exprNode, error) {
	d, ok := arg.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.DateFromPartsNotObject, "$dateFromParts only supports an object as its argument")
	}
	var cal, iso [7]exprNode
	n := &dateFromPartsNode{}
	args := []aggArg{{"timezone", &n.tz}}
	for i := range cal {
		args = append(args, aggArg{aggCalendarParts[i], &cal[i]})
		if i < 3 {
			args = append(args, aggArg{aggISOParts[i], &iso[i]})
		}
	}
	err := aggCompileNamedArgs(d, func(k string) error {
		return mongoerr.Errorf(mongoerr.DateFromPartsUnknownField, "Unrecognized argument to $dateFromParts: %s", k)
	}, args...)
	if err != nil {
		return nil, err
	}
	hasCal := cal[0] != nil || cal[1] != nil || cal[2] != nil
	hasISO := iso[0] != nil || iso[1] != nil || iso[2] != nil
	switch {
	case hasCal && hasISO:
		return nil, mongoerr.Errorf(mongoerr.DateFromPartsMixed, "$dateFromParts does not allow mixing natural dates with ISO dates")
	case cal[0] == nil && iso[0] == nil:
		return nil, mongoerr.Errorf(mongoerr.DateFromPartsMissingYear, "$dateFromParts requires either 'year' or 'isoWeekYear' to be present")
	}
	n.parts = cal
	if hasISO {
		n.iso = true
		copy(n.parts[:3], iso[:3])
	}
	return n, nil
}

// eval builds the date; parts beyond their natural range carry into the
// next larger unit (month 14 is February of the next year). It is null
// when any given part or the timezone is null or missing.
func (n *dateFromPartsNode) eval(c *evalCtx) (any, error) {
	names := aggCalendarParts
	if n.iso {
		names = aggISOParts
	}
	var vals [7]int64
	for i, pn := range n.parts {
		if pn == nil {
			vals[i] = aggPartDefaults[i]
			continue
		}
		v, err := pn.eval(c)
		if err != nil {
			return nil, err
		}
		if aggNullish(v) {
			return nil, nil
		}
		x, ok := aggToInt64Exact(v)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.DateFromPartsNotInt, "'%s' must evaluate to an integer, found %s with value %s", names[i], TypeName(v), aggFmt(v))
		}
		if i == 0 {
			if x < 1 || x > 9999 {
				return nil, mongoerr.Errorf(mongoerr.DateFromPartsYearRange, "'%s' must evaluate to an integer in the range 1 to 9999, found %d", names[i], x)
			}
		} else if x < -32768 || x > 32767 {
			return nil, mongoerr.Errorf(mongoerr.DatePartOutOfRange, "'%s' must evaluate to a value in the range [-32768, 32767]; value %d is not in range", names[i], x)
		}
		vals[i] = x
	}
	loc, null, err := evalTimezone(c, n.tz)
	if err != nil || null {
		return nil, err
	}
	h, mi, s, ms := int(vals[3]), int(vals[4]), int(vals[5]), int(vals[6])
	var t time.Time
	if n.iso {
		// ISO week 1 is the week holding January 4th; weeks start Monday.
		jan4 := time.Date(int(vals[0]), 1, 4, 0, 0, 0, 0, time.UTC)
		monday := 4 - (aggISODayOfWeek(jan4) - 1)
		day := monday + int(vals[1]-1)*7 + int(vals[2]-1)
		t = time.Date(int(vals[0]), 1, day, h, mi, s, ms*int(time.Millisecond), loc)
	} else {
		t = time.Date(int(vals[0]), time.Month(vals[1]), int(vals[2]), h, mi, s, ms*int(time.Millisecond), loc)
	}
	return aggTimeToDate("$dateFromParts", t)
}

// dateToPartsNode is $dateToParts.
type dateToPartsNode struct {
	date, tz, iso exprNode
}

func compileDateToParts(arg any) (exprNode, error) {
	n := &dateToPartsNode{}
	err := aggObjectArgs(arg,
		func() error {
			return mongoerr.Errorf(mongoerr.DateToPartsNotObject, "$dateToParts only supports an object as its argument")
		},
		func(k string) error {
			return mongoerr.Errorf(mongoerr.DateToPartsUnknownField, "Unrecognized argument to $dateToParts: %s", k)
		},
		aggArg{"date", &n.date}, aggArg{"timezone", &n.tz}, aggArg{"iso8601", &n.iso})
	if err != nil {
		return nil, err
	}
	if n.date == nil {
		return nil, mongoerr.Errorf(mongoerr.DateToPartsMissingDate, "Missing 'date' parameter to $dateToParts")
	}
	return n, nil
}

// eval returns the date's parts in the timezone as a document of ints;
// null when the date, the timezone or iso8601 is null or missing.
func (n *dateToPartsNode) eval(c *evalCtx) (any, error) {
	v, err := aggEvalAll(c, n.date, n.tz, n.iso)
	if err != nil {
		return nil, err
	}
	if aggNullish(v[0]) || n.tz != nil && aggNullish(v[1]) || n.iso != nil && aggNullish(v[2]) {
		return nil, nil
	}
	iso := false
	if n.iso != nil {
		b, ok := v[2].(bool)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.DateToPartsISONotBool, "iso8601 must evaluate to a bool, found %s", TypeName(v[2]))
		}
		iso = b
	}
	loc, err := aggParseTZ(v[1])
	if err != nil {
		return nil, err
	}
	d, err := aggToDate(v[0])
	if err != nil {
		return nil, err
	}
	t := d.Time().In(loc)
	rest := bson.D{
		{Key: "hour", Value: int32(t.Hour())},
		{Key: "minute", Value: int32(t.Minute())},
		{Key: "second", Value: int32(t.Second())},
		{Key: "millisecond", Value: int32(t.Nanosecond() / 1e6)},
	}
	if iso {
		y, w := t.ISOWeek()
		return append(bson.D{
			{Key: "isoWeekYear", Value: int32(y)},
			{Key: "isoWeek", Value: int32(w)},
			{Key: "isoDayOfWeek", Value: int32(aggISODayOfWeek(t))},
		}, rest...), nil
	}
	return append(bson.D{
		{Key: "year", Value: int32(t.Year())},
		{Key: "month", Value: int32(t.Month())},
		{Key: "day", Value: int32(t.Day())},
	}, rest...), nil
}
