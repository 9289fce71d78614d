package server

import (
	"bytes"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The updateDescription of an update whose oplog entry carries its $v: 2
// diff (an operator update: see update.Update.ApplyDiff), read from the
// diff as MongoDB's change streams read it
// (change_stream_document_diff_parser): in each document of the diff, the
// updated (u) and then the inserted (i) fields are updatedFields, the
// deleted ones (d) removedFields, then the sub-diffs (s<field>) are read
// with the path extended; in an array diff (a: true) a new length (l) is a
// truncatedArrays entry, u<i> an updated field "path.i" and s<i> a sub-diff.
//
// describeDiff works on the decoded diff, appendDiffDescription on the
// encoded one, with the same result (the change-stream tests compare the
// raw and the decoded events).

// describeDiff returns the updateDescription the diff describes.
func describeDiff(diff bson.D) updateDescription {
	var d updateDescription
	describeDocDiff(&d, nil, diff)
	return d
}

func describeDocDiff(d *updateDescription, path []diffPathPart, diff bson.D) {
	for _, section := range [...]string{"u", "i"} {
		for _, e := range diff {
			if e.Key != section {
				continue
			}
			fields, _ := e.Value.(bson.D)
			for _, f := range fields {
				d.setField(diffAppendPath(path, diffPathPart{name: f.Key}), f.Value)
			}
		}
	}
	for _, e := range diff {
		if e.Key != "d" {
			continue
		}
		fields, _ := e.Value.(bson.D)
		for _, f := range fields {
			d.RemovedFields = append(d.RemovedFields, diffJoinPath(diffAppendPath(path, diffPathPart{name: f.Key})))
		}
	}
	for _, e := range diff {
		if len(e.Key) == 0 || e.Key[0] != 's' {
			continue
		}
		sub, _ := e.Value.(bson.D)
		describeSubDiff(d, diffAppendPath(path, diffPathPart{name: e.Key[1:]}), sub)
	}
}

// describeSubDiff reads a sub-diff: an array diff when it starts with
// a: true, else a document diff.
func describeSubDiff(d *updateDescription, path []diffPathPart, sub bson.D) {
	if len(sub) == 0 || sub[0].Key != "a" {
		describeDocDiff(d, path, sub)
		return
	}
	for _, e := range sub[1:] {
		switch {
		case e.Key == "l":
			n, _ := e.Value.(int32)
			d.TruncatedArrays = append(d.TruncatedArrays, bson.D{
				{Key: "field", Value: diffJoinPath(path)},
				{Key: "newSize", Value: n},
			})
		case len(e.Key) > 1 && e.Key[0] == 'u':
			d.setField(diffAppendPath(path, diffPathPart{name: e.Key[1:]}), e.Value)
		case len(e.Key) > 1 && e.Key[0] == 's':
			s, _ := e.Value.(bson.D)
			describeSubDiff(d, diffAppendPath(path, diffPathPart{name: e.Key[1:]}), s)
		}
	}
}

// appendDiffDescription is describeDiff(diff).doc() for the encoded diff,
// appended as the value of an element (an encoded document); false when
// the diff is malformed.
func appendDiffDescription(b, diff []byte) ([]byte, bool) {
	d := rawDiffPool.Get().(*rawDiff)
	defer rawDiffPool.Put(d)
	*d = rawDiff{updated: d.updated[:0], removed: d.removed[:0], truncated: d.truncated[:0],
		path: d.path[:0], ok: true}
	d.docDiff(diff)
	if !d.ok {
		return b, false
	}
	return d.appendDescription(b), true
}

// docDiff is describeDocDiff on an encoded document diff.
func (d *rawDiff) docDiff(diff []byte) {
	var buf [8]rawElem
	elems, ok := rawElems(buf[:0], diff)
	if !ok {
		d.ok = false
		return
	}
	for _, section := range [...]string{"u", "i", "d"} {
		for _, e := range elems {
			if string(e.key) != section {
				continue
			}
			fields, ok := e.val.DocumentOK()
			var fbuf [16]rawElem
			fe, ok2 := rawElems(fbuf[:0], fields)
			if !ok || !ok2 {
				d.ok = false
				return
			}
			for _, f := range fe {
				d.push(rawPathPart{name: f.key})
				if section == "d" {
					d.removeField()
				} else {
					d.setField(f.val)
				}
				d.pop()
			}
		}
	}
	for _, e := range elems {
		if len(e.key) == 0 || e.key[0] != 's' {
			continue
		}
		sub, ok := e.val.DocumentOK()
		if !ok {
			d.ok = false
			return
		}
		d.push(rawPathPart{name: e.key[1:]})
		d.subDiff(sub)
		d.pop()
	}
}

// subDiff is describeSubDiff on an encoded sub-diff.
func (d *rawDiff) subDiff(sub []byte) {
	var buf [16]rawElem
	elems, ok := rawElems(buf[:0], sub)
	if !ok {
		d.ok = false
		return
	}
	if len(elems) == 0 || !bytes.Equal(elems[0].key, []byte("a")) {
		d.docDiff(sub)
		return
	}
	for _, e := range elems[1:] {
		switch {
		case string(e.key) == "l":
			n, ok := e.val.Int32OK()
			if !ok {
				d.ok = false
				return
			}
			d.truncate(int(n))
		case len(e.key) > 1 && e.key[0] == 'u':
			d.push(rawPathPart{name: e.key[1:]})
			d.setField(e.val)
			d.pop()
		case len(e.key) > 1 && e.key[0] == 's':
			s, ok := e.val.DocumentOK()
			if !ok {
				d.ok = false
				return
			}
			d.push(rawPathPart{name: e.key[1:]})
			d.subDiff(s)
			d.pop()
		}
	}
}
