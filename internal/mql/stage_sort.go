package mql

import (
	"iter"
	"slices"
	"sort"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// sortStages is the table of the $sort stage (fused with a following small
// $limit by CompilePipeline).
func sortStages() map[string]stageCompiler {
	return map[string]stageCompiler{
		"$sort": func(_ string, spec any) (stage, error) {
			d, ok := spec.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.SortNotObject, "the $sort key specification must be an object")
			}
			s, err := CompileSort(d)
			if err != nil {
				return nil, err
			}
			return &sortStage{s: s}, nil
		},
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
		so := s.s.WithCollation(rc.coll)
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
				i := sort.Search(len(buf), func(i int) bool { return so.Compare(buf[i], d) > 0 })
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
			slices.SortStableFunc(buf, so.Compare)
		}
		for _, d := range buf {
			if !yield(d, nil) {
				return
			}
		}
	}
}
