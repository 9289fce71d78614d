package server

import (
	"iter"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// maxLookupBytes bounds the documents one $lookup attaches to one input
// document (the result must fit in a 16 MiB document anyway).
const maxLookupBytes = storage.MaxDocumentSize

// lookupStage is a compiled $lookup in one of the two forms devdb supports:
// equality ({from, localField, foreignField, as}, optionally with an
// uncorrelated pipeline applied to the matches) and uncorrelated
// sub-pipeline ({from, pipeline, as} without let).
type lookupStage struct {
	db, from     string
	localField   string
	foreignField string
	as           string
	sub          *mql.Pipeline // nil when absent
	// coll is the aggregate's collation, used for the join's equality.
	coll *mql.Collation
	// st is the store the foreign collection is read through (the
	// command's, a transaction's view inside a transaction).
	st dataStore
}

// parseLookup compiles a $lookup specification.
func parseLookup(db string, spec any) (*lookupStage, error) {
	d, ok := spec.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "the $lookup specification must be an Object, but found %s", mql.TypeName(spec))
	}
	ls := &lookupStage{db: db}
	hasPipeline := false
	for _, e := range d {
		str, isStr := e.Value.(string)
		switch e.Key {
		case "from":
			switch f := e.Value.(type) {
			case string:
				ls.from = f
			case bson.D:
				return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support $lookup from another database")
			default:
				return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$lookup 'from' field must be a string, but found %s", mql.TypeName(e.Value))
			}
		case "localField", "foreignField", "as":
			if !isStr {
				return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$lookup argument '%s' must be a string, found %s", e.Key, mql.TypeName(e.Value))
			}
			switch e.Key {
			case "localField":
				ls.localField = str
			case "foreignField":
				ls.foreignField = str
			default:
				ls.as = str
			}
		case "pipeline":
			arr, ok := e.Value.(bson.A)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$lookup argument 'pipeline' must be an array, found %s", mql.TypeName(e.Value))
			}
			stages := make([]bson.D, len(arr))
			for i, st := range arr {
				if stages[i], ok = st.(bson.D); !ok {
					return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
				}
			}
			p, err := mql.CompilePipeline(stages)
			if err != nil {
				return nil, err
			}
			ls.sub, hasPipeline = p, true
		case "let":
			if ld, ok := e.Value.(bson.D); ok && len(ld) == 0 {
				continue
			}
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support $lookup with let (correlated sub-pipelines)")
		default:
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "unknown argument to $lookup: %s", e.Key)
		}
	}
	if ls.as == "" {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "must specify 'as' field for a $lookup")
	}
	if ls.from == "" {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "must specify 'from' field for a $lookup")
	}
	if (ls.localField == "") != (ls.foreignField == "") {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$lookup requires both or neither of 'localField' and 'foreignField' to be specified")
	}
	if ls.localField == "" && !hasPipeline {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$lookup requires either 'pipeline' or both 'localField' and 'foreignField' to be specified")
	}
	return ls, nil
}

// run attaches the foreign matches to every document of src.
func (ls *lookupStage) run(s *Server, src iter.Seq2[bson.D, error]) iter.Seq2[bson.D, error] {
	return func(yield func(bson.D, error) bool) {
		var uncorrelated bson.A
		if ls.localField == "" {
			// Uncorrelated: the sub-pipeline's result is the same for every document.
			res, err := ls.collect(s, nil)
			if err != nil {
				yield(nil, err)
				return
			}
			uncorrelated = res
		}
		for d, err := range src {
			if err != nil {
				yield(nil, err)
				return
			}
			matches := uncorrelated
			if ls.localField != "" {
				if matches, err = ls.collect(s, d); err != nil {
					yield(nil, err)
					return
				}
			}
			if !yield(setPath(d, strings.Split(ls.as, "."), matches), nil) {
				return
			}
		}
	}
}

// collect returns the foreign documents joined to d (all of them when d is nil).
func (ls *lookupStage) collect(s *Server, d bson.D) (bson.A, error) {
	var filter bson.D
	if d != nil {
		vals := bson.A{}
		for _, v := range distinctValues(d, strings.Split(ls.localField, "."), nil) {
			vals = append(vals, v)
		}
		if len(vals) == 0 {
			vals = append(vals, nil) // a missing local field matches null and missing
		}
		filter = bson.D{{Key: ls.foreignField, Value: bson.D{{Key: "$in", Value: vals}}}}
	}
	plan, err := compileQuery(filter, ls.coll)
	if err != nil {
		return nil, err
	}
	seq := s.stream(ls.st, ls.db, ls.from, plan)
	if ls.sub != nil {
		seq = ls.sub.Run(seq)
	}
	out := bson.A{}
	size := 0
	for doc, err := range seq {
		if err != nil {
			return nil, err
		}
		size += approxSize(doc)
		if size > maxLookupBytes {
			return nil, mongoerr.Errorf(mongoerr.BSONObjectTooLarge, "Total size of documents in %s matching pipeline's $lookup stage exceeds %d bytes", ls.from, maxLookupBytes)
		}
		out = append(out, doc)
	}
	return out, nil
}

// setPath returns a copy of d with the dotted path set to v, creating (or
// replacing non-document values with) embedded documents on the way.
func setPath(d bson.D, parts []string, v any) bson.D {
	out := make(bson.D, 0, len(d)+1)
	out = append(out, d...)
	for i := range out {
		if out[i].Key != parts[0] {
			continue
		}
		if len(parts) == 1 {
			out[i].Value = v
		} else {
			sub, _ := out[i].Value.(bson.D)
			out[i].Value = setPath(sub, parts[1:], v)
		}
		return out
	}
	if len(parts) == 1 {
		return append(out, bson.E{Key: parts[0], Value: v})
	}
	return append(out, bson.E{Key: parts[0], Value: setPath(nil, parts[1:], v)})
}
