package update

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// maxPad bounds how far an update may extend an array by padding it
// with nulls ({$set: {"a.1000000000": 1}} would otherwise allocate without
// limit); MongoDB uses the same bound.
const maxPad = 1500000

// applier is the state of one Apply call.
type applier struct {
	up    *Update
	ac    ApplyContext
	now   time.Time
	doc   bson.D
	fired []*renameOp
	// logging says whether the operators' records are kept (ApplyDiff);
	// creating counts the created subtrees being built, whose operators
	// are not logged one by one (the subtree is logged at its root).
	logging  bool
	creating int
	log      []logRecord
}

// position is where in the document a node is applied.
type position struct {
	path       []string
	inArray    bool   // some existing ancestor is an array
	arrayField string // the field name of the nearest such array
}

func (p *position) dotted() string { return strings.Join(p.path, ".") }

func (p *position) field() string {
	if len(p.path) == 0 {
		return ""
	}
	return p.path[len(p.path)-1]
}

// child returns the position of the component name below p; parent is the
// container the component is looked up in.
func (p *position) child(name string, parent any) *position {
	c := &position{path: append(append(make([]string, 0, len(p.path)+1), p.path...), name), inArray: p.inArray, arrayField: p.arrayField}
	if _, ok := parent.(bson.A); ok {
		c.inArray = true
		c.arrayField = p.field()
	}
	return c
}

// Apply applies the update to doc and returns the updated document and
// whether anything changed. doc is never modified: the result shares the
// parts that did not change. An update that changes nothing reports false
// (MongoDB's nModified 0, no oplog entry). Errors are *mongoerr.Error values with
// MongoDB's codes: type errors (14 TypeMismatch, 2 BadValue), paths that
// cannot be created (28 PathNotViable), positional operators without a
// match (2 BadValue) and changes to _id (66 ImmutableField).
func (u *Update) Apply(doc bson.D, ac ApplyContext) (out bson.D, changed bool, err error) {
	a := &applier{up: u, ac: ac, now: ac.Now, doc: doc}
	return a.apply()
}

// ApplyDiff is Apply that also returns the diff of the update's $v: 2
// oplog entry, built from what each operator did as MongoDB logs it (see
// buildDiff); nil when nothing changed.
func (u *Update) ApplyDiff(doc bson.D, ac ApplyContext) (out, diff bson.D, changed bool, err error) {
	a := &applier{up: u, ac: ac, now: ac.Now, doc: doc, logging: true}
	out, changed, err = a.apply()
	if err != nil || !changed {
		return out, nil, changed, err
	}
	return out, buildDiff(doc, a.log), true, nil
}

func (a *applier) apply() (out bson.D, changed bool, err error) {
	u, doc := a.up, a.doc
	if a.now.IsZero() {
		a.now = time.Now()
	}
	if u.positional && a.ac.Positional < 0 {
		return nil, false, mongoerr.Errorf(mongoerr.BadValue, "The positional operator did not find the match needed from the query.")
	}
	v, res, err := a.applyObject(u.root, doc, true, &position{})
	if err != nil {
		return nil, false, err
	}
	if res == noop && len(a.fired) == 0 {
		return doc, false, nil
	}
	out, _ = v.(bson.D)
	if res == noop {
		// Only renames onto an equal value: their sources still go.
		out = doc
	}
	if out == nil {
		out = bson.D{}
	}
	for _, r := range a.fired {
		out = removePath(out, r.fromParts)
	}
	if err := u.checkID(doc, out); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// checkID enforces the immutability of _id.
func (u *Update) checkID(before, after bson.D) error {
	oldID, had := lookup(before, "_id")
	if !had {
		return nil
	}
	newID, has := lookup(after, "_id")
	if has && mql.Identical(oldID, newID) {
		return nil
	}
	path := u.idPath
	if path == "" {
		path = "_id"
	}
	return mongoerr.Errorf(mongoerr.ImmutableField, "Performing an update on the path '%s' would modify the immutable field '_id'", path)
}

// lookup returns the value of the first field named key.
func lookup(d bson.D, key string) (any, bool) {
	for _, e := range d {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// applyNode applies n at one position; exists tells whether the element
// cur exists. For a nonexistent element the result is modified when the
// node created a value.
func (a *applier) applyNode(n node, cur any, exists bool, pos *position) (any, result, error) {
	switch x := n.(type) {
	case *leafNode:
		fired := len(a.fired)
		if exists {
			v, res, err := x.op.update(a, pos, cur)
			if err != nil || res == noop {
				a.recordFired(fired)
				return v, res, err
			}
			switch res {
			case remove:
				a.record(pos.path, logRemoved, nil)
			case appended:
				// Each new element at its index (the array was not empty).
				arr := v.(bson.A)
				n := x.op.(*pushOp).appendedCount()
				for i := len(arr) - n; i < len(arr); i++ {
					a.record(append(pos.path[:len(pos.path):len(pos.path)], strconv.Itoa(i)), logCreated, arr[i])
				}
				res = modified
			default:
				a.record(pos.path, logUpdated, v)
			}
			a.recordFired(fired)
			return v, res, nil
		}
		v, ok, err := x.op.create(a, pos)
		if err != nil || !ok {
			return nil, noop, err
		}
		a.record(pos.path, logCreated, v)
		a.recordFired(fired)
		return v, modified, nil
	case *objectNode:
		if exists {
			return a.applyObject(x, cur, exists, pos)
		}
		// A subtree created here is logged whole, at its root.
		fired := len(a.fired)
		a.creating++
		v, res, err := a.applyObject(x, cur, exists, pos)
		a.creating--
		if err == nil && res == modified {
			a.record(pos.path, logCreated, v)
		}
		a.recordFired(fired)
		return v, res, err
	case *arrayNode:
		return a.applyArray(x, cur, exists, pos)
	}
	return nil, noop, fmt.Errorf("apply update: unknown node %T", n)
}

// childUpdate is one child of an object node as applied: positional children
// are resolved to the matched index.
type childUpdate struct {
	name string
	node node
}

func (a *applier) children(n *objectNode, pos *position) ([]childUpdate, error) {
	out := make([]childUpdate, 0, len(n.order)+1)
	for _, name := range n.order {
		out = append(out, childUpdate{name, n.children[name]})
	}
	if n.positional == nil {
		return out, nil
	}
	name := strconv.Itoa(a.ac.Positional)
	for i, c := range out {
		if c.name == name {
			merged, err := mergeNodes(c.node, n.positional, pos.child(name, nil))
			if err != nil {
				return nil, err
			}
			out[i].node = merged
			return out, nil
		}
	}
	at := len(out)
	for i, c := range out {
		if fieldLess(name, c.name) {
			at = i
			break
		}
	}
	out = append(out, childUpdate{})
	copy(out[at+1:], out[at:])
	out[at] = childUpdate{name, n.positional}
	return out, nil
}

func (a *applier) applyObject(n *objectNode, cur any, exists bool, pos *position) (any, result, error) {
	kids, err := a.children(n, pos)
	if err != nil {
		return nil, noop, err
	}
	if !exists {
		var created bson.D
		for _, c := range kids {
			v, res, err := a.applyNode(c.node, nil, false, pos.child(c.name, bson.D(nil)))
			if err != nil {
				return nil, noop, err
			}
			if res == modified {
				created = append(created, bson.E{Key: c.name, Value: v})
			}
		}
		if created == nil {
			return nil, noop, nil
		}
		return created, modified, nil
	}
	switch c := cur.(type) {
	case bson.D:
		return a.applyToDoc(kids, c, pos)
	case bson.A:
		return a.applyToArray(kids, c, pos)
	}
	// A scalar: nothing below it exists; creating anything is an error.
	for _, k := range kids {
		_, res, err := a.applyNode(k.node, nil, false, pos.child(k.name, cur))
		if err != nil {
			return nil, noop, err
		}
		if res == modified {
			return nil, noop, mongoerr.Errorf(mongoerr.PathNotViable, "Cannot create field '%s' in element {%s}", k.name, formatElement(pos.field(), cur))
		}
	}
	return nil, noop, nil
}

func (a *applier) applyToDoc(kids []childUpdate, doc bson.D, pos *position) (any, result, error) {
	out := doc
	copied := false
	changed := false
	for _, k := range kids {
		idx := -1
		for i := range out {
			if out[i].Key == k.name {
				idx = i
				break
			}
		}
		var cur any
		if idx >= 0 {
			cur = out[idx].Value
		}
		v, res, err := a.applyNode(k.node, cur, idx >= 0, pos.child(k.name, out))
		if err != nil {
			return nil, noop, err
		}
		if res == noop {
			continue
		}
		if !copied {
			out = append(make(bson.D, 0, len(doc)+len(kids)), doc...)
			copied = true
		}
		changed = true
		switch {
		case res == remove:
			out = append(out[:idx], out[idx+1:]...)
		case idx >= 0:
			out[idx].Value = v
		default:
			out = append(out, bson.E{Key: k.name, Value: v})
		}
	}
	if !changed {
		return nil, noop, nil
	}
	return out, modified, nil
}

func (a *applier) applyToArray(kids []childUpdate, arr bson.A, pos *position) (any, result, error) {
	out := arr
	copied := false
	changed := false
	for _, k := range kids {
		idx, numeric := arrayIndex(k.name)
		exists := numeric && idx < len(out)
		var cur any
		if exists {
			cur = out[idx]
		}
		v, res, err := a.applyNode(k.node, cur, exists, pos.child(k.name, out))
		if err != nil {
			return nil, noop, err
		}
		if res == noop {
			continue
		}
		if !exists {
			if !numeric {
				return nil, noop, mongoerr.Errorf(mongoerr.PathNotViable, "Cannot create field '%s' in element {%s}", k.name, formatElement(pos.field(), out))
			}
			if idx-len(out) > maxPad {
				return nil, noop, mongoerr.Errorf(mongoerr.PathNotViable, "can't backfill more than %d elements", maxPad)
			}
		}
		if !copied {
			n := len(arr)
			if !exists && idx+1 > n {
				n = idx + 1
			}
			out = append(make(bson.A, 0, n), arr...)
			copied = true
		}
		changed = true
		for len(out) <= idx {
			out = append(out, nil)
		}
		if res == remove {
			out[idx] = nil // $unset of an array element sets it to null
		} else {
			out[idx] = v
		}
	}
	if !changed {
		return nil, noop, nil
	}
	return out, modified, nil
}

// applyArray applies $[] and $[<id>] children to every matching element.
func (a *applier) applyArray(n *arrayNode, cur any, exists bool, pos *position) (any, result, error) {
	if !exists {
		return nil, noop, mongoerr.Errorf(mongoerr.BadValue, "The path '%s' must exist in the document in order to apply array updates.", pos.dotted())
	}
	arr, ok := cur.(bson.A)
	if !ok {
		return nil, noop, mongoerr.Errorf(mongoerr.BadValue, "Cannot apply array updates to non-array element %s", formatElement(pos.field(), cur))
	}
	// Decide which updates apply to which element before changing any.
	matches := make([][]node, len(arr))
	for i, e := range arr {
		for _, id := range n.order {
			if id != "" {
				f := a.up.filters[id]
				if f == nil || !f.filter.Match(bson.D{{Key: id, Value: e}}) {
					continue
				}
			}
			matches[i] = append(matches[i], n.children[id])
		}
	}
	out := arr
	copied := false
	changed := false
	for i, nodes := range matches {
		if len(nodes) == 0 {
			continue
		}
		name := strconv.Itoa(i)
		cpos := pos.child(name, arr)
		node := nodes[0]
		for _, other := range nodes[1:] {
			merged, err := mergeNodes(node, other, cpos)
			if err != nil {
				return nil, noop, err
			}
			node = merged
		}
		v, res, err := a.applyNode(node, arr[i], true, cpos)
		if err != nil {
			return nil, noop, err
		}
		if res == noop {
			continue
		}
		if !copied {
			out = append(bson.A(nil), arr...)
			copied = true
		}
		changed = true
		if res == remove {
			out[i] = nil
		} else {
			out[i] = v
		}
	}
	if !changed {
		return nil, noop, nil
	}
	return out, modified, nil
}

// mergeNodes combines two nodes that apply to the same element (a
// positional child and a named child, or several array filters matching one
// element); two leaves conflict as in MongoDB.
func mergeNodes(x, y node, pos *position) (node, error) {
	conflict := func() error {
		return mongoerr.Errorf(mongoerr.ConflictingUpdateOperators, "Update created a conflict at '%s'", pos.dotted())
	}
	switch l := x.(type) {
	case *objectNode:
		r, ok := y.(*objectNode)
		if !ok {
			return nil, conflict()
		}
		children, err := mergeChildren(l.children, r.children, func(k string) *position { return pos.child(k, nil) })
		if err != nil {
			return nil, err
		}
		m := &objectNode{children: children}
		switch {
		case l.positional != nil && r.positional != nil:
			merged, err := mergeNodes(l.positional, r.positional, pos.child("$", nil))
			if err != nil {
				return nil, err
			}
			m.positional = merged
		case l.positional != nil:
			m.positional = l.positional
		default:
			m.positional = r.positional
		}
		m.order = sortedFields(m.children)
		return m, nil
	case *arrayNode:
		r, ok := y.(*arrayNode)
		if !ok {
			return nil, conflict()
		}
		children, err := mergeChildren(l.children, r.children, func(string) *position { return pos })
		if err != nil {
			return nil, err
		}
		m := &arrayNode{children: children}
		m.order = sortedKeys(m.children)
		return m, nil
	}
	return nil, conflict()
}

// mergeChildren returns the union of two child maps, merging the nodes
// of a name both have with mergeNodes at the position at returns.
func mergeChildren(l, r map[string]node, at func(name string) *position) (map[string]node, error) {
	out := make(map[string]node, len(l)+len(r))
	for k, v := range l {
		out[k] = v
	}
	for k, v := range r {
		if prev, ok := out[k]; ok {
			merged, err := mergeNodes(prev, v, at(k))
			if err != nil {
				return nil, err
			}
			v = merged
		}
		out[k] = v
	}
	return out, nil
}

// removePath removes the field at parts (all parents are documents),
// copying what it changes.
func removePath(d bson.D, parts []string) bson.D {
	for i, e := range d {
		if e.Key != parts[0] {
			continue
		}
		out := append(bson.D(nil), d...)
		if len(parts) == 1 {
			return append(out[:i], out[i+1:]...)
		}
		sub, ok := e.Value.(bson.D)
		if !ok {
			return d
		}
		out[i].Value = removePath(sub, parts[1:])
		return out
	}
	return d
}
