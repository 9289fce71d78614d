package mql

import (
	"iter"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
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
}

// evalDoc evaluates e against doc sharing the run's $$NOW.
func (rc *runCtx) evalDoc(e *Expr, doc bson.D) (any, error) {
	return e.evalCtx(&evalCtx{root: doc, current: doc, now: rc.now, nowSet: true})
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
	rc := &runCtx{now: bson.NewDateTimeFromTime(time.Now()), memLimit: p.memLimit}
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
		rc := &runCtx{now: bson.NewDateTimeFromTime(time.Now()), memLimit: p.memLimit}
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

// unsupportedStages are MongoDB stages devdb knows but does not implement.
func aggUnsupportedStage(name string) bool {
	switch name {
	case "$lookup", "$graphLookup", "$out", "$merge", "$unionWith", "$bucket", "$bucketAuto", "$geoNear",
		"$indexStats", "$collStats", "$densify", "$fill", "$setWindowFields", "$search", "$searchMeta",
		"$vectorSearch", "$currentOp", "$listSessions", "$listLocalSessions", "$planCacheStats", "$documents",
		"$changeStream", "$changeStreamSplitLargeEvent", "$listSearchIndexes", "$shardedDataDistribution":
		return true
	}
	return false
}

// compileStage compiles one stage.
func compileStage(name string, spec any) (stage, error) {
	switch name {
	case "$match":
		d, ok := spec.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.MatchNotObject, "the match filter must be an expression in an object")
		}
		f, err := CompileFilter(d)
		if err != nil {
			return nil, err
		}
		return &matchStage{f: f}, nil
	case "$project":
		d, ok := spec.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.ProjectNotObject, "$project specification must be an object")
		}
		pr, err := CompileProjectStage(d)
		if err != nil {
			return nil, err
		}
		return &projectStage{p: pr}, nil
	case "$addFields", "$set":
		d, ok := spec.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.StageNotObject, "%s specification stage must be an object, got %s", name, TypeName(spec))
		}
		return compileAddFields(d)
	case "$unset":
		return compileUnset(spec)
	case "$replaceRoot":
		d, ok := spec.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.ReplaceRootNotObject, "expected an object as specification for $replaceRoot stage, got %s", TypeName(spec))
		}
		var root any
		found := false
		for _, e := range d {
			if e.Key != "newRoot" {
				return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field '$replaceRoot.%s' is an unknown field.", e.Key)
			}
			root, found = e.Value, true
		}
		if !found {
			return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field '$replaceRoot.newRoot' is missing but a required field")
		}
		e, err := CompileExpr(root)
		if err != nil {
			return nil, err
		}
		return &replaceRootStage{e: e, what: "'newRoot' expression "}, nil
	case "$replaceWith":
		e, err := CompileExpr(spec)
		if err != nil {
			return nil, err
		}
		return &replaceRootStage{e: e, what: "'replacement document' "}, nil
	case "$redact":
		e, err := CompileExpr(spec)
		if err != nil {
			return nil, err
		}
		return &redactStage{e: e}, nil
	case "$sort":
		d, ok := spec.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.SortNotObject, "the $sort key specification must be an object")
		}
		s, err := CompileSort(d)
		if err != nil {
			return nil, err
		}
		return &sortStage{s: s}, nil
	case "$skip", "$limit":
		n, err := aggStageCount(name, spec)
		if err != nil {
			return nil, err
		}
		if name == "$limit" {
			return &limitStage{n: n}, nil
		}
		return &skipStage{n: n}, nil
	case "$group":
		return compileGroup(spec)
	case "$count":
		s, ok := spec.(string)
		switch {
		case !ok || s == "":
			return nil, mongoerr.Errorf(mongoerr.CountFieldEmpty, "the count field must be a non-empty string")
		case strings.HasPrefix(s, "$"):
			return nil, mongoerr.Errorf(mongoerr.CountFieldDollar, "the count field cannot be a $-prefixed path")
		case strings.Contains(s, "."):
			return nil, mongoerr.Errorf(mongoerr.CountFieldDotted, "the count field cannot contain '.'")
		}
		return &countStage{field: s}, nil
	case "$unwind":
		return compileUnwind(spec)
	case "$sortByCount":
		switch t := spec.(type) {
		case string:
			if !strings.HasPrefix(t, "$") {
				return nil, mongoerr.Errorf(mongoerr.SortByCountBadPath, "the sortByCount field must be defined as a $-prefixed path or an expression")
			}
		case bson.D:
			if len(t) != 1 || !strings.HasPrefix(t[0].Key, "$") {
				return nil, mongoerr.Errorf(mongoerr.SortByCountNotExpression, "the sortByCount field must be specified as a $-prefixed path or an expression object")
			}
		default:
			return nil, mongoerr.Errorf(mongoerr.SortByCountBadObject, "the sortByCount field must be defined as a $-prefixed path or an expression")
		}
		g, err := compileGroup(bson.D{{Key: "_id", Value: spec}, {Key: "count", Value: bson.D{{Key: "$sum", Value: int32(1)}}}})
		if err != nil {
			return nil, err
		}
		s, err := CompileSort(bson.D{{Key: "count", Value: int32(-1)}})
		if err != nil {
			return nil, err
		}
		return &chainStage{stages: []stage{g, &sortStage{s: s}}}, nil
	case "$sample":
		return compileSample(spec)
	case "$facet":
		return compileFacet(spec)
	}
	if aggUnsupportedStage(name) {
		return nil, mongoerr.Errorf(mongoerr.NotImplemented, "%s is not supported by devdb", name)
	}
	return nil, mongoerr.Errorf(mongoerr.UnrecognizedStage, "Unrecognized pipeline stage name: '%s'", name)
}

// aggStageCount validates the argument of $skip / $limit.
func aggStageCount(name string, spec any) (int64, error) {
	if aggNumKind(spec) == aggKNone {
		if name == "$limit" {
			return 0, mongoerr.Errorf(mongoerr.LimitNotNumber, "the limit must be specified as a number")
		}
		return 0, mongoerr.Errorf(mongoerr.SkipNotNumber, "Argument to $skip must be a number")
	}
	n, ok := aggToInt64Exact(spec)
	if !ok {
		return 0, mongoerr.Errorf(mongoerr.FailedToParse, "invalid argument to %s stage: Cannot represent as a 64-bit integer: %s: %s", name, name, aggFmt(spec))
	}
	if name == "$limit" && n <= 0 {
		return 0, mongoerr.Errorf(mongoerr.LimitNotPositive, "the limit must be positive")
	}
	if n < 0 {
		return 0, mongoerr.Errorf(mongoerr.SkipNegative, "invalid argument to $skip stage: Expected a non-negative number in: $skip: %d", n)
	}
	return n, nil
}

// chainStage runs several stages as one ($sortByCount).
type chainStage struct{ stages []stage }

func (s *chainStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	for _, st := range s.stages {
		src = st.run(rc, src)
	}
	return src
}

// matchStage is $match.
type matchStage struct{ f *Filter }

func (s *matchStage) apply(_ *runCtx, doc bson.D) (bson.D, bool, error) {
	ok, err := s.f.MatchErr(doc)
	return doc, ok, err
}

func (s *matchStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// projectStage is $project.
type projectStage struct{ p *Projection }

func (s *projectStage) apply(_ *runCtx, doc bson.D) (bson.D, bool, error) {
	out, err := s.p.Apply(doc)
	return out, err == nil, err
}

func (s *projectStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// addFieldsStage is $addFields / $set: every expression is evaluated
// against the input document, then the results are set in order.
type addFieldsStage struct {
	paths [][]string
	exprs []*Expr
}

func compileAddFields(spec bson.D) (stage, error) {
	s := &addFieldsStage{}
	seen := map[string]bool{}
	var walk func(prefix []string, d bson.D) error
	walk = func(prefix []string, d bson.D) error {
		for _, e := range d {
			if e.Key == "" {
				return mongoerr.Errorf(mongoerr.FieldPathEmpty, "FieldPath cannot be constructed with empty string")
			}
			if strings.HasPrefix(e.Key, "$") {
				return mongoerr.Errorf(mongoerr.FieldPathDollarPrefix, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
			}
			parts, err := aggSplitFieldPath(e.Key)
			if err != nil {
				return err
			}
			path := append(slices.Clone(prefix), parts...)
			if sub, ok := e.Value.(bson.D); ok && len(sub) > 0 && !strings.HasPrefix(sub[0].Key, "$") {
				if err := walk(path, sub); err != nil {
					return err
				}
				continue
			}
			key := strings.Join(path, ".")
			for p := range seen {
				if p == key || strings.HasPrefix(p, key+".") || strings.HasPrefix(key, p+".") {
					return mongoerr.Errorf(mongoerr.ConflictingPaths, "specification contains two conflicting paths. Cannot specify both '%s' and '%s'", p, key)
				}
			}
			seen[key] = true
			x, err := CompileExpr(e.Value)
			if err != nil {
				return err
			}
			s.paths = append(s.paths, path)
			s.exprs = append(s.exprs, x)
		}
		return nil
	}
	if err := walk(nil, spec); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *addFieldsStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	vals := make([]any, len(s.exprs))
	for i, e := range s.exprs {
		v, err := rc.evalDoc(e, doc)
		if err != nil {
			return nil, false, err
		}
		vals[i] = v
	}
	out := doc
	for i, p := range s.paths {
		out = aggSetPath(out, p, vals[i])
	}
	return out, true, nil
}

func (s *addFieldsStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// aggSetPath returns a copy of doc with path set to v (removed when v is
// Missing). Arrays on the path are traversed element-wise, and non-document
// values on the path are replaced by documents, as $addFields does. doc is
// not modified.
func aggSetPath(doc bson.D, path []string, v any) bson.D {
	out := make(bson.D, 0, len(doc)+1)
	found := false
	for _, e := range doc {
		if e.Key != path[0] {
			out = append(out, e)
			continue
		}
		if found {
			continue
		}
		found = true
		if len(path) == 1 {
			if v != Missing {
				out = append(out, bson.E{Key: e.Key, Value: v})
			}
			continue
		}
		out = append(out, bson.E{Key: e.Key, Value: aggSetInValue(e.Value, path[1:], v)})
	}
	if !found && v != Missing {
		if len(path) == 1 {
			out = append(out, bson.E{Key: path[0], Value: v})
		} else {
			out = append(out, bson.E{Key: path[0], Value: aggSetPath(bson.D{}, path[1:], v)})
		}
	}
	return out
}

func aggSetInValue(cur any, path []string, v any) any {
	switch t := cur.(type) {
	case bson.D:
		return aggSetPath(t, path, v)
	case bson.A:
		out := make(bson.A, len(t))
		for i, el := range t {
			out[i] = aggSetInValue(el, path, v)
		}
		return out
	}
	return aggSetPath(bson.D{}, path, v)
}

// unsetStage is $unset.
type unsetStage struct{ paths [][]string }

func compileUnset(spec any) (stage, error) {
	var fields []any
	switch t := spec.(type) {
	case string:
		fields = []any{t}
	case bson.A:
		if len(t) == 0 {
			return nil, mongoerr.Errorf(mongoerr.UnsetEmpty, "$unset specification must be a string or an array with at least one field")
		}
		fields = t
	default:
		return nil, mongoerr.Errorf(mongoerr.UnsetNotString, "$unset specification must be a string or an array")
	}
	s := &unsetStage{}
	for _, f := range fields {
		str, ok := f.(string)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.UnsetNotString, "$unset specification must be a string or an array containing only string values")
		}
		if str == "" {
			return nil, mongoerr.Errorf(mongoerr.FieldPathEmpty, "FieldPath cannot be constructed with empty string")
		}
		if strings.HasPrefix(str, "$") {
			return nil, mongoerr.Errorf(mongoerr.FieldPathDollarPrefix, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
		parts, err := aggSplitFieldPath(str)
		if err != nil {
			return nil, err
		}
		s.paths = append(s.paths, parts)
	}
	return s, nil
}

func (s *unsetStage) apply(_ *runCtx, doc bson.D) (bson.D, bool, error) {
	out := doc
	for _, p := range s.paths {
		out = aggUnsetPath(out, p)
	}
	return out, true, nil
}

func (s *unsetStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// aggUnsetPath returns a copy of doc without path (arrays traversed).
func aggUnsetPath(doc bson.D, path []string) bson.D {
	out := make(bson.D, 0, len(doc))
	for _, e := range doc {
		if e.Key != path[0] {
			out = append(out, e)
			continue
		}
		if len(path) == 1 {
			continue
		}
		out = append(out, bson.E{Key: e.Key, Value: aggUnsetInValue(e.Value, path[1:])})
	}
	return out
}

func aggUnsetInValue(cur any, path []string) any {
	switch t := cur.(type) {
	case bson.D:
		return aggUnsetPath(t, path)
	case bson.A:
		out := make(bson.A, len(t))
		for i, el := range t {
			out[i] = aggUnsetInValue(el, path)
		}
		return out
	}
	return cur
}

// replaceRootStage is $replaceRoot / $replaceWith.
type replaceRootStage struct {
	e    *Expr
	what string
}

func (s *replaceRootStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	v, err := rc.evalDoc(s.e, doc)
	if err != nil {
		return nil, false, err
	}
	d, ok := v.(bson.D)
	if !ok {
		return nil, false, mongoerr.Errorf(mongoerr.ReplaceRootNewRootNotObject, "%smust evaluate to an object, but resulting value was: %s. Type of resulting value: '%s'. Input document: %s",
			s.what, aggFmt(v), TypeName(v), aggFmt(doc))
	}
	return d, true, nil
}

func (s *replaceRootStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// redactStage is $redact.
type redactStage struct{ e *Expr }

func (s *redactStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	return s.redact(rc, doc, doc)
}

func (s *redactStage) redact(rc *runCtx, root, cur bson.D) (bson.D, bool, error) {
	v, err := s.e.evalCtx(&evalCtx{root: root, current: cur, now: rc.now, nowSet: true})
	if err != nil {
		return nil, false, err
	}
	switch v {
	case "$$KEEP":
		return cur, true, nil
	case "$$PRUNE":
		return nil, false, nil
	case "$$DESCEND":
	default:
		return nil, false, mongoerr.Errorf(mongoerr.RedactBadResult, "$redact's expression should not return anything aside from the variables $$KEEP, $$DESCEND, and $$PRUNE, but returned %s", aggFmt(v))
	}
	out := make(bson.D, 0, len(cur))
	for _, e := range cur {
		switch t := e.Value.(type) {
		case bson.D:
			sub, keep, err := s.redact(rc, root, t)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out = append(out, bson.E{Key: e.Key, Value: sub})
			}
		case bson.A:
			arr, err := s.redactArray(rc, root, t)
			if err != nil {
				return nil, false, err
			}
			out = append(out, bson.E{Key: e.Key, Value: arr})
		default:
			out = append(out, e)
		}
	}
	return out, true, nil
}

func (s *redactStage) redactArray(rc *runCtx, root bson.D, a bson.A) (bson.A, error) {
	out := make(bson.A, 0, len(a))
	for _, el := range a {
		switch t := el.(type) {
		case bson.D:
			sub, keep, err := s.redact(rc, root, t)
			if err != nil {
				return nil, err
			}
			if keep {
				out = append(out, sub)
			}
		case bson.A:
			sub, err := s.redactArray(rc, root, t)
			if err != nil {
				return nil, err
			}
			out = append(out, sub)
		default:
			out = append(out, el)
		}
	}
	return out, nil
}

func (s *redactStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return streamRun(rc, src, s.apply)
}

// skipStage is $skip.
type skipStage struct{ n int64 }

func (s *skipStage) run(_ *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		seen := int64(0)
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			if seen < s.n {
				seen++
				continue
			}
			if !yield(d, nil) {
				return
			}
		}
	}
}

// limitStage is $limit; it stops pulling its input once satisfied.
type limitStage struct{ n int64 }

func (s *limitStage) run(_ *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		if s.n <= 0 {
			return
		}
		sent := int64(0)
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(d, nil) {
				return
			}
			sent++
			if sent >= s.n {
				return
			}
		}
	}
}

// sortStage is $sort; with limit > 0 (a following $limit) it keeps only
// the first limit documents in memory.
type sortStage struct {
	s     *Sort
	limit int64
}

func (s *sortStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		var buf []bson.D
		var sizes []int
		mem := int64(0)
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			sz := aggSize(d)
			if s.limit > 0 {
				// Insert after equal keys (stable), drop the tail beyond limit.
				i := sort.Search(len(buf), func(i int) bool { return s.s.Compare(buf[i], d) > 0 })
				if int64(i) >= s.limit {
					continue
				}
				buf = slices.Insert(buf, i, d)
				sizes = slices.Insert(sizes, i, sz)
				mem += int64(sz)
				if int64(len(buf)) > s.limit {
					mem -= int64(sizes[len(sizes)-1])
					buf, sizes = buf[:len(buf)-1], sizes[:len(sizes)-1]
				}
			} else {
				buf = append(buf, d)
				mem += int64(sz)
			}
			if mem > rc.memLimit {
				yield(nil, rc.memErr("$sort"))
				return
			}
		}
		if s.limit == 0 {
			slices.SortStableFunc(buf, s.s.Compare)
		}
		for _, d := range buf {
			if !yield(d, nil) {
				return
			}
		}
	}
}

// groupStage is $group.
type groupStage struct {
	id     exprNode
	accums []accumSpec
}

func compileGroup(spec any) (stage, error) {
	d, ok := spec.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.GroupNotObject, "a group's fields must be specified in an object")
	}
	g := &groupStage{}
	seen := map[string]bool{}
	for _, e := range d {
		if e.Key == "_id" {
			if g.id != nil {
				return nil, mongoerr.Errorf(mongoerr.FieldPathDollarPrefix, "duplicate _id in $group")
			}
			n, err := compileNode(e.Value)
			if err != nil {
				return nil, err
			}
			g.id = n
			continue
		}
		if strings.HasPrefix(e.Key, "$") {
			return nil, mongoerr.Errorf(mongoerr.GroupFieldOperatorName, "The field name '%s' cannot be an operator name", e.Key)
		}
		if strings.Contains(e.Key, ".") {
			return nil, mongoerr.Errorf(mongoerr.GroupFieldDotted, "The field name '%s' cannot contain '.'", e.Key)
		}
		if seen[e.Key] {
			return nil, mongoerr.Errorf(mongoerr.DuplicateFieldName, "duplicate field name specified in $group: %s", e.Key)
		}
		seen[e.Key] = true
		a, err := compileAccumulator(e.Key, e.Value)
		if err != nil {
			return nil, err
		}
		g.accums = append(g.accums, a)
	}
	if g.id == nil {
		return nil, mongoerr.Errorf(mongoerr.GroupMissingID, "a group specification must include an _id")
	}
	return g, nil
}

// groupState is one group's key value and accumulators.
type groupState struct {
	id     any
	accums []accumulator
}

func (s *groupStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		index := map[string]int{}
		var groups []*groupState
		mem := int64(0)
		var key []byte
		c := &evalCtx{now: rc.now, nowSet: true}
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			c.root, c.current, c.scope, c.steps = d, d, nil, 0
			id, err := s.id.eval(c)
			if err != nil {
				yield(nil, err)
				return
			}
			if id == Missing {
				id = nil
			}
			key = aggKey(key[:0], id)
			gi, ok := index[string(key)]
			if !ok {
				g := &groupState{id: id, accums: make([]accumulator, len(s.accums))}
				for i, a := range s.accums {
					g.accums[i] = newAccumulator(a.op)
				}
				gi = len(groups)
				groups = append(groups, g)
				index[string(key)] = gi
				mem += int64(len(key)+aggSize(id)) + 64
			}
			g := groups[gi]
			for i, a := range s.accums {
				v, err := a.arg.eval(c)
				if err != nil {
					yield(nil, err)
					return
				}
				mem += int64(g.accums[i].add(v))
			}
			if mem > rc.memLimit {
				yield(nil, rc.memErr("$group"))
				return
			}
		}
		for _, g := range groups {
			out := make(bson.D, 0, len(s.accums)+1)
			out = append(out, bson.E{Key: "_id", Value: g.id})
			for i, a := range s.accums {
				if m, ok := g.accums[i].(*mergeAcc); ok && m.err != nil {
					yield(nil, m.err)
					return
				}
				out = append(out, bson.E{Key: a.field, Value: g.accums[i].result()})
			}
			if !yield(out, nil) {
				return
			}
		}
	}
}

// countStage is $count.
type countStage struct{ field string }

func (s *countStage) run(_ *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		n := int64(0)
		for _, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			n++
		}
		if n == 0 {
			return
		}
		yield(bson.D{{Key: s.field, Value: aggNarrow(n, aggKInt)}}, nil)
	}
}

// unwindStage is $unwind.
type unwindStage struct {
	path      []string
	indexPath []string
	preserve  bool
}

func compileUnwind(spec any) (stage, error) {
	s := &unwindStage{}
	var pathStr string
	switch t := spec.(type) {
	case string:
		pathStr = t
	case bson.D:
		hasPath := false
		for _, e := range t {
			switch e.Key {
			case "path":
				p, ok := e.Value.(string)
				if !ok {
					return nil, mongoerr.Errorf(mongoerr.UnwindPathNotString, "expected a string as the path for $unwind stage, got %s", TypeName(e.Value))
				}
				pathStr, hasPath = p, true
			case "includeArrayIndex":
				p, ok := e.Value.(string)
				if !ok || p == "" {
					return nil, mongoerr.Errorf(mongoerr.UnwindIndexFieldEmpty, "expected a non-empty string for the includeArrayIndex  option to $unwind stage, got %s", TypeName(e.Value))
				}
				if strings.HasPrefix(p, "$") {
					return nil, mongoerr.Errorf(mongoerr.UnwindIndexFieldDollar, "includeArrayIndex option to $unwind stage should not be prefixed with a '$': %s", p)
				}
				parts, err := aggSplitFieldPath(p)
				if err != nil {
					return nil, err
				}
				s.indexPath = parts
			case "preserveNullAndEmptyArrays":
				b, ok := e.Value.(bool)
				if !ok {
					return nil, mongoerr.Errorf(mongoerr.UnwindPreserveNotBool, "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage, got %s", TypeName(e.Value))
				}
				s.preserve = b
			default:
				return nil, mongoerr.Errorf(mongoerr.UnwindUnknownOption, "unrecognized option to $unwind stage: %s", e.Key)
			}
		}
		if !hasPath {
			return nil, mongoerr.Errorf(mongoerr.UnwindMissingPath, "no path specified to $unwind stage")
		}
	default:
		return nil, mongoerr.Errorf(mongoerr.UnwindNotStringOrObject, "expected either a string or an object as specification for $unwind stage, got %s", TypeName(spec))
	}
	if !strings.HasPrefix(pathStr, "$") {
		return nil, mongoerr.Errorf(mongoerr.UnwindPathNoDollar, "path option to $unwind stage should be prefixed with a '$': %s", pathStr)
	}
	parts, err := aggSplitFieldPath(pathStr[1:])
	if err != nil {
		return nil, err
	}
	s.path = parts
	return s, nil
}

func (s *unwindStage) run(_ *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			v := aggDocPath(d, s.path)
			arr, isArr := v.(bson.A)
			switch {
			case isArr && len(arr) > 0:
				for i, el := range arr {
					out := aggSetPath(d, s.path, el)
					if s.indexPath != nil {
						out = aggSetPath(out, s.indexPath, int64(i))
					}
					if !yield(out, nil) {
						return
					}
				}
				continue
			case isArr || aggNullish(v):
				if !s.preserve {
					continue
				}
				out := d
				if isArr {
					out = aggUnsetPath(d, s.path)
				}
				if s.indexPath != nil {
					out = aggSetPath(out, s.indexPath, nil)
				}
				if !yield(out, nil) {
					return
				}
				continue
			}
			out := d
			if s.indexPath != nil {
				out = aggSetPath(out, s.indexPath, nil)
			}
			if !yield(out, nil) {
				return
			}
		}
	}
}

// aggDocPath follows path through embedded documents only (no array
// traversal), as $unwind does.
func aggDocPath(d bson.D, path []string) any {
	var v any = d
	for _, p := range path {
		doc, ok := v.(bson.D)
		if !ok {
			return Missing
		}
		v = docField(doc, p)
	}
	return v
}

// sampleStage is $sample: a uniform random sample without replacement.
type sampleStage struct{ size int64 }

func compileSample(spec any) (stage, error) {
	d, ok := spec.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.SampleNotObject, "the $sample stage specification must be an object")
	}
	s := &sampleStage{}
	found := false
	for _, e := range d {
		if e.Key != "size" {
			return nil, mongoerr.Errorf(mongoerr.SampleUnknownOption, "unrecognized option to $sample: %s", e.Key)
		}
		if aggNumKind(e.Value) == aggKNone {
			return nil, mongoerr.Errorf(mongoerr.SampleSizeNotNumber, "size argument to $sample must be a number")
		}
		n, _ := aggToInt64Exact(e.Value)
		if f := aggToFloat(e.Value); f < 0 {
			return nil, mongoerr.Errorf(mongoerr.SampleSizeNegative, "size argument to $sample must not be negative")
		} else if n == 0 && f > 0 {
			n = int64(f)
		}
		s.size, found = n, true
	}
	if !found {
		return nil, mongoerr.Errorf(mongoerr.SampleMissingSize, "$sample stage must specify a size")
	}
	return s, nil
}

func (s *sampleStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		var res []bson.D
		mem := int64(0)
		seen := int64(0)
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			seen++
			if int64(len(res)) < s.size {
				res = append(res, d)
				mem += int64(aggSize(d))
			} else if j := rand.Int64N(seen); j < s.size {
				res[j] = d
			}
			if mem > rc.memLimit {
				yield(nil, rc.memErr("$sample"))
				return
			}
		}
		rand.Shuffle(len(res), func(i, j int) { res[i], res[j] = res[j], res[i] })
		for _, d := range res {
			if !yield(d, nil) {
				return
			}
		}
	}
}

// facetStage is $facet.
type facetStage struct {
	names []string
	subs  []*Pipeline
}

func compileFacet(spec any) (stage, error) {
	d, ok := spec.(bson.D)
	if !ok || len(d) == 0 {
		return nil, mongoerr.Errorf(mongoerr.FacetNotObject, "the $facet specification must be a non-empty object, but found: %s", aggFmt(spec))
	}
	s := &facetStage{}
	for _, e := range d {
		if e.Key == "" || strings.HasPrefix(e.Key, "$") || strings.Contains(e.Key, ".") {
			return nil, mongoerr.Errorf(mongoerr.FacetBadOutputName, "the $facet output field name '%s' is not valid", e.Key)
		}
		arr, ok := e.Value.(bson.A)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.FacetPipelineNotArray, "arguments to $facet must be arrays, %s is type %s", e.Key, TypeName(e.Value))
		}
		stages := make([]bson.D, 0, len(arr))
		for _, st := range arr {
			sd, ok := st.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.FacetStageNotObject, "subpipeline of $facet stage must contain only objects, but %s contained an element of type %s", e.Key, TypeName(st))
			}
			if len(sd) == 1 {
				switch sd[0].Key {
				case "$facet", "$out", "$merge", "$collStats", "$indexStats", "$changeStream", "$geoNear":
					return nil, mongoerr.Errorf(mongoerr.FacetStageNotAllowed, "%s is not allowed to be used within a $facet stage", sd[0].Key)
				}
			}
			stages = append(stages, sd)
		}
		p, err := CompilePipeline(stages)
		if err != nil {
			return nil, err
		}
		s.names = append(s.names, e.Key)
		s.subs = append(s.subs, p)
	}
	return s, nil
}

func (s *facetStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		var buf []bson.D
		mem := int64(0)
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			buf = append(buf, d)
			mem += int64(aggSize(d))
			if mem > rc.memLimit {
				yield(nil, rc.memErr("$facet"))
				return
			}
		}
		out := make(bson.D, 0, len(s.names))
		outMem := int64(0)
		for i, p := range s.subs {
			sub := &runCtx{now: rc.now, memLimit: rc.memLimit}
			seq := func(y func(bson.D, error) bool) {
				for _, d := range buf {
					if !y(d, nil) {
						return
					}
				}
			}
			var it iter.Seq2[bson.D, error] = seq
			for _, st := range p.stages {
				it = st.run(sub, it)
			}
			res := bson.A{}
			for d, err := range it {
				if err != nil {
					yield(nil, err)
					return
				}
				res = append(res, d)
				outMem += int64(aggSize(d))
				if outMem > 16*1024*1024 {
					yield(nil, mongoerr.Errorf(mongoerr.FacetTooLarge, "document constructed by $facet is %d bytes, which exceeds the limit of 16777216 bytes", outMem))
					return
				}
			}
			out = append(out, bson.E{Key: s.names[i], Value: res})
		}
		yield(out, nil)
	}
}
