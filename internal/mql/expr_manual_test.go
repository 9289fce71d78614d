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
