package server

import (
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// explainFind answers the explain of a find on coll parsed into f (its
// filter, sort and projection as sent in filter, sortSpec and projSpec).
// With execution it runs results as the find would, to the end.
func (s *Server) explainFind(req *Request, coll string, f *findSpec, filter, sortSpec, projSpec bson.D) (bson.D, error) {
	x := req.explain
	st := s.data(req)
	path, err := accessPathOf(st, req.DB, coll, f.plan, filter, f.skip == 0)
	if err != nil {
		return nil, fmt.Errorf("explain find on %s.%s: %w", req.DB, coll, err)
	}
	hasSort := f.sort != nil && f.sort.Len() > 0
	indexSort := hasSort && s.indexProvidesSort(req.DB, coll, f)
	stats := &scanStats{}
	counts := &findCounts{}
	run := &executionRun{stats: stats}
	if x.executes() {
		p := *f.plan
		p.stats = stats
		g := *f
		g.plan, g.exec = &p, counts
		start := time.Now()
		for _, err := range s.results(st, req.DB, coll, &g) {
			if err != nil {
				run.err = err
				break
			}
		}
		run.elapsed, run.returned = time.Since(start), counts.returned
	}
	done := run.err == nil
	keep := int64(0)
	if f.limit > 0 {
		keep = f.skip + f.limit
	}
	var root *planNode
	switch {
	case indexSort:
		src := sourceNode(path, f.plan, filter, false, stats.keyed, stats)
		srt := sortNode(sortSpec, 0, keep, src)
		srt.returned, srt.consumed, srt.eof = stats.sortedOut, stats.keyed+stats.sortedOut, done
		root = &planNode{stage: "FETCH", filter: nonEmpty(parsedQuery(filter)), in: srt,
			returned: counts.source, consumed: stats.sortedOut, eof: counts.sourceEOF,
			exec: bson.D{{Key: "docsExamined", Value: int32OrInt64(stats.sortFetched)}, {Key: "alreadyHasObj", Value: int32(0)}}}
	case hasSort:
		src := sourceNode(path, f.plan, filter, f.natural < 0, counts.source, stats)
		root = sortNode(sortSpec, maxSortBytes, keep, src)
		root.returned, root.consumed, root.eof = counts.sorted, counts.source+counts.sorted, done
		root.exec = bson.D{
			{Key: "totalDataSizeSorted", Value: int32OrInt64(counts.sortBytes)},
			{Key: "usedDisk", Value: false},
			{Key: "spills", Value: int32(0)},
		}
	default:
		root = sourceNode(path, f.plan, filter, f.natural < 0, counts.source, stats)
	}
	if f.skip > 0 {
		root = &planNode{stage: "SKIP", plan: bson.D{{Key: "skipAmount", Value: int32OrInt64(f.skip)}}, in: root,
			returned: counts.returned, consumed: counts.skipped + counts.returned, eof: done}
	}
	if f.limit > 0 && !hasSort {
		root = &planNode{stage: "LIMIT", plan: bson.D{{Key: "limitAmount", Value: int32OrInt64(f.limit)}}, in: root,
			returned: counts.returned, consumed: counts.returned, eof: done}
	}
	if f.proj != nil {
		root = &planNode{stage: projectionStage(projSpec), plan: bson.D{{Key: "transformBy", Value: projSpec}}, in: root,
			returned: counts.returned, consumed: counts.returned, eof: done}
	}
	var exec bson.D
	if x.executes() {
		exec = executionStatsSection(x, root, run)
	}
	return s.explainReply(req, queryPlannerSection(req.DB+"."+coll, filter, root), exec), nil
}

// explainCount answers the explain of a count of query on coll with plan,
// skip and limit: RECORD_STORE_FAST_COUNT when there is no query (devdb
// reads the collection's document count), otherwise COUNT over the
// access path.
func (s *Server) explainCount(req *Request, coll string, query bson.D, plan *queryPlan, skip, limit int64) (bson.D, error) {
	x := req.explain
	path, err := accessPathOf(s.store, req.DB, coll, plan, query, true)
	if err != nil {
		return nil, fmt.Errorf("explain count on %s.%s: %w", req.DB, coll, err)
	}
	stats := &scanStats{}
	run := &executionRun{stats: stats}
	var matched int64
	if x.executes() {
		p := *plan
		p.stats = stats
		start := time.Now()
		matched, run.err = s.countMatching(req.DB, coll, query, &p, skip, limit)
		run.elapsed = time.Since(start)
	}
	counted := max(matched-skip, 0)
	if limit > 0 {
		counted = min(counted, limit)
	}
	countFields := bson.D{
		{Key: "nCounted", Value: int32OrInt64(counted)},
		{Key: "nSkipped", Value: int32OrInt64(min(matched, skip))},
	}
	var root *planNode
	if len(query) == 0 && path != pathEOF {
		root = &planNode{stage: "RECORD_STORE_FAST_COUNT", eof: run.err == nil, exec: countFields}
	} else {
		src := sourceNode(path, plan, query, false, matched, stats)
		root = &planNode{stage: "COUNT", in: src, consumed: matched, eof: run.err == nil, exec: countFields}
	}
	var exec bson.D
	if x.executes() {
		exec = executionStatsSection(x, root, run)
	}
	return s.explainReply(req, queryPlannerSection(req.DB+"."+coll, query, root), exec), nil
}

// explainDistinct answers the explain of a distinct over the documents of
// coll matching query (plan): devdb reads them whole through the access
// path and collects the key's values from each.
func (s *Server) explainDistinct(req *Request, coll string, query bson.D, plan *queryPlan) (bson.D, error) {
	x := req.explain
	st := s.data(req)
	path, err := accessPathOf(st, req.DB, coll, plan, query, true)
	if err != nil {
		return nil, fmt.Errorf("explain distinct on %s.%s: %w", req.DB, coll, err)
	}
	stats := &scanStats{}
	run := &executionRun{stats: stats}
	if x.executes() {
		p := *plan
		p.stats = stats
		start := time.Now()
		for _, err := range s.stream(st, req.DB, coll, &p) {
			if err != nil {
				run.err = err
				break
			}
			run.returned++
		}
		run.elapsed = time.Since(start)
	}
	root := sourceNode(path, plan, query, false, run.returned, stats)
	var exec bson.D
	if x.executes() {
		exec = executionStatsSection(x, root, run)
	}
	return s.explainReply(req, queryPlannerSection(req.DB+"."+coll, query, root), exec), nil
}

// explainSortSpec is the sort document of req's field key as sent (nil
// without one), for a SORT stage's sortPattern.
func explainSortSpec(req *Request, key string) bson.D {
	d, _, _ := docArg(req, key)
	return d
}

// explainProjection is the projection of req's field key as sent, nil
// without one or for an empty one (which projects nothing).
func explainProjection(req *Request, key string) bson.D {
	d, _, _ := docArg(req, key)
	if len(d) == 0 {
		return nil
	}
	return d
}

// explainFilter is the filter document of req's field key (nil without one).
func explainFilter(req *Request, key string) bson.D {
	d, _, _ := docArg(req, key)
	return d
}
