package mql

import (
	"errors"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// constCheck returns the error operator op raises at run time for v, a
// constant argument of the type the operator requires there, or nil. Each
// is the check the operator's evaluation itself applies, so CheckExpr and
// the run time give one message.
type constCheck func(op string, v any) error

// constArgChecks holds, for the operators with an argument whose constant
// value makes every evaluation fail (whatever the other arguments are,
// once they are not null), the check of each such argument: positional
// arguments by index, named ones by name. Arguments whose failure depends
// on another argument's value ($pow's base 0 with a negative exponent) are
// not here, except where onlyIf names the constant other arguments that
// make the run time look at one (startOfWeek is read only for unit
// "week"); an expression whose arguments are all constants is evaluated
// whole by the compile check instead. The timezone of $year and the other
// date parts is checked by checkDatePartTimezone.
var constArgChecks = map[string]struct {
	pos    map[int]constCheck
	named  map[string]constCheck
	onlyIf map[string]func(args bson.D) bool
}{
	"$divide":       {pos: map[int]constCheck{1: divisorErr}},
	"$mod":          {pos: map[int]constCheck{1: divisorErr}},
	"$round":        {pos: map[int]constCheck{1: valueErr(roundPlace)}},
	"$trunc":        {pos: map[int]constCheck{1: valueErr(roundPlace)}},
	"$log":          {pos: map[int]constCheck{0: ignoreOp(logArgErr), 1: ignoreOp(logBaseErr)}},
	"$substr":       {pos: map[int]constCheck{1: substrBytesStartErr}},
	"$substrBytes":  {pos: map[int]constCheck{1: substrBytesStartErr}},
	"$substrCP":     {pos: map[int]constCheck{1: substrCPArgErr(1), 2: substrCPArgErr(2)}},
	"$split":        {pos: map[int]constCheck{1: ignoreOp(splitSeparatorErr)}},
	"$indexOfBytes": {pos: map[int]constCheck{2: valueErr(indexOfBound), 3: valueErr(indexOfBound)}},
	"$indexOfCP":    {pos: map[int]constCheck{2: valueErr(indexOfBound), 3: valueErr(indexOfBound)}},
	"$indexOfArray": {pos: map[int]constCheck{2: valueErr(indexOfBound), 3: valueErr(indexOfBound)}},
	"$arrayElemAt":  {pos: map[int]constCheck{1: ignoreOp(valueErr1(arrayElemAtIndex))}},
	"$slice":        {pos: map[int]constCheck{1: indexedErr(sliceArg, 1), 2: indexedErr(sliceArg, 2)}},
	"$range":        {pos: map[int]constCheck{0: indexedErr(rangeArg, 0), 1: indexedErr(rangeArg, 1), 2: indexedErr(rangeArg, 2)}},
	"$dateAdd":      {named: map[string]constCheck{"unit": unitErr(aggDateArithUnit), "amount": valueErr(dateArithAmount), "timezone": timezoneErr}},
	"$dateSubtract": {named: map[string]constCheck{"unit": unitErr(aggDateArithUnit), "amount": valueErr(dateArithAmount), "timezone": timezoneErr}},
	"$dateDiff": {
		named:  map[string]constCheck{"unit": unitErr(aggParseTimeUnit), "timezone": timezoneErr, "startOfWeek": startOfWeekErr},
		onlyIf: map[string]func(bson.D) bool{"startOfWeek": unitIsWeek},
	},
	"$dateTrunc": {
		named: map[string]constCheck{
			"unit": unitErr(aggParseTimeUnit), "binSize": ignoreOp(valueErr1(dateTruncBinSize)),
			"timezone": timezoneErr, "startOfWeek": startOfWeekErr,
		},
		onlyIf: map[string]func(bson.D) bool{"startOfWeek": unitIsWeek},
	},
	// $dateToString's compilation refuses both too, but at the operator.
	"$dateToString":   {named: map[string]constCheck{"format": dateFormatErr, "timezone": timezoneErr}},
	"$dateToParts":    {named: map[string]constCheck{"timezone": timezoneErr}},
	"$dateFromParts":  {named: map[string]constCheck{"timezone": timezoneErr}},
	"$dateFromString": {named: map[string]constCheck{"timezone": timezoneErr}},
	"$filter":         {named: map[string]constCheck{"limit": ignoreOp(valueErr1(filterLimit))}},
	"$firstN":         {named: map[string]constCheck{"n": ignoreOp(valueErr1(aggPositiveN))}},
	"$lastN":          {named: map[string]constCheck{"n": ignoreOp(valueErr1(aggPositiveN))}},
	"$maxN":           {named: map[string]constCheck{"n": ignoreOp(valueErr1(aggPositiveN))}},
	"$minN":           {named: map[string]constCheck{"n": ignoreOp(valueErr1(aggPositiveN))}},
}

// namedConstCheck returns the check of op's named argument key, or nil
// when there is none or args, op's arguments, make the run time skip it.
func namedConstCheck(op, key string, args bson.D) constCheck {
	c := constArgChecks[op]
	if cond := c.onlyIf[key]; cond != nil && !cond(args) {
		return nil
	}
	return c.named[key]
}

// unitIsWeek reports whether args give the constant unit "week", the one
// for which $dateDiff and $dateTrunc read startOfWeek.
func unitIsWeek(args bson.D) bool {
	for _, e := range args {
		if e.Key == "unit" {
			return e.Value == "week"
		}
	}
	return false
}

func timezoneErr(_ string, v any) error { _, err := aggParseTZ(v); return err }

// dateFormatErr is the error of $dateToString's constant format string v,
// as its compilation finds it.
func dateFormatErr(_ string, v any) error {
	s, ok := v.(string)
	if !ok {
		return nil // a literal of another type is checkLiteral's
	}
	_, err := aggFormatDate(time.Unix(0, 0).UTC(), s)
	return err
}

func startOfWeekErr(op string, v any) error { _, err := aggParseStartOfWeek(op, v); return err }

// checkDatePartTimezone reports the constant timezone of a date part
// operator op ($year, $hour, ...) written as {date, timezone}, which every
// evaluation resolves: a literal that is not a string, or a string that
// names no time zone.
func checkDatePartTimezone(op string, arg any, path []PathStep, add func([]PathStep, string, ...any)) {
	d, ok := arg.(bson.D)
	if !ok || len(d) == 0 || strings.HasPrefix(d[0].Key, "$") {
		return
	}
	for _, e := range d {
		if e.Key == "timezone" {
			p := appendStep(path, PathStep{Key: e.Key})
			checkLiteral(op, op+".timezone", "", kString, e.Value, p, add)
			checkConstArg(op, timezoneErr, kString, e.Value, p, add)
		}
	}
}

func valueErr(f func(string, any) (int64, error)) constCheck {
	return func(op string, v any) error { _, err := f(op, v); return err }
}

func valueErr1(f func(any) (int64, error)) func(any) error {
	return func(v any) error { _, err := f(v); return err }
}

func ignoreOp(f func(any) error) constCheck {
	return func(_ string, v any) error { return f(v) }
}

func indexedErr(f func(int, any) (int64, error), i int) constCheck {
	return func(_ string, v any) error { _, err := f(i, v); return err }
}

func unitErr(f func(string, any) (aggTimeUnit, error)) constCheck {
	return func(op string, v any) error { _, err := f(op, v); return err }
}

func substrCPArgErr(i int) constCheck {
	return func(_ string, v any) error {
		n, err := substrCPInt(i, v)
		if err != nil {
			return err
		}
		return substrCPNegativeErr(i, n)
	}
}

// checkConstArg reports v, a constant argument of operator op at p that
// has the type the operator requires there (want), when check finds that
// it fails every evaluation. Field paths, variables, expressions and null
// are judged only when the expression runs.
func checkConstArg(op string, check constCheck, want argKind, v any, p []PathStep, add func([]PathStep, string, ...any)) {
	if check == nil {
		return
	}
	if k := literalKind(v); k == "" || k == "null" || !kindAccepts(want, v) {
		return
	}
	err := check(op, v)
	if err == nil {
		return
	}
	var me *mongoerr.Error
	if errors.As(err, &me) {
		add(p, "%s", me.Message)
		return
	}
	add(p, "%s", err.Error())
}
