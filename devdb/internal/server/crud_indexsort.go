package server

import (
	"fmt"
	"iter"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mql"
)

// A find whose sort an index provides is answered by MongoDB with an index
// scan in key order: there is no blocking SORT stage, so no sort memory
// limit applies however many and however large the documents are. devdb
// keeps no ordered secondary index entries, so it produces the same order
// the way an index scan would hold it: it collects only each matching
// document's sort key and record id (never the documents), orders those,
// and then reads the documents one chunk at a time in that order.

// indexOrderChunk is how many documents indexOrder loads per read
// transaction.
const indexOrderChunk = 256

// equalityFields returns the top-level fields filter pins to one value by
// equality ({f: v} or {f: {$eq: v}} with v not a regex, array or operator
// document), also inside a top-level $and.
func equalityFields(filter bson.D) map[string]bool {
	out := map[string]bool{}
	var walk func(d bson.D)
	walk = func(d bson.D) {
		for _, e := range d {
			if e.Key == "$and" {
				if arr, ok := e.Value.(bson.A); ok {
					for _, el := range arr {
						if sub, ok := el.(bson.D); ok {
							walk(sub)
						}
					}
				}
				continue
			}
			if strings.HasPrefix(e.Key, "$") {
				continue
			}
			v := e.Value
			if d, ok := v.(bson.D); ok && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
				if len(d) != 1 || d[0].Key != "$eq" {
					continue
				}
				v = d[0].Value
			}
			switch v.(type) {
			case bson.Regex, bson.A:
				continue
			}
			out[e.Key] = true
		}
	}
	walk(filter)
	return out
}

// sortFromIndex reports whether an index with key pattern key returns the
// documents of a query whose filter pins the fields pinned in the order
// of sort (or all of it reversed): walking the key pattern, every sort
// field comes next in the same direction, and the key fields between them
// are pinned. Sort fields that are pinned are ignored.
func sortFromIndex(key bson.D, sort bson.D, pinned map[string]bool) bool {
	var want bson.D
	for _, e := range sort {
		if !pinned[e.Key] {
			want = append(want, e)
		}
	}
	if len(want) == 0 {
		return true
	}
	for _, reverse := range []bool{false, true} {
		j := 0
		for _, k := range key {
			if j == len(want) {
				break
			}
			kd, ok := mql.ToFloat64(k.Value)
			if !ok { // special index (text, 2d, hashed, …): no order
				break
			}
			wd, _ := mql.ToFloat64(want[j].Value)
			if reverse {
				wd = -wd
			}
			if k.Key == want[j].Key && (kd > 0) == (wd > 0) {
				j++
				continue
			}
			if !pinned[k.Key] {
				break
			}
		}
		if j == len(want) {
			return true
		}
	}
	return false
}

// indexProvidesSort reports whether an index of db.coll (the _id index
// included) provides f's sort for f's filter, so that MongoDB would run
// the query without a blocking sort. Sparse and partial indexes are not
// used for sorting (MongoDB uses them only when the filter implies their
// condition), nor is an index whose collation differs from the query's
// (its key order is not the order the query asks for).
func (s *Server) indexProvidesSort(db, coll string, f *findSpec) bool {
	var indexes []storage.IndexSpec
	err := s.store.View(func(tx *storage.Tx) error {
		c, err := tx.Collection(db, coll)
		if err != nil || c == nil {
			return err
		}
		indexes = c.Indexes
		return nil
	})
	if err != nil {
		return false
	}
	sort := f.sort.Fields()
	for _, ix := range indexes {
		if ix.Sparse || len(ix.PartialFilter) > 0 || !mql.SameCollation(ix.Collation(), f.plan.coll) {
			continue
		}
		if sortFromIndex(ix.Key, sort, f.plan.pinned) {
			return true
		}
	}
	return false
}

// keyedRecord is a matching document's sort key and record id.
type keyedRecord struct {
	key []any
	rid storage.RecordID
}

// indexOrder yields the documents of db.coll matching p in the order of
// sort (ties in natural order, as an index's record-id suffix orders
// them), the first keep only when keep > 0. It holds the sort keys and
// record ids of the matching documents, then loads the documents chunk by
// chunk; a document deleted meanwhile is skipped and one changed so that
// it no longer matches is left out, as a yielding index scan would. No
// memory limit applies (see indexProvidesSort).
func (s *Server) indexOrder(st dataStore, db, coll string, p *queryPlan, sort *mql.Sort, keep int64) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		recs, collID, err := s.sortKeys(st, db, coll, p, sort)
		if err != nil {
			yield(nil, err)
			return
		}
		slices.SortStableFunc(recs, func(a, b keyedRecord) int { return sort.CompareKeys(a.key, b.key) })
		if keep > 0 && int64(len(recs)) > keep {
			recs = recs[:keep]
		}
		for len(recs) > 0 {
			chunk := recs[:min(indexOrderChunk, len(recs))]
			recs = recs[len(chunk):]
			var docs []bson.D
			gone := false
			err := st.View(func(tx *storage.Tx) error {
				c, err := tx.Collection(db, coll)
				if err != nil || c == nil || c.ID != collID {
					gone = true
					return err
				}
				for _, r := range chunk {
					if p.stats != nil {
						p.stats.sortedOut++
					}
					doc, ok, err := tx.Load(c, r.rid)
					if err != nil {
						return err
					}
					if !ok {
						continue
					}
					if p.stats != nil {
						p.stats.sortFetched++
					}
					if m, err := p.filter.MatchErr(doc); err != nil {
						return err
					} else if m {
						docs = append(docs, doc)
					}
				}
				return nil
			})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, d := range docs {
				if !yield(d, nil) {
					return
				}
			}
			if gone {
				return
			}
		}
	}
}

// sortKeys returns the sort key and record id of every document of db.coll
// matching p, in natural order, and the collection's id (0: no
// collection). It reads in chunks of scanChunk documents, each in its own
// read transaction, and keeps no document.
func (s *Server) sortKeys(st dataStore, db, coll string, p *queryPlan, sort *mql.Sort) ([]keyedRecord, uint64, error) {
	var recs []keyedRecord
	var id uint64
	var after storage.RecordID
	var scratch bson.D
	for first := true; ; first = false {
		done := false
		err := st.View(func(tx *storage.Tx) error {
			c, err := tx.Collection(db, coll)
			if err != nil || c == nil || (!first && c.ID != id) {
				done = true
				return err
			}
			id = c.ID
			if p.useID(c) {
				done = true
				return p.each(tx, c, func(rid storage.RecordID, doc bson.D) (bool, error) {
					p.countKeyed()
					recs = append(recs, keyedRecord{key: sort.KeyValues(doc), rid: rid})
					return true, nil
				})
			}
			scanned := 0
			err = tx.Scan(c, after, func(rid storage.RecordID, raw bson.Raw) (bool, error) {
				after = rid
				scanned++
				p.countScanned()
				doc, m, err := p.matchRaw(raw, &scratch)
				if err != nil {
					return false, err
				}
				if m {
					p.countKeyed()
					recs = append(recs, keyedRecord{key: sort.KeyValues(doc), rid: rid})
				}
				return scanned < scanChunk, nil
			})
			if scanned < scanChunk {
				done = true
				p.countScanEnd()
			}
			return err
		})
		if err != nil {
			return nil, 0, fmt.Errorf("scan %s.%s: %w", db, coll, dataErr(err))
		}
		if done {
			return recs, id, nil
		}
	}
}
