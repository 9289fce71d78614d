package server

import (
	"bytes"
	"slices"
	"strconv"
	"sync"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The update description computed on encoded documents.
//
// diffRaw walks the encoded pre- and post-image of an update exactly as
// diffDocuments walks their decoded forms (same pairing of fields, same
// order of removed, updated and inserted fields, same recursion) and appends
// the encoded updateDescription directly: values are copied from the
// post-image's bytes, so nothing is decoded. Two values are identical when
// their type and bytes are (mql.Identical on the decoded values: bit for
// bit). TestDiffRawMatches and the change-stream tests (through
// rawEventCheck) compare it with diffDocuments.

// rawElem is one element of an encoded document.
type rawElem struct {
	key []byte
	val bsoncore.Value
}

// rawElems appends the elements of the encoded document doc (nil: none)
// to dst, or reports false when it is malformed.
func rawElems(dst []rawElem, doc []byte) ([]rawElem, bool) {
	if doc == nil {
		return dst, true
	}
	if len(doc) < 5 {
		return dst, false
	}
	rest := doc[4 : len(doc)-1]
	for len(rest) > 0 {
		t := bsoncore.Type(rest[0])
		end := bytes.IndexByte(rest[1:], 0)
		if end < 0 {
			return dst, false
		}
		v, next, ok := bsoncore.ReadValue(rest[2+end:], t)
		if !ok {
			return dst, false
		}
		dst = append(dst, rawElem{key: rest[1 : 1+end], val: v})
		rest = next
	}
	return dst, true
}

// rawIdentical reports whether two encoded values are the same BSON value
// bit for bit.
func rawIdentical(a, b bsoncore.Value) bool {
	return a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}

// rawSameKind reports whether a and b are both documents or both arrays.
func rawSameKind(a, b bsoncore.Value) bool {
	return a.Type == b.Type && (a.Type == bsoncore.TypeEmbeddedDocument || a.Type == bsoncore.TypeArray)
}

// rawPathPart is a component of a path: a field name or an array index.
type rawPathPart struct {
	name  []byte
	index int
	isIdx bool
}

// rawDiff accumulates the four parts of an updateDescription as the
// elements of their (unframed) documents and arrays.
type rawDiff struct {
	updated, removed, truncated []byte
	nRemoved, nTruncated        int
	path                        []rawPathPart
	ok                          bool
}

// appendPath appends the dotted form of d.path.
func (d *rawDiff) appendPath(b []byte) []byte {
	for i, p := range d.path {
		if i > 0 {
			b = append(b, '.')
		}
		if p.isIdx {
			b = strconv.AppendInt(b, int64(p.index), 10)
		} else {
			b = append(b, p.name...)
		}
	}
	return b
}

// appendPathString appends the dotted path as a BSON string value.
func (d *rawDiff) appendPathString(b []byte) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	b = d.appendPath(b)
	b = append(b, 0)
	return bsoncore.UpdateLength(b, int32(at), int32(len(b)-at-4))
}

// appendIndexHeader appends an array element header with key n.
func appendIndexHeader(b []byte, t bsoncore.Type, n int) []byte {
	b = append(b, byte(t))
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, 0)
}

// setField records an updated field at d.path with value v.
func (d *rawDiff) setField(v bsoncore.Value) {
	d.updated = append(d.updated, byte(v.Type))
	d.updated = d.appendPath(d.updated)
	d.updated = append(d.updated, 0)
	d.updated = append(d.updated, v.Data...)
}

// removeField records a removed field at d.path.
func (d *rawDiff) removeField() {
	d.removed = appendIndexHeader(d.removed, bsoncore.TypeString, d.nRemoved)
	d.nRemoved++
	d.removed = d.appendPathString(d.removed)
}

// truncate records that the array at d.path now has n elements.
func (d *rawDiff) truncate(n int) {
	b := appendIndexHeader(d.truncated, bsoncore.TypeEmbeddedDocument, d.nTruncated)
	d.nTruncated++
	idx, b := bsoncore.ReserveLength(b)
	b = append(b, byte(bsoncore.TypeString))
	b = append(b, "field\x00"...)
	b = d.appendPathString(b)
	b = bsoncore.AppendInt32Element(b, "newSize", int32(n))
	b = append(b, 0)
	d.truncated = bsoncore.UpdateLength(b, idx, int32(len(b)-int(idx)))
}

// push and pop maintain d.path.
func (d *rawDiff) push(p rawPathPart) { d.path = append(d.path, p) }
func (d *rawDiff) pop()               { d.path = d.path[:len(d.path)-1] }

// doc is diffDoc on encoded subdocuments.
func (d *rawDiff) doc(pre, post []byte) {
	var pbuf, qbuf [24]rawElem
	pe, ok1 := rawElems(pbuf[:0], pre)
	qe, ok2 := rawElems(qbuf[:0], post)
	if !ok1 || !ok2 {
		d.ok = false
		return
	}
	// Fields changed in place (indexes into qe), pairs of subdocuments or
	// arrays to descend into (indexes into pe and qe), and fields of pre
	// whose names did not line up (indexes into pe).
	var ubuf, dbuf [16]int
	var sbuf [16][2]int
	updates, deleted, subs := ubuf[:0], dbuf[:0], sbuf[:0]
	i, j := 0, 0
	for i < len(pe) && j < len(qe) {
		pv, qv := pe[i], qe[j]
		if bytes.Equal(pv.key, qv.key) {
			switch {
			case rawIdentical(pv.val, qv.val):
			case rawSameKind(pv.val, qv.val):
				subs = append(subs, [2]int{i, j})
			default:
				updates = append(updates, j)
			}
			i++
			j++
			continue
		}
		deleted = append(deleted, i)
		i++
	}
	removedTail, inserts := pe[i:], qe[j:]
	// diffDoc keeps the deleted names in a set, takes out those inserted
	// again, and reports the rest sorted.
	deleted = slices.DeleteFunc(deleted, func(k int) bool {
		return slices.ContainsFunc(inserts, func(e rawElem) bool { return bytes.Equal(e.key, pe[k].key) })
	})
	slices.SortFunc(deleted, func(a, b int) int { return bytes.Compare(pe[a].key, pe[b].key) })
	deleted = slices.CompactFunc(deleted, func(a, b int) bool { return bytes.Equal(pe[a].key, pe[b].key) })

	for _, e := range removedTail {
		d.push(rawPathPart{name: e.key})
		d.removeField()
		d.pop()
	}
	for _, k := range deleted {
		d.push(rawPathPart{name: pe[k].key})
		d.removeField()
		d.pop()
	}
	for _, k := range updates {
		d.push(rawPathPart{name: qe[k].key})
		d.setField(qe[k].val)
		d.pop()
	}
	for _, e := range inserts {
		d.push(rawPathPart{name: e.key})
		d.setField(e.val)
		d.pop()
	}
	for _, s := range subs {
		d.push(rawPathPart{name: pe[s[0]].key})
		d.value(pe[s[0]].val, qe[s[1]].val)
		d.pop()
	}
}

// value is diffValue: two subdocuments or two arrays at d.path.
func (d *rawDiff) value(pre, post bsoncore.Value) {
	if pre.Type == bsoncore.TypeArray {
		d.array(pre.Data, post.Data)
		return
	}
	d.doc(pre.Data, post.Data)
}

// array is diffArray on encoded arrays.
func (d *rawDiff) array(pre, post []byte) {
	var pbuf, qbuf [24]rawElem
	pe, ok1 := rawElems(pbuf[:0], pre)
	qe, ok2 := rawElems(qbuf[:0], post)
	if !ok1 || !ok2 {
		d.ok = false
		return
	}
	if len(qe) < len(pe) {
		d.truncate(len(qe))
	}
	for k, v := range qe {
		d.push(rawPathPart{index: k, isIdx: true})
		switch {
		case k >= len(pe):
			d.setField(v.val)
		case rawIdentical(pe[k].val, v.val):
		case rawSameKind(pe[k].val, v.val):
			d.value(pe[k].val, v.val)
		default:
			d.setField(v.val)
		}
		d.pop()
	}
}

// rawDiffPool keeps rawDiff buffers between events.
var rawDiffPool = sync.Pool{New: func() any { return new(rawDiff) }}

// appendUpdateDescription appends the value (an encoded document) of the
// updateDescription of an update that turned the encoded document pre into
// post (nil: absent), as diffDocuments(pre, post).doc() encodes it;
// false when a document is malformed.
func appendUpdateDescription(b, pre, post []byte) ([]byte, bool) {
	d := rawDiffPool.Get().(*rawDiff)
	defer rawDiffPool.Put(d)
	*d = rawDiff{updated: d.updated[:0], removed: d.removed[:0], truncated: d.truncated[:0],
		path: d.path[:0], ok: true}
	d.doc(pre, post)
	if !d.ok {
		return b, false
	}
	return d.appendDescription(b), true
}

// appendDescription appends the updateDescription d accumulated as an
// encoded document.
func (d *rawDiff) appendDescription(b []byte) []byte {
	idx, b := bsoncore.ReserveLength(b)
	b = appendFramed(b, bsoncore.TypeEmbeddedDocument, "updatedFields", d.updated)
	b = appendFramed(b, bsoncore.TypeArray, "removedFields", d.removed)
	b = appendFramed(b, bsoncore.TypeArray, "truncatedArrays", d.truncated)
	b = append(b, 0)
	return bsoncore.UpdateLength(b, idx, int32(len(b)-int(idx)))
}

// appendFramed appends the element key of type t (document or array) whose
// elements are elems.
func appendFramed(b []byte, t bsoncore.Type, key string, elems []byte) []byte {
	b = bsoncore.AppendHeader(b, t, key)
	b = bsoncore.AppendInt32(b, int32(len(elems)+5))
	b = append(b, elems...)
	return append(b, 0)
}
