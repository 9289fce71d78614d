package mql

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestAccumulators(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		op     string
		inputs string // relaxed Extended JSON array of accumulator arguments; "$missing" stands for Missing
		want   string // relaxed Extended JSON of {"v": result}
	}{
		{name: "sum ints", op: "$sum", inputs: `[1, 2, 3]`, want: `{"v": 6}`},
		{name: "sum ignores non-numbers", op: "$sum", inputs: `["a", null, 2, [5], "$missing"]`, want: `{"v": 2}`},
		{name: "sum int overflow to long", op: "$sum", inputs: `[2147483647, 1]`, want: `{"v": {"$numberLong": "2147483648"}}`},
		{name: "sum long overflow to double", op: "$sum", inputs: `[{"$numberLong": "9223372036854775807"}, {"$numberLong": "1"}]`, want: `{"v": 9.223372036854775808e18}`},
		{name: "sum with double", op: "$sum", inputs: `[1, 0.5]`, want: `{"v": 1.5}`},
		{name: "sum with decimal", op: "$sum", inputs: `[1, {"$numberDecimal": "0.25"}]`, want: `{"v": {"$numberDecimal": "1.25"}}`},
		{name: "sum of nothing", op: "$sum", inputs: `[]`, want: `{"v": 0}`},
		{name: "avg", op: "$avg", inputs: `[1, 2, "x"]`, want: `{"v": 1.5}`},
		{name: "avg of no numbers", op: "$avg", inputs: `["x", null]`, want: `{"v": null}`},
		{name: "avg decimal", op: "$avg", inputs: `[{"$numberDecimal": "1"}, 2]`, want: `{"v": {"$numberDecimal": "1.5"}}`},
		{name: "min ignores null and missing", op: "$min", inputs: `[null, 3, "$missing", 2]`, want: `{"v": 2}`},
		{name: "min of nulls", op: "$min", inputs: `[null]`, want: `{"v": null}`},
		{name: "max cross type", op: "$max", inputs: `[1, "a", {"x": 1}]`, want: `{"v": {"x": 1}}`},
		{name: "first missing is null", op: "$first", inputs: `["$missing", 2]`, want: `{"v": null}`},
		{name: "first", op: "$first", inputs: `[7, 8]`, want: `{"v": 7}`},
		{name: "last", op: "$last", inputs: `[7, 8]`, want: `{"v": 8}`},
		{name: "push skips missing", op: "$push", inputs: `[1, "$missing", null, [2]]`, want: `{"v": [1, null, [2]]}`},
		{name: "addToSet numeric equality", op: "$addToSet", inputs: `[1, 1.0, {"$numberLong": "1"}, "1", {"a": 1}, {"a": 1.0}]`, want: `{"v": [1, "1", {"a": 1}]}`},
		{name: "mergeObjects", op: "$mergeObjects", inputs: `[{"a": 1}, null, {"a": 2, "b": 3}]`, want: `{"v": {"a": 2, "b": 3}}`},
		{name: "stdDevPop", op: "$stdDevPop", inputs: `[2, 4, 4, 4, 5, 5, 7, 9]`, want: `{"v": 2.0}`},
		{name: "stdDevSamp of one", op: "$stdDevSamp", inputs: `[1]`, want: `{"v": null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acc := accumulators[tc.op]()
			for _, v := range aggTestDoc(t, `{"a": `+tc.inputs+`}`)[0].Value.(bson.A) {
				if v == "$missing" {
					v = Missing
				}
				acc.add(v)
			}
			want := aggTestJSON(t, aggTestDoc(t, tc.want)[0].Value)
			if got := aggTestJSON(t, acc.result()); got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		})
	}
}

func TestAggKeyEquality(t *testing.T) {
	t.Parallel()
	dec := func(s string) bson.Decimal128 {
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name string
		a, b any
		same bool
	}{
		{"int and double", int32(1), 1.0, true},
		{"long and decimal", int64(5), dec("5.00"), true},
		{"half as double and decimal", 0.5, dec("0.5"), true},
		{"null and missing", nil, Missing, true},
		{"negative zero", 0.0, int32(0), true},
		{"string and number", "1", int32(1), false},
		{"field order matters", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}, bson.D{{Key: "b", Value: 2}, {Key: "a", Value: 1}}, false},
		{"array vs element", bson.A{int32(1)}, int32(1), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := string(aggKey(nil, tc.a, nil)) == string(aggKey(nil, tc.b, nil)); got != tc.same {
				t.Fatalf("same key = %v, want %v", got, tc.same)
			}
		})
	}
}
