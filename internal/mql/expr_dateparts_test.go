package mql

import "testing"

// TestExprDateAddSubtract checks $dateAdd and $dateSubtract against the
// manual's examples and rules: days in local wall-clock time (so a day
// across a daylight-saving change is 23 or 25 hours), months clamped to
// the end of a shorter month, null for a null or missing argument.
func TestExprDateAddSubtract(t *testing.T) {
	t.Parallel()
	const doc = `{"d": {"$date": "2020-10-31T12:10:05Z"}, "login": {"$date": "2021-03-13T10:00:00Z"}, "loc": "America/New_York"}`
	runExprCases(t, []aggExprCase{
		{name: "manual three days", expr: `{"$dateAdd": {"startDate": "$d", "unit": "day", "amount": 3}}`, doc: doc, want: `{"v": {"$date": "2020-11-03T12:10:05Z"}}`},
		{name: "manual dst day", expr: `{"$dateAdd": {"startDate": "$login", "unit": "day", "amount": 1, "timezone": "$loc"}}`, doc: doc, want: `{"v": {"$date": "2021-03-14T09:00:00Z"}}`},
		{name: "manual dst 24 hours", expr: `{"$dateAdd": {"startDate": "$login", "unit": "hour", "amount": 24, "timezone": "$loc"}}`, doc: doc, want: `{"v": {"$date": "2021-03-14T10:00:00Z"}}`},
		{name: "month clamps", expr: `{"$dateAdd": {"startDate": {"$date": "2021-01-31T08:00:00Z"}, "unit": "month", "amount": 1}}`, want: `{"v": {"$date": "2021-02-28T08:00:00Z"}}`},
		{name: "leap year", expr: `{"$dateAdd": {"startDate": {"$date": "2020-02-29T00:00:00Z"}, "unit": "year", "amount": 1}}`, want: `{"v": {"$date": "2021-02-28T00:00:00Z"}}`},
		{name: "quarter", expr: `{"$dateAdd": {"startDate": {"$date": "2020-11-30T00:00:00Z"}, "unit": "quarter", "amount": 1}}`, want: `{"v": {"$date": "2021-02-28T00:00:00Z"}}`},
		{name: "week", expr: `{"$dateAdd": {"startDate": {"$date": "2020-01-01T00:00:00Z"}, "unit": "week", "amount": 2}}`, want: `{"v": {"$date": "2020-01-15T00:00:00Z"}}`},
		{name: "milliseconds long", expr: `{"$dateAdd": {"startDate": {"$date": "2020-01-01T00:00:00Z"}, "unit": "millisecond", "amount": {"$numberLong": "1500"}}}`, want: `{"v": {"$date": "2020-01-01T00:00:01.500Z"}}`},
		{name: "integral double amount", expr: `{"$dateAdd": {"startDate": {"$date": "2020-01-01T00:00:00Z"}, "unit": "minute", "amount": 2.0}}`, want: `{"v": {"$date": "2020-01-01T00:02:00Z"}}`},
		{name: "timestamp start", expr: `{"$dateAdd": {"startDate": {"$timestamp": {"t": 1577836800, "i": 1}}, "unit": "second", "amount": 1}}`, want: `{"v": {"$date": "2020-01-01T00:00:01Z"}}`},
		{name: "subtract month clamps", expr: `{"$dateSubtract": {"startDate": {"$date": "2021-03-31T12:00:00Z"}, "unit": "month", "amount": 1}}`, want: `{"v": {"$date": "2021-02-28T12:00:00Z"}}`},
		{name: "subtract hours", expr: `{"$dateSubtract": {"startDate": "$d", "unit": "hour", "amount": 12}}`, doc: doc, want: `{"v": {"$date": "2020-10-31T00:10:05Z"}}`},
		{name: "null amount", expr: `{"$dateAdd": {"startDate": "$d", "unit": "day", "amount": null}}`, doc: doc, want: `{"v": null}`},
		{name: "null amount wins over bad start", expr: `{"$dateAdd": {"startDate": "x", "unit": "day", "amount": null}}`, want: `{"v": null}`},
		{name: "missing start", expr: `{"$dateAdd": {"startDate": "$nope", "unit": "day", "amount": 1}}`, want: `{"v": null}`},
		{name: "null timezone", expr: `{"$dateAdd": {"startDate": "$d", "unit": "day", "amount": 1, "timezone": "$nope"}}`, doc: doc, want: `{"v": null}`},
		{name: "not object", expr: `{"$dateAdd": 1}`, code: 5166400},
		{name: "unknown argument", expr: `{"$dateAdd": {"startDate": "$d", "unit": "day", "amount": 1, "foo": 1}}`, code: 5166401},
		{name: "missing amount", expr: `{"$dateAdd": {"startDate": "$d", "unit": "day"}}`, code: 5166402},
		{name: "start not a date", expr: `{"$dateAdd": {"startDate": "$s", "unit": "day", "amount": 1}}`, doc: `{"s": "2020-01-01"}`, code: 5166403},
		{name: "unit not a string", expr: `{"$dateAdd": {"startDate": "$d", "unit": 1, "amount": 1}}`, doc: doc, code: 5166404},
		{name: "unit checked before null amount", expr: `{"$dateAdd": {"startDate": "$d", "unit": "days", "amount": null}}`, doc: doc, code: 9},
		{name: "subtract min long", expr: `{"$dateSubtract": {"startDate": "$d", "unit": "day", "amount": {"$numberLong": "-9223372036854775808"}}}`, doc: doc, code: 6045000},
		{name: "unit unknown", expr: `{"$dateAdd": {"startDate": "$d", "unit": "epoch", "amount": 1}}`, doc: doc, code: 9},
		{name: "paris dst 24 hours", expr: `{"$dateAdd": {"startDate": {"$date": "2020-10-24T18:10:00Z"}, "unit": "hour", "amount": 24, "timezone": "Europe/Paris"}}`, want: `{"v": {"$date": "2020-10-25T18:10:00Z"}}`},
		{name: "paris dst one day", expr: `{"$dateAdd": {"startDate": {"$date": "2020-10-24T18:10:00Z"}, "unit": "day", "amount": 1, "timezone": "Europe/Paris"}}`, want: `{"v": {"$date": "2020-10-25T19:10:00Z"}}`},
		{name: "paris month clamps locally", expr: `{"$dateAdd": {"startDate": {"$date": "2021-01-30T23:30:00Z"}, "unit": "month", "amount": 1, "timezone": "Europe/Paris"}}`, want: `{"v": {"$date": "2021-02-27T23:30:00Z"}}`},
		{name: "subtract two months clamps", expr: `{"$dateSubtract": {"startDate": {"$date": "2021-01-31T03:00:00Z"}, "unit": "month", "amount": 2}}`, want: `{"v": {"$date": "2020-11-30T03:00:00Z"}}`},
		{name: "subtract two months in New York", expr: `{"$dateSubtract": {"startDate": {"$date": "2021-01-31T03:00:00Z"}, "unit": "month", "amount": 2, "timezone": "America/New_York"}}`, want: `{"v": {"$date": "2020-12-01T03:00:00Z"}}`},
		{name: "subtract quarter from field date", expr: `{"$dateSubtract": {"startDate": {"$date": "2020-12-31T12:10:05Z"}, "unit": "month", "amount": 3, "timezone": "Europe/Paris"}}`, want: `{"v": {"$date": "2020-09-30T11:10:05Z"}}`},
		{name: "fractional amount", expr: `{"$dateAdd": {"startDate": "$d", "unit": "day", "amount": 1.5}}`, doc: doc, code: 5166405},
		{name: "amount beyond the unit's range", expr: `{"$dateAdd": {"startDate": "$d", "unit": "year", "amount": {"$numberLong": "9000000000000000000"}}}`, doc: doc, code: 5976500},
		{name: "amount in range overflows", expr: `{"$dateSubtract": {"startDate": "$d", "unit": "month", "amount": 3600000000}}`, doc: doc, code: 5166406},
		{name: "server's invalid amount", expr: `{"$dateSubtract": {"startDate": "$d", "unit": "month", "amount": {"$numberLong": "-30000000000"}}}`, doc: doc, code: 5976500},
		{name: "bad timezone", expr: `{"$dateAdd": {"startDate": "$d", "unit": "day", "amount": 1, "timezone": "Mars/Base"}}`, doc: doc, code: 40485},
	})
}

// TestExprDateDiff checks $dateDiff: it counts unit boundaries crossed in
// the timezone's calendar, as a long.
func TestExprDateDiff(t *testing.T) {
	t.Parallel()
	diff := func(start, end, unit, extra string) string {
		return `{"$dateDiff": {"startDate": {"$date": "` + start + `"}, "endDate": {"$date": "` + end + `"}, "unit": "` + unit + `"` + extra + `}}`
	}
	runExprCases(t, []aggExprCase{
		{name: "manual elapsed days", expr: diff("2020-05-18T14:10:30Z", "2020-05-23T11:20:05Z", "day", ""), want: `{"v": {"$numberLong": "5"}}`},
		{name: "year boundary", expr: diff("2020-12-31T23:59:59Z", "2021-01-01T00:00:00Z", "year", ""), want: `{"v": {"$numberLong": "1"}}`},
		{name: "milliseconds", expr: diff("2020-12-31T23:59:59Z", "2021-01-01T00:00:00Z", "millisecond", ""), want: `{"v": {"$numberLong": "1000"}}`},
		{name: "month boundary", expr: diff("2021-01-31T00:00:00Z", "2021-02-01T00:00:00Z", "month", ""), want: `{"v": {"$numberLong": "1"}}`},
		{name: "no month boundary", expr: diff("2021-01-01T00:00:00Z", "2021-01-31T00:00:00Z", "month", ""), want: `{"v": {"$numberLong": "0"}}`},
		{name: "quarter boundary", expr: diff("2021-03-31T00:00:00Z", "2021-04-01T00:00:00Z", "quarter", ""), want: `{"v": {"$numberLong": "1"}}`},
		{name: "negative", expr: diff("2021-04-01T00:00:00Z", "2020-01-15T00:00:00Z", "month", ""), want: `{"v": {"$numberLong": "-15"}}`},
		{name: "week sunday default", expr: diff("2022-01-08T08:00:00Z", "2022-01-09T08:00:00Z", "week", ""), want: `{"v": {"$numberLong": "1"}}`},
		{name: "week monday", expr: diff("2022-01-08T08:00:00Z", "2022-01-09T08:00:00Z", "week", `, "startOfWeek": "Monday"`), want: `{"v": {"$numberLong": "0"}}`},
		{name: "week monday crossed", expr: diff("2022-01-09T08:00:00Z", "2022-01-10T08:00:00Z", "week", `, "startOfWeek": "mon"`), want: `{"v": {"$numberLong": "1"}}`},
		{name: "day in timezone", expr: diff("2021-01-01T03:00:00Z", "2021-01-01T06:00:00Z", "day", `, "timezone": "America/New_York"`), want: `{"v": {"$numberLong": "1"}}`},
		{name: "day in UTC", expr: diff("2021-01-01T03:00:00Z", "2021-01-01T06:00:00Z", "day", ""), want: `{"v": {"$numberLong": "0"}}`},
		{name: "hour half-hour offset", expr: diff("2021-01-01T00:29:00Z", "2021-01-01T00:31:00Z", "hour", `, "timezone": "+05:30"`), want: `{"v": {"$numberLong": "1"}}`},
		{name: "hour UTC", expr: diff("2021-01-01T00:29:00Z", "2021-01-01T00:31:00Z", "hour", ""), want: `{"v": {"$numberLong": "0"}}`},
		{name: "hours across dst", expr: diff("2021-03-14T06:00:00Z", "2021-03-14T08:00:00Z", "hour", `, "timezone": "America/New_York"`), want: `{"v": {"$numberLong": "2"}}`},
		{name: "milliseconds overflow", expr: `{"$dateDiff": {"startDate": "$a", "endDate": "$b", "unit": "millisecond"}}`, doc: `{"a": {"$date": {"$numberLong": "-9000000000000000000"}}, "b": {"$date": {"$numberLong": "9000000000000000000"}}}`, code: 5166308},
		{name: "hours to midnight", expr: diff("2020-11-01T18:23:36Z", "2020-11-02T00:00:00Z", "hour", `, "timezone": "America/New_York"`), want: `{"v": {"$numberLong": "6"}}`},
		{name: "week sunday to monday from MONDAY", expr: diff("2021-01-24T18:23:36Z", "2021-01-25T02:23:36Z", "week", `, "startOfWeek": "MONDAY"`), want: `{"v": {"$numberLong": "1"}}`},
		{name: "week sunday to monday default", expr: diff("2021-01-24T18:23:36Z", "2021-01-25T02:23:36Z", "week", ""), want: `{"v": {"$numberLong": "0"}}`},
		{name: "week backwards in New York", expr: diff("2021-01-17T05:00:00Z", "2021-01-17T04:59:00Z", "week", `, "timezone": "America/New_York", "startOfWeek": "sunday"`), want: `{"v": {"$numberLong": "-1"}}`},
		{name: "seconds", expr: diff("2021-01-01T00:00:00.999Z", "2021-01-01T00:00:01.001Z", "second", ""), want: `{"v": {"$numberLong": "1"}}`},
		{name: "null end", expr: `{"$dateDiff": {"startDate": "$d", "endDate": null, "unit": "day"}}`, doc: `{"d": {"$date": "2021-01-01T00:00:00Z"}}`, want: `{"v": null}`},
		{name: "null startOfWeek for week", expr: `{"$dateDiff": {"startDate": "$d", "endDate": "$d", "unit": "week", "startOfWeek": "$nope"}}`, doc: `{"d": {"$date": "2021-01-01T00:00:00Z"}}`, want: `{"v": null}`},
		{name: "startOfWeek ignored for day", expr: `{"$dateDiff": {"startDate": "$d", "endDate": "$d", "unit": "day", "startOfWeek": 1}}`, doc: `{"d": {"$date": "2021-01-01T00:00:00Z"}}`, want: `{"v": {"$numberLong": "0"}}`},
		{name: "not object", expr: `{"$dateDiff": "x"}`, code: 5166301},
		{name: "unknown argument", expr: `{"$dateDiff": {"startDate": 1, "endDate": 1, "unit": "day", "binSize": 1}}`, code: 5166302},
		{name: "missing startDate", expr: `{"$dateDiff": {"endDate": 1, "unit": "day"}}`, code: 5166303},
		{name: "missing endDate", expr: `{"$dateDiff": {"startDate": 1, "unit": "day"}}`, code: 5166304},
		{name: "missing unit", expr: `{"$dateDiff": {"startDate": 1, "endDate": 1}}`, code: 5166305},
		{name: "start not a date", expr: `{"$dateDiff": {"startDate": "$s", "endDate": "$s", "unit": "day"}}`, doc: `{"s": 1}`, code: 5166307},
		{name: "unit not a string", expr: `{"$dateDiff": {"startDate": "$d", "endDate": "$d", "unit": 5}}`, doc: `{"d": {"$date": "2021-01-01T00:00:00Z"}}`, code: 5439013},
		{name: "unit unknown", expr: `{"$dateDiff": {"startDate": "$d", "endDate": "$d", "unit": "days"}}`, doc: `{"d": {"$date": "2021-01-01T00:00:00Z"}}`, code: 5439014},
		{name: "startOfWeek unknown", expr: `{"$dateDiff": {"startDate": "$d", "endDate": "$d", "unit": "week", "startOfWeek": "funday"}}`, doc: `{"d": {"$date": "2021-01-01T00:00:00Z"}}`, code: 5439016},
		{name: "startOfWeek not a string", expr: `{"$dateDiff": {"startDate": "$d", "endDate": "$d", "unit": "week", "startOfWeek": 2}}`, doc: `{"d": {"$date": "2021-01-01T00:00:00Z"}}`, code: 5439015},
	})
}

// TestExprDateTrunc checks $dateTrunc: bins of binSize units counted from
// 2000-01-01 in the timezone, weeks from the first startOfWeek on or after
// it; null wins over invalid arguments.
func TestExprDateTrunc(t *testing.T) {
	t.Parallel()
	const order = `{"d": {"$date": "2020-05-18T14:10:30Z"}}`
	runExprCases(t, []aggExprCase{
		{name: "manual two weeks", expr: `{"$dateTrunc": {"date": "$d", "unit": "week", "binSize": 2, "timezone": "America/Los_Angeles", "startOfWeek": "Monday"}}`, doc: order, want: `{"v": {"$date": "2020-05-11T07:00:00Z"}}`},
		{name: "manual six months", expr: `{"$dateTrunc": {"date": "$d", "unit": "month", "binSize": 6, "timezone": "America/Los_Angeles"}}`, doc: order, want: `{"v": {"$date": "2020-01-01T08:00:00Z"}}`},
		{name: "year", expr: `{"$dateTrunc": {"date": "$d", "unit": "year"}}`, doc: order, want: `{"v": {"$date": "2020-01-01T00:00:00Z"}}`},
		{name: "quarter", expr: `{"$dateTrunc": {"date": "$d", "unit": "quarter"}}`, doc: order, want: `{"v": {"$date": "2020-04-01T00:00:00Z"}}`},
		{name: "day", expr: `{"$dateTrunc": {"date": "$d", "unit": "day"}}`, doc: order, want: `{"v": {"$date": "2020-05-18T00:00:00Z"}}`},
		{name: "two hours", expr: `{"$dateTrunc": {"date": {"$date": "2020-11-01T18:23:36Z"}, "unit": "hour", "binSize": 2}}`, want: `{"v": {"$date": "2020-11-01T18:00:00Z"}}`},
		{name: "four hours in New York", expr: `{"$dateTrunc": {"date": {"$date": "2021-12-01T18:23:36Z"}, "unit": "hour", "binSize": 4, "timezone": "America/New_York", "startOfWeek": "IGNORED"}}`, want: `{"v": {"$date": "2021-12-01T17:00:00Z"}}`},
		{name: "week default sunday", expr: `{"$dateTrunc": {"date": {"$date": "2021-02-15T18:23:36Z"}, "unit": "week"}}`, want: `{"v": {"$date": "2021-02-14T00:00:00Z"}}`},
		{name: "two weeks from monday in New York", expr: `{"$dateTrunc": {"date": {"$date": "2000-01-30T18:00:00Z"}, "unit": "week", "binSize": 2, "timezone": "America/New_York", "startOfWeek": "mon"}}`, want: `{"v": {"$date": "2000-01-17T05:00:00Z"}}`},
		{name: "objectId", expr: `{"$dateTrunc": {"date": {"$oid": "507c7f79bcf86cd7994f6c0e"}, "unit": "minute", "binSize": 10}}`, want: `{"v": {"$date": "2012-10-15T21:20:00Z"}}`},
		{name: "timestamp", expr: `{"$dateTrunc": {"date": {"$timestamp": {"t": 1350336377, "i": 0}}, "unit": "second", "binSize": 10}}`, want: `{"v": {"$date": "2012-10-15T21:26:10Z"}}`},
		{name: "decimal binSize", expr: `{"$dateTrunc": {"date": {"$date": "2020-01-30T18:59:00Z"}, "unit": "minute", "binSize": {"$numberDecimal": "15"}}}`, want: `{"v": {"$date": "2020-01-30T18:45:00Z"}}`},
		{name: "milliseconds", expr: `{"$dateTrunc": {"date": {"$date": "2020-01-30T18:59:00.003Z"}, "unit": "millisecond", "binSize": 1000}}`, want: `{"v": {"$date": "2020-01-30T18:59:00Z"}}`},
		{name: "before 2000", expr: `{"$dateTrunc": {"date": {"$date": "1999-12-31T23:00:00Z"}, "unit": "day", "binSize": 3}}`, want: `{"v": {"$date": "1999-12-29T00:00:00Z"}}`},
		{name: "startOfWeek ignored for year", expr: `{"$dateTrunc": {"date": {"$date": "2020-01-30T18:59:00Z"}, "unit": "year", "startOfWeek": 1}}`, want: `{"v": {"$date": "2020-01-01T00:00:00Z"}}`},
		{name: "null date", expr: `{"$dateTrunc": {"date": null, "unit": "hour"}}`, want: `{"v": null}`},
		{name: "missing unit value wins over bad others", expr: `{"$dateTrunc": {"date": "x", "unit": "$nope", "binSize": "x"}}`, want: `{"v": null}`},
		{name: "null binSize", expr: `{"$dateTrunc": {"date": "$d", "unit": "hour", "binSize": null}}`, doc: order, want: `{"v": null}`},
		{name: "null timezone", expr: `{"$dateTrunc": {"date": "$d", "unit": "hour", "timezone": null}}`, doc: order, want: `{"v": null}`},
		{name: "null startOfWeek", expr: `{"$dateTrunc": {"date": "$d", "unit": "week", "startOfWeek": null}}`, doc: order, want: `{"v": null}`},
		{name: "not object", expr: `{"$dateTrunc": "A"}`, code: 5439007},
		{name: "unknown argument", expr: `{"$dateTrunc": {"endDate": 1}}`, code: 5439008},
		{name: "missing date", expr: `{"$dateTrunc": {"unit": "week"}}`, code: 5439009},
		{name: "missing unit", expr: `{"$dateTrunc": {"date": "$d"}}`, code: 5439010},
		{name: "date not a date", expr: `{"$dateTrunc": {"date": "string", "unit": "hour"}}`, code: 5439012},
		{name: "unit not a string", expr: `{"$dateTrunc": {"date": "$d", "unit": 1}}`, doc: order, code: 5439013},
		{name: "unit unknown", expr: `{"$dateTrunc": {"date": "$d", "unit": "century"}}`, doc: order, code: 5439014},
		{name: "binSize string", expr: `{"$dateTrunc": {"date": "$d", "unit": "hour", "binSize": "Number"}}`, doc: order, code: 5439017},
		{name: "binSize fraction", expr: `{"$dateTrunc": {"date": "$d", "unit": "hour", "binSize": 2.5}}`, doc: order, code: 5439017},
		{name: "binSize too large", expr: `{"$dateTrunc": {"date": "$d", "unit": "day", "binSize": {"$numberLong": "100000000001"}}}`, doc: order, code: 5439006},
		{name: "binSize zero", expr: `{"$dateTrunc": {"date": "$d", "unit": "hour", "binSize": 0}}`, doc: order, code: 5439018},
		{name: "timezone not a string", expr: `{"$dateTrunc": {"date": "$d", "unit": "hour", "timezone": 1}}`, doc: order, code: 40517},
		{name: "timezone unknown", expr: `{"$dateTrunc": {"date": "$d", "unit": "hour", "timezone": "America/Invalid"}}`, doc: order, code: 40485},
		{name: "startOfWeek not a string", expr: `{"$dateTrunc": {"date": "$d", "unit": "week", "startOfWeek": 1}}`, doc: order, code: 5439015},
		{name: "startOfWeek unknown", expr: `{"$dateTrunc": {"date": "$d", "unit": "week", "startOfWeek": "FRIDIE"}}`, doc: order, code: 5439016},
	})
}

// TestExprDateParts checks $dateToParts and $dateFromParts against the
// manual's examples, including ISO week dates and out-of-range parts that
// carry into the next unit.
func TestExprDateParts(t *testing.T) {
	t.Parallel()
	const doc = `{"date": {"$date": "2017-01-01T01:29:09.123Z"}}`
	runExprCases(t, []aggExprCase{
		{name: "toParts manual", expr: `{"$dateToParts": {"date": "$date"}}`, doc: doc, want: `{"v": {"year": 2017, "month": 1, "day": 1, "hour": 1, "minute": 29, "second": 9, "millisecond": 123}}`},
		{name: "toParts manual iso", expr: `{"$dateToParts": {"date": "$date", "iso8601": true}}`, doc: doc, want: `{"v": {"isoWeekYear": 2016, "isoWeek": 52, "isoDayOfWeek": 7, "hour": 1, "minute": 29, "second": 9, "millisecond": 123}}`},
		{name: "toParts manual timezone", expr: `{"$dateToParts": {"date": "$date", "timezone": "America/New_York"}}`, doc: doc, want: `{"v": {"year": 2016, "month": 12, "day": 31, "hour": 20, "minute": 29, "second": 9, "millisecond": 123}}`},
		{name: "toParts null date", expr: `{"$dateToParts": {"date": "$nope"}}`, want: `{"v": null}`},
		{name: "toParts null timezone", expr: `{"$dateToParts": {"date": "$date", "timezone": null}}`, doc: doc, want: `{"v": null}`},
		{name: "toParts not object", expr: `{"$dateToParts": 1}`, code: 40524},
		{name: "toParts unknown", expr: `{"$dateToParts": {"date": "$date", "foo": 1}}`, code: 40520},
		{name: "toParts missing date", expr: `{"$dateToParts": {"timezone": "UTC"}}`, code: 40522},
		{name: "toParts iso not bool", expr: `{"$dateToParts": {"date": "$date", "iso8601": "yes"}}`, doc: doc, code: 40521},
		{name: "toParts not a date", expr: `{"$dateToParts": {"date": "$s"}}`, doc: `{"s": "2017"}`, code: 16006},
		{name: "fromParts manual", expr: `{"$dateFromParts": {"year": 2017, "month": 2, "day": 8, "hour": 12}}`, want: `{"v": {"$date": "2017-02-08T12:00:00Z"}}`},
		{name: "fromParts manual iso", expr: `{"$dateFromParts": {"isoWeekYear": 2017, "isoWeek": 6, "isoDayOfWeek": 3, "hour": 12}}`, want: `{"v": {"$date": "2017-02-08T12:00:00Z"}}`},
		{name: "fromParts manual timezone", expr: `{"$dateFromParts": {"year": 2016, "month": 12, "day": 31, "hour": 23, "minute": 46, "second": 12, "timezone": "America/New_York"}}`, want: `{"v": {"$date": "2017-01-01T04:46:12Z"}}`},
		{name: "fromParts defaults", expr: `{"$dateFromParts": {"year": 2017}}`, want: `{"v": {"$date": "2017-01-01T00:00:00Z"}}`},
		{name: "fromParts month carries", expr: `{"$dateFromParts": {"year": 2017, "month": 14, "day": 1}}`, want: `{"v": {"$date": "2018-02-01T00:00:00Z"}}`},
		{name: "fromParts month zero", expr: `{"$dateFromParts": {"year": 2017, "month": 0, "day": 1}}`, want: `{"v": {"$date": "2016-12-01T00:00:00Z"}}`},
		{name: "fromParts milliseconds carry", expr: `{"$dateFromParts": {"year": 2017, "millisecond": 1500}}`, want: `{"v": {"$date": "2017-01-01T00:00:01.500Z"}}`},
		{name: "fromParts iso week 1", expr: `{"$dateFromParts": {"isoWeekYear": 2021}}`, want: `{"v": {"$date": "2021-01-04T00:00:00Z"}}`},
		{name: "fromParts offset", expr: `{"$dateFromParts": {"year": 2017, "hour": 5, "timezone": "+05:30"}}`, want: `{"v": {"$date": "2016-12-31T23:30:00Z"}}`},
		{name: "fromParts null part", expr: `{"$dateFromParts": {"year": 2017, "month": "$nope"}}`, want: `{"v": null}`},
		{name: "fromParts not object", expr: `{"$dateFromParts": 2017}`, code: 40519},
		{name: "fromParts unknown", expr: `{"$dateFromParts": {"year": 2017, "weekday": 1}}`, code: 40518},
		{name: "fromParts no year", expr: `{"$dateFromParts": {"month": 1}}`, code: 40516},
		{name: "fromParts mixed", expr: `{"$dateFromParts": {"year": 2017, "isoWeek": 1}}`, code: 40489},
		{name: "fromParts not integer", expr: `{"$dateFromParts": {"year": 2017, "month": 1.5}}`, code: 40515},
		{name: "fromParts string", expr: `{"$dateFromParts": {"year": "2017"}}`, code: 40515},
		{name: "fromParts year range", expr: `{"$dateFromParts": {"year": 10000}}`, code: 40523},
		{name: "fromParts part range", expr: `{"$dateFromParts": {"year": 2017, "day": 40000}}`, code: 31034},
	})
}

// TestExprNewOperatorsFoldConstants checks that a constant argument that
// cannot be evaluated fails at compile time inside the new operators, as
// MongoDB's optimizer refuses it while parsing.
func TestExprNewOperatorsFoldConstants(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{
		`{"$dateTrunc": {"date": "$d", "unit": {"$toString": {"$divide": [1, 0]}}}}`,
		`{"$dateAdd": {"startDate": "$d", "unit": "day", "amount": {"$divide": [1, 0]}}}`,
		`{"$dateDiff": {"startDate": "$d", "endDate": "$d", "unit": "day", "timezone": {"$divide": [1, 0]}}}`,
		`{"$dateFromParts": {"year": {"$divide": [1, 0]}}}`,
		`{"$dateToParts": {"date": {"$divide": [1, 0]}}}`,
		`{"$firstN": {"n": 1, "input": {"$divide": [1, 0]}}}`,
		`{"$sortArray": {"input": {"$divide": [1, 0]}, "sortBy": 1}}`,
		`{"$zip": {"inputs": ["$a", {"$divide": [1, 0]}]}}`,
		`{"$dateTrunc": {"date": "not a date", "unit": "day"}}`,
	} {
		if _, err := CompileExpr(aggTestDoc(t, `{"e": `+expr+`}`)[0].Value); err == nil {
			t.Errorf("%s compiled, want the constant's error", expr)
		}
	}
}
