package server

import (
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
)

// errExplainRollback ends the storage transaction an explained write runs
// in, so that nothing of it is applied: MongoDB's explain of a write never
// writes.
var errExplainRollback = errors.New("explain: roll the write back")

// famCounts are what one findAndModify execution did, for explain.
type famCounts struct {
	matched  int64 // documents matching the query that were read
	found    bool  // a document was chosen (and updated or removed)
	modified bool  // the update changed it
	upserted bool  // no document matched and one was inserted
}

// explainBatchStatement returns the one statement of an explained write
// batch: MongoDB explains batches of exactly one.
func explainBatchStatement(b writeBatch) (bson.D, error) {
	if len(b.stmts) != 1 {
		return nil, mongoerr.Errorf(mongoerr.InvalidLength, "explained write batches must be of size 1")
	}
	return b.stmts[0], nil
}

// explainWrite runs exec in a storage transaction that is always rolled
// back and returns the run's statistics: prepare parses the statement
// (its error is the command's), exec runs it (its error is the run's
// failure, reported as executionSuccess false) and only with execution.
func (s *Server) explainWrite(req *Request, prepare func(tx *storage.Tx) error, exec func(tx *storage.Tx) error) (*executionRun, error) {
	run := &executionRun{stats: &scanStats{}}
	err := s.store.Update(func(tx *storage.Tx) error {
		if err := prepare(tx); err != nil {
			return err
		}
		if req.explain.executes() {
			start := time.Now()
			run.err = exec(tx)
			run.elapsed = time.Since(start)
		}
		return errExplainRollback
	})
	if !errors.Is(err, errExplainRollback) {
		return nil, err
	}
	if run.err != nil {
		run.err = dataErr(run.err)
	}
	return run, nil
}

// explainUpdate answers the explain of an update batch b of one statement
// with the command's let variables vars: UPDATE over the access path.
func (s *Server) explainUpdate(req *Request, b writeBatch, vars map[string]any) (bson.D, error) {
	st, err := explainBatchStatement(b)
	if err != nil {
		return nil, err
	}
	var pu *preparedUpdate
	var path accessPath
	var res updateResult
	run, err := s.explainWrite(req, func(tx *storage.Tx) error {
		var err error
		if pu, err = prepareUpdate(tx, req.DB, b.coll, st, vars); err != nil {
			return err
		}
		path = accessPathIn(tx, req.DB, b.coll, pu.plan, pu.filter, true)
		return nil
	}, func(tx *storage.Tx) error {
		pu.plan.stats = &scanStats{}
		return pu.run(tx, req.DB, b.coll, 0, time.Now(), &res)
	})
	if err != nil {
		return nil, fmt.Errorf("explain update of %s.%s: %w", req.DB, b.coll, dataErr(err))
	}
	run.stats = pu.plan.statsOrZero()
	upserts := int64(len(res.upserted))
	src := sourceNode(path, pu.plan, pu.filter, false, int64(res.n)-upserts, run.stats)
	root := &planNode{stage: "UPDATE", in: src, consumed: int64(res.n) - upserts, eof: run.err == nil, exec: bson.D{
		{Key: "nMatched", Value: int32OrInt64(int64(res.n) - upserts)},
		{Key: "nWouldModify", Value: int32OrInt64(int64(res.modified))},
		{Key: "nWouldUpsert", Value: int32OrInt64(upserts)},
	}}
	return s.explainWriteReply(req, b.coll, pu.filter, root, run), nil
}

// explainDelete answers the explain of a delete batch b of one statement
// with the command's let variables vars: DELETE over the access path.
func (s *Server) explainDelete(req *Request, b writeBatch, vars map[string]any) (bson.D, error) {
	st, err := explainBatchStatement(b)
	if err != nil {
		return nil, err
	}
	filter, _ := stmtFilter(st, "delete.deletes")
	var plan *queryPlan
	var limit int64
	var c *storage.Collection
	var path accessPath
	deleted := 0
	run, err := s.explainWrite(req, func(tx *storage.Tx) error {
		var err error
		if c, err = tx.Collection(req.DB, b.coll); err != nil {
			return err
		}
		if plan, limit, err = prepareDelete(c, st, vars); err != nil {
			return err
		}
		path = accessPathIn(tx, req.DB, b.coll, plan, filter, true)
		return nil
	}, func(tx *storage.Tx) error {
		plan.stats = &scanStats{}
		var err error
		deleted, err = runDelete(tx, c, plan, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("explain delete from %s.%s: %w", req.DB, b.coll, dataErr(err))
	}
	run.stats = plan.statsOrZero()
	src := sourceNode(path, plan, filter, false, int64(deleted), run.stats)
	root := &planNode{stage: "DELETE", in: src, consumed: int64(deleted), eof: run.err == nil, exec: bson.D{
		{Key: "nWouldDelete", Value: int32OrInt64(int64(deleted))},
	}}
	return s.explainWriteReply(req, b.coll, filter, root, run), nil
}

// explainFindAndModify answers the explain of a findAndModify on coll
// parsed into f: UPDATE or DELETE over a top-1 SORT (with a sort) over the
// access path. exec is the command's execution, fc what it counts.
func (s *Server) explainFindAndModify(req *Request, coll string, f *findSpec, remove bool, exec func(tx *storage.Tx, c *storage.Collection) error, fc *famCounts) (bson.D, error) {
	filter := explainFilter(req, "query")
	var c *storage.Collection
	var path accessPath
	run, err := s.explainWrite(req, func(tx *storage.Tx) error {
		var err error
		if c, err = tx.Collection(req.DB, coll); err != nil {
			return err
		}
		path = accessPathIn(tx, req.DB, coll, f.plan, filter, true)
		return nil
	}, func(tx *storage.Tx) error {
		p := *f.plan
		p.stats = &scanStats{}
		f.plan = &p
		return exec(tx, c)
	})
	if err != nil {
		return nil, fmt.Errorf("explain findAndModify on %s.%s: %w", req.DB, coll, dataErr(err))
	}
	run.stats = f.plan.statsOrZero()
	node := sourceNode(path, f.plan, filter, false, fc.matched, run.stats)
	if f.sort != nil && f.sort.Len() > 0 {
		chosen := min(fc.matched, 1)
		node = sortNode(explainSortSpec(req, "sort"), maxSortBytes, 1, node)
		node.returned, node.consumed, node.eof = chosen, fc.matched+chosen, run.err == nil
	}
	found := int64(0)
	if fc.found {
		found = 1
	}
	root := &planNode{in: node, consumed: found, eof: run.err == nil}
	if remove {
		root.stage = "DELETE"
		root.exec = bson.D{{Key: "nWouldDelete", Value: int32OrInt64(found)}}
	} else {
		modified, upserted := int64(0), int64(0)
		if fc.modified {
			modified = 1
		}
		if fc.upserted {
			upserted = 1
		}
		root.stage = "UPDATE"
		root.exec = bson.D{
			{Key: "nMatched", Value: int32OrInt64(found)},
			{Key: "nWouldModify", Value: int32OrInt64(modified)},
			{Key: "nWouldUpsert", Value: int32OrInt64(upserted)},
		}
	}
	return s.explainWriteReply(req, coll, filter, root, run), nil
}

// explainWriteReply assembles a write's explain reply; a write returns no
// documents.
func (s *Server) explainWriteReply(req *Request, coll string, filter bson.D, root *planNode, run *executionRun) bson.D {
	var exec bson.D
	if req.explain.executes() {
		run.returned = 0
		exec = executionStatsSection(req.explain, root, run)
	}
	return s.explainReply(req, queryPlannerSection(req.DB+"."+coll, filter, root), exec)
}

// statsOrZero returns the plan's counters, zero when it did not run.
func (p *queryPlan) statsOrZero() *scanStats {
	if p == nil || p.stats == nil {
		return &scanStats{}
	}
	return p.stats
}
