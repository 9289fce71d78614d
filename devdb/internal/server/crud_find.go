package server

import (
	"context"
	"iter"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// maxSortBytes is MongoDB's memory limit for a blocking sort (100 MiB);
// exceeding it is QueryExceededMemoryLimitNoDiskUseAllowed (292).
const maxSortBytes = 100 << 20

// findSpec is a parsed find command (also used by findAndModify and the
// aggregate $match prefix).
type findSpec struct {
	plan  *queryPlan
	vars  map[string]any // the command's let variables and $$NOW
	sort  *mql.Sort
	proj  *mql.Projection
	skip  int64
	limit int64 // 0 = none
	// natural is the direction of a {$natural: 1|-1} sort (or find's hint
	// of it, without a sort): -1 reads newest first; 0 and 1 read in
	// natural order.
	natural int
	// exec, when not nil, counts the documents passing each stage of
	// results (explain's executionStats).
	exec *findCounts
}

// findCounts are the documents that passed each stage of one execution of
// results, for explain.
type findCounts struct {
	// source are the documents the access path returned (for an
	// index-order sort: those its fetch returned).
	source    int64
	sourceEOF bool
	// sortBytes is the approximate size of the documents a blocking sort
	// held (approxSize, the measure of its memory limit) before top-k
	// discarded any.
	sortBytes int64
	// sorted are the documents a blocking sort returned.
	sorted int64
	// skipped and returned are the documents skip dropped and results
	// returned.
	skipped, returned int64
}

// counted returns seq counting the documents it yields into *n (and their
// approxSize into *bytes when bytes is not nil), and setting *eof when it
// ends by itself.
func (x *findCounts) counted(seq iter.Seq2[bson.D, error], n *int64, eof *bool, bytes *int64) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		for d, err := range seq {
			if err == nil {
				*n++
				if bytes != nil {
					*bytes += int64(approxSize(d))
				}
			}
			if !yield(d, err) {
				return
			}
		}
		if eof != nil {
			*eof = true
		}
	}
}

// sortDocs sorts seq by spec, keeping only the first keep documents when
// keep > 0 (top-k for sort+limit). It enforces the blocking-sort memory
// limit on the documents it holds (all of them, or the k kept).
func sortDocs(seq iter.Seq2[bson.D, error], s *mql.Sort, keep int64) ([]bson.D, error) {
	var out []bson.D
	var sizes []int // per kept document, for top-k
	var bytes int
	for d, err := range seq {
		if err != nil {
			return nil, err
		}
		if keep > 0 && int64(len(out)) == keep {
			if s.Compare(d, out[len(out)-1]) >= 0 {
				continue
			}
			out = out[:len(out)-1]
			bytes -= sizes[len(sizes)-1]
			sizes = sizes[:len(sizes)-1]
		}
		// Stable: insert after every element that compares equal.
		i, _ := slices.BinarySearchFunc(out, d, func(e, t bson.D) int {
			if s.Compare(e, t) <= 0 {
				return -1
			}
			return 1
		})
		out = slices.Insert(out, i, d)
		// A top-k sort (sort + limit) holds only the k best documents, and
		// only they count against the limit, as in MongoDB.
		sz := approxSize(d)
		if keep > 0 {
			sizes = slices.Insert(sizes, i, sz)
		}
		bytes += sz
		if bytes > maxSortBytes {
			return nil, mongoerr.Errorf(mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed, "Sort exceeded memory limit of %d bytes, but did not opt in to external sorting.", maxSortBytes)
		}
	}
	return out, nil
}

// approxSize estimates a document's in-memory size for memory limits.
func approxSize(d bson.D) int {
	n := 16
	for _, e := range d {
		n += len(e.Key) + 16
		switch v := e.Value.(type) {
		case string:
			n += len(v)
		case bson.D:
			n += approxSize(v)
		case bson.A:
			n += approxSize(bson.D{{Key: "", Value: nil}}) * len(v)
			for _, el := range v {
				if sub, ok := el.(bson.D); ok {
					n += approxSize(sub)
				}
			}
		case bson.Binary:
			n += len(v.Data)
		}
	}
	return n
}

// results returns the documents of db.coll selected by f: filtered, sorted,
// skipped, limited and projected, lazily unless a sort forces
// materialisation.
func (s *Server) results(st dataStore, db, coll string, f *findSpec) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		x := f.exec
		var src iter.Seq2[bson.D, error]
		if f.natural < 0 {
			src = s.reverseStream(st, db, coll, f.plan)
		} else {
			src = s.stream(st, db, coll, f.plan)
		}
		if f.sort != nil && f.sort.Len() > 0 {
			keep := int64(0)
			if f.limit > 0 {
				keep = f.skip + f.limit
			}
			if s.indexProvidesSort(db, coll, f) {
				src = s.indexOrder(st, db, coll, f.plan, f.sort, keep)
				if x != nil {
					src = x.counted(src, &x.source, &x.sourceEOF, nil)
				}
				goto emit
			}
			var sorted []bson.D
			var err error
			if x != nil {
				sorted, err = sortDocs(x.counted(src, &x.source, &x.sourceEOF, &x.sortBytes), f.sort, keep)
			} else {
				sorted, err = sortDocs(src, f.sort, keep)
			}
			if err != nil {
				yield(nil, err)
				return
			}
			src = func(y func(bson.D, error) bool) {
				for _, d := range sorted {
					if x != nil {
						x.sorted++
					}
					if !y(d, nil) {
						return
					}
				}
			}
		} else if x != nil {
			src = x.counted(src, &x.source, &x.sourceEOF, nil)
		}
	emit:
		var skipped, emitted int64
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			if skipped < f.skip {
				skipped++
				if x != nil {
					x.skipped++
				}
				continue
			}
			out, err := f.project(d)
			if err != nil {
				yield(nil, err)
				return
			}
			emitted++
			if x != nil {
				x.returned++
			}
			if !yield(out, nil) {
				return
			}
			// Stop at the limit without reading another document.
			if f.limit > 0 && emitted >= f.limit {
				return
			}
		}
	}
}

// project applies the projection (with the positional index from the
// filter when it has "a.$").
func (f *findSpec) project(d bson.D) (bson.D, error) {
	if f.proj == nil {
		return d, nil
	}
	if f.proj.HasPositional() {
		_, idx := f.plan.filter.MatchPositional(d)
		return f.proj.ApplyPositional(d, idx)
	}
	return f.proj.Apply(d)
}

// parseFind reads filter/sort/projection/skip/limit from the command using
// the given field names (find: filter, projection; findAndModify: query,
// fields); the filter and the sort compare strings under collation.
func parseFind(req *Request, filterKey, projKey string, collation *mql.Collation) (*findSpec, error) {
	filter, _, err := docArg(req, filterKey)
	if err != nil {
		return nil, err
	}
	f := &findSpec{}
	if f.plan, err = compileQuery(filter, collation); err != nil {
		return nil, err
	}
	if f.vars, err = letArg(req, time.Now()); err != nil {
		return nil, err
	}
	f.plan = f.plan.withVars(f.vars)
	if sortSpec, ok, err := docArg(req, "sort"); err != nil {
		return nil, err
	} else if ok {
		if f.natural, ok, err = naturalOrder(sortSpec); err != nil {
			return nil, err
		} else if ok {
			sortSpec = nil
		}
		if f.sort, err = mql.CompileSort(sortSpec); err != nil {
			return nil, err
		}
		f.sort = f.sort.WithCollation(collation)
	}
	if projSpec, ok, err := docArg(req, projKey); err != nil {
		return nil, err
	} else if ok && len(projSpec) > 0 {
		if f.proj, err = mql.CompileProjectionCollation(projSpec, collation); err != nil {
			return nil, err
		}
		f.proj = f.proj.WithVars(f.vars)
	}
	return f, nil
}

// naturalOrder reads a sort (or hint) of natural order, {$natural: 1|-1},
// and returns its direction; ok is false for any other spec. $natural with
// other keys is refused: devdb sorts by $natural only alone.
func naturalOrder(spec bson.D) (dir int, ok bool, err error) {
	i := slices.IndexFunc(spec, func(e bson.E) bool { return e.Key == "$natural" })
	if i < 0 {
		return 0, false, nil
	}
	if len(spec) > 1 {
		return 0, false, mongoerr.Errorf(mongoerr.BadValue, "devdb supports a $natural sort only on its own, not with other sort keys")
	}
	f, isNum := mql.ToFloat64(spec[0].Value)
	if !isNum || (f != 1 && f != -1) {
		return 0, false, mongoerr.Errorf(mongoerr.BadValue, "$natural must be 1 or -1")
	}
	return int(f), true, nil
}

// reverseStream is stream newest first: the oplog read backwards, a
// collection's matching documents gathered and reversed (held as a blocking
// sort holds them, under its memory limit).
func (s *Server) reverseStream(st dataStore, db, coll string, p *queryPlan) iter.Seq2[bson.D, error] {
	if isOplog(db, coll) {
		return s.oplogStream(p, true)
	}
	return func(yield func(bson.D, error) bool) {
		var docs []bson.D
		bytes := 0
		for d, err := range s.stream(st, db, coll, p) {
			if err != nil {
				yield(nil, err)
				return
			}
			if bytes += approxSize(d); bytes > maxSortBytes {
				yield(nil, mongoerr.Errorf(mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed, "devdb reads a collection in reverse natural order in memory, and this one exceeded the limit of %d bytes", maxSortBytes))
				return
			}
			docs = append(docs, d)
		}
		for i := len(docs) - 1; i >= 0; i-- {
			if !yield(docs[i], nil) {
				return
			}
		}
	}
}

// cmdFind answers find with a cursor (default first batch 101 documents).
func (s *Server) cmdFind(ctx context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	collation, err := s.commandCollation(req, coll)
	if err != nil {
		return nil, err
	}
	f, err := parseFind(req, "filter", "projection", collation)
	if err != nil {
		return nil, err
	}
	// skip, limit and batchSize are non-negative (a negative limit is the
	// legacy OP_QUERY form, which drivers send as limit + singleBatch).
	if f.skip, _, err = sizeArg(req, "skip"); err != nil {
		return nil, err
	}
	if f.limit, _, err = sizeArg(req, "limit"); err != nil {
		return nil, err
	}
	batchSize, hasBatchSize, err := sizeArg(req, "batchSize")
	if err != nil {
		return nil, err
	}
	singleBatch, err := boolArg(req, "singleBatch", false)
	if err != nil {
		return nil, err
	}
	tailable, err := boolArg(req, "tailable", false)
	if err != nil {
		return nil, err
	}
	awaitData, err := boolArg(req, "awaitData", false)
	if err != nil {
		return nil, err
	}
	if _, err := boolArg(req, "oplogReplay", false); err != nil {
		return nil, err // accepted and unused, as by MongoDB since 4.4
	}
	switch {
	case awaitData && !tailable:
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Cannot set 'awaitData' without also setting 'tailable'")
	case tailable && !isOplog(req.DB, coll):
		// The oplog is devdb's only capped collection.
		return nil, mongoerr.Errorf(mongoerr.BadValue, "error processing query: ns=%s.%s: tailable cursor requested on non capped collection", req.DB, coll)
	}
	// A hint of {$natural: 1|-1} without a sort sets the read direction;
	// any other hint is accepted and, as before, not used.
	if hv, ok := fieldOf(req.Body, "hint"); ok && f.natural == 0 && (f.sort == nil || f.sort.Len() == 0) {
		if hint, isDoc := hv.(bson.D); isDoc {
			if f.natural, _, err = naturalOrder(hint); err != nil {
				return nil, err
			}
		}
	}
	if req.explain != nil {
		return s.explainFind(req, coll, f, explainFilter(req, "filter"), explainFilter(req, "sort"), explainProjection(req, "projection"))
	}
	opts := CursorOptions{SingleBatch: singleBatch, ExecutorContext: execContextFind}
	if hasBatchSize {
		opts.ZeroBatch = batchSize == 0
		opts.BatchSize = int(min(batchSize, 1<<31-1))
	}
	if f.limit > 0 && (opts.BatchSize == 0 || int64(opts.BatchSize) > f.limit) && !opts.ZeroBatch {
		opts.BatchSize = int(min(f.limit, 1<<31-1))
	}
	if tailable {
		if f.natural < 0 || (f.sort != nil && f.sort.Len() > 0) {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "cannot use tailable option with a sort other than {$natural: 1}")
		}
		opts.Awaitable = awaitData
		return s.cursorFirstBatch(ctx, req.DB+"."+coll, s.newOplogTail(f), opts)
	}
	return s.cursorFirstBatch(ctx, req.DB+"."+coll, newSeqSource(s.results(s.data(req), req.DB, coll, f)), opts)
}
