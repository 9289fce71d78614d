package mql

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// aggFuzzSample is the document fuzzed expressions are evaluated against.
func aggFuzzSample() bson.D {
	return bson.D{
		{Key: "_id", Value: bson.ObjectID{1, 2, 3}},
		{Key: "a", Value: int32(5)},
		{Key: "s", Value: "héllo"},
		{Key: "d", Value: bson.DateTime(1609459200000)},
		{Key: "arr", Value: bson.A{int32(1), 2.5, "x", bson.D{{Key: "b", Value: int64(7)}}, nil}},
		{Key: "o", Value: bson.D{{Key: "k", Value: true}}},
	}
}

// FuzzCompileExpr feeds arbitrary BSON documents to CompileExpr (the value
// of the document's first field is the expression) and to CompilePipeline
// (the document is one stage): either an error or a result, never a panic.
func FuzzCompileExpr(f *testing.F) {
	seeds := []bson.D{
		{{Key: "e", Value: bson.D{{Key: "$concat", Value: bson.A{"Only ", bson.D{{Key: "$toString", Value: "$a"}}, " left"}}}}},
		{{Key: "e", Value: bson.D{{Key: "$map", Value: bson.D{{Key: "input", Value: "$arr"}, {Key: "in", Value: bson.D{{Key: "$type", Value: "$$this"}}}}}}}},
		{{Key: "e", Value: bson.D{{Key: "$dateToString", Value: bson.D{{Key: "date", Value: "$d"}, {Key: "format", Value: "%G-%V %z"}}}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$a"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: int32(1)}}}}}},
		{{Key: "e", Value: bson.D{{Key: "$let", Value: bson.D{{Key: "vars", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$toInt", Value: "n/a"}}}}}, {Key: "in", Value: bson.A{"$$x", "$$y", bson.D{{Key: "$round", Value: bson.A{int32(1)}}, {Key: "x", Value: int32(1)}}}}}}}}},
		{{Key: "e", Value: bson.D{{Key: "$dateTrunc", Value: bson.D{{Key: "date", Value: "$d"}, {Key: "unit", Value: "week"}, {Key: "binSize", Value: int32(2)}, {Key: "timezone", Value: "+05:30"}, {Key: "startOfWeek", Value: "mon"}}}}}},
		{{Key: "e", Value: bson.D{{Key: "$dateDiff", Value: bson.D{{Key: "startDate", Value: "$d"}, {Key: "endDate", Value: "$$NOW"}, {Key: "unit", Value: "month"}}}}}},
		{{Key: "e", Value: bson.D{{Key: "$setUnion", Value: bson.A{"$arr", bson.A{int32(1), "x"}}}}}},
		{{Key: "e", Value: bson.D{{Key: "$zip", Value: bson.D{{Key: "inputs", Value: bson.A{"$arr", bson.A{int32(1)}}}, {Key: "useLongestLength", Value: true}}}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "t", Value: bson.D{{Key: "$topN", Value: bson.D{{Key: "n", Value: int32(2)}, {Key: "sortBy", Value: bson.D{{Key: "a", Value: int32(-1)}}}, {Key: "output", Value: "$s"}}}}}}}},
	}
	for _, s := range seeds {
		b, err := bson.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	sample := aggFuzzSample()
	f.Fuzz(func(t *testing.T, data []byte) {
		var d bson.D
		if err := bson.Unmarshal(data, &d); err != nil || len(d) == 0 {
			return
		}
		e, err := CompileExpr(d[0].Value)
		if err == nil {
			_, _ = e.Eval(sample)
		}
		// CheckExpr finds every error CompileExpr stops at, and its
		// compile and variable checks find nothing in what compiles.
		if probs := CheckExpr(d[0].Value); err != nil && len(probs) == 0 {
			t.Errorf("CompileExpr failed (%v), CheckExpr found nothing", err)
		}
		if err == nil {
			c := compileChecker{}
			c.check(d[0].Value, nil, 0)
			walkUndefinedVars(d[0].Value, nil, func(p []PathStep, err error) bool {
				c.found = append(c.found, Problem{Path: p, Message: err.Error()})
				return true
			})
			if probs := c.problems(); len(probs) > 0 {
				t.Errorf("CompileExpr succeeded, CheckExpr's compile checks found %v", probs)
			}
		}
		if p, err := CompilePipeline([]bson.D{d}); err == nil {
			for _, err := range p.WithMemoryLimit(1 << 20).Run(aggTestSource([]bson.D{sample, sample})) {
				if err != nil {
					break
				}
			}
		}
	})
}
