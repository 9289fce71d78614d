package server

import (
	"context"
	"iter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// aggregateDiskUseMemoryLimit is the blocking-stage budget with
// allowDiskUse: devdb cannot spill to disk, so it allows more memory instead.
const aggregateDiskUseMemoryLimit = 512 << 20

// pipelineArg reads the pipeline field of an aggregate command.
func pipelineArg(req *Request) (bson.A, []bson.D, error) {
	v, ok := fieldOf(req.Body, "pipeline")
	if !ok {
		return nil, nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'aggregate.pipeline' is missing but a required field")
	}
	arr, ok := v.(bson.A)
	if !ok {
		return nil, nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'aggregate.pipeline' is the wrong type '%s', expected type 'array'", mql.TypeName(v))
	}
	stages := make([]bson.D, len(arr))
	for i, el := range arr {
		d, ok := el.(bson.D)
		if !ok {
			return nil, nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		stages[i] = d
	}
	return arr, stages, nil
}

// checkAggregateCursorArgs reads the explain option (explain: true asks
// for the explain of the aggregate at queryPlanner verbosity, as the
// explain command would give it) and refuses, as MongoDB, an aggregate
// without the cursor option that is not explained.
func checkAggregateCursorArgs(req *Request) error {
	if explain, err := boolArg(req, "explain", false); err != nil {
		return err
	} else if explain {
		if req.explain == nil {
			req.explain = &explainRequest{verbosity: explainQueryPlanner}
		}
		return nil
	}
	if _, ok := fieldOf(req.Body, "cursor"); !ok {
		return mongoerr.Errorf(mongoerr.FailedToParse, "The 'cursor' option is required, except for aggregate with the explain argument")
	}
	return nil
}

// cmdAggregate answers aggregate on a collection or (aggregate: 1) on the
// database, with a cursor over the pipeline's output. A leading
// $changeStream stage hands the command to the change stream engine; a
// leading $match uses the _id index when it pins _id.
func (s *Server) cmdAggregate(ctx context.Context, req *Request) (bson.D, error) {
	raw, stages, err := pipelineArg(req)
	if err != nil {
		return nil, err
	}
	if len(stages) > 0 && len(stages[0]) > 0 && stages[0][0].Key == "$changeStream" {
		if err := checkAggregateCursorArgs(req); err != nil {
			return nil, err
		}
		if req.txn != nil {
			return nil, mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "Operation not permitted in transaction :: caused by :: $changeStream cannot run in a multi-document transaction")
		}
		if req.explain != nil {
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not explain change stream pipelines")
		}
		return s.aggregateChangeStream(ctx, req, raw)
	}
	var coll string
	collectionLess := false
	switch x := req.Body[0].Value.(type) {
	case string:
		if coll, err = collectionArg(req); err != nil {
			return nil, err
		}
	case int32, int64, float64:
		if f, _ := mql.ToFloat64(x); f != 1 {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Invalid aggregate namespace specified: the collection-less aggregate requires the value 1")
		}
		collectionLess = true
	default:
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "collection name has invalid type %s", mql.TypeName(x))
	}
	if err := checkAggregateCursorArgs(req); err != nil {
		return nil, err
	}
	opts, err := cursorBatchOptions(req)
	if err != nil {
		return nil, err
	}
	opts.ExecutorContext = execContextAggregate
	qc, err := collationArg(req)
	if err != nil {
		return nil, err
	}
	collation := qc.coll
	if coll != "" {
		if collation, err = s.resolveCollation(req.DB, coll, qc); err != nil {
			return nil, err
		}
	}
	for i, st := range stages {
		if isOutputStage(st) && i != len(stages)-1 {
			return nil, mongoerr.Errorf(mongoerr.OutputStageNotLast, "%s can only be the final stage in the pipeline", st[0].Key)
		}
		if len(st) == 1 {
			switch st[0].Key {
			case "$documents":
				if i > 0 {
					return nil, mongoerr.Errorf(mongoerr.StageNotFirst, "$documents is only valid as the first stage in a pipeline")
				}
				if !collectionLess {
					return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "$documents can only be run with {aggregate: 1}")
				}
			case "$changeStream":
				if i > 0 {
					return nil, mongoerr.Errorf(mongoerr.StageNotFirst, "$changeStream is only valid as the first stage in a pipeline")
				}
			case "$listLocalSessions":
				if i > 0 {
					return nil, mongoerr.Errorf(mongoerr.StageNotFirst, "$listLocalSessions is only valid as the first stage in a pipeline")
				}
			case "$collStats":
				if i > 0 {
					return nil, mongoerr.Errorf(mongoerr.StageNotFirst, "$collStats is only valid as the first stage in a pipeline")
				}
			case "$indexStats", "$currentOp", "$listSessions", "$planCacheStats":
				return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support the %s stage", st[0].Key)
			}
		}
	}
	vars, err := letArg(req, time.Now())
	if err != nil {
		return nil, err
	}
	var out *outStage
	var outSpec bson.D
	if n := len(stages); n > 0 && isOutputStage(stages[n-1]) {
		if req.txn != nil {
			return nil, mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "%s cannot be used in a transaction", stages[n-1][0].Key)
		}
		if out, err = parseOutStage(req.DB, stages[n-1]); err != nil {
			return nil, err
		}
		outSpec = stages[n-1]
		if rc, ok := fieldOf(req.Body, "readConcern"); ok {
			if d, ok := rc.(bson.D); ok {
				if lvl, _ := fieldOf(d, "level"); lvl == "linearizable" {
					return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "%s cannot be used with a 'linearizable' read concern level", stages[n-1][0].Key)
				}
			}
		}
		stages = stages[:n-1]
	}
	// A leading $match becomes the scan's filter (and may use the _id index).
	plan, _ := compileQuery(nil, collation)
	rest := stages
	var sessions []bson.D
	if len(stages) > 0 && len(stages[0]) == 1 && stages[0][0].Key == "$listLocalSessions" {
		if sessions, err = s.listLocalSessionsSource(req, collectionLess, stages[0][0].Value); err != nil {
			return nil, err
		}
		rest = stages[1:]
	}
	if coll != "" && len(stages) > 0 && len(stages[0]) == 1 && stages[0][0].Key == "$match" {
		if f, ok := stages[0][0].Value.(bson.D); ok {
			if plan, err = compileQuery(f, collation); err != nil {
				return nil, err
			}
			plan = plan.withVars(vars)
			rest = stages[1:]
		}
	}
	var documents iter.Seq2[bson.D, error]
	if len(stages) > 0 && len(stages[0]) == 1 && stages[0][0].Key == "$documents" {
		if documents, err = documentsSource(stages[0][0].Value, vars); err != nil {
			return nil, err
		}
		rest = stages[1:]
	}
	if len(stages) > 0 && len(stages[0]) == 1 && stages[0][0].Key == "$collStats" {
		if documents, err = s.collStatsSource(req, req.DB, coll, stages[0][0].Value); err != nil {
			return nil, err
		}
		rest = stages[1:]
	}
	memLimit := int64(0)
	if disk, err := boolArg(req, "allowDiskUse", false); err != nil {
		return nil, err
	} else if disk {
		memLimit = aggregateDiskUseMemoryLimit
	}
	var counts []int64
	if req.explain != nil {
		counts = make([]int64, len(rest))
	}
	run, err := s.compileAggregate(s.data(req), req.DB, rest, memLimit, vars, collation, counts)
	if err != nil {
		return nil, err
	}
	if req.explain != nil {
		src := documents
		if src == nil && coll == "" {
			src = func(yield func(bson.D, error) bool) {
				for _, d := range sessions {
					if !yield(d, nil) {
						return
					}
				}
			}
		}
		return s.explainAggregate(req, aggExplain{
			coll: coll, plan: plan, pushed: len(stages) - len(rest), stages: stages, rest: rest,
			out: out, outSpec: outSpec, source: src, run: run, counts: counts,
		})
	}
	var src iter.Seq2[bson.D, error]
	ns := req.DB + ".$cmd.aggregate"
	switch {
	case documents != nil:
		// $documents (collection-less) or $collStats (on coll).
		src = documents
		if coll != "" {
			ns = req.DB + "." + coll
		}
	case coll != "":
		src = s.stream(s.data(req), req.DB, coll, plan)
		ns = req.DB + "." + coll
	default:
		src = func(yield func(bson.D, error) bool) {
			for _, d := range sessions {
				if !yield(d, nil) {
					return
				}
			}
		}
	}
	if req.cursorNS != "" {
		ns = req.cursorNS
	}
	if out != nil {
		return s.runOutStage(req, ns, out, run(src), vars)
	}
	return s.cursorFirstBatch(ctx, ns, newSeqSource(run(src)), opts)
}

// compileAggregate compiles stages into a function over a document stream
// in which the command's let variables vars are visible as $$name (also
// inside $lookup sub-pipelines) and strings compare under the collation
// coll (nil: binary). mql runs the stages; devdb runs those that
// read other collections ($lookup), splitting the pipeline around them.
// counts, when not nil (one element per stage), receives the number of
// documents each stage passes on.
func (s *Server) compileAggregate(ds dataStore, db string, stages []bson.D, memLimit int64, vars map[string]any, coll *mql.Collation, counts []int64) (func(iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error], error) {
	var steps []func(iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error]
	addSegment := func(from, to int) error {
		if from == to {
			return nil
		}
		p, err := mql.CompilePipeline(stages[from:to])
		if err != nil {
			return err
		}
		if memLimit > 0 {
			p = p.WithMemoryLimit(memLimit)
		}
		p = p.WithVars(vars).WithCollation(coll)
		if counts == nil {
			steps = append(steps, p.Run)
		} else {
			seg := counts[from:to]
			steps = append(steps, func(src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] { return p.RunCounted(src, seg) })
		}
		return nil
	}
	start := 0
	for i, st := range stages {
		if len(st) != 1 || st[0].Key != "$lookup" {
			continue
		}
		if err := addSegment(start, i); err != nil {
			return nil, err
		}
		ls, err := parseLookup(db, st[0].Value)
		if err != nil {
			return nil, err
		}
		if ls.sub != nil {
			ls.sub = ls.sub.WithVars(vars).WithCollation(coll)
		}
		ls.coll = coll
		ls.st = ds
		var n *int64
		if counts != nil {
			n = &counts[i]
		}
		steps = append(steps, func(src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
			if n == nil {
				return ls.run(s, src)
			}
			return countedDocs(ls.run(s, src), n)
		})
		start = i + 1
	}
	if err := addSegment(start, len(stages)); err != nil {
		return nil, err
	}
	return func(src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
		for _, step := range steps {
			src = step(src)
		}
		return src
	}, nil
}
