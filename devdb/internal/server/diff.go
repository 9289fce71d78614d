package server

import (
	"sort"
	"strconv"
	"strings"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// updateDescription is the updateDescription of an update change event.
type updateDescription struct {
	// UpdatedFields maps dotted paths to their new values.
	UpdatedFields bson.D
	// RemovedFields lists the dotted paths of removed fields.
	RemovedFields []string
	// TruncatedArrays lists {field, newSize} for arrays that shrank.
	TruncatedArrays []bson.D
}

// doc renders d as MongoDB 6.0's updateDescription subdocument: without
// disambiguatedPaths, which MongoDB adds from 6.1 on (with
// showExpandedEvents), after the version devdb presents (Version).
func (d updateDescription) doc() bson.D {
	removed := make(bson.A, 0, len(d.RemovedFields))
	for _, f := range d.RemovedFields {
		removed = append(removed, f)
	}
	truncated := make(bson.A, 0, len(d.TruncatedArrays))
	for _, t := range d.TruncatedArrays {
		truncated = append(truncated, t)
	}
	updated := d.UpdatedFields
	if updated == nil {
		updated = bson.D{}
	}
	return bson.D{
		{Key: "updatedFields", Value: updated},
		{Key: "removedFields", Value: removed},
		{Key: "truncatedArrays", Value: truncated},
	}
}

// diffPathPart is one component of a path in an update description: a field
// name, or an array index.
type diffPathPart struct {
	name  string
	index int
	isIdx bool
}

// diffDocuments computes the updateDescription of an update that turned pre
// into post, as MongoDB's v2 delta oplog entries describe it: changed
// scalars and new fields by dotted path, subdocuments and arrays diffed
// recursively ("a.b", "arr.3"), arrays that shrank in truncatedArrays, and
// removed fields in removedFields. A field whose type changes, or that moves
// position in the document, is reported whole.
func diffDocuments(pre, post bson.D) updateDescription {
	var d updateDescription
	diffDoc(&d, nil, pre, post)
	return d
}

// diffDoc appends the differences between two subdocuments at path.
// Following MongoDB's document diff: fields are walked pairwise in order;
// a field whose name does not line up is deleted (and re-inserted whole if
// it occurs later in post).
func diffDoc(d *updateDescription, path []diffPathPart, pre, post bson.D) {
	type sub struct {
		name      string
		pre, post any
	}
	var updates, inserts []bson.E
	var subs []sub
	var removed []string
	deleted := map[string]bool{}
	i, j := 0, 0
	for i < len(pre) && j < len(post) {
		pv, qv := pre[i], post[j]
		if pv.Key == qv.Key && mql.Identical(pv.Value, qv.Value) {
			i++
			j++
			continue
		}
		if pv.Key == qv.Key {
			if diffSameKind(pv.Value, qv.Value) {
				subs = append(subs, sub{pv.Key, pv.Value, qv.Value})
			} else {
				updates = append(updates, qv)
			}
			i++
			j++
			continue
		}
		deleted[pv.Key] = true
		i++
	}
	for ; i < len(pre); i++ {
		removed = append(removed, pre[i].Key)
	}
	for ; j < len(post); j++ {
		inserts = append(inserts, post[j])
		delete(deleted, post[j].Key)
	}
	names := make([]string, 0, len(deleted))
	for k := range deleted {
		names = append(names, k)
	}
	sort.Strings(names)
	removed = append(removed, names...)

	for _, f := range removed {
		p := diffAppendPath(path, diffPathPart{name: f})
		d.RemovedFields = append(d.RemovedFields, diffJoinPath(p))
	}
	for _, e := range updates {
		d.setField(diffAppendPath(path, diffPathPart{name: e.Key}), e.Value)
	}
	for _, e := range inserts {
		d.setField(diffAppendPath(path, diffPathPart{name: e.Key}), e.Value)
	}
	for _, s := range subs {
		diffValue(d, diffAppendPath(path, diffPathPart{name: s.name}), s.pre, s.post)
	}
}

// diffValue diffs two subdocuments or two arrays at path.
func diffValue(d *updateDescription, path []diffPathPart, pre, post any) {
	switch a := pre.(type) {
	case bson.D:
		diffDoc(d, path, a, post.(bson.D))
	case bson.A:
		diffArray(d, path, a, post.(bson.A))
	}
}

// diffArray appends the differences between two arrays at path: changed
// and appended elements by index, and a truncation when post is shorter.
func diffArray(d *updateDescription, path []diffPathPart, pre, post bson.A) {
	if len(post) < len(pre) {
		d.TruncatedArrays = append(d.TruncatedArrays, bson.D{
			{Key: "field", Value: diffJoinPath(path)},
			{Key: "newSize", Value: int32(len(post))},
		})
	}
	for k, v := range post {
		p := diffAppendPath(path, diffPathPart{index: k, isIdx: true})
		switch {
		case k >= len(pre):
			d.setField(p, v)
		case mql.Identical(pre[k], v):
		case diffSameKind(pre[k], v):
			diffValue(d, p, pre[k], v)
		default:
			d.setField(p, v)
		}
	}
}

// setField records an updated field.
func (d *updateDescription) setField(path []diffPathPart, v any) {
	d.UpdatedFields = append(d.UpdatedFields, bson.E{Key: diffJoinPath(path), Value: v})
}

// diffAppendPath returns path + p without aliasing path's backing array.
func diffAppendPath(path []diffPathPart, p diffPathPart) []diffPathPart {
	out := make([]diffPathPart, len(path), len(path)+1)
	copy(out, path)
	return append(out, p)
}

// diffJoinPath renders path in dotted form.
func diffJoinPath(path []diffPathPart) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 {
			b.WriteByte('.')
		}
		if p.isIdx {
			b.WriteString(strconv.Itoa(p.index))
		} else {
			b.WriteString(p.name)
		}
	}
	return b.String()
}

// diffSameKind reports whether a and b are both documents or both
// arrays (the cases the delta diff descends into).
func diffSameKind(a, b any) bool {
	switch a.(type) {
	case bson.D:
		_, ok := b.(bson.D)
		return ok
	case bson.A:
		_, ok := b.(bson.A)
		return ok
	}
	return false
}
