package server

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// scanChunk bounds the documents examined per read transaction by streaming
// readers, so that no read transaction stays open across cursor batches.
const scanChunk = 1024

// queryPlan is a compiled filter plus the access path: a point lookup on the
// _id index when the filter pins _id by equality and the index can answer
// it (see useID), otherwise a collection scan in natural order.
type queryPlan struct {
	filter *mql.Filter
	id     any
	byID   bool
	// coll is the collation the filter compares strings under.
	coll *mql.Collation
	// pre are top-level equality conditions of the filter that a stored
	// document's raw bytes can refute without decoding it (see mayMatch).
	pre []fieldCondition
	// pinned are the fields the filter pins to one value by top-level
	// equality (for index-provided sorts).
	pinned map[string]bool
	// tsAfter is a timestamp every matching document's top-level ts is
	// after (zero: none known): where a read of the oplog may start.
	tsAfter bson.Timestamp
	// stats, when not nil, counts what the plan's reads examine (explain).
	stats *scanStats
}

// scanStats counts what one execution of a query plan read, for explain's
// executionStats: the real counts of devdb's access paths.
type scanStats struct {
	// keys are _id index entries found by point lookups.
	keys int64
	// scanned are documents a collection (or oplog) scan read.
	scanned int64
	// fetched are documents an _id lookup loaded; sortFetched those an
	// index-order sort loaded by record id in key order.
	fetched, sortFetched int64
	// keyed are the matching documents whose sort keys an index-order sort
	// collected; sortedOut the record ids it handed to its fetch.
	keyed, sortedOut int64
	// scanEOF reports that a scan read to the end of the collection.
	scanEOF bool
}

// countKey records an _id index entry found and its document loaded.
func (p *queryPlan) countKey() {
	if p.stats != nil {
		p.stats.keys++
		p.stats.fetched++
	}
}

// countScanned records a document read by a scan.
func (p *queryPlan) countScanned() {
	if p.stats != nil {
		p.stats.scanned++
	}
}

// countKeyed records a sort key an index-order sort collected.
func (p *queryPlan) countKeyed() {
	if p.stats != nil {
		p.stats.keyed++
	}
}

// countScanEnd records that a scan reached the end of its collection.
func (p *queryPlan) countScanEnd() {
	if p.stats != nil {
		p.stats.scanEOF = true
	}
}

// letArg evaluates the command's optional let document (MongoDB 5.0+ on
// find, aggregate, update, delete and findAndModify) into the variables
// its filters and pipelines see as $$name; without let the result holds
// only $$NOW, fixed for the whole command.
func letArg(req *Request, now time.Time) (map[string]any, error) {
	let, _, err := docArg(req, "let")
	if err != nil {
		return nil, err
	}
	return mql.CompileLet(let, now)
}

// withVars makes vars visible to the plan's $expr.
func (p *queryPlan) withVars(vars map[string]any) *queryPlan {
	q := *p
	q.filter = p.filter.WithVars(vars)
	return &q
}

// compileQuery compiles filter into a plan whose string comparisons use
// the collation coll (nil: binary).
func compileQuery(filter bson.D, coll *mql.Collation) (*queryPlan, error) {
	f, err := mql.CompileFilterCollation(filter, coll)
	if err != nil {
		return nil, err
	}
	p := &queryPlan{filter: f, coll: coll, pre: fieldConditions(filter, coll), pinned: equalityFields(filter)}
	p.tsAfter, _ = tsLowerBound(filter)
	if v, ok := fieldOf(filter, "_id"); ok {
		switch x := v.(type) {
		case bson.Regex, bson.A:
		case bson.D:
			if len(x) == 1 && x[0].Key == "$eq" {
				switch x[0].Value.(type) {
				case bson.Regex, bson.A:
				default:
					p.id, p.byID = x[0].Value, true
				}
			} else if len(x) == 0 || !strings.HasPrefix(x[0].Key, "$") {
				p.id, p.byID = x, true
			}
		default:
			p.id, p.byID = v, true
		}
	}
	return p, nil
}

// useID reports whether the plan's _id equality can be answered by c's _id
// index: as in MongoDB, an index serves a query only when their collations
// match, unless the value compares the same under every collation (no
// strings in it).
func (p *queryPlan) useID(c *storage.Collection) bool {
	return p.byID && (mql.SameCollation(p.coll, c.IDCollation()) || !collationSensitive(p.id))
}

// decodeDoc decodes a stored document.
func decodeDoc(raw bson.Raw) (bson.D, error) {
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("decode stored document: %w", err)
	}
	return d, nil
}

// each calls fn for every matching document of c inside tx, in natural
// order, until fn returns false.
func (p *queryPlan) each(tx *storage.Tx, c *storage.Collection, fn func(rid storage.RecordID, doc bson.D) (bool, error)) error {
	if p.useID(c) {
		rid, doc, ok, err := tx.Get(c, p.id)
		if err != nil || !ok {
			return err
		}
		p.countKey()
		m, err := p.filter.MatchErr(doc)
		if err != nil || !m {
			return err
		}
		_, err = fn(rid, doc)
		return err
	}
	var scratch bson.D
	stopped := false
	err := tx.Scan(c, 0, func(rid storage.RecordID, raw bson.Raw) (bool, error) {
		p.countScanned()
		doc, m, err := p.matchRaw(raw, &scratch)
		if err != nil {
			return false, err
		}
		if !m {
			return true, nil
		}
		more, err := fn(rid, doc)
		stopped = !more
		return more, err
	})
	if err == nil && !stopped {
		p.countScanEnd()
	}
	return err
}

// matchRaw reports whether the stored document raw matches p and returns it
// decoded when it does. A document that mayMatch refutes (using scratch, its
// reusable probe buffer) is not decoded.
func (p *queryPlan) matchRaw(raw bson.Raw, scratch *bson.D) (bson.D, bool, error) {
	if !p.mayMatch(raw, scratch) {
		return nil, false, nil
	}
	doc, err := decodeDoc(raw)
	if err != nil {
		return nil, false, err
	}
	m, err := p.filter.MatchErr(doc)
	if err != nil || !m {
		return nil, false, err
	}
	return doc, true, nil
}

// matches returns the record ids and documents of c matching p inside tx,
// at most limit of them (0 = all).
func (p *queryPlan) matches(tx *storage.Tx, c *storage.Collection, limit int) ([]storage.RecordID, []bson.D, error) {
	var rids []storage.RecordID
	var docs []bson.D
	err := p.each(tx, c, func(rid storage.RecordID, doc bson.D) (bool, error) {
		rids, docs = append(rids, rid), append(docs, doc)
		return limit == 0 || len(rids) < limit, nil
	})
	return rids, docs, err
}

// stream yields the documents of db.coll matching p in natural order (for
// local.oplog.rs, devdb's oplog entries: oplogStream). It
// reads in chunks, each in its own short read transaction, and yields
// outside any transaction, so a consumer may pause between documents for as
// long as it likes (cursors across getMores). The stream ends early if the
// collection is dropped or renamed meanwhile.
func (s *Server) stream(st dataStore, db, coll string, p *queryPlan) iter.Seq2[bson.D, error] {
	if isOplog(db, coll) {
		return s.oplogStream(p, false)
	}
	return func(yield func(bson.D, error) bool) {
		var id uint64
		var after storage.RecordID
		var scratch bson.D // mayMatch's probe buffer, reused across chunks
		for first := true; ; first = false {
			var batch []bson.D
			var matchErr error // the filter failed on a document (a runtime error)
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
					_, batch, err = p.matches(tx, c, 0)
					return err
				}
				scanned := 0
				err = tx.Scan(c, after, func(rid storage.RecordID, raw bson.Raw) (bool, error) {
					after = rid
					scanned++
					p.countScanned()
					doc, m, err := p.matchRaw(raw, &scratch)
					if err != nil {
						// The documents matched before it are returned
						// first, as MongoDB's executor returns them before
						// it reaches the failing one.
						matchErr, done = err, true
						return false, nil
					}
					if m {
						batch = append(batch, doc)
					}
					return scanned < scanChunk, nil
				})
				if scanned < scanChunk && matchErr == nil {
					done = true
					p.countScanEnd()
				}
				return err
			})
			if err != nil {
				yield(nil, fmt.Errorf("scan %s.%s: %w", db, coll, dataErr(err)))
				return
			}
			for _, d := range batch {
				if !yield(d, nil) {
					return
				}
			}
			if matchErr != nil {
				yield(nil, fmt.Errorf("scan %s.%s: %w", db, coll, dataErr(matchErr)))
				return
			}
			if done {
				return
			}
		}
	}
}

// cmdDelete answers delete: {n, writeErrors?}.
func (s *Server) cmdDelete(_ context.Context, req *Request) (bson.D, error) {
	b, err := s.parseWriteBatch(req, "deletes")
	if err != nil {
		return nil, err
	}
	if err := checkBatchWriteNS(req, b.coll); err != nil {
		return nil, err
	}
	if b.rw != nil {
		for _, st := range b.stmts {
			if lv, ok := fieldOf(st, "limit"); ok {
				if l, err := intValue("delete.deletes.limit", lv); err == nil && l == 0 {
					return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "Cannot use (or request) retryable writes with limit=0")
				}
			}
		}
	}
	vars, err := letArg(req, time.Now())
	if err != nil {
		return nil, err
	}
	if req.explain != nil {
		return s.explainDelete(req, b, vars)
	}
	return s.execWrite(req, "delete from", b.coll, b.rw, func(tx *storage.Tx) (bson.D, error) {
		n := 0
		c, err := tx.Collection(req.DB, b.coll)
		if err != nil {
			return nil, err
		}
		writeErrs, err := eachStatement(len(b.stmts), b.ordered, func(i int) error {
			deleted, err := deleteOne(tx, c, b.stmts[i], vars)
			n += deleted
			return err
		})
		if err != nil {
			return nil, err
		}
		return withWriteErrors(bson.D{{Key: "n", Value: int32(n)}}, writeErrs), nil
	})
}

// deleteOne runs one delete statement {q, limit} against c (nil when the
// collection does not exist), with the command's let variables vars, and
// returns the number of deleted documents.
func deleteOne(tx *storage.Tx, c *storage.Collection, st bson.D, vars map[string]any) (int, error) {
	plan, limit, err := prepareDelete(c, st, vars)
	if err != nil {
		return 0, err
	}
	return runDelete(tx, c, plan, limit)
}

// prepareDelete parses the delete statement st on c (nil when the
// collection does not exist) into its plan and limit (0: all matching
// documents, 1: the first).
func prepareDelete(c *storage.Collection, st bson.D, vars map[string]any) (*queryPlan, int64, error) {
	filter, err := stmtFilter(st, "delete.deletes")
	if err != nil {
		return nil, 0, err
	}
	lv, ok := fieldOf(st, "limit")
	if !ok {
		return nil, 0, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'delete.deletes.limit' is missing but a required field")
	}
	limit, err := intValue("delete.deletes.limit", lv)
	if err != nil {
		return nil, 0, err
	}
	if limit != 0 && limit != 1 {
		return nil, 0, mongoerr.Errorf(mongoerr.FailedToParse, "The limit field in delete objects must be 0 or 1. Got %d", limit)
	}
	qc, err := stmtCollation(st, "delete.deletes")
	if err != nil {
		return nil, 0, err
	}
	plan, err := compileQuery(filter, qc.resolve(c))
	if err != nil {
		return nil, 0, err
	}
	return plan.withVars(vars), limit, nil
}

// runDelete deletes the documents of c matching plan, the first only when
// limit is 1, and returns how many it deleted.
func runDelete(tx *storage.Tx, c *storage.Collection, plan *queryPlan, limit int64) (int, error) {
	if c == nil {
		return 0, nil
	}
	var rids []storage.RecordID
	err := plan.each(tx, c, func(rid storage.RecordID, _ bson.D) (bool, error) {
		rids = append(rids, rid)
		return limit == 0, nil
	})
	if err != nil {
		return 0, err
	}
	for _, rid := range rids {
		if _, err := tx.Delete(c, rid); err != nil {
			return 0, err
		}
	}
	return len(rids), nil
}

// cmdCount answers count {query, skip, limit}: {n}.
func (s *Server) cmdCount(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	query, _, err := docArg(req, "query")
	if err != nil {
		return nil, err
	}
	skip, err := intArg(req, "skip", 0)
	if err != nil {
		return nil, err
	}
	if skip < 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "Skip value must be non-negative, but received: %d", skip)
	}
	limit, err := intArg(req, "limit", 0)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		limit = -limit
	}
	collation, err := s.commandCollation(req, coll)
	if err != nil {
		return nil, err
	}
	plan, err := compileQuery(query, collation)
	if err != nil {
		return nil, err
	}
	if req.explain != nil {
		return s.explainCount(req, coll, query, plan, skip, limit)
	}
	n, err := s.countMatching(req.DB, coll, query, plan, skip, limit)
	if err != nil {
		return nil, err
	}
	n = max(n-skip, 0)
	if limit > 0 {
		n = min(n, limit)
	}
	return bson.D{{Key: "n", Value: int32OrInt64(n)}}, nil
}

// countMatching returns how many documents of db.coll match query
// (compiled into plan), counting no further than skip+limit when limit is
// set; without a query it is the collection's document count, read
// without a scan.
func (s *Server) countMatching(db, coll string, query bson.D, plan *queryPlan, skip, limit int64) (int64, error) {
	var n int64
	err := s.store.View(func(tx *storage.Tx) error {
		c, err := tx.Collection(db, coll)
		if err != nil || c == nil {
			return err
		}
		if len(query) == 0 {
			n, _ = tx.Stats(c)
			return nil
		}
		return plan.each(tx, c, func(storage.RecordID, bson.D) (bool, error) {
			n++
			return limit == 0 || n < skip+limit, nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("count %s.%s: %w", db, coll, dataErr(err))
	}
	return n, nil
}

// stmtFilter returns the required filter document q of a delete or update
// statement st; field names the statements array in errors
// ("delete.deletes", "update.updates").
func stmtFilter(st bson.D, field string) (bson.D, error) {
	q, ok := fieldOf(st, "q")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field '%s.q' is missing but a required field", field)
	}
	filter, ok := q.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.q' is the wrong type '%s', expected type 'object'", field, mql.TypeName(q))
	}
	return filter, nil
}

// int32OrInt64 returns n as int32 when it fits, as MongoDB encodes counts.
func int32OrInt64(n int64) any {
	if n >= -1<<31 && n < 1<<31 {
		return int32(n)
	}
	return n
}

// cmdDistinct answers distinct {key, query, collation}: {values}. Array
// values are unwound one level, as MongoDB does; values are returned in
// MongoDB's sort order, numerically equal values (and strings equal under
// the collation) once, the first one met representing them.
func (s *Server) cmdDistinct(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	kv, ok := fieldOf(req.Body, "key")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'distinct.key' is missing but a required field")
	}
	key, ok := kv.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'distinct.key' is the wrong type '%s', expected type 'string'", mql.TypeName(kv))
	}
	if key == "" {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "FieldPath cannot be constructed with empty string")
	}
	query, _, err := docArg(req, "query")
	if err != nil {
		return nil, err
	}
	collation, err := s.commandCollation(req, coll)
	if err != nil {
		return nil, err
	}
	plan, err := compileQuery(query, collation)
	if err != nil {
		return nil, err
	}
	if req.explain != nil {
		return s.explainDistinct(req, coll, query, plan)
	}
	parts := strings.Split(key, ".")
	type entry struct {
		key []byte
		val any
	}
	seen := map[string]int{}
	var vals []entry
	size := 0
	for doc, err := range s.stream(s.data(req), req.DB, coll, plan) {
		if err != nil {
			return nil, err
		}
		for _, v := range distinctValues(doc, parts, nil) {
			k := storage.KeyStringCollation(v, collation)
			if _, dup := seen[string(k)]; dup {
				continue
			}
			seen[string(k)] = len(vals)
			vals = append(vals, entry{k, v})
			size += len(k)
			if size > storage.MaxDocumentSize {
				return nil, mongoerr.Errorf(mongoerr.DistinctTooBig, "distinct too big, 16mb cap")
			}
		}
	}
	slices.SortFunc(vals, func(a, b entry) int {
		if c := mql.CompareCollated(a.val, b.val, collation); c != 0 {
			return c
		}
		return bytes.Compare(a.key, b.key)
	})
	out := make(bson.A, len(vals))
	for i, e := range vals {
		out[i] = e.val
	}
	return bson.D{{Key: "values", Value: out}}, nil
}

// distinctValues appends the values distinct sees at path in v: arrays met
// along the path are traversed and a final array is unwound one level.
func distinctValues(v any, parts []string, out []any) []any {
	if len(parts) == 0 {
		if arr, ok := v.(bson.A); ok {
			return append(out, arr...)
		}
		return append(out, v)
	}
	switch x := v.(type) {
	case bson.D:
		fv, ok := fieldOf(x, parts[0])
		if !ok {
			return out
		}
		return distinctValues(fv, parts[1:], out)
	case bson.A:
		if idx, err := strconv.Atoi(parts[0]); err == nil && idx >= 0 {
			if idx < len(x) {
				return distinctValues(x[idx], parts[1:], out)
			}
			return out
		}
		for _, el := range x {
			if d, ok := el.(bson.D); ok {
				out = distinctValues(d, parts, out)
			}
		}
	}
	return out
}
