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
