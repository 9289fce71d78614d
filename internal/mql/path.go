package mql

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Lookup returns the value at a dotted path in doc, or Missing when the
// path does not exist. Each component selects a field of a document or,
// when it is a non-negative decimal integer, an element of an array
// ("a.0.b"); Lookup does not expand arrays implicitly, so "a.b" through an
// array of documents is Missing (the matcher's implicit array traversal is
// different and internal to Filter).
func Lookup(doc bson.D, path string) any {
	var cur any = doc
	for path != "" {
		part, rest, _ := strings.Cut(path, ".")
		cur = lookupStep(cur, part)
		if IsMissing(cur) {
			return Missing
		}
		path = rest
	}
	return cur
}

// lookupStep selects one path component of v: a field of a document, an
// element of an array by numeric index, Missing otherwise.
func lookupStep(v any, part string) any {
	switch x := v.(type) {
	case bson.D:
		return docField(x, part)
	case bson.A:
		if i, ok := arrayIndex(part); ok && i < len(x) {
			return x[i]
		}
		return Missing
	case []any:
		if i, ok := arrayIndex(part); ok && i < len(x) {
			return x[i]
		}
		return Missing
	case bson.M, map[string]any:
		d, _ := AsDocument(x)
		return docField(d, part)
	}
	return Missing
}

// docField returns the value of the first field named name, or Missing.
func docField(d bson.D, name string) any {
	for i := range d {
		if d[i].Key == name {
			return d[i].Value
		}
	}
	return Missing
}

// arrayIndex parses a path component used as an array index: a
// non-negative decimal integer without a sign or leading zeros (MongoDB
// treats "01" as a field name, not an index).
func arrayIndex(part string) (int, bool) {
	if part == "" || len(part) > 9 || (len(part) > 1 && part[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(part); i++ {
		c := part[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// splitPath splits a dotted path into its components.
func splitPath(path string) []string {
	return strings.Split(path, ".")
}
