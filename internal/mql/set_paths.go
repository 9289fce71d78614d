package mql

import "go.mongodb.org/mongo-driver/v2/bson"

// setDocIndexMin is the length from which a setDoc indexes its keys;
// shorter documents are scanned.
var setDocIndexMin = 16

// setDeleted marks a removed field of a setDoc.
type setDeletedT struct{}

var setDeleted any = setDeletedT{}

// setDoc is a copy of a document that $addFields is setting paths in: a
// field's value is a *setDoc or a *setArr once a path has gone through it.
// Setting every path of a stage in one setDoc, instead of copying the
// document for each path as aggSetPath does, keeps $addFields linear in the
// sizes of the document and of the specification.
type setDoc struct {
	keys []string
	vals []any
	// index maps keys to the position of their first occurrence not
	// deleted (nil when short); dups holds the later positions of keys
	// that occur more than once (nil when none do).
	index map[string]int
	dups  map[string][]int
}

// setArr is a copy of an array that paths go through.
type setArr struct{ elems []any }

func newSetDoc(d bson.D) *setDoc {
	s := &setDoc{keys: make([]string, len(d), len(d)+1), vals: make([]any, len(d), len(d)+1)}
	for i, e := range d {
		s.keys[i], s.vals[i] = e.Key, e.Value
	}
	if len(d) >= setDocIndexMin {
		s.reindex()
	}
	return s
}

// find returns the position of the first live field named k, -1 if none,
// and deletes the later ones, as aggSetPath drops them.
func (s *setDoc) find(k string) int {
	if s.index != nil {
		i, ok := s.index[k]
		if !ok {
			return -1
		}
		for _, j := range s.dups[k] {
			s.vals[j] = setDeleted
		}
		delete(s.dups, k)
		return i
	}
	found := -1
	for i, key := range s.keys {
		countStep()
		if key != k || s.vals[i] == setDeleted {
			continue
		}
		if found < 0 {
			found = i
		} else {
			s.vals[i] = setDeleted
		}
	}
	return found
}

// set sets path to v (removes it when v is Missing) with aggSetPath's
// semantics.
func (s *setDoc) set(path []string, v any) {
	i := s.find(path[0])
	if i < 0 {
		if v == Missing {
			return
		}
		if len(path) > 1 {
			sub := newSetDoc(nil)
			sub.set(path[1:], v)
			v = sub
		}
		s.keys = append(s.keys, path[0])
		s.vals = append(s.vals, v)
		if s.index != nil {
			s.index[path[0]] = len(s.keys) - 1
		} else if len(s.keys) >= setDocIndexMin {
			s.reindex()
		}
		return
	}
	if len(path) > 1 {
		s.vals[i] = setInValue(s.vals[i], path[1:], v)
		return
	}
	if v == Missing {
		s.vals[i] = setDeleted
		if s.index != nil {
			delete(s.index, path[0])
		}
		return
	}
	s.vals[i] = v
}

// reindex builds the index of a document grown long; its keys are unique
// among live fields (every key added went through find).
func (s *setDoc) reindex() {
	s.index = make(map[string]int, len(s.keys))
	for i, k := range s.keys {
		if s.vals[i] == setDeleted {
			continue
		}
		if _, dup := s.index[k]; dup {
			if s.dups == nil {
				s.dups = map[string][]int{}
			}
			s.dups[k] = append(s.dups[k], i)
			continue
		}
		s.index[k] = i
	}
}

// setInValue sets path inside cur as aggSetInValue does: documents are
// entered, arrays element-wise, and other values replaced by documents.
func setInValue(cur any, path []string, v any) any {
	switch t := cur.(type) {
	case *setDoc:
		t.set(path, v)
		return t
	case bson.D:
		s := newSetDoc(t)
		s.set(path, v)
		return s
	case *setArr:
		for i, el := range t.elems {
			t.elems[i] = setInValue(el, path, v)
		}
		return t
	case bson.A:
		a := &setArr{elems: make([]any, len(t))}
		for i, el := range t {
			a.elems[i] = setInValue(el, path, v)
		}
		return a
	}
	s := newSetDoc(nil)
	s.set(path, v)
	return s
}

// setDone turns the setDocs and setArrs in v back into documents and arrays.
func setDone(v any) any {
	switch t := v.(type) {
	case *setDoc:
		return t.doc()
	case *setArr:
		out := make(bson.A, len(t.elems))
		for i, el := range t.elems {
			out[i] = setDone(el)
		}
		return out
	}
	return v
}

func (s *setDoc) doc() bson.D {
	out := make(bson.D, 0, len(s.keys))
	for i, k := range s.keys {
		if s.vals[i] == setDeleted {
			continue
		}
		out = append(out, bson.E{Key: k, Value: setDone(s.vals[i])})
	}
	return out
}

// aggSetPaths returns a copy of doc with each of paths set to the value of
// the same position in vals, in order: the result of aggSetPath applied
// path by path, in time linear in the sizes of doc, paths and vals. doc is
// not modified.
func aggSetPaths(doc bson.D, paths [][]string, vals []any) bson.D {
	s := newSetDoc(doc)
	for i, p := range paths {
		s.set(p, vals[i])
	}
	return s.doc()
}
