package server

import (
	"math"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestRawPrefilterAgreesWithMatcher checks mayMatch against the full
// matcher over a cross product of field values and filters: it must never
// reject a matching document, and for filters made only of top-level field
// conditions it must give exactly the matcher's verdict.
func TestRawPrefilterAgreesWithMatcher(t *testing.T) {
	oid := bson.ObjectID{1, 2, 3}
	dec, _ := bson.ParseDecimal128("42")
	values := []any{
		int32(42), int64(42), 42.0, dec, int32(7), 42.5, math.NaN(), math.Inf(1), int64(math.MaxInt64),
		"42", "x", "xyz", "", bson.Symbol("x"), true, false, nil, bson.Undefined{}, bson.MinKey{}, bson.MaxKey{},
		oid, bson.ObjectID{9}, bson.DateTime(42), bson.Timestamp{T: 42}, bson.Regex{Pattern: "x"},
		bson.A{int32(1), int64(42)}, bson.A{"x"}, bson.A{}, bson.A{bson.A{int32(42)}}, bson.A{nil},
		bson.A{bson.D{{Key: "a", Value: int32(42)}}, bson.D{{Key: "a", Value: "x"}}},
		bson.D{{Key: "a", Value: int32(42)}}, bson.D{}, bson.D{{Key: "a", Value: bson.A{int32(1), int32(42)}}},
		bson.Binary{Data: []byte("x")}, bson.JavaScript("x"),
	}
	eq := func(k string, v any) bson.D { return bson.D{{Key: k, Value: v}} }
	op := func(name string, v any) bson.D { return bson.D{{Key: name, Value: v}} }
	filters := []bson.D{
		eq("f", int32(42)), eq("f", int64(42)), eq("f", 42.0), eq("f", 42.5), eq("f", math.NaN()),
		eq("f", "x"), eq("f", ""), eq("f", true), eq("f", false), eq("f", oid), eq("f", bson.DateTime(42)),
		eq("f", nil), eq("f", bson.A{"x"}), eq("f", bson.D{{Key: "a", Value: int32(42)}}), eq("f", bson.Regex{Pattern: "^x"}),
		eq("f", op("$eq", int32(42))), eq("f", op("$ne", int32(42))), eq("f", op("$gt", int32(7))),
		eq("f", op("$lte", 42.0)), eq("f", op("$gte", "x")), eq("f", op("$lt", bson.MaxKey{})),
		eq("f", op("$in", bson.A{int32(7), "x", nil})), eq("f", op("$nin", bson.A{int32(42)})),
		eq("f", op("$exists", true)), eq("f", op("$exists", false)), eq("f", op("$type", "string")),
		eq("f", op("$type", "array")), eq("f", op("$size", int32(2))), eq("f", op("$all", bson.A{int32(42)})),
		eq("f", op("$elemMatch", op("a", int32(42)))), eq("f", op("$regex", "^x")),
		eq("f", op("$not", op("$gt", int32(7)))), eq("f", op("$mod", bson.A{int32(2), int32(0)})),
		{{Key: "f", Value: int32(42)}, {Key: "g", Value: true}},
		{{Key: "f", Value: int32(42)}, {Key: "f", Value: int64(42)}},
		{{Key: "f.a", Value: int32(42)}},
		{{Key: "f", Value: "x"}, {Key: "$or", Value: bson.A{eq("g", true), eq("f", int32(42))}}},
		{{Key: "$expr", Value: bson.D{{Key: "$eq", Value: bson.A{"$f", int32(42)}}}}},
	}
	for _, f := range filters {
		plan, err := compileQuery(f, nil)
		if err != nil {
			t.Fatalf("compile %v: %v", f, err)
		}
		exact := len(plan.pre) == len(f)
		var scratch bson.D
		docs := []bson.D{{{Key: "_id", Value: int32(1)}, {Key: "g", Value: true}}} // f missing
		for _, v := range values {
			docs = append(docs,
				bson.D{{Key: "_id", Value: int32(1)}, {Key: "f", Value: v}, {Key: "g", Value: true}},
				bson.D{{Key: "_id", Value: int32(1)}, {Key: "g", Value: false}, {Key: "f", Value: v}})
		}
		for _, d := range docs {
			raw, err := bson.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			decoded, err := decodeDoc(raw)
			if err != nil {
				t.Fatal(err)
			}
			match, err := plan.filter.MatchErr(decoded)
			if err != nil {
				continue
			}
			may := plan.mayMatch(raw, &scratch)
			if match && !may {
				t.Errorf("filter %v: mayMatch rejected the matching document %v", f, d)
			}
			if exact && may != match {
				t.Errorf("filter %v: mayMatch = %v, matcher = %v for %v", f, may, match, d)
			}
		}
	}
}

func TestRawPrefilterConditions(t *testing.T) {
	tests := []struct {
		name   string
		filter bson.D
		want   []string
	}{
		{"plain fields", bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.D{{Key: "$gt", Value: 1}}}}, []string{"a", "b"}},
		{"operators and dotted paths skipped", bson.D{{Key: "$or", Value: bson.A{}}, {Key: "a.b", Value: 1}, {Key: "c", Value: 1}}, []string{"c"}},
		{"repeated field skipped", bson.D{{Key: "a", Value: 1}, {Key: "a", Value: 2}, {Key: "b", Value: 1}}, []string{"b"}},
		{"invalid condition skipped", bson.D{{Key: "a", Value: bson.D{{Key: "$bogus", Value: 1}}}}, nil},
		{"empty filter", bson.D{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range fieldConditions(tc.filter, nil) {
				got = append(got, c.field)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("conditions on %v, want %v", got, tc.want)
			}
		})
	}
}
