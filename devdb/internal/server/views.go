package server

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// Views (create {viewOn, pipeline}) are read-only collections defined by an
// aggregation over another collection or view. devdb stores a view as a
// catalog entry whose options hold viewOn and pipeline, and answers reads on
// it as MongoDB does: find, count, distinct and aggregate on a view become
// an aggregate on the underlying collection with the view's pipeline first.
// Writes, index commands and change streams on a view are
// CommandNotSupportedOnView (166).

// maxViewDepth is MongoDB's limit on views defined on views.
const maxViewDepth = 20

// viewDefinition returns the viewOn and pipeline of a view's options, or ok
// false for a collection.
func viewDefinition(opts bson.D) (viewOn string, pipeline bson.A, ok bool) {
	v, found := fieldOf(opts, "viewOn")
	if !found {
		return "", nil, false
	}
	viewOn, _ = v.(string)
	if p, found := fieldOf(opts, "pipeline"); found {
		pipeline, _ = p.(bson.A)
	}
	return viewOn, pipeline, true
}

// viewOptions checks create's viewOn and pipeline and returns the options
// stored for the view.
func viewOptions(db string, body bson.D) (bson.D, error) {
	v, _ := fieldOf(body, "viewOn")
	viewOn, ok := v.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'create.viewOn' is the wrong type '%s', expected type 'string'", mql.TypeName(v))
	}
	if err := storage.ValidateCollName(db, viewOn); err != nil {
		return nil, err
	}
	pipeline := bson.A{}
	if p, ok := fieldOf(body, "pipeline"); ok {
		if pipeline, ok = p.(bson.A); !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'create.pipeline' is the wrong type '%s', expected type 'array'", mql.TypeName(p))
		}
	}
	for _, st := range pipeline {
		d, ok := st.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		if len(d) == 1 {
			switch d[0].Key {
			case "$out", "$merge", "$changeStream":
				return nil, mongoerr.Errorf(mongoerr.OptionNotSupportedOnView, "%s cannot be used in a view definition", d[0].Key)
			}
		}
	}
	return bson.D{{Key: "viewOn", Value: viewOn}, {Key: "pipeline", Value: pipeline}}, nil
}

// resolveView follows db.coll through views: it returns the underlying
// collection, the concatenated view pipelines and the view's collation
// (nil: simple), with isView false (and no pipeline) when db.coll is not a
// view.
func (s *Server) resolveView(db, coll string) (source string, pipeline bson.A, collation *mql.Collation, isView bool, err error) {
	err = s.store.View(func(tx *storage.Tx) error {
		name := coll
		for depth := 0; ; depth++ {
			c, err := tx.Collection(db, name)
			if err != nil || c == nil {
				source = name
				return err
			}
			viewOn, p, ok := viewDefinition(c.Options)
			if !ok {
				source = name
				return nil
			}
			if depth == maxViewDepth {
				return mongoerr.Errorf(mongoerr.ViewDepthLimitExceeded, "View depth too deep or view cycle detected; maximum depth is %d", maxViewDepth)
			}
			if !isView {
				collation = c.DefaultCollation()
			}
			isView = true
			pipeline = append(append(bson.A{}, p...), pipeline...)
			name = viewOn
		}
	})
	if err != nil {
		return "", nil, nil, false, fmt.Errorf("resolve view %s.%s: %w", db, coll, dataErr(err))
	}
	return source, pipeline, collation, isView, nil
}

// viewRewrite answers req when it names a view: reads become an aggregate
// on the underlying collection, other commands that need a collection are
// refused. handled is false when req does not concern a view.
func (s *Server) viewRewrite(req *Request) (reply bson.D, handled bool, err error) {
	switch req.Name {
	case "find", "count", "distinct", "aggregate",
		"insert", "update", "delete", "findAndModify", "findandmodify",
		"createIndexes", "listIndexes", "dropIndexes":
	default:
		return nil, false, nil
	}
	coll, ok := req.Body[0].Value.(string)
	if !ok {
		return nil, false, nil
	}
	source, viewPipeline, viewColl, isView, err := s.resolveView(req.DB, coll)
	if err != nil {
		return nil, true, err
	}
	if !isView {
		return nil, false, nil
	}
	ns := req.DB + "." + coll
	// A read on a view uses the view's collation (not the underlying
	// collection's) and may not ask for another, as in MongoDB.
	if qc, err := collationArg(req); err != nil {
		return nil, true, err
	} else if qc.given && !mql.SameCollation(qc.coll, viewColl) {
		return nil, true, mongoerr.Errorf(mongoerr.OptionNotSupportedOnView, "Cannot override a view's default collation")
	}
	notOnView := mongoerr.Errorf(mongoerr.CommandNotSupportedOnView, "Namespace %s is a view, not a collection", ns)
	var pipeline bson.A
	pipeline = append(pipeline, viewPipeline...)
	// The aggregate command built for the view keeps the generic fields
	// ($db, lsid, let, readConcern, …) and the cursor options.
	agg := bson.D{{Key: "aggregate", Value: source}}
	keep := func(keys ...string) {
		for _, k := range keys {
			if v, ok := fieldOf(req.Body, k); ok {
				agg = append(agg, bson.E{Key: k, Value: v})
			}
		}
	}
	generic := func() {
		for _, e := range req.Body[1:] {
			if genericCommandFields[e.Key] {
				agg = append(agg, e)
			}
		}
	}
	field := func(k string) (bson.D, error) {
		v, ok := fieldOf(req.Body, k)
		if !ok || v == nil {
			return nil, nil
		}
		d, ok := v.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'object'", req.Name, k, mql.TypeName(v))
		}
		return d, nil
	}
	switch req.Name {
	case "find":
		filter, err := field("filter")
		if err != nil {
			return nil, true, err
		}
		if len(filter) > 0 {
			pipeline = append(pipeline, bson.D{{Key: "$match", Value: filter}})
		}
		sort, err := field("sort")
		if err != nil {
			return nil, true, err
		}
		if len(sort) > 0 {
			pipeline = append(pipeline, bson.D{{Key: "$sort", Value: sort}})
		}
		skip, _, err := sizeArg(req, "skip")
		if err != nil {
			return nil, true, err
		}
		if skip > 0 {
			pipeline = append(pipeline, bson.D{{Key: "$skip", Value: skip}})
		}
		limit, _, err := sizeArg(req, "limit")
		if err != nil {
			return nil, true, err
		}
		if limit > 0 {
			pipeline = append(pipeline, bson.D{{Key: "$limit", Value: limit}})
		}
		proj, err := field("projection")
		if err != nil {
			return nil, true, err
		}
		if len(proj) > 0 {
			pipeline = append(pipeline, bson.D{{Key: "$project", Value: proj}})
		}
		cursor := bson.D{}
		if v, ok := fieldOf(req.Body, "batchSize"); ok {
			cursor = bson.D{{Key: "batchSize", Value: v}}
		}
		agg = append(agg, bson.E{Key: "pipeline", Value: pipeline}, bson.E{Key: "cursor", Value: cursor})
		keep("let")
		generic()
	case "aggregate":
		v, _ := fieldOf(req.Body, "pipeline")
		user, _ := v.(bson.A)
		for _, st := range user {
			if d, ok := st.(bson.D); ok && len(d) == 1 && d[0].Key == "$changeStream" {
				return nil, true, mongoerr.Errorf(mongoerr.CommandNotSupportedOnView, "Namespace %s is a view, not a collection", ns)
			}
		}
		agg = append(agg, bson.E{Key: "pipeline", Value: append(pipeline, user...)})
		for _, e := range req.Body[1:] {
			if e.Key != "pipeline" {
				agg = append(agg, e)
			}
		}
	case "count":
		query, err := field("query")
		if err != nil {
			return nil, true, err
		}
		if len(query) > 0 {
			pipeline = append(pipeline, bson.D{{Key: "$match", Value: query}})
		}
		for _, k := range []string{"skip", "limit"} {
			n, err := intArg(req, k, 0)
			if err != nil {
				return nil, true, err
			}
			if n < 0 && k == "limit" {
				n = -n
			}
			if n > 0 {
				pipeline = append(pipeline, bson.D{{Key: "$" + k, Value: n}})
			}
		}
		pipeline = append(pipeline, bson.D{{Key: "$count", Value: "n"}})
		agg = append(agg, bson.E{Key: "pipeline", Value: pipeline}, bson.E{Key: "cursor", Value: bson.D{}})
		generic()
		out, err := s.viewAggregate(req, agg, ns, viewColl)
		if err != nil || req.explain != nil {
			return out, true, err
		}
		n := int64(0)
		if docs := firstBatch(out); len(docs) > 0 {
			if v, ok := fieldOf(docs[0], "n"); ok {
				n, _ = mql.ToInt64(v)
			}
		}
		return bson.D{{Key: "n", Value: n}}, true, nil
	case "distinct":
		key, ok := func() (string, bool) { v, _ := fieldOf(req.Body, "key"); s, ok := v.(string); return s, ok }()
		if !ok {
			return nil, true, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'distinct.key' is missing or not a string")
		}
		query, err := field("query")
		if err != nil {
			return nil, true, err
		}
		if len(query) > 0 {
			pipeline = append(pipeline, bson.D{{Key: "$match", Value: query}})
		}
		pipeline = append(pipeline,
			bson.D{{Key: "$unwind", Value: "$" + key}},
			bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "values", Value: bson.D{{Key: "$addToSet", Value: "$" + key}}}}}})
		agg = append(agg, bson.E{Key: "pipeline", Value: pipeline}, bson.E{Key: "cursor", Value: bson.D{}})
		generic()
		out, err := s.viewAggregate(req, agg, ns, viewColl)
		if err != nil || req.explain != nil {
			return out, true, err
		}
		values := bson.A{}
		if docs := firstBatch(out); len(docs) > 0 {
			if v, ok := fieldOf(docs[0], "values"); ok {
				values, _ = v.(bson.A)
			}
		}
		return bson.D{{Key: "values", Value: values}}, true, nil
	default:
		return nil, true, notOnView
	}
	out, err := s.viewAggregate(req, agg, ns, viewColl)
	return out, true, err
}

// viewAggregate runs the aggregate agg built for a read on the view ns
// under the view's collation coll; its cursor is registered under the
// view's namespace, as MongoDB's is.
func (s *Server) viewAggregate(req *Request, agg bson.D, ns string, coll *mql.Collation) (bson.D, error) {
	// The view's collation, not the underlying collection's default.
	agg = append(agg, bson.E{Key: "collation", Value: coll.Document()})
	sub := &Request{DB: req.DB, Name: "aggregate", Body: agg, ConnID: req.ConnID, Remote: req.Remote, conn: req.conn, cursorNS: ns, explain: req.explain}
	ctx := s.ctx
	if req.conn != nil {
		ctx = req.conn.ctx
	}
	return s.cmdAggregate(ctx, sub)
}

// firstBatch returns the documents of a cursor reply's firstBatch.
func firstBatch(reply bson.D) []bson.D {
	c, _ := fieldOf(reply, "cursor")
	cd, _ := c.(bson.D)
	fb, _ := fieldOf(cd, "firstBatch")
	arr, _ := fb.(bson.A)
	out := make([]bson.D, 0, len(arr))
	for _, v := range arr {
		switch x := v.(type) {
		case bson.D:
			out = append(out, x)
		case bson.Raw:
			var d bson.D
			if bson.Unmarshal(x, &d) == nil {
				out = append(out, d)
			}
		}
	}
	return out
}
