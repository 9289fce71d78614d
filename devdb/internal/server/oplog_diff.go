package server

import (
	"bytes"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// updateOplogO is the o of an update's oplog entry as MongoDB logs it: the
// delta from the document before (pre) to after (post), {$v: 2, diff},
// when it is smaller than the updated document, else the updated document
// itself (the replacement form).
func updateOplogO(pre, post bson.D) bson.D {
	if pre == nil {
		return post
	}
	diff := docDiff(pre, post)
	d, err := bson.Marshal(diff)
	if err != nil {
		return post
	}
	p, err := bson.Marshal(post)
	if err != nil || len(d) >= len(p) {
		return post
	}
	return bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: diff}}
}

// sameValue reports whether two values are the same BSON (type and bytes),
// each encoded as a document's field is (where a nil bson.D is an empty
// document, not null).
func sameValue(a, b any) bool {
	ba, errA := bson.Marshal(bson.D{{Key: "v", Value: a}})
	bb, errB := bson.Marshal(bson.D{{Key: "v", Value: b}})
	return errA == nil && errB == nil && bytes.Equal(ba, bb)
}

// docDiff is MongoDB's document delta from pre to post: fields in the same
// order whose values changed are updates (u) or, for two documents or two
// arrays, nested deltas (s<name>); fields of pre not in post are deletes
// (d, each false); from where the orders part, post's fields are inserts
// (i, which also move a field to the end). Its fields are d, u, i, then the
// nested deltas.
func docDiff(pre, post bson.D) bson.D {
	var dels, ups, ins, subs bson.D
	inPost := make(map[string]bool, len(post))
	for _, e := range post {
		inPost[e.Key] = true
	}
	i, j := 0, 0
	for i < len(pre) && j < len(post) {
		a, b := pre[i], post[j]
		if a.Key == b.Key {
			if !sameValue(a.Value, b.Value) {
				// Values that differ in a way no nested delta shows (a
				// nil document, which encodes as null) are updated whole.
				if sub, ok := subDiff(a.Value, b.Value); ok && len(sub) > 0 {
					subs = append(subs, bson.E{Key: "s" + a.Key, Value: sub})
				} else {
					ups = append(ups, bson.E{Key: a.Key, Value: b.Value})
				}
			}
			i, j = i+1, j+1
			continue
		}
		if !inPost[a.Key] {
			dels = append(dels, bson.E{Key: a.Key, Value: false})
			i++
			continue
		}
		break // the orders part: the rest of post is inserted
	}
	for ; i < len(pre); i++ {
		if !inPost[pre[i].Key] {
			dels = append(dels, bson.E{Key: pre[i].Key, Value: false})
		}
	}
	for ; j < len(post); j++ {
		ins = append(ins, post[j])
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
