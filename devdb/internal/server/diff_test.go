package server

import (
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestDiffDocuments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		pre, post bson.D
		want      bson.D // updateDescription
	}{
		{
			name: "no change",
			pre:  bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}},
			post: bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}},
			want: udesc(bson.D{}, bson.A{}, bson.A{}),
		},
		{
			name: "scalar set",
			pre:  bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: int32(1)}},
			post: bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: int32(2)}},
			want: udesc(bson.D{{Key: "a", Value: int32(2)}}, bson.A{}, bson.A{}),
		},
		{
			name: "numeric type change is a change",
			pre:  bson.D{{Key: "a", Value: int32(1)}},
			post: bson.D{{Key: "a", Value: 1.0}},
			want: udesc(bson.D{{Key: "a", Value: 1.0}}, bson.A{}, bson.A{}),
		},
		{
			name: "new field appended",
			pre:  bson.D{{Key: "_id", Value: 1}},
			post: bson.D{{Key: "_id", Value: 1}, {Key: "b", Value: "x"}},
			want: udesc(bson.D{{Key: "b", Value: "x"}}, bson.A{}, bson.A{}),
		},
		{
			name: "unset",
			pre:  bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "b", Value: 2}},
			post: bson.D{{Key: "_id", Value: 1}, {Key: "b", Value: 2}},
			want: udesc(bson.D{}, bson.A{"a"}, bson.A{}),
		},
		{
			name: "unset last field",
			pre:  bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "b", Value: 2}},
			post: bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}},
			want: udesc(bson.D{}, bson.A{"b"}, bson.A{}),
		},
		{
			name: "nested field",
			pre:  bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}, {Key: "c", Value: 2}}}},
			post: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 5}, {Key: "c", Value: 2}}}},
			want: udesc(bson.D{{Key: "a.b", Value: 5}}, bson.A{}, bson.A{}),
		},
		{
			name: "nested removal",
			pre:  bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}, {Key: "c", Value: 2}}}},
			post: bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}},
			want: udesc(bson.D{}, bson.A{"a.c"}, bson.A{}),
		},
		{
			name: "type change of subdocument is whole",
			pre:  bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}},
			post: bson.D{{Key: "a", Value: bson.A{1}}},
			want: udesc(bson.D{{Key: "a", Value: bson.A{1}}}, bson.A{}, bson.A{}),
		},
		{
			name: "array append",
			pre:  bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}},
			post: bson.D{{Key: "arr", Value: bson.A{1, 2, 3, 4}}},
			want: udesc(bson.D{{Key: "arr.3", Value: 4}}, bson.A{}, bson.A{}),
		},
		{
			name: "array element change",
			pre:  bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}},
			post: bson.D{{Key: "arr", Value: bson.A{1, 9, 3}}},
			want: udesc(bson.D{{Key: "arr.1", Value: 9}}, bson.A{}, bson.A{}),
		},
		{
			name: "array truncation",
			pre:  bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}},
			post: bson.D{{Key: "arr", Value: bson.A{1}}},
			want: udesc(bson.D{}, bson.A{}, bson.A{bson.D{{Key: "field", Value: "arr"}, {Key: "newSize", Value: int32(1)}}}),
		},
		{
			name: "array pull from the middle",
			pre:  bson.D{{Key: "arr", Value: bson.A{1, 2, 3}}},
			post: bson.D{{Key: "arr", Value: bson.A{1, 3}}},
			want: udesc(bson.D{{Key: "arr.1", Value: 3}}, bson.A{},
				bson.A{bson.D{{Key: "field", Value: "arr"}, {Key: "newSize", Value: int32(2)}}}),
		},
		{
			name: "document inside array",
			pre:  bson.D{{Key: "arr", Value: bson.A{bson.D{{Key: "x", Value: 1}}}}},
			post: bson.D{{Key: "arr", Value: bson.A{bson.D{{Key: "x", Value: 2}}}}},
			want: udesc(bson.D{{Key: "arr.0.x", Value: 2}}, bson.A{}, bson.A{}),
		},
		{
			name: "numeric field name",
			pre:  bson.D{{Key: "m", Value: bson.D{{Key: "0", Value: 1}}}},
			post: bson.D{{Key: "m", Value: bson.D{{Key: "0", Value: 2}}}},
			want: udesc(bson.D{{Key: "m.0", Value: 2}}, bson.A{}, bson.A{}),
		},
		{
			name: "field moved is removed then reinserted",
			pre:  bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}},
			post: bson.D{{Key: "b", Value: 2}, {Key: "a", Value: 1}},
			want: udesc(bson.D{{Key: "a", Value: 1}}, bson.A{}, bson.A{}),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := diffDocuments(tc.pre, tc.post).doc()
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("diffDocuments:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// udesc builds an expected updateDescription document.
func udesc(updated bson.D, removed, truncated bson.A) bson.D {
	return bson.D{
		{Key: "updatedFields", Value: updated},
		{Key: "removedFields", Value: removed},
		{Key: "truncatedArrays", Value: truncated},
	}
}
