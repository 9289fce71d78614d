package mql

import (
	"slices"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestSortCompare follows the manual's "Comparison/Sort Order" and
// "cursor.sort()" pages: missing sorts as null, arrays sort by their
// smallest element ascending and largest descending, an empty array sorts
// before null.
func TestSortCompare(t *testing.T) {
	t.Parallel()
	docs := map[string]bson.D{
		"missing":   coreDoc(t, `{"_id": "missing"}`),
		"null":      coreDoc(t, `{"_id": "null", "a": null}`),
		"empty":     coreDoc(t, `{"_id": "empty", "a": []}`),
		"one":       coreDoc(t, `{"_id": "one", "a": 1}`),
		"arr[0,5]":  coreDoc(t, `{"_id": "arr[0,5]", "a": [5, 0]}`),
		"three":     coreDoc(t, `{"_id": "three", "a": 3.0}`),
		"str":       coreDoc(t, `{"_id": "str", "a": "x"}`),
		"minKey":    coreDoc(t, `{"_id": "minKey", "a": {"$minKey": 1}}`),
		"docs[2,4]": coreDoc(t, `{"_id": "docs[2,4]", "a": [{"b": 4}, {"b": 2}]}`),
	}
	tests := []struct {
		name string
		spec string
		ids  []string
		want []string
	}{
		{"ascending", `{"a": 1}`, []string{"str", "three", "one", "null", "arr[0,5]", "minKey", "empty"},
			[]string{"minKey", "empty", "null", "arr[0,5]", "one", "three", "str"}},
		{"descending", `{"a": -1}`, []string{"one", "arr[0,5]", "three", "str", "null"},
			[]string{"str", "arr[0,5]", "three", "one", "null"}},
		{"missing ties with null", `{"a": 1, "_id": 1}`, []string{"null", "missing"},
			[]string{"missing", "null"}},
		{"path through array asc", `{"a.b": 1}`, []string{"docs[2,4]", "three", "one"},
			[]string{"three", "one", "docs[2,4]"}},
		{"compound", `{"a": -1, "_id": -1}`, []string{"null", "missing", "one"},
			[]string{"one", "null", "missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := CompileSort(coreDoc(t, tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			in := make([]bson.D, len(tc.ids))
			for i, id := range tc.ids {
				in[i] = docs[id]
			}
			slices.SortStableFunc(in, s.Compare)
			got := make([]string, len(in))
			for i, d := range in {
				got[i] = Lookup(d, "_id").(string)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("sorted = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSortKeyThroughArrays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		a, b string
		want int
	}{
		// Path "a.b": [{b:4},{b:2}] has keys {4, 2}; ascending uses 2.
		{"asc uses min", `{"a.b": 1}`, `{"a": [{"b": 4}, {"b": 2}]}`, `{"a": {"b": 3}}`, -1},
		{"desc uses max", `{"a.b": -1}`, `{"a": [{"b": 4}, {"b": 2}]}`, `{"a": {"b": 3}}`, -1},
		{"element without field is null", `{"a.b": 1}`, `{"a": [{"b": 4}, {}]}`, `{"a": {"b": 0}}`, -1},
		{"numeric index", `{"a.1": 1}`, `{"a": [9, 1]}`, `{"a": [0, 2]}`, -1},
		{"mixed numeric types equal", `{"a": 1}`, `{"a": 2}`, `{"a": 2.0}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := CompileSort(coreDoc(t, tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Compare(coreDoc(t, tc.a), coreDoc(t, tc.b)); got != tc.want {
				t.Errorf("Compare = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCompileSortErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		code mongoerr.Code
	}{
		{"direction 2", `{"a": 2}`, mongoerr.SortBadDirection},
		{"direction string", `{"a": "asc"}`, mongoerr.SortBadDirection},
		{"meta", `{"score": {"$meta": "textScore"}}`, mongoerr.NotImplemented},
		{"object", `{"a": {"b": 1}}`, mongoerr.SortBadDirection},
		{"empty name", `{"": 1}`, mongoerr.BadValue},
		{"dollar name", `{"$a": 1}`, mongoerr.BadValue},
		{"empty component", `{"a..b": 1}`, mongoerr.BadValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := CompileSort(coreDoc(t, tc.spec))
			if got := coreErrCode(err); got != tc.code {
				t.Errorf("CompileSort(%s) error %v, want code %d", tc.spec, err, tc.code)
			}
		})
	}
	s, err := CompileSort(coreDoc(t, `{"a": -1.0, "b": {"$numberLong": "1"}}`))
	if err != nil || s.Len() != 2 {
		t.Fatalf("numeric directions of any type: %v", err)
	}
}
