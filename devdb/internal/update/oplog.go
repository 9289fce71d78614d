package update

import (
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The delta ($v: 2) oplog entry of an operator update.
//
// MongoDB does not diff the document before and after a modifier-style
// update: each operator logs what it did at the path it applied to (its v2
// log builder), and the entry's diff is built from those records. So
// {$set: {addr: {city: "Y"}}} logs addr whole, even when only addr.city
// changed; $pull, $pop and $addToSet log the whole resulting array; a plain
// $push that appends logs each appended element at its index; $unset and a
// $rename's source are deletions; a path that did not exist is logged at its
// first missing component with the subtree created below it. A change
// stream's updateDescription is read from that diff.

// logKind is what an operator did at a path.
type logKind uint8

const (
	logUpdated logKind = iota // an existing field has a new value
	logCreated                // a field that did not exist was created
	logRemoved                // the field was removed ($unset, a $rename's source)
)

// logRecord is one operator's record: the path it applied to (its
// components as in the document, array indexes as decimal strings), what it
// did and the new value.
type logRecord struct {
	path []string
	kind logKind
	val  any
}

// record appends a log record unless a created subtree is being built (the
// subtree is then logged whole at its root) or the update is not logged.
func (a *applier) record(path []string, kind logKind, val any) {
	if a.logging && a.creating == 0 {
		a.log = append(a.log, logRecord{path: path, kind: kind, val: val})
	}
}

// recordFired logs the removal of the sources of the renames that fired
// since the log had n of them.
func (a *applier) recordFired(n int) {
	if !a.logging || a.creating != 0 {
		return
	}
	for _, r := range a.fired[n:] {
		a.log = append(a.log, logRecord{path: r.fromParts, kind: logRemoved})
	}
}

// diffNode is a node of the diff being built: an inner node (a document
// or, when array is set, an array) or a leaf with the record's kind and value.
type diffNode struct {
	inner bool
	array bool
	kind  logKind
	val   any
	kids  []diffChild // in the order they were added
}

// diffChild is a named child of an inner diffNode.
type diffChild struct {
	name string
	node *diffNode
}

// child returns the child named name, or nil.
func (n *diffNode) child(name string) *diffNode {
	for _, c := range n.kids {
		if c.name == name {
			return c.node
		}
	}
	return nil
}

// put sets the child named name, keeping its place when there is one.
func (n *diffNode) put(name string, c *diffNode) {
	for i := range n.kids {
		if n.kids[i].name == name {
			n.kids[i].node = c
			return
		}
	}
	n.kids = append(n.kids, diffChild{name, c})
}

// buildDiff turns the log records of an update applied to doc into the
// diff of its $v: 2 oplog entry, as MongoDB's v2 log builder serializes it:
// in a document, deletes {d: {f: false}}, updates {u: {f: v}} and inserts
// {i: {f: v}} in the order they were logged, then the sub-diffs s<f>; in an
// array {a: true} and then, by index, u<i> for a new element value and
// s<i> for a sub-diff. A component is an array index when the value it is
// looked up in (in doc: the containers on a logged path existed before the
// update) is an array; the $unset of an array element sets it to null and
// is logged as that update.
func buildDiff(doc bson.D, log []logRecord) bson.D {
	root := &diffNode{inner: true}
	for _, r := range log {
		n := root
		var cur any = doc
		for i, p := range r.path {
			_, inArray := cur.(bson.A)
			cur = component(cur, p)
			if i == len(r.path)-1 {
				leaf := &diffNode{kind: r.kind, val: r.val}
				if inArray && r.kind == logRemoved {
					leaf.kind, leaf.val = logUpdated, nil
				}
				n.put(p, leaf)
				break
			}
			c := n.child(p)
			if c == nil {
				_, isArr := cur.(bson.A)
				c = &diffNode{inner: true, array: isArr}
				n.put(p, c)
			} else if !c.inner {
				break // below a value logged whole: already in it
			}
			n = c
		}
	}
	return serializeDoc(root)
}

// component returns the value of the field or array element p of v (nil
// when there is none).
func component(v any, p string) any {
	switch c := v.(type) {
	case bson.D:
		x, _ := lookup(c, p)
		return x
	case bson.A:
		if i, ok := arrayIndex(p); ok && i < len(c) {
			return c[i]
		}
	}
	return nil
}

func serializeDoc(n *diffNode) bson.D {
	var nd, nu, ni, ns int
	for _, c := range n.kids {
		switch {
		case c.node.inner:
			ns++
		case c.node.kind == logRemoved:
			nd++
		case c.node.kind == logUpdated:
			nu++
		default:
			ni++
		}
	}
	out := make(bson.D, 0, 3+ns)
	for _, sec := range [...]struct {
		key  string
		n    int
		kind logKind
	}{{"d", nd, logRemoved}, {"u", nu, logUpdated}, {"i", ni, logCreated}} {
		if sec.n == 0 {
			continue
		}
		fields := make(bson.D, 0, sec.n)
		for _, c := range n.kids {
			if c.node.inner || c.node.kind != sec.kind {
				continue
			}
			if sec.kind == logRemoved {
				fields = append(fields, bson.E{Key: c.name, Value: false})
			} else {
				fields = append(fields, bson.E{Key: c.name, Value: c.node.val})
			}
		}
		out = append(out, bson.E{Key: sec.key, Value: fields})
	}
	for _, c := range n.kids {
		if c.node.inner {
			out = append(out, bson.E{Key: "s" + c.name, Value: serializeNode(c.node)})
		}
	}
	return out
}

func serializeNode(n *diffNode) bson.D {
	if !n.array {
		return serializeDoc(n)
	}
	kids := n.kids
	if !slices.IsSortedFunc(kids, byIndex) {
		kids = slices.SortedFunc(slices.Values(kids), byIndex)
	}
	out := make(bson.D, 0, 1+len(kids))
	out = append(out, bson.E{Key: "a", Value: true})
	for _, c := range kids {
		if c.node.inner {
			out = append(out, bson.E{Key: "s" + c.name, Value: serializeNode(c.node)})
		} else {
			out = append(out, bson.E{Key: "u" + c.name, Value: c.node.val})
		}
	}
	return out
}

// byIndex orders the children of an array node by index.
func byIndex(a, b diffChild) int {
	i, _ := arrayIndex(a.name)
	j, _ := arrayIndex(b.name)
	return i - j
}
