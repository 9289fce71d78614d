package mql

import (
	"iter"
	"math/rand/v2"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// selectStages is the table of stages that select documents without
// changing them: $match, $redact, $skip, $limit and $sample.
func selectStages() map[string]stageCompiler {
	skipLimit := func(name string, spec any) (stage, error) {
		n, err := aggStageCount(name, spec)
		if err != nil {
			return nil, err
		}
		if name == "$limit" {
			return &limitStage{n: n}, nil
		}
		return &skipStage{n: n}, nil
	}
	return map[string]stageCompiler{
		"$match": func(_ string, spec any) (stage, error) {
			d, ok := spec.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.MatchNotObject, "the match filter must be an expression in an object")
			}
			f, err := CompileFilter(d)
			if err != nil {
				return nil, err
			}
			return &matchStage{f: f, spec: d}, nil
		},
		"$redact": func(_ string, spec any) (stage, error) {
			e, err := compileExprOpen(spec)
			if err != nil {
				return nil, err
			}
			return &redactStage{e: e}, nil
		},
		"$skip":   skipLimit,
		"$limit":  skipLimit,
		"$sample": func(_ string, spec any) (stage, error) { return compileSample(spec) },
	}
}

// matchStage is $match; spec is the filter document, compiled again under
// the run's collation when it has one.
type matchStage struct {
	f    *Filter
	spec bson.D
}

// filter returns the stage's filter for the run's collation.
func (s *matchStage) filter(rc *runCtx) (*Filter, error) {
	if rc.coll == nil {
		return s.f, nil
	}
	return CompileFilterCollation(s.spec, rc.coll)
}

func (s *matchStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	f := s.f
	if rc.coll != nil {
		var err error
		if f, err = s.filter(rc); err != nil {
			return nil, false, err
		}
	}
	ok, err := f.matchErrVars(doc, rc.vars)
	return doc, ok, err
}

func (s *matchStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	f, err := s.filter(rc)
	if err != nil {
		return func(yield func(bson.D, error) bool) { yield(nil, err) }
	}
	return streamRun(rc, src, func(rc *runCtx, doc bson.D) (bson.D, bool, error) {
		ok, err := f.matchErrVars(doc, rc.vars)
		return doc, ok, err
	})
}

// redactStage is $redact.
type redactStage struct{ e *Expr }

func (s *redactStage) apply(rc *runCtx, doc bson.D) (bson.D, bool, error) {
	return s.redact(rc, doc, doc)
}

func (s *redactStage) redact(rc *runCtx, root, cur bson.D) (bson.D, bool, error) {
	v, err := s.e.evalCtx(&evalCtx{root: root, current: cur, vars: rc.vars, now: rc.now, nowSet: true, coll: rc.coll})
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
