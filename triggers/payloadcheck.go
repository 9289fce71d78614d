package triggers

import (
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"gopkg.in/yaml.v3"

	"github.com/changehook/changehook/internal/mql"
)

// scalarResult names what an operator always returns when that is never a
// document (so a payload that is only this operator can never be a body).
var scalarResult = map[string]string{
	"$concat": "a string", "$toString": "a string", "$toUpper": "a string", "$toLower": "a string",
	"$substrCP": "a string", "$substr": "a string", "$dateToString": "a string",
	"$add": "a number or a date", "$subtract": "a number or a date", "$multiply": "a number",
	"$divide": "a number", "$size": "a number", "$strLenCP": "a number", "$toInt": "a number",
	"$toLong": "a number", "$toDouble": "a number", "$toDecimal": "a number",
	"$eq": "a boolean", "$ne": "a boolean", "$gt": "a boolean", "$gte": "a boolean",
	"$lt": "a boolean", "$lte": "a boolean", "$and": "a boolean", "$or": "a boolean",
	"$not": "a boolean", "$in": "a boolean", "$toBool": "a boolean",
	"$concatArrays": "an array", "$split": "an array", "$map": "an array", "$filter": "an array",
}

// scalarPayload returns why a payload that is only one operator can never
// be a document (the request body), or "" when it can be.
func scalarPayload(spec any) string {
	if d, ok := spec.(bson.D); ok && len(d) == 1 && strings.HasPrefix(d[0].Key, "$") {
		if what, ok := scalarResult[d[0].Key]; ok {
			return fmt.Sprintf("%s always evaluates to %s, never to a document (the request body); wrap it in a field, e.g. {text: {%s: ...}}", d[0].Key, what, d[0].Key)
		}
	}
	return ""
}

// exprProblems reports every problem mql.CheckExpr finds in the
// expression spec, at path under n, each at the YAML node it concerns,
// with prefix ("webhook.payload") before the message. It returns how many
// it reported.
func (d *decoder) exprProblems(n *yaml.Node, path []mql.PathStep, spec any, prefix string) int {
	probs := mql.CheckExpr(spec)
	for _, p := range probs {
		full := append(slices.Clip(path), p.Path...)
		d.errorf(d.locatePath(n, full), "%s: %s", prefix, withOperatorHint(p.Message))
	}
	return len(probs)
}

// locatePath follows path from n: a document key step leads to the key's
// value, or to the key itself when it is the last step (an operator named
// in the problem); an index step to the sequence element. It stops at the
// deepest node it can reach.
func (d *decoder) locatePath(n *yaml.Node, path []mql.PathStep) *yaml.Node {
	n = deref(n)
	for i, s := range path {
		if n == nil {
			return nil
		}
		switch {
		case s.IsIndex && n.Kind == yaml.SequenceNode && s.Index < len(n.Content):
			n = deref(n.Content[s.Index])
		case !s.IsIndex && n.Kind == yaml.MappingNode:
			j := d.keyAt(n, s.Key)
			if j < 0 {
				return n
			}
			next := n.Content[j+1]
			if i == len(path)-1 {
				next = n.Content[j]
			}
			n = deref(next)
		default:
			return n
		}
	}
	return n
}

// keyAt returns the index in mapping n's Content of its last key named
// key, or -1. A large mapping is indexed once, so that locating each of
// many problems in it does not scan it again.
func (d *decoder) keyAt(n *yaml.Node, key string) int {
	const small = 32 // entries scanned rather than indexed
	if len(n.Content) <= 2*small {
		at := -1
		for j := 0; j+1 < len(n.Content); j += 2 {
			if deref(n.Content[j]).Value == key {
				at = j
			}
		}
		return at
	}
	idx, ok := d.keyIndex[n]
	if !ok {
		idx = make(map[string]int, len(n.Content)/2)
		for j := 0; j+1 < len(n.Content); j += 2 {
			idx[deref(n.Content[j]).Value] = j
		}
		if d.keyIndex == nil {
			d.keyIndex = map[*yaml.Node]map[string]int{}
		}
		d.keyIndex[n] = idx
	}
	if j, ok := idx[key]; ok {
		return j
	}
	return -1
}

// failingPath returns the path in spec, an expression, of the innermost
// operator expression that fails to compile on its own with the message
// msg: where a compile error of the whole lies when its message names no
// operator of the file ("Failed to parse number 'n/a' in $convert …" for a
// $toInt). The contents of $literal are values, not expressions, and are
// not searched. It is for locating an error, on a configuration's small
// expressions only.
func failingPath(spec any, msg string, path []mql.PathStep, depth int) ([]mql.PathStep, bool) {
	if depth > maxDepth {
		return nil, false
	}
	at := func(s mql.PathStep) []mql.PathStep { return append(slices.Clip(path), s) }
	switch v := spec.(type) {
	case bson.D:
		if len(v) == 1 && v[0].Key == "$literal" {
			return nil, false
		}
		for _, e := range v {
			if p, ok := failingPath(e.Value, msg, at(mql.PathStep{Key: e.Key}), depth+1); ok {
				return p, true
			}
		}
		if len(v) == 1 && strings.HasPrefix(v[0].Key, "$") {
			if _, err := mql.CompileExpr(v); err != nil && mqlMessage(err) == msg {
				return at(mql.PathStep{Key: v[0].Key}), true
			}
		}
	case bson.A:
		for i, x := range v {
			if p, ok := failingPath(x, msg, at(mql.PathStep{Index: i, IsIndex: true}), depth+1); ok {
				return p, true
			}
		}
	}
	return nil, false
}
