package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/devdb/internal/update"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// updateSpec is a compiled update: operators, a pipeline or a replacement
// document.
type updateSpec struct {
	ops         *update.Update
	pipeline    *mql.Pipeline
	replacement bson.D
}

// compileUpdateSpec compiles the u of an update statement or the update of
// findAndModify.
func compileUpdateSpec(cmd string, u any, arrayFilters []bson.D, coll *mql.Collation) (*updateSpec, error) {
	switch x := u.(type) {
	case bson.D:
		if update.IsOperatorUpdate(x) {
			ops, err := update.Compile(x, update.Options{ArrayFilters: arrayFilters, Collation: coll})
			if err != nil {
				return nil, err
			}
			return &updateSpec{ops: ops}, nil
		}
		if len(arrayFilters) > 0 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "arrayFilters may not be specified for replacement-style updates")
		}
		if err := update.ValidateReplacement(x); err != nil {
			return nil, err
		}
		return &updateSpec{replacement: x}, nil
	case bson.A:
		if len(arrayFilters) > 0 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "arrayFilters may not be specified for pipeline-style updates")
		}
		stages := make([]bson.D, len(x))
		for i, st := range x {
			d, ok := st.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
			}
			stages[i] = d
		}
		p, err := update.CompilePipeline(stages)
		if err != nil {
			return nil, err
		}
		return &updateSpec{pipeline: p.WithCollation(coll)}, nil
	}
	return nil, mongoerr.Errorf(mongoerr.FailedToParse, "BSON field '%s' is the wrong type '%s', expected types '[object, array]'", cmd, mql.TypeName(u))
}

// withVars makes vars visible to a pipeline update.
func (u *updateSpec) withVars(vars map[string]any) *updateSpec {
	if u == nil || u.pipeline == nil {
		return u
	}
	v := *u
	v.pipeline = u.pipeline.WithVars(vars)
	return &v
}

// stmtConstants adds an update statement's constants c (a document,
// evaluated like let) to the command's variables vars; without c it
// returns vars unchanged.
func stmtConstants(st bson.D, vars map[string]any) (map[string]any, error) {
	cv, ok := fieldOf(st, "c")
	if !ok || cv == nil {
		return vars, nil
	}
	cd, ok := cv.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'update.updates.c' is the wrong type '%s', expected type 'object'", mql.TypeName(cv))
	}
	now, _ := vars["NOW"].(bson.DateTime)
	consts, err := mql.CompileLet(cd, now.Time())
	if err != nil {
		return nil, err
	}
	merged := make(map[string]any, len(vars)+len(consts))
	for k, v := range vars {
		merged[k] = v
	}
	for k, v := range consts {
		if k != "NOW" {
			merged[k] = v
		}
	}
	return merged, nil
}

// apply computes the new version of doc (matched at array position pos).
// It reports whether anything changed; op is "update" or "replace", and
// diff, for an update, the diff of its $v: 2 oplog entry (nil for a
// replacement): for an operator update what its operators logged, for a
// pipeline update the delta from doc as MongoDB computes it, which makes it
// a "replace" instead when that delta is not small enough (pipelineDelta).
func (u *updateSpec) apply(doc bson.D, pos int, insert bool, now time.Time) (out bson.D, changed bool, op string, diff bson.D, err error) {
	if u.ops != nil {
		out, diff, changed, err = u.ops.ApplyDiff(doc, update.ApplyContext{Insert: insert, Now: now, Positional: pos})
		return out, changed, "update", diff, err
	}
	if u.pipeline != nil {
		out, _, err = u.pipeline.ApplyOne(doc)
		if err != nil {
			return nil, false, "", nil, err
		}
		oldID, hasOld := fieldOf(doc, "_id")
		newID, hasNew := fieldOf(out, "_id")
		switch {
		case hasOld && !hasNew:
			out = append(bson.D{{Key: "_id", Value: oldID}}, out...)
		case hasOld && !mql.Equal(oldID, newID):
			return nil, false, "", nil, mongoerr.Errorf(mongoerr.ImmutableField, "After applying the update, the (immutable) field '_id' was found to have been altered to _id: %s", mql.FormatValue(newID))
		}
		out = withID(out)
		if mql.Identical(doc, out) {
			return out, false, "update", nil, nil
		}
		if diff = pipelineDelta(doc, out); diff == nil {
			return out, true, "replace", nil, nil
		}
		return out, true, "update", diff, nil
	}
	oldID, hasOld := fieldOf(doc, "_id")
	newID, hasNew := fieldOf(u.replacement, "_id")
	if hasOld && hasNew && !mql.Equal(oldID, newID) {
		return nil, false, "", nil, mongoerr.Errorf(mongoerr.ImmutableField, "After applying the update, the (immutable) field '_id' was found to have been altered to _id: %s", mql.FormatValue(newID))
	}
	out = make(bson.D, 0, len(u.replacement)+1)
	if hasOld {
		out = append(out, bson.E{Key: "_id", Value: oldID})
	}
	for _, e := range u.replacement {
		if e.Key != "_id" || !hasOld {
			out = append(out, e)
		}
	}
	return out, !mql.Identical(doc, out), "replace", nil, nil
}

// arrayFiltersArg reads arrayFilters from d.
func arrayFiltersArg(cmd string, d bson.D) ([]bson.D, error) {
	v, ok := fieldOf(d, "arrayFilters")
	if !ok || v == nil {
		return nil, nil
	}
	arr, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.arrayFilters' is the wrong type '%s', expected type 'array'", cmd, mql.TypeName(v))
	}
	out := make([]bson.D, len(arr))
	for i, el := range arr {
		f, ok := el.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.arrayFilters.%d' is the wrong type '%s', expected type 'object'", cmd, i, mql.TypeName(el))
		}
		out[i] = f
	}
	return out, nil
}

// upsertDocument builds the document an upsert inserts when nothing matched.
func upsertDocument(filter bson.D, u *updateSpec, now time.Time) (bson.D, error) {
	seed, err := update.UpsertSeed(filter)
	if err != nil {
		return nil, err
	}
	var doc bson.D
	switch {
	case u.ops != nil:
		doc, _, err = u.ops.Apply(seed, update.ApplyContext{Insert: true, Now: now, Positional: -1})
		if err != nil {
			return nil, err
		}
	case u.pipeline != nil:
		if doc, _, err = u.pipeline.ApplyOne(seed); err != nil {
			return nil, err
		}
	default:
		doc = append(bson.D(nil), u.replacement...)
		if id, ok := fieldOf(seed, "_id"); ok {
			if _, has := fieldOf(doc, "_id"); !has {
				doc = append(bson.D{{Key: "_id", Value: id}}, doc...)
			}
		}
	}
	if err := checkStorable(doc); err != nil {
		return nil, err
	}
	return withID(doc), nil
}

// resultTooLarge converts a storage refusal of a document over 16 MiB
// (*storage.DocumentTooLargeError) into the error MongoDB's update stage
// raises for the document an update produced: Location17419 "Resulting
// document after update is larger than 16777216" for an updated document,
// Location17420 "Document to upsert is larger than 16777216" for an
// upserted one. Other errors are returned unchanged.
func resultTooLarge(err error, upsert bool) error {
	var te *storage.DocumentTooLargeError
	switch {
	case !errors.As(err, &te):
		return err
	case upsert:
		return mongoerr.Errorf(mongoerr.UpsertResultTooLarge, "Document to upsert is larger than %d", storage.MaxDocumentSize)
	}
	return mongoerr.Errorf(mongoerr.UpdateResultTooLarge, "Resulting document after update is larger than %d", storage.MaxDocumentSize)
}

// updateResult accumulates an update command's counters.
type updateResult struct {
	n, modified int
	upserted    bson.A
}

// cmdUpdate answers update: {n, nModified, upserted?, writeErrors?}.
func (s *Server) cmdUpdate(_ context.Context, req *Request) (bson.D, error) {
	b, err := s.parseWriteBatch(req, "updates")
	if err != nil {
		return nil, err
	}
	for _, st := range b.stmts {
		for _, e := range st {
			if !slices.Contains(updateStatementFields, e.Key) {
				return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field 'update.updates.%s' is an unknown field.", e.Key)
			}
		}
	}
	if err := checkBatchWriteNS(req, b.coll); err != nil {
		return nil, err
	}
	if b.rw != nil {
		for _, st := range b.stmts {
			if v, ok := fieldOf(st, "multi"); ok {
				if multi, err := boolValue("update.updates.multi", v); err == nil && multi {
					return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "Cannot use (or request) retryable writes with multi=true")
				}
			}
		}
	}
	vars, err := letArg(req, time.Now())
	if err != nil {
		return nil, err
	}
	if req.explain != nil {
		return s.explainUpdate(req, b, vars)
	}
	return s.execWrite(req, "update", b.coll, b.rw, func(tx *storage.Tx) (bson.D, error) {
		var res updateResult
		now := time.Now()
		writeErrs, err := eachStatement(len(b.stmts), b.ordered, func(i int) error {
			// A statement that fails adds nothing to n and nModified, also
			// for the documents a multi update changed before it failed
			// (which stay changed): MongoDB counts the results of the
			// statements that succeeded.
			before := res
			err := s.updateStatement(tx, req.DB, b.coll, i, b.stmts[i], vars, now, &res)
			if err != nil {
				res.n, res.modified = before.n, before.modified
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		reply := bson.D{{Key: "n", Value: int32(res.n)}, {Key: "nModified", Value: int32(res.modified)}}
		if len(res.upserted) > 0 {
			reply = append(reply, bson.E{Key: "upserted", Value: res.upserted})
		}
		return withWriteErrors(reply, writeErrs), nil
	})
}

// updateStatementFields are the fields of an update statement MongoDB 6.0
// accepts; any other (such as 8.0's sort) is IDLUnknownField (40415).
var updateStatementFields = []string{"q", "u", "c", "arrayFilters", "hint", "multi", "upsert", "upsertSupplied", "collation"}

// updateStatement runs one {q, u, c, upsert, multi, arrayFilters}
// statement; the filter and a pipeline u see the command's let variables
// vars and the statement's constants c as $$name.
func (s *Server) updateStatement(tx *storage.Tx, db, coll string, index int, st bson.D, vars map[string]any, now time.Time, res *updateResult) error {
	pu, err := prepareUpdate(tx, db, coll, st, vars)
	if err != nil {
		return err
	}
	return pu.run(tx, db, coll, index, now, res)
}

// preparedUpdate is a parsed update statement of a collection, ready to run.
type preparedUpdate struct {
	filter        bson.D
	multi, upsert bool
	u             *updateSpec
	plan          *queryPlan
	c             *storage.Collection // nil: the collection does not exist
}

// prepareUpdate parses the update statement st on db.coll: everything
// MongoDB refuses before it runs the statement is refused here.
func prepareUpdate(tx *storage.Tx, db, coll string, st bson.D, vars map[string]any) (*preparedUpdate, error) {
	filter, err := stmtFilter(st, "update.updates")
	if err != nil {
		return nil, err
	}
	uv, ok := fieldOf(st, "u")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'update.updates.u' is missing but a required field")
	}
	var multi, upsert bool
	if v, ok := fieldOf(st, "multi"); ok {
		if multi, err = boolValue("update.updates.multi", v); err != nil {
			return nil, err
		}
	}
	if v, ok := fieldOf(st, "upsert"); ok {
		if upsert, err = boolValue("update.updates.upsert", v); err != nil {
			return nil, err
		}
	}
	qc, err := stmtCollation(st, "update.updates")
	if err != nil {
		return nil, err
	}
	afs, err := arrayFiltersArg("update.updates", st)
	if err != nil {
		return nil, err
	}
	c, err := tx.Collection(db, coll)
	if err != nil {
		return nil, err
	}
	collation := qc.resolve(c)
	u, err := compileUpdateSpec("update.updates.u", uv, afs, collation)
	if err != nil {
		return nil, err
	}
	if multi && u.replacement != nil {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "multi update is not supported for replacement-style update")
	}
	if u, err = u.withFilledTimestamps(tx); err != nil {
		return nil, err
	}
	plan, err := compileQuery(filter, collation)
	if err != nil {
		return nil, err
	}
	if vars, err = stmtConstants(st, vars); err != nil {
		return nil, err
	}
	return &preparedUpdate{filter: filter, multi: multi, upsert: upsert, u: u.withVars(vars), plan: plan.withVars(vars), c: c}, nil
}

// run runs the prepared statement, the index-th of its command, adding its
// results to res.
func (pu *preparedUpdate) run(tx *storage.Tx, db, coll string, index int, now time.Time, res *updateResult) error {
	filter, multi, upsert, u, plan, c := pu.filter, pu.multi, pu.upsert, pu.u, pu.plan, pu.c
	var rids []storage.RecordID
	var docs []bson.D
	var err error
	if c != nil {
		limit := 1
		if multi {
			limit = 0
		}
		if rids, docs, err = plan.matches(tx, c, limit); err != nil {
			return err
		}
	}
	if len(rids) == 0 {
		if !upsert {
			return nil
		}
		doc, err := upsertDocument(filter, u, now)
		if err != nil {
			return err
		}
		if c == nil {
			if c, err = tx.CreateCollection(db, coll, nil); err != nil {
				return err
			}
		}
		if _, err := tx.Insert(c, doc); err != nil {
			return resultTooLarge(err, true)
		}
		id, _ := fieldOf(doc, "_id")
		res.n++
		res.upserted = append(res.upserted, bson.D{{Key: "index", Value: int32(index)}, {Key: "_id", Value: id}})
		return nil
	}
	for i, rid := range rids {
		_, pos := plan.filter.MatchPositional(docs[i])
		out, changed, op, diff, err := u.apply(docs[i], pos, false, now)
		if err != nil {
			return err
		}
		res.n++
		if !changed {
			continue
		}
		if err := checkStorable(out); err != nil {
			return err
		}
		if err := tx.ReplaceDiff(c, rid, out, op, diff); err != nil {
			return resultTooLarge(err, false)
		}
		res.modified++
	}
	return nil
}

// cmdFindAndModify answers findAndModify: {lastErrorObject: {n,
// updatedExisting?, upserted?}, value}.
func (s *Server) cmdFindAndModify(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	collation, err := s.commandCollation(req, coll)
	if err != nil {
		return nil, err
	}
	f, err := parseFind(req, "query", "fields", collation)
	if err != nil {
		return nil, err
	}
	if f.natural < 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "devdb does not support a {$natural: -1} sort in findAndModify")
	}
	remove, err := boolArg(req, "remove", false)
	if err != nil {
		return nil, err
	}
	returnNew, err := boolArg(req, "new", false)
	if err != nil {
		return nil, err
	}
	upsert, err := boolArg(req, "upsert", false)
	if err != nil {
		return nil, err
	}
	uv, hasUpdate := fieldOf(req.Body, "update")
	switch {
	case remove && hasUpdate:
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Cannot specify both an update and remove=true")
	case !remove && !hasUpdate:
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Either an update or remove=true must be specified")
	case remove && upsert:
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Cannot specify both upsert=true and remove=true")
	case remove && returnNew:
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document")
	}
	// MongoDB checks findAndModify's namespace before the transaction's
	// rule, unlike insert, update and delete.
	if err := checkWriteNS(req.DB, coll); err != nil {
		return nil, err
	}
	if err := checkTxnWriteNS(req, req.DB, coll); err != nil {
		return nil, err
	}
	var u *updateSpec
	if hasUpdate {
		afs, err := arrayFiltersArg("findAndModify", req.Body)
		if err != nil {
			return nil, err
		}
		if u, err = compileUpdateSpec("findAndModify.update", uv, afs, collation); err != nil {
			return nil, err
		}
		u = u.withVars(f.vars)
	}
	filter, _, _ := docArg(req, "query")
	rw, err := s.retryableWriteOf(req, coll, 1, true)
	if err != nil {
		return nil, err
	}
	var value any
	var lastErr bson.D
	var fc famCounts
	// run finds and modifies the document in c (nil when the collection
	// does not exist): what MongoDB's plan executor does.
	run := func(tx *storage.Tx, c *storage.Collection, u *updateSpec) error {
		var rid storage.RecordID
		var doc bson.D
		found := false
		if c != nil {
			if f.sort == nil || f.sort.Len() == 0 {
				rids, docs, err := f.plan.matches(tx, c, 1)
				if err != nil {
					return err
				}
				if len(rids) > 0 {
					rid, doc, found = rids[0], docs[0], true
					fc.matched++
				}
			} else {
				err := f.plan.each(tx, c, func(r storage.RecordID, d bson.D) (bool, error) {
					fc.matched++
					if !found || f.sort.Compare(d, doc) < 0 {
						rid, doc, found = r, d, true
					}
					return true, nil
				})
				if err != nil {
					return err
				}
			}
		}
		now := time.Now()
		switch {
		case !found && (remove || !upsert):
			lastErr = bson.D{{Key: "n", Value: int32(0)}}
			if !remove {
				lastErr = append(lastErr, bson.E{Key: "updatedExisting", Value: false})
			}
			return nil
		case !found:
			ins, err := upsertDocument(filter, u, now)
			if err != nil {
				return err
			}
			if c == nil {
				if c, err = tx.CreateCollection(req.DB, coll, nil); err != nil {
					return err
				}
			}
			if _, err := tx.Insert(c, ins); err != nil {
				return resultTooLarge(err, true)
			}
			fc.upserted = true
			id, _ := fieldOf(ins, "_id")
			lastErr = bson.D{{Key: "n", Value: int32(1)}, {Key: "updatedExisting", Value: false}, {Key: "upserted", Value: id}}
			if returnNew {
				value, err = projectOrNil(f, ins)
				return err
			}
			return nil
		case remove:
			if _, err := tx.Delete(c, rid); err != nil {
				return err
			}
			fc.found = true
			lastErr = bson.D{{Key: "n", Value: int32(1)}}
			value, err = projectOrNil(f, doc)
			return err
		}
		fc.found = true
		_, pos := f.plan.filter.MatchPositional(doc)
		out, changed, op, diff, err := u.apply(doc, pos, false, now)
		if err != nil {
			return err
		}
		fc.modified = changed
		if changed {
			if err := checkStorable(out); err != nil {
				return err
			}
			if err := tx.ReplaceDiff(c, rid, out, op, diff); err != nil {
				return resultTooLarge(err, false)
			}
		}
		lastErr = bson.D{{Key: "n", Value: int32(1)}, {Key: "updatedExisting", Value: true}}
		if returnNew {
			value, err = projectOrNil(f, out)
		} else {
			value, err = projectOrNil(f, doc)
		}
		return err
	}
	if req.explain != nil {
		return s.explainFindAndModify(req, coll, f, remove, func(tx *storage.Tx, c *storage.Collection) error {
			fu, err := u.withFilledTimestamps(tx)
			if err != nil {
				return err
			}
			return run(tx, c, fu)
		}, &fc)
	}
	return s.execWrite(req, "findAndModify", coll, rw, func(tx *storage.Tx) (bson.D, error) {
		value, lastErr = nil, nil
		c, err := tx.Collection(req.DB, coll)
		if err != nil {
			return nil, err
		}
		fu, err := u.withFilledTimestamps(tx)
		if err != nil {
			return nil, err
		}
		if err := run(tx, c, fu); err != nil {
			return nil, withExecutorContext(dataErr(err), execContextFindAndModify)
		}
		return bson.D{{Key: "lastErrorObject", Value: lastErr}, {Key: "value", Value: value}}, nil
	})
}

// projectOrNil applies findAndModify's fields projection to doc.
func projectOrNil(f *findSpec, doc bson.D) (any, error) {
	out, err := f.project(doc)
	if err != nil {
		return nil, err
	}
	return out, nil
}
