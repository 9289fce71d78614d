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

// checkAggregateCursorArgs refuses explain, which devdb does not support,
// and, as MongoDB, an aggregate without the cursor option.
func checkAggregateCursorArgs(req *Request) error {
	if explain, err := boolArg(req, "explain", false); err != nil {
		return err
	} else if explain {
		return mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support explain")
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
	if n := len(stages); n > 0 && isOutputStage(stages[n-1]) {
		if req.txn != nil {
			return nil, mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "%s cannot be used in a transaction", stages[n-1][0].Key)
		}
		if out, err = parseOutStage(req.DB, stages[n-1]); err != nil {
			return nil, err
		}
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
	run, err := s.compileAggregate(s.data(req), req.DB, rest, memLimit, vars, collation)
	if err != nil {
		return nil, err
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
func (s *Server) compileAggregate(ds dataStore, db string, stages []bson.D, memLimit int64, vars map[string]any, coll *mql.Collation) (func(iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error], error) {
	var steps []func(iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error]
	addSegment := func(seg []bson.D) error {
		if len(seg) == 0 {
			return nil
		}
		p, err := mql.CompilePipeline(seg)
		if err != nil {
			return err
		}
		if memLimit > 0 {
			p = p.WithMemoryLimit(memLimit)
		}
		steps = append(steps, p.WithVars(vars).WithCollation(coll).Run)
		return nil
	}
	start := 0
	for i, st := range stages {
		if len(st) != 1 || st[0].Key != "$lookup" {
			continue
		}
		if err := addSegment(stages[start:i]); err != nil {
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
		steps = append(steps, func(src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] { return ls.run(s, src) })
		start = i + 1
	}
	if err := addSegment(stages[start:]); err != nil {
		return nil, err
	}
	return func(src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
		for _, step := range steps {
			src = step(src)
		}
		return src
	}, nil
}
