package server

import (
	"iter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// aggExplain is a parsed aggregate as cmdAggregate hands it to
// explainAggregate.
type aggExplain struct {
	coll string     // the collection read ("" for {aggregate: 1})
	plan *queryPlan // the scan's plan: the leading $match pushed into it, or none
	// pushed is how many leading stages the source absorbed: a $match
	// pushed into the collection scan, or $documents, $collStats,
	// $listLocalSessions producing the documents.
	pushed  int
	stages  []bson.D // the pipeline without its $out/$merge stage
	rest    []bson.D // the stages run on the source's documents
	out     *outStage
	outSpec bson.D                                                  // the $out/$merge stage as sent
	source  iter.Seq2[bson.D, error]                                // the documents of a source other than a collection, else nil
	run     func(iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] // rest, compiled with counts
	counts  []int64                                                 // documents each stage of rest passed on
}

// countedDocs is seq adding one to *n for every document it yields.
func countedDocs(seq iter.Seq2[bson.D, error], n *int64) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		for d, err := range seq {
			if err == nil {
				*n++
			}
			if !yield(d, err) {
				return
			}
		}
	}
}

// explainAggregate answers the explain of an aggregate. On a collection
// the documents come from a $cursor stage whose queryPlanner is the scan's
// plan with the leading $match pushed into it (devdb pushes nothing else
// down); when nothing remains after it, the reply has the shape of a
// find's explain, as MongoDB's does for a pipeline it absorbs whole. The
// other stages follow as sent, with the documents each passed on when
// executed. A $out or $merge stage is shown but never written.
func (s *Server) explainAggregate(req *Request, a aggExplain) (bson.D, error) {
	x := req.explain
	collRead := a.source == nil && a.coll != ""
	var filter bson.D
	if collRead && a.pushed == 1 {
		filter, _ = a.stages[0][0].Value.(bson.D)
	}
	ns := req.DB + "." + a.coll
	path := pathEOF
	if collRead {
		var err error
		if path, err = accessPathOf(s.data(req), req.DB, a.coll, a.plan, filter, true); err != nil {
			return nil, err
		}
	}
	stats := &scanStats{}
	run := &executionRun{stats: stats}
	var read int64
	if x.executes() {
		src := a.source
		if collRead {
			p := *a.plan
			p.stats = stats
			src = s.stream(s.data(req), req.DB, a.coll, &p)
		}
		if src == nil {
			src = func(func(bson.D, error) bool) {}
		}
		start := time.Now()
		for _, err := range a.run(countedDocs(src, &read)) {
			if err != nil {
				run.err = err
				break
			}
			run.returned++
		}
		run.elapsed = time.Since(start)
		if run.err != nil {
			return nil, withExecutorContext(dataErr(run.err), execContextAggregate)
		}
	}
	ms := run.elapsed.Milliseconds()
	withCounts := func(d bson.D, n int64) bson.D {
		if !x.executes() {
			return d
		}
		return append(d, bson.E{Key: "nReturned", Value: int32OrInt64(n)}, bson.E{Key: "executionTimeMillisEstimate", Value: int32OrInt64(ms)})
	}
	var root *planNode
	if collRead {
		root = sourceNode(path, a.plan, filter, false, read, stats)
		if len(a.rest) == 0 && a.out == nil {
			var exec bson.D
			if x.executes() {
				exec = executionStatsSection(x, root, run)
			}
			return s.explainReply(req, queryPlannerSection(ns, filter, root), exec), nil
		}
	}
	stages := bson.A{}
	if collRead {
		cursor := bson.D{{Key: "queryPlanner", Value: queryPlannerSection(ns, filter, root)}}
		if x.executes() {
			cursor = append(cursor, bson.E{Key: "executionStats", Value: executionStatsSection(x, root, &executionRun{returned: read, elapsed: run.elapsed, stats: stats})})
		}
		stages = append(stages, withCounts(bson.D{{Key: "$cursor", Value: cursor}}, read))
	} else {
		for _, st := range a.stages[:a.pushed] {
			stages = append(stages, withCounts(append(bson.D(nil), st...), read))
		}
	}
	for i, st := range a.rest {
		stages = append(stages, withCounts(append(bson.D(nil), st...), a.counts[i]))
	}
	if a.out != nil {
		spec := a.outSpec
		if !a.out.merge {
			spec = bson.D{{Key: "$out", Value: bson.D{{Key: "db", Value: a.out.db}, {Key: "coll", Value: a.out.coll}}}}
		}
		stages = append(stages, withCounts(append(bson.D(nil), spec...), 0))
	}
	return bson.D{
		{Key: "explainVersion", Value: "1"},
		{Key: "stages", Value: stages},
		{Key: "serverInfo", Value: s.explainServerInfo()},
		{Key: "serverParameters", Value: explainServerParameters()},
		{Key: "command", Value: explainCommand(req)},
	}, nil
}
