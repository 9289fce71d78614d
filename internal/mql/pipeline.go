package mql

import (
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// DefaultMemoryLimit is the per-stage memory budget of blocking stages
// ($sort, $group, $facet, $sample), MongoDB's 100 MB.
const DefaultMemoryLimit int64 = 100 * 1024 * 1024

// aggTopKMax is the largest $limit after $sort handled by top-k insertion;
// larger limits sort the whole input.
const aggTopKMax = 4096

// Pipeline is a compiled aggregation pipeline. It is immutable and safe
// for concurrent use; every Run or ApplyOne has its own state.
type Pipeline struct {
	stages   []stage
	names    []string
	memLimit int64
	// vars are the command's let variables, visible as $$name.
	vars map[string]any
	// coll is the collation string comparisons use (nil: binary).
	coll *Collation
}

// stage is one compiled pipeline stage.
type stage interface {
	// run transforms a document stream.
	run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error]
}

// docStage is a per-document stage usable by ApplyOne.
type docStage interface {
	stage
	apply(rc *runCtx, doc bson.D) (bson.D, bool, error)
}

// runCtx is the state of one pipeline execution.
type runCtx struct {
	now      bson.DateTime
	memLimit int64
	vars     map[string]any
	coll     *Collation
}

// evalDoc evaluates e against doc sharing the run's $$NOW.
func (rc *runCtx) evalDoc(e *Expr, doc bson.D) (any, error) {
	return e.evalCtx(&evalCtx{root: doc, current: doc, vars: rc.vars, now: rc.now, nowSet: true, coll: rc.coll})
}

// memErr is the memory-limit error for a stage.
func (rc *runCtx) memErr(stageName string) error {
	if stageName == "$sort" {
		return mongoerr.Errorf(mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed,
			"Sort exceeded memory limit of %d bytes, but did not opt in to external sorting.", rc.memLimit)
	}
	return mongoerr.Errorf(mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed,
		"Exceeded memory limit for %s, but didn't allow external sort. Pass allowDiskUse:true to opt in.", stageName)
}

// CompilePipeline compiles aggregation stages. It returns a *mongoerr.Error with
// MongoDB's code for an invalid stage, for example 40324 for an unknown
// stage name and 40323 for a stage document without exactly one field.
func CompilePipeline(stages []bson.D) (*Pipeline, error) {
	p := &Pipeline{memLimit: DefaultMemoryLimit}
	for i := 0; i < len(stages); i++ {
		s := stages[i]
		if len(s) != 1 {
			return nil, mongoerr.Errorf(mongoerr.StageNotOneField, "A pipeline stage specification object must contain exactly one field.")
		}
		name, spec := s[0].Key, s[0].Value
		if aggNestingDepth(spec, aggMaxNesting) > aggMaxNesting {
			return nil, aggNestingErr()
		}
		st, err := compileStage(name, spec)
		if err != nil {
			return nil, err
		}
		// $sort followed by a small $limit keeps only the top documents
		// (insertion into a sorted buffer, O(limit) per document).
		if so, ok := st.(*sortStage); ok && i+1 < len(stages) && len(stages[i+1]) == 1 && stages[i+1][0].Key == "$limit" {
			if n, err := aggStageCount("$limit", stages[i+1][0].Value); err == nil && n > 0 && n <= aggTopKMax {
				so.limit = n
			}
		}
		p.stages = append(p.stages, st)
		p.names = append(p.names, name)
	}
	return p, nil
}

// WithMemoryLimit returns a copy of p whose blocking stages fail with code
// 292 once they hold more than limit bytes (roughly counted).
func (p *Pipeline) WithMemoryLimit(limit int64) *Pipeline {
	q := *p
	q.memLimit = limit
	return &q
}

// WithVars returns a copy of p in which vars (a command's let variables,
// from CompileLet) are visible to every expression and $expr as $$name. A
// "NOW" entry fixes $$NOW for the whole run. vars is only read.
func (p *Pipeline) WithVars(vars map[string]any) *Pipeline {
	q := *p
	q.vars = vars
	return &q
}

// WithCollation returns a copy of p whose string comparisons use the
// collation c: $match, $sort, $group keys, $addToSet, $min and $max
// accumulators, $sortByCount, $facet sub-pipelines and the comparison
// expressions ($eq, $cmp, $in, …), as a command-level collation does in
// MongoDB. A nil c is the simple binary comparison.
func (p *Pipeline) WithCollation(c *Collation) *Pipeline {
	q := *p
	q.coll = c
	return &q
}

// newRunCtx returns the state of one execution of p.
func (p *Pipeline) newRunCtx() *runCtx {
	now, ok := p.vars["NOW"].(bson.DateTime)
	if !ok {
		now = bson.NewDateTimeFromTime(time.Now())
	}
	return &runCtx{now: now, memLimit: p.memLimit, vars: p.vars, coll: p.coll}
}

// StageNames returns the stage names in order, as written ("$match", ...).
func (p *Pipeline) StageNames() []string {
	return slices.Clone(p.names)
}

// Streaming reports whether every stage is per-document ($match $project
// $addFields $set $unset $replaceRoot $replaceWith $redact), so that
// ApplyOne may be used.
func (p *Pipeline) Streaming() bool {
	for _, s := range p.stages {
		if _, ok := s.(docStage); !ok {
			return false
		}
	}
	return true
}

// ApplyOne runs a streaming pipeline on one document: out is the result
// and keep is false when a $match or $redact dropped it. It fails for a
// pipeline that is not Streaming.
func (p *Pipeline) ApplyOne(doc bson.D) (out bson.D, keep bool, err error) {
	rc := p.newRunCtx()
	out = doc
	for i, s := range p.stages {
		ds, ok := s.(docStage)
		if !ok {
			return nil, false, mongoerr.Errorf(mongoerr.BadValue, "ApplyOne: stage %s is not a per-document stage", p.names[i])
		}
		out, keep, err = ds.apply(rc, out)
		if err != nil || !keep {
			return nil, false, err
		}
	}
	return out, true, nil
}

// Run returns the pipeline's output over src. Per-document stages, $skip
// and $limit are lazy; $sort, $group, $sample and $facet consume their
// input first. The first error (from src or a stage) is yielded once and
// ends the sequence.
func (p *Pipeline) Run(src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		rc := p.newRunCtx()
		seq := src
		for _, s := range p.stages {
			seq = s.run(rc, seq)
		}
		for d, err := range seq {
			if !yield(d, err) || err != nil {
				return
			}
		}
	}
}

// RunCounted is Run that also adds to counts[i] every document stage i
// passes on (for explain's per-stage nReturned). counts must have one
// element per stage; its elements are written by the goroutine consuming
// the result.
func (p *Pipeline) RunCounted(src iter.Seq2[bson.D, error], counts []int64) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		rc := p.newRunCtx()
		seq := src
		for i, s := range p.stages {
			seq = countedSeq(s.run(rc, seq), &counts[i])
		}
		for d, err := range seq {
			if !yield(d, err) || err != nil {
				return
			}
		}
	}
}

// countedSeq is seq adding one to *n for every document it yields.
func countedSeq(seq iter.Seq2[bson.D, error], n *int64) iter.Seq2[bson.D, error] {
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

// streamRun adapts a per-document apply function to a stream.
func streamRun(rc *runCtx, src iter.Seq2[bson.D, error], apply func(*runCtx, bson.D) (bson.D, bool, error)) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			out, keep, err := apply(rc, d)
			if err != nil {
				yield(nil, err)
				return
			}
			if keep && !yield(out, nil) {
				return
			}
		}
	}
}

// stageCompiler compiles the specification of the stage name (the name
// is passed so that one compiler can serve several stages, such as $skip
// and $limit).
type stageCompiler func(name string, spec any) (stage, error)

// stageCompilers maps every stage devdb implements to its compiler. init
// assembles it from the per-family tables (selection in stage_select.go,
// reshaping in stage_reshape.go, $sort in stage_sort.go, grouping in
// stage_group.go, $facet in stage_facet.go); it is only read afterwards.
var stageCompilers = map[string]stageCompiler{}

func init() {
	for _, family := range []map[string]stageCompiler{
		selectStages(), reshapeStages(), sortStages(), groupStages(), facetStages(),
	} {
		for name, c := range family {
			if _, dup := stageCompilers[name]; dup {
				panic(fmt.Sprintf("mql: stage %s registered twice", name))
			}
			stageCompilers[name] = c
		}
	}
}

// unsupportedStages are MongoDB stages devdb knows but does not implement:
// they fail with NotImplemented rather than as unrecognized.
var unsupportedStages = map[string]bool{
	"$lookup": true, "$graphLookup": true, "$out": true, "$merge": true, "$unionWith": true,
	"$bucket": true, "$bucketAuto": true, "$geoNear": true, "$indexStats": true, "$collStats": true,
	"$densify": true, "$fill": true, "$setWindowFields": true, "$search": true, "$searchMeta": true,
	"$vectorSearch": true, "$currentOp": true, "$listSessions": true, "$listLocalSessions": true,
	"$planCacheStats": true, "$documents": true, "$changeStream": true,
	"$changeStreamSplitLargeEvent": true, "$listSearchIndexes": true, "$shardedDataDistribution": true,
}

// compileStage compiles one stage with the compiler registered for name;
// a stage devdb does not implement is code 238 NotImplemented and an
// unknown one code 40324 UnrecognizedStage.
func compileStage(name string, spec any) (stage, error) {
	if c, ok := stageCompilers[name]; ok {
		return c(name, spec)
	}
	if unsupportedStages[name] {
		return nil, mongoerr.Errorf(mongoerr.NotImplemented, "%s is not supported by devdb", name)
	}
	return nil, mongoerr.Errorf(mongoerr.UnrecognizedStage, "Unrecognized pipeline stage name: '%s'", name)
}
