package mql

import "testing"

// TestExprDateToStringManual checks $dateToString against the examples
// and rules of MongoDB's manual page for the operator.
func TestExprDateToStringManual(t *testing.T) {
	t.Parallel()
	const doc = `{"date": {"$date": "2014-01-01T08:15:39.736Z"}}`
	runExprCases(t, []aggExprCase{
		{name: "yearMonthDayUTC", expr: `{"$dateToString": {"format": "%Y-%m-%d", "date": "$date"}}`, doc: doc, want: `{"v": "2014-01-01"}`},
		{name: "timewithOffsetNY", expr: `{"$dateToString": {"format": "%H:%M:%S:%L%z", "date": "$date", "timezone": "America/New_York"}}`, doc: doc, want: `{"v": "03:15:39:736-0500"}`},
		{name: "timewithOffset430", expr: `{"$dateToString": {"format": "%H:%M:%S:%L%z", "date": "$date", "timezone": "+04:30"}}`, doc: doc, want: `{"v": "12:45:39:736+0430"}`},
		{name: "minutesOffsetNY", expr: `{"$dateToString": {"format": "%Z", "date": "$date", "timezone": "America/New_York"}}`, doc: doc, want: `{"v": "-300"}`},
		{name: "minutesOffset430", expr: `{"$dateToString": {"format": "%Z", "date": "$date", "timezone": "+04:30"}}`, doc: doc, want: `{"v": "270"}`},
		{name: "minutesOffset UTC", expr: `{"$dateToString": {"format": "%Z", "date": "$date"}}`, doc: doc, want: `{"v": "0"}`},
	})
}

// TestExprDateToStringDefaultFormat checks the manual's rule for the
// default format: "%Y-%m-%dT%H:%M:%S.%LZ" when the timezone is
// unspecified or explicitly UTC, "%Y-%m-%dT%H:%M:%S.%L" for a non-UTC
// timezone.
func TestExprDateToStringDefaultFormat(t *testing.T) {
	t.Parallel()
	const doc = `{"date": {"$date": "2014-01-01T08:15:39.736Z"}}`
	runExprCases(t, []aggExprCase{
		{name: "no timezone", expr: `{"$dateToString": {"date": "$date"}}`, doc: doc, want: `{"v": "2014-01-01T08:15:39.736Z"}`},
		{name: "explicit UTC", expr: `{"$dateToString": {"date": "$date", "timezone": "UTC"}}`, doc: doc, want: `{"v": "2014-01-01T08:15:39.736Z"}`},
		{name: "zero offset", expr: `{"$dateToString": {"date": "$date", "timezone": "+00:00"}}`, doc: doc, want: `{"v": "2014-01-01T08:15:39.736Z"}`},
		{name: "timezone from field", expr: `{"$dateToString": {"date": "$date", "timezone": "$tz"}}`, doc: `{"date": {"$date": "2014-01-01T08:15:39.736Z"}, "tz": "UTC"}`, want: `{"v": "2014-01-01T08:15:39.736Z"}`},
		{name: "non-UTC offset", expr: `{"$dateToString": {"date": "$date", "timezone": "+04:30"}}`, doc: doc, want: `{"v": "2014-01-01T12:45:39.736"}`},
		{name: "Olson zone", expr: `{"$dateToString": {"date": "$date", "timezone": "America/New_York"}}`, doc: doc, want: `{"v": "2014-01-01T03:15:39.736"}`},
		{name: "null timezone", expr: `{"$dateToString": {"date": "$date", "timezone": null}}`, doc: doc, want: `{"v": null}`},
	})
}

// TestExprToDateManual checks $toDate against the conversion table of
// MongoDB's manual page for the operator.
func TestExprToDateManual(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "double", expr: `{"$toDate": 120000000000.5}`, want: `{"v": {"$date": "1973-10-20T21:20:00Z"}}`},
		{name: "decimal", expr: `{"$toDate": {"$numberDecimal": "1253372036000.50"}}`, want: `{"v": {"$date": "2009-09-19T14:53:56Z"}}`},
		{name: "long", expr: `{"$toDate": {"$numberLong": "1100000000000"}}`, want: `{"v": {"$date": "2004-11-09T11:33:20Z"}}`}, // the manual prints 2004-11-19, a typo: 1.1e12 ms is Nov 9
		{name: "negative long", expr: `{"$toDate": {"$numberLong": "-1100000000000"}}`, want: `{"v": {"$date": "1935-02-22T12:26:40Z"}}`},
		{name: "objectId", expr: `{"$toDate": {"$oid": "5ab9c3da31c2ab715d421285"}}`, want: `{"v": {"$date": "2018-03-27T04:08:58Z"}}`},
		{name: "date string", expr: `{"$toDate": "2018-03-20"}`, want: `{"v": {"$date": "2018-03-20T00:00:00Z"}}`},
		{name: "string with Z", expr: `{"$toDate": "2018-03-20T12:00:00Z"}`, want: `{"v": {"$date": "2018-03-20T12:00:00Z"}}`},
		{name: "string with offset", expr: `{"$toDate": "2018-03-20T12:00:00+0500"}`, want: `{"v": {"$date": "2018-03-20T07:00:00Z"}}`},
		{name: "string with spaced offset", expr: `{"$toDate": "2018-03-20 11:00:06 +0500"}`, want: `{"v": {"$date": "2018-03-20T06:00:06Z"}}`},
		{name: "not a date", expr: `{"$toDate": "Friday"}`, code: 241},
		{name: "timestamp", expr: `{"$toDate": {"$timestamp": {"t": 1637688118, "i": 1}}}`, want: `{"v": {"$date": "2021-11-23T17:21:58Z"}}`},
		{name: "dateFromString spaced offset", expr: `{"$dateFromString": {"dateString": "2018-03-20 11:00:06 +0500"}}`, want: `{"v": {"$date": "2018-03-20T06:00:06Z"}}`},
	})
}

// TestExprDateFromStringManual checks $dateFromString against the
// examples of MongoDB's manual page, including its rule that a dateString
// with zone information cannot be combined with a timezone argument.
func TestExprDateFromStringManual(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "no zone", expr: `{"$dateFromString": {"dateString": "2017-02-08T12:10:40.787"}}`, want: `{"v": {"$date": "2017-02-08T12:10:40.787Z"}}`},
		{name: "timezone", expr: `{"$dateFromString": {"dateString": "2017-02-08T12:10:40.787", "timezone": "America/New_York"}}`, want: `{"v": {"$date": "2017-02-08T17:10:40.787Z"}}`},
		{name: "date only", expr: `{"$dateFromString": {"dateString": "2017-02-08"}}`, want: `{"v": {"$date": "2017-02-08T00:00:00Z"}}`},
		{name: "format m-d-Y", expr: `{"$dateFromString": {"dateString": "06-15-2018", "format": "%m-%d-%Y"}}`, want: `{"v": {"$date": "2018-06-15T00:00:00Z"}}`},
		{name: "format d-m-Y", expr: `{"$dateFromString": {"dateString": "15-06-2018", "format": "%d-%m-%Y"}}`, want: `{"v": {"$date": "2018-06-15T00:00:00Z"}}`},
		{name: "offset timezone", expr: `{"$dateFromString": {"dateString": "2017-02-08", "timezone": "-05:00"}}`, want: `{"v": {"$date": "2017-02-08T05:00:00Z"}}`},
		{name: "Europe/London", expr: `{"$dateFromString": {"dateString": "2017-02-09", "timezone": "Europe/London"}}`, want: `{"v": {"$date": "2017-02-09T00:00:00Z"}}`},
		{name: "compact offset timezone", expr: `{"$dateFromString": {"dateString": "2017-02-09T03:35:02.055", "timezone": "+0530"}}`, want: `{"v": {"$date": "2017-02-08T22:05:02.055Z"}}`},
		{name: "onError", expr: `{"$dateFromString": {"dateString": "20177-02-09T03:35:02.055", "timezone": "America/New_York", "onError": "bad"}}`, want: `{"v": "bad"}`},
		{name: "onNull", expr: `{"$dateFromString": {"dateString": null, "timezone": "America/New_York", "onNull": {"$date": "1970-01-01T00:00:00Z"}}}`, want: `{"v": {"$date": "1970-01-01T00:00:00Z"}}`},
		{name: "Z with timezone", expr: `{"$dateFromString": {"dateString": "2017-02-08T12:10:40.787Z", "timezone": "America/New_York"}}`, code: 241},
		{name: "offset with timezone", expr: `{"$dateFromString": {"dateString": "2017-07-04T00:00:00-0400", "timezone": "+01:00"}}`, code: 241},
		{name: "format offset with timezone", expr: `{"$dateFromString": {"dateString": "2017-07-04 -0400", "format": "%Y-%m-%d %z", "timezone": "Europe/London"}}`, code: 241},
		{name: "Z with timezone onError", expr: `{"$dateFromString": {"dateString": "2017-02-08T12:10:40.787Z", "timezone": "America/New_York", "onError": "bad"}}`, want: `{"v": "bad"}`},
		{name: "Z with zero offset timezone", expr: `{"$dateFromString": {"dateString": "2017-02-08T12:10:40.787Z", "timezone": "+00:00"}}`, want: `{"v": {"$date": "2017-02-08T12:10:40.787Z"}}`},
		{name: "offset without timezone", expr: `{"$dateFromString": {"dateString": "2017-07-04T00:00:00-0400"}}`, want: `{"v": {"$date": "2017-07-04T04:00:00Z"}}`},
	})
}

// TestExprRoundManual checks $round and $trunc against the examples and
// the "Rounding Numbers Ending in 5" chart of MongoDB's manual. A double
// is rounded by its binary value (34 significant digits), so 2.45 rounds
// up at one place.
func TestExprRoundManual(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "124.5 place 1", expr: `{"$round": [124.5, 1]}`, want: `{"v": 124.5}`},
		{name: "124.5 place 0", expr: `{"$round": [124.5, 0]}`, want: `{"v": 124.0}`},
		{name: "124.5 place -1", expr: `{"$round": [124.5, -1]}`, want: `{"v": 120.0}`},
		{name: "125.5 place 0", expr: `{"$round": [125.5, 0]}`, want: `{"v": 126.0}`},
		{name: "125.5 place -1", expr: `{"$round": [125.5, -1]}`, want: `{"v": 130.0}`},
		{name: "25 place -1", expr: `{"$round": [25, -1]}`, want: `{"v": 20}`},
		{name: "12.5 place 0", expr: `{"$round": [12.5, 0]}`, want: `{"v": 12.0}`},
		{name: "12.5 place -1", expr: `{"$round": [12.5, -1]}`, want: `{"v": 10.0}`},
		{name: "2.25 place 1", expr: `{"$round": [2.25, 1]}`, want: `{"v": 2.2}`},
		{name: "2.25 place 0", expr: `{"$round": [2.25, 0]}`, want: `{"v": 2.0}`},
		{name: "2.45 place 1", expr: `{"$round": [2.45, 1]}`, want: `{"v": 2.5}`},
		{name: "2.45 place 0", expr: `{"$round": [2.45, 0]}`, want: `{"v": 2.0}`},
		{name: "2.45 place -1", expr: `{"$round": [2.45, -1]}`, want: `{"v": 0.0}`},
		{name: "1234.5678 place 2", expr: `{"$round": [1234.5678, 2]}`, want: `{"v": 1234.57}`},
		{name: "1234.5678 place -2", expr: `{"$round": [1234.5678, -2]}`, want: `{"v": 1200.0}`},
		{name: "1234.5678 place -4", expr: `{"$round": [1234.5678, -4]}`, want: `{"v": 0.0}`},
		{name: "19.25 place 1", expr: `{"$round": [19.25, 1]}`, want: `{"v": 19.2}`},
		{name: "28.73 place 1", expr: `{"$round": [28.73, 1]}`, want: `{"v": 28.7}`},
		{name: "-45.39 place 1", expr: `{"$round": [-45.39, 1]}`, want: `{"v": -45.4}`},
		{name: "28.73 place 0", expr: `{"$round": [28.73, 0]}`, want: `{"v": 29.0}`},
		{name: "2.675 place 2 (binary value below the tie)", expr: `{"$round": [2.675, 2]}`, want: `{"v": 2.67}`},
		{name: "NaN", expr: `{"$round": [{"$numberDouble": "NaN"}, 1]}`, want: `{"v": {"$numberDouble": "NaN"}}`},
		{name: "Infinity", expr: `{"$round": [{"$numberDouble": "Infinity"}, 1]}`, want: `{"v": {"$numberDouble": "Infinity"}}`},
		{name: "-Infinity", expr: `{"$round": [{"$numberDouble": "-Infinity"}, 1]}`, want: `{"v": {"$numberDouble": "-Infinity"}}`},
		{name: "decimal tie stays exact", expr: `{"$round": [{"$numberDecimal": "2.45"}, 1]}`, want: `{"v": {"$numberDecimal": "2.4"}}`},
		{name: "trunc 19.25", expr: `{"$trunc": [19.25, 1]}`, want: `{"v": 19.2}`},
		{name: "trunc -45.39 place -1", expr: `{"$trunc": [-45.39, -1]}`, want: `{"v": -40.0}`},
	})
}

// TestExprRoundArgumentOrder checks the manual's rules that a null or
// missing number makes $round null and a non-numeric number is an error,
// whatever the place argument is.
func TestExprRoundArgumentOrder(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "null number", expr: `{"$round": [null, 1]}`, want: `{"v": null}`},
		{name: "null number, fractional place", expr: `{"$round": [null, 1.5]}`, want: `{"v": null}`},
		{name: "missing number, out of range place", expr: `{"$trunc": ["$nope", 500]}`, want: `{"v": null}`},
		{name: "string number, null place", expr: `{"$round": ["x", null]}`, code: 51081},
		{name: "number, null place", expr: `{"$round": [2.5, null]}`, want: `{"v": null}`},
		{name: "number, fractional place", expr: `{"$round": [2.5, 1.5]}`, code: 51082},
	})
}

// TestExprDateToStringYearRange checks that $dateToString, whose %Y and
// %G print 0000-9999 according to the manual, fails for a date outside
// that range as MongoDB does (code 18537) instead of printing it.
func TestExprDateToStringYearRange(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "year 9999", expr: `{"$dateToString": {"date": {"$date": {"$numberLong": "253402300799999"}}}}`, want: `{"v": "9999-12-31T23:59:59.999Z"}`},
		{name: "year 10000", expr: `{"$dateToString": {"date": {"$date": {"$numberLong": "253402300800000"}}}}`, code: 18537},
		{name: "year 0", expr: `{"$dateToString": {"date": {"$date": {"$numberLong": "-62167219200000"}}, "format": "%Y"}}`, want: `{"v": "0000"}`},
		{name: "year -1", expr: `{"$dateToString": {"date": {"$date": {"$numberLong": "-62167219200001"}}, "format": "%Y"}}`, code: 18537},
		{name: "iso year 10000", expr: `{"$dateToString": {"date": {"$date": {"$numberLong": "253402473600000"}}, "format": "%G"}}`, code: 18537},
		{name: "no year specifier", expr: `{"$dateToString": {"date": {"$date": {"$numberLong": "253402300800000"}}, "format": "%m-%d"}}`, want: `{"v": "01-01"}`},
		{name: "iso year 9999 in year 10000", expr: `{"$dateToString": {"date": {"$date": {"$numberLong": "253402300800000"}}, "format": "%G"}}`, want: `{"v": "9999"}`},
	})
}

// TestExprDateFromStringFormatSpecifiers checks the specifiers
// $dateFromString parses: the ISO week date parts %G, %V and %u set the
// date, and the specifiers only $dateToString knows (%j, %U, %w) are
// rejected with code 18536, which onError does not catch.
func TestExprDateFromStringFormatSpecifiers(t *testing.T) {
	t.Parallel()
	runExprCases(t, []aggExprCase{
		{name: "iso week date", expr: `{"$dateFromString": {"dateString": "2017-W05-3", "format": "%G-W%V-%u"}}`, want: `{"v": {"$date": "2017-02-01T00:00:00Z"}}`},
		{name: "iso week 1 in previous year", expr: `{"$dateFromString": {"dateString": "2020-01-1", "format": "%G-%V-%u"}}`, want: `{"v": {"$date": "2019-12-30T00:00:00Z"}}`},
		{name: "iso week 53", expr: `{"$dateFromString": {"dateString": "2020-53-7 10:30", "format": "%G-%V-%u %H:%M"}}`, want: `{"v": {"$date": "2021-01-03T10:30:00Z"}}`},
		{name: "round trip with dateToString", expr: `{"$dateFromString": {"dateString": {"$dateToString": {"date": {"$date": "2014-01-01T08:15:39.736Z"}, "format": "%G-%V-%u %H:%M:%S.%L"}}, "format": "%G-%V-%u %H:%M:%S.%L"}}`, want: `{"v": {"$date": "2014-01-01T08:15:39.736Z"}}`},
		{name: "day of year rejected", expr: `{"$dateFromString": {"dateString": "2017-032", "format": "%Y-%j"}}`, code: 18536},
		{name: "week rejected despite onError", expr: `{"$dateFromString": {"dateString": "2017-05", "format": "%Y-%U", "onError": "bad"}}`, code: 18536},
		{name: "weekday rejected", expr: `{"$dateFromString": {"dateString": "2017-01-01 1", "format": "%Y-%m-%d %w"}}`, code: 18536},
		{name: "trailing percent", expr: `{"$dateFromString": {"dateString": "2017", "format": "%Y%"}}`, code: 18535},
		{name: "mismatch is a parse error", expr: `{"$dateFromString": {"dateString": "2017/01/01", "format": "%Y-%m-%d", "onError": "bad"}}`, want: `{"v": "bad"}`},
	})
}
