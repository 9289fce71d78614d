package mql

import (
	"iter"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// facetStages is the table of the $facet stage.
func facetStages() map[string]stageCompiler {
	return map[string]stageCompiler{
		"$facet": func(_ string, spec any) (stage, error) { return compileFacet(spec) },
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
			sub := &runCtx{now: rc.now, memLimit: rc.memLimit, vars: rc.vars, coll: rc.coll}
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
