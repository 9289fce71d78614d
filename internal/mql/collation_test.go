package mql

import (
	"errors"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

func mustCollation(t testing.TB, spec bson.D) *Collation {
	t.Helper()
	c, err := ParseCollation(spec)
	if err != nil {
		t.Fatalf("ParseCollation(%v): %v", spec, err)
	}
	return c
}

func TestParseCollationErrors(t *testing.T) {
	tests := []struct {
		spec bson.D
		code mongoerr.Code
		msg  string
	}{
		{bson.D{{Key: "strength", Value: int32(1)}}, mongoerr.NoSuchKey, `Missing expected field "locale"`},
		{bson.D{{Key: "locale", Value: int32(1)}}, mongoerr.TypeMismatch, `"locale" had the wrong type. Expected string, found int`},
		{bson.D{{Key: "locale", Value: ""}}, mongoerr.BadValue, `Field 'locale' cannot be the empty string in: { locale: "" }`},
		{bson.D{{Key: "locale", Value: "xx"}}, mongoerr.BadValue, `Field 'locale' is invalid in: { locale: "xx" }`},
		{bson.D{{Key: "locale", Value: "en_us"}}, mongoerr.BadValue, `Field 'locale' is invalid in: { locale: "en_us" }. Did you mean 'en_US'?`},
		{bson.D{{Key: "locale", Value: "en-US"}}, mongoerr.BadValue, `Field 'locale' is invalid in: { locale: "en-US" }. Did you mean 'en_US'?`},
		{bson.D{{Key: "locale", Value: "de@collation=x"}}, mongoerr.BadValue, `Field 'locale' is invalid in: { locale: "de@collation=x" }. Did you mean 'de'?`},
		{bson.D{{Key: "locale", Value: "simple"}, {Key: "strength", Value: int32(2)}}, mongoerr.FailedToParse, `If locale=simple, no other fields should be present in: { locale: "simple", strength: 2 }`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(6)}}, mongoerr.FailedToParse, `Field 'strength' must be an integer 1 through 5. Got: 6`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(0)}}, mongoerr.FailedToParse, `Field 'strength' must be an integer 1 through 5. Got: 0`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: 2.5}}, mongoerr.BadValue, `Expected field "strength" to have a value exactly representable as a 64-bit integer, but found strength: 2.5`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: "2"}}, mongoerr.TypeMismatch, `Expected field "strength" to have numeric type, but found string`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "caseLevel", Value: int32(1)}}, mongoerr.TypeMismatch, `"caseLevel" had the wrong type. Expected bool, found int`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "caseFirst", Value: "x"}}, mongoerr.FailedToParse, `Field 'caseFirst' must be 'upper', 'lower', or 'off'. Got: x`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "alternate", Value: "x"}}, mongoerr.FailedToParse, `Field 'alternate' must be 'non-ignorable' or 'shifted'. Got: x`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "maxVariable", Value: "x"}}, mongoerr.FailedToParse, `Field 'maxVariable' must be 'punct' or 'space'. Got: x`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "foo", Value: int32(1)}}, mongoerr.FailedToParse, `Collation spec contains unknown field. Collation spec: { locale: "en", foo: 1 }`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "version", Value: "1.0"}}, mongoerr.IncompatibleCollationVersion, `Requested collation version 1.0 but the only available collator version was 57.1. Requested collation spec: { locale: "en", version: "1.0" }`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(1)}, {Key: "backwards", Value: true}}, mongoerr.BadValue,
			`'backwards' is invalid with 'strength' of 1 in: { locale: "en", caseLevel: false, caseFirst: "off", strength: 1, numericOrdering: false, alternate: "non-ignorable", maxVariable: "punct", normalization: false, backwards: true, version: "57.1" }`},
		{bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(2)}, {Key: "caseFirst", Value: "upper"}}, mongoerr.BadValue,
			`'caseFirst' is invalid unless 'caseLevel' is on or 'strength' is greater than 2 in: { locale: "en", caseLevel: false, caseFirst: "upper", strength: 2, numericOrdering: false, alternate: "non-ignorable", maxVariable: "punct", normalization: false, backwards: false, version: "57.1" }`},
	}
	for _, tc := range tests {
		t.Run(FormatValue(tc.spec), func(t *testing.T) {
			_, err := ParseCollation(tc.spec)
			var me *mongoerr.Error
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want code %d", err, tc.code)
			}
			if me.Code != tc.code || me.Message != tc.msg {
				t.Fatalf("err = %d %q\nwant %d %q", me.Code, me.Message, tc.code, tc.msg)
			}
		})
	}
}

func TestParseCollationDocument(t *testing.T) {
	c, err := ParseCollation(bson.D{{Key: "locale", Value: "simple"}})
	if err != nil || c != nil {
		t.Fatalf("simple = %v, %v; want nil, nil", c, err)
	}
	got := mustCollation(t, bson.D{{Key: "locale", Value: "fr_CA"}, {Key: "strength", Value: 2.0}, {Key: "version", Value: "57.1"}}).Document()
	want := bson.D{
		{Key: "locale", Value: "fr_CA"}, {Key: "caseLevel", Value: false}, {Key: "caseFirst", Value: "off"},
		{Key: "strength", Value: int32(2)}, {Key: "numericOrdering", Value: false}, {Key: "alternate", Value: "non-ignorable"},
		{Key: "maxVariable", Value: "punct"}, {Key: "normalization", Value: false}, {Key: "backwards", Value: true},
		{Key: "version", Value: "57.1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Document = %v\nwant %v", got, want)
	}
	a := mustCollation(t, bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(2)}})
	b := mustCollation(t, bson.D{{Key: "strength", Value: int64(2)}, {Key: "locale", Value: "en"}})
	if a != b || !SameCollation(a, b) {
		t.Fatal("equal specifications must share one Collation")
	}
	if SameCollation(a, nil) || !SameCollation(nil, nil) || SameCollation(a, mustCollation(t, bson.D{{Key: "locale", Value: "en"}})) {
		t.Fatal("SameCollation must distinguish specifications and simple")
	}
}

func TestCollationCompareStrings(t *testing.T) {
	en := func(extra ...bson.E) bson.D { return append(bson.D{{Key: "locale", Value: "en_US"}}, extra...) }
	tests := []struct {
		spec bson.D
		a, b string
		want int
	}{
		{en(bson.E{Key: "strength", Value: int32(2)}), "ping", "PING", 0},
		{en(bson.E{Key: "strength", Value: int32(2)}), "ping", "píng", -1},
		{en(bson.E{Key: "strength", Value: int32(1)}), "ping", "PÍNG", 0},
		{en(), "ping", "PING", -1},
		{en(bson.E{Key: "caseFirst", Value: "upper"}), "PING", "ping", -1},
		{en(bson.E{Key: "strength", Value: int32(1)}, bson.E{Key: "caseLevel", Value: true}), "a", "A", -1},
		{en(bson.E{Key: "strength", Value: int32(1)}, bson.E{Key: "caseLevel", Value: true}), "a", "á", 0},
		{en(), "10", "9", -1},
		{en(bson.E{Key: "numericOrdering", Value: true}), "10", "9", 1},
		{en(bson.E{Key: "alternate", Value: "shifted"}), "a-b", "ab", 0},
		{en(bson.E{Key: "alternate", Value: "shifted"}, bson.E{Key: "strength", Value: int32(4)}), "a b", "ab", -1},
		{en(), "a b", "ab", -1},
		{en(bson.E{Key: "strength", Value: int32(5)}), "a", "a", 0},
		{bson.D{{Key: "locale", Value: "fr"}}, "côte", "coté", 1},
		{bson.D{{Key: "locale", Value: "fr_CA"}}, "côte", "coté", -1},
		{bson.D{{Key: "locale", Value: "de@collation=phonebook"}, {Key: "strength", Value: int32(1)}}, "ä", "ae", 0},
		{bson.D{{Key: "locale", Value: "sv"}}, "ö", "z", 1},
		{bson.D{{Key: "locale", Value: "en"}}, "ö", "z", -1},
	}
	for _, tc := range tests {
		t.Run(FormatValue(tc.spec)+" "+tc.a+" "+tc.b, func(t *testing.T) {
			c := mustCollation(t, tc.spec)
			if got := c.CompareStrings(tc.a, tc.b); got != tc.want {
				t.Fatalf("CompareStrings(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := -c.CompareStrings(tc.b, tc.a); got != tc.want {
				t.Fatalf("CompareStrings(%q, %q) = %d, want %d", tc.b, tc.a, -got, -tc.want)
			}
		})
	}
}

func TestCompareCollatedNested(t *testing.T) {
	c := mustCollation(t, bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(2)}})
	a := bson.D{{Key: "k", Value: bson.A{"X", bson.D{{Key: "s", Value: "Ab"}}}}}
	b := bson.D{{Key: "k", Value: bson.A{"x", bson.D{{Key: "s", Value: "aB"}}}}}
	if CompareCollated(a, b, c) != 0 {
		t.Fatal("strings inside documents and arrays must compare under the collation")
	}
	if Compare(a, b) == 0 {
		t.Fatal("the simple comparison must still tell them apart")
	}
	// Field names are never collated.
	if CompareCollated(bson.D{{Key: "A", Value: "x"}}, bson.D{{Key: "a", Value: "x"}}, c) == 0 {
		t.Fatal("field names must compare bytewise")
	}
	// Other types keep their order.
	if CompareCollated(int32(1), "a", c) >= 0 || CompareCollated(bson.Regex{Pattern: "A"}, bson.Regex{Pattern: "a"}, c) == 0 {
		t.Fatal("collation must only affect strings")
	}
}

func TestFilterCollation(t *testing.T) {
	c := mustCollation(t, bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(2)}})
	doc := bson.D{{Key: "x", Value: "Ping"}, {Key: "tags", Value: bson.A{"Go", "Mongo"}}, {Key: "sub", Value: bson.D{{Key: "n", Value: "Ada"}}}}
	tests := []struct {
		filter      string
		simple, col bool
	}{
		{`{"x": "PING"}`, false, true},
		{`{"x": {"$eq": "ping"}}`, false, true},
		{`{"x": {"$ne": "ping"}}`, true, false},
		{`{"x": {"$in": ["a", "PING"]}}`, false, true},
		{`{"x": {"$nin": ["PING"]}}`, true, false},
		{`{"x": {"$gte": "pING", "$lte": "PiNG"}}`, false, true},
		{`{"x": {"$gt": "PING"}}`, true, false},
		{`{"tags": "go"}`, false, true},
		{`{"tags": {"$all": ["GO", "mongo"]}}`, false, true},
		{`{"tags": {"$elemMatch": {"$eq": "GO"}}}`, false, true},
		{`{"sub": {"n": "ADA"}}`, false, true},
		{`{"$expr": {"$eq": ["$x", "PING"]}}`, false, true},
		{`{"$expr": {"$in": ["GO", "$tags"]}}`, false, true},
		{`{"x": {"$regex": "^ping$"}}`, false, false},
		{`{"$or": [{"x": "nope"}, {"x": "PING"}]}`, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			spec := coreDoc(t, tc.filter)
			f, err := CompileFilter(spec)
			if err != nil {
				t.Fatal(err)
			}
			fc, err := CompileFilterCollation(spec, c)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(doc); got != tc.simple {
				t.Errorf("simple: match = %v, want %v", got, tc.simple)
			}
			if got := fc.Match(doc); got != tc.col {
				t.Errorf("collated: match = %v, want %v", got, tc.col)
			}
		})
	}
}

func TestPipelineCollation(t *testing.T) {
	c := mustCollation(t, bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(2)}})
	docs := []bson.D{
		{{Key: "_id", Value: int32(1)}, {Key: "x", Value: "b"}},
		{{Key: "_id", Value: int32(2)}, {Key: "x", Value: "A"}},
		{{Key: "_id", Value: int32(3)}, {Key: "x", Value: "a"}},
		{{Key: "_id", Value: int32(4)}, {Key: "x", Value: "B"}},
	}
	p, err := CompilePipeline([]bson.D{
		{{Key: "$match", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$in", Value: bson.A{"a", "b"}}}}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$x"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: int32(1)}}},
			{Key: "set", Value: bson.D{{Key: "$addToSet", Value: "$x"}}}, {Key: "max", Value: bson.D{{Key: "$max", Value: "$x"}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: int32(1)}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	run := func(p *Pipeline) []bson.D {
		var out []bson.D
		for d, err := range p.Run(func(yield func(bson.D, error) bool) {
			for _, d := range docs {
				if !yield(d, nil) {
					return
				}
			}
		}) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	// Simple: only the lower-case documents match, one group each.
	if got := run(p); len(got) != 2 {
		t.Fatalf("simple: %v, want 2 groups", got)
	}
	got := run(p.WithCollation(c))
	want := []bson.D{
		{{Key: "_id", Value: "A"}, {Key: "n", Value: int32(2)}, {Key: "set", Value: bson.A{"A"}}, {Key: "max", Value: "A"}},
		{{Key: "_id", Value: "b"}, {Key: "n", Value: int32(2)}, {Key: "set", Value: bson.A{"b"}}, {Key: "max", Value: "b"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("collated: %v\nwant %v", got, want)
	}
}

func TestSortCollation(t *testing.T) {
	s, err := CompileSort(bson.D{{Key: "x", Value: int32(1)}})
	if err != nil {
		t.Fatal(err)
	}
	num := s.WithCollation(mustCollation(t, bson.D{{Key: "locale", Value: "en"}, {Key: "numericOrdering", Value: true}}))
	a, b := bson.D{{Key: "x", Value: "10"}}, bson.D{{Key: "x", Value: "9"}}
	if s.Compare(a, b) >= 0 || num.Compare(a, b) <= 0 {
		t.Fatalf("simple %d, numeric %d: want \"10\" first bytewise and \"9\" first numerically", s.Compare(a, b), num.Compare(a, b))
	}
	arr := bson.D{{Key: "x", Value: bson.A{"10", "9"}}}
	if got := num.KeyValues(arr)[0]; got != "9" {
		t.Fatalf("ascending key of an array = %v, want its smallest element under the collation", got)
	}
}

func TestProjectionCollation(t *testing.T) {
	c := mustCollation(t, bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(2)}})
	spec := coreDoc(t, `{"tags": {"$elemMatch": {"$eq": "GO"}}, "same": {"$eq": ["$name", "ADA"]}}`)
	doc := bson.D{{Key: "name", Value: "Ada"}, {Key: "tags", Value: bson.A{"rust", "go"}}}
	for _, tc := range []struct {
		coll *Collation
		want bson.D
	}{
		{nil, bson.D{{Key: "same", Value: false}}},
		{c, bson.D{{Key: "tags", Value: bson.A{"go"}}, {Key: "same", Value: true}}},
	} {
		p, err := CompileProjectionCollation(spec, tc.coll)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Apply(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("collation %v: projection = %v, want %v", tc.coll.Document(), got, tc.want)
		}
	}
}

func BenchmarkCompareCollated(b *testing.B) {
	c := mustCollation(b, bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(2)}})
	b.ReportAllocs()
	for b.Loop() {
		CompareCollated("customer-000123", "Customer-000124", c)
	}
}
