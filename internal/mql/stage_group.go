package mql

import (
	"iter"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// groupStages is the table of grouping stages: $group, $count and
// $sortByCount.
func groupStages() map[string]stageCompiler {
	return map[string]stageCompiler{
		"$group":       func(_ string, spec any) (stage, error) { return compileGroup(spec) },
		"$count":       func(_ string, spec any) (stage, error) { return compileCount(spec) },
		"$sortByCount": func(_ string, spec any) (stage, error) { return compileSortByCount(spec) },
	}
}

// compileCount compiles {$count: "field"}.
func compileCount(spec any) (stage, error) {
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
}

// compileSortByCount compiles {$sortByCount: <expression>} as a $group by
// the expression counting documents, then a $sort by descending count.
func compileSortByCount(spec any) (stage, error) {
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
			if err := foldErr(n); err != nil {
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
		c := &evalCtx{vars: rc.vars, now: rc.now, nowSet: true, coll: rc.coll}
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
			key = aggKey(key[:0], id, rc.coll)
			gi, ok := index[string(key)]
			if !ok {
				g := &groupState{id: id, accums: make([]accumulator, len(s.accums))}
				for i, a := range s.accums {
					g.accums[i] = a.newAcc()
					if ca, ok := g.accums[i].(collatedAcc); ok {
						ca.setCollation(rc.coll)
					}
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

// chainStage runs several stages as one ($sortByCount).
type chainStage struct{ stages []stage }

func (s *chainStage) run(rc *runCtx, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	for _, st := range s.stages {
		src = st.run(rc, src)
	}
	return src
}
