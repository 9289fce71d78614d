package server

import (
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
)

// fillEmptyTimestamps returns doc with the value of every top-level field
// other than _id that holds the empty timestamp Timestamp(0, 0) replaced by
// a new cluster time of tx (storage.Tx.NextClusterTime), one per field in
// field order, as MongoDB fills them in a document an insert stores and in
// an update's replacement document. Embedded fields and _id keep the empty
// timestamp, and so do the values update operators, pipelines and upserts
// of operator updates write. doc itself is never changed: a copy is
// returned when a field is filled in.
//
// The time is later than the cluster time of every write before (so than
// every operationTime and $clusterTime a client has seen) and earlier than
// the write's own oplog entry, whose time the change event reports: MongoDB
// also ticks its cluster-time clock for the value before it reserves the
// entry's time.
func fillEmptyTimestamps(tx *storage.Tx, doc bson.D) (bson.D, error) {
	var out bson.D
	for i, e := range doc {
		if !isEmptyTimestamp(e) {
			continue
		}
		ts, err := tx.NextClusterTime()
		if err != nil {
			return nil, fmt.Errorf("fill in empty timestamp %s: %w", e.Key, err)
		}
		if out == nil {
			out = slices.Clone(doc)
		}
		out[i].Value = ts
	}
	if out == nil {
		return doc, nil
	}
	return out, nil
}

// isEmptyTimestamp reports whether e is a field other than _id holding
// Timestamp(0, 0).
func isEmptyTimestamp(e bson.E) bool {
	ts, ok := e.Value.(bson.Timestamp)
	return ok && ts.IsZero() && e.Key != "_id"
}

// hasEmptyTimestamp reports whether fillEmptyTimestamps would change doc.
func hasEmptyTimestamp(doc bson.D) bool {
	return slices.ContainsFunc(doc, isEmptyTimestamp)
}

// withFilledTimestamps returns u with the empty timestamps of its
// replacement document filled in (fillEmptyTimestamps); an operator or
// pipeline update is returned unchanged. MongoDB fills them in once per
// update statement, when it parses the replacement, before it looks for
// the document.
func (u *updateSpec) withFilledTimestamps(tx *storage.Tx) (*updateSpec, error) {
	if u == nil || u.replacement == nil || !hasEmptyTimestamp(u.replacement) {
		return u, nil
	}
	r, err := fillEmptyTimestamps(tx, u.replacement)
	if err != nil {
		return nil, err
	}
	v := *u
	v.replacement = r
	return &v, nil
}
