package mql

import (
	"testing"
)

func TestLookup(t *testing.T) {
	t.Parallel()
	doc := coreDoc(t, `{"a": {"b": {"c": 1}}, "arr": [{"x": 1}, {"x": 2}], "n": null, "01": "f"}`)
	tests := []struct {
		path string
		want any
	}{
		{"a.b.c", int32(1)},
		{"a.b.d", Missing},
		{"arr.1.x", int32(2)},
		{"arr.2", Missing},
		{"arr.x", Missing},
		{"n", nil},
		{"n.x", Missing},
		{"a.b.c.d", Missing},
		{"01", "f"},
		{"arr.01", Missing},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			got := Lookup(doc, tc.path)
			if IsMissing(tc.want) != IsMissing(got) || Compare(got, tc.want) != 0 {
				t.Errorf("Lookup(%q) = %#v, want %#v", tc.path, got, tc.want)
			}
		})
	}
}
