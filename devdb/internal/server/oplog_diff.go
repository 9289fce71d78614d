package server

import (
	"bytes"
	"slices"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// deltaPadding is what MongoDB adds to the size of a computed diff, for the
// $v and diff fields around it, before comparing it with the size of the
// document after the update (update_oplog_entry::kSizeOfDeltaOplogEntryMetadata).
const deltaPadding = 15

// updateOplogO is the o of an update's oplog entry: {$v: 2, diff}. An entry
// carries its diff (an operator update's is what its operators did, which
// MongoDB always logs as a delta; a pipeline update's the delta from its
// pre- to its post-image); for one that does not (a $merge, or an entry
// written before devdb kept diffs) it is that delta, or post itself (the
// replacement form) when the delta is not small enough (pipelineDelta).
func updateOplogO(pre, post, diff bson.D) bson.D {
	if diff == nil {
		if pre == nil {
			return post
		}
		if diff = pipelineDelta(pre, post); diff == nil {
			return post
		}
	}
	return bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: diff}}
}

// pipelineDelta is the diff MongoDB logs for a pipeline update that turned
// pre into post, or nil when it logs a replacement instead: when the diff
// plus deltaPadding is not smaller than post (doc_diff::computeOplogDiff as
// the pipeline executor calls it).
func pipelineDelta(pre, post bson.D) bson.D {
	diff := docDiff(pre, post)
	d, err := bson.Marshal(diff)
	if err != nil {
		return nil
	}
	p, err := bson.Marshal(post)
	if err != nil || len(d)+deltaPadding >= len(p) {
		return nil
	}
	return diff
}

// sameValue reports whether two values are the same BSON (type and bytes),
// each encoded as a document's field is (where a nil bson.D is an empty
// document, not null).
func sameValue(a, b any) bool {
	ba, errA := bson.Marshal(bson.D{{Key: "v", Value: a}})
	bb, errB := bson.Marshal(bson.D{{Key: "v", Value: b}})
	return errA == nil && errB == nil && bytes.Equal(ba, bb)
}

// docDiff is MongoDB's document delta from pre to post
// (doc_diff::computeDocDiff): fields are paired in order; a pair with the
// same name whose values differ is a nested delta (s<name>) for two
// documents or two arrays, else an update (u); a field of pre whose name
// does not line up is deleted (d, false) and only pre moves on; the fields
// of post left when pre runs out are inserts (i, which also move a field to
// the end), and a deleted name inserted again is not deleted. Its fields are
// d (the fields left in pre, then the other deleted names in byte order),
// u, i, then the nested deltas.
func docDiff(pre, post bson.D) bson.D {
	var ups, ins, subs bson.D
	var dels bson.D
	var deleted []string
	i, j := 0, 0
	for i < len(pre) && j < len(post) {
		a, b := pre[i], post[j]
		if a.Key != b.Key {
			deleted = append(deleted, a.Key)
			i++
			continue
		}
		if !sameValue(a.Value, b.Value) {
			// Values that differ in a way no nested delta shows (a
			// nil document, which encodes as null), or whose delta is
			// not smaller than the value, are updated whole.
			if sub, ok := subDiff(a.Value, b.Value); ok && len(sub) > 0 && smaller(sub, b.Value) {
				subs = append(subs, bson.E{Key: "s" + a.Key, Value: sub})
			} else {
				ups = append(ups, bson.E{Key: a.Key, Value: b.Value})
			}
		}
		i, j = i+1, j+1
	}
	for ; i < len(pre); i++ {
		dels = append(dels, bson.E{Key: pre[i].Key, Value: false})
	}
	for ; j < len(post); j++ {
		ins = append(ins, post[j])
		deleted = slices.DeleteFunc(deleted, func(k string) bool { return k == post[j].Key })
	}
	slices.Sort(deleted)
	deleted = slices.Compact(deleted)
	for _, k := range deleted {
		dels = append(dels, bson.E{Key: k, Value: false})
	}
	var out bson.D
	for _, part := range []struct {
		key string
		d   bson.D
	}{{"d", dels}, {"u", ups}, {"i", ins}} {
		if len(part.d) > 0 {
			out = append(out, bson.E{Key: part.key, Value: part.d})
		}
	}
	return append(out, subs...)
}

// smaller reports whether the nested delta sub is smaller than the value
// v it describes, both encoded: MongoDB logs v whole otherwise.
func smaller(sub bson.D, v any) bool {
	ds, err := bson.Marshal(sub)
	if err != nil {
		return false
	}
	var vs []byte
	switch x := v.(type) {
	case bson.D:
		vs, err = bson.Marshal(x)
	case bson.A:
		_, vs, err = bson.MarshalValue(x)
	}
	return err == nil && len(ds) < len(vs)
}

// subDiff is the nested delta of two documents or two arrays (ok false
// for any other pair, which is logged as an update of the field).
func subDiff(a, b any) (bson.D, bool) {
	switch x := a.(type) {
	case bson.D:
		if y, ok := b.(bson.D); ok {
			return docDiff(x, y), true
		}
	case bson.A:
		if y, ok := b.(bson.A); ok {
			return arrayDiff(x, y), true
		}
	}
	return nil, false
}

// arrayDiff is MongoDB's array delta: {a: true, l: <new length> when the
// array shrank, u<i>: <new value> or s<i>: <nested delta> per changed or
// appended index, in index order}; nil when nothing changed.
func arrayDiff(pre, post bson.A) bson.D {
	out := bson.D{{Key: "a", Value: true}}
	if len(post) < len(pre) {
		out = append(out, bson.E{Key: "l", Value: int32(len(post))})
	}
	changed := len(post) < len(pre)
	for k, v := range post {
		idx := strconv.Itoa(k)
		if k < len(pre) {
			if sameValue(pre[k], v) {
				continue
			}
			if sub, ok := subDiff(pre[k], v); ok && len(sub) > 0 {
				out, changed = append(out, bson.E{Key: "s" + idx, Value: sub}), true
				continue
			}
		}
		out, changed = append(out, bson.E{Key: "u" + idx, Value: v}), true
	}
	if !changed {
		return nil
	}
	return out
}
