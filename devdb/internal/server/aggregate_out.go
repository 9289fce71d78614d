package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// outBatch is how many documents $out and $merge write per storage
// transaction.
const outBatch = 500

// outStage is a parsed $out or $merge, the last stage of a pipeline.
type outStage struct {
	merge    bool
	db, coll string

	// $merge only.
	on             []string // "on" fields; ["_id"] by default
	whenMatched    string   // replace | keepExisting | merge | fail | pipeline
	matched        *updateSpec
	matchedLet     bson.D // let expressions evaluated against each new document
	whenNotMatched string // insert | discard | fail
}

// isOutputStage reports whether st is $out or $merge.
func isOutputStage(st bson.D) bool {
	return len(st) == 1 && (st[0].Key == "$out" || st[0].Key == "$merge")
}

// parseOutStage parses the final $out or $merge stage st of an aggregate
// on database db.
func parseOutStage(db string, st bson.D) (*outStage, error) {
	name, v := st[0].Key, st[0].Value
	o := &outStage{merge: name == "$merge", db: db, on: []string{"_id"}, whenMatched: "merge", whenNotMatched: "insert"}
	target := func(field string, v any) error {
		switch x := v.(type) {
		case string:
			o.coll = x
		case bson.D:
			for _, e := range x {
				s, ok := e.Value.(string)
				switch {
				case e.Key == "db" && ok:
					o.db = s
				case e.Key == "coll" && ok:
					o.coll = s
				case e.Key == "db" || e.Key == "coll":
					return mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.%s.%s' is the wrong type '%s', expected type 'string'", name, field, e.Key, mql.TypeName(e.Value))
				default:
					return mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field '%s.%s.%s' is an unknown field.", name, field, e.Key)
				}
			}
		default:
			return mongoerr.Errorf(mongoerr.TypeMismatch, "%s %s must be a string or an object, but found %s", name, field, mql.TypeName(v))
		}
		if o.coll == "" {
			return mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid %s target namespace: '%s.%s'", name, o.db, o.coll)
		}
		if err := checkOutputTarget(name, o.db, o.coll); err != nil {
			return err
		}
		return storage.ValidateCollName(o.db, o.coll)
	}
	if !o.merge {
		if d, ok := v.(bson.D); ok {
			for _, e := range d {
				if e.Key == "timeseries" {
					return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not support time-series collections")
				}
			}
		}
		return o, target("", v)
	}
	spec, ok := v.(bson.D)
	if !ok {
		if s, isStr := v.(string); isStr {
			spec = bson.D{{Key: "into", Value: s}}
		} else {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$merge requires a string or object argument, but found %s", mql.TypeName(v))
		}
	}
	var matchedPipeline bson.A
	hasInto := false
	for _, e := range spec {
		switch e.Key {
		case "into":
			hasInto = true
			if err := target("into", e.Value); err != nil {
				return nil, err
			}
		case "on":
			switch x := e.Value.(type) {
			case string:
				o.on = []string{x}
			case bson.A:
				if len(x) == 0 {
					return nil, mongoerr.Errorf(mongoerr.MergeOnEmpty, "If explicitly specifying $merge 'on', must include at least one field")
				}
				o.on = o.on[:0]
				for _, f := range x {
					s, ok := f.(string)
					if !ok {
						return nil, mongoerr.Errorf(mongoerr.MergeOnElementNotString, "Array passed to $merge 'on' must only contain strings, but found %s", mql.TypeName(f))
					}
					o.on = append(o.on, s)
				}
			default:
				return nil, mongoerr.Errorf(mongoerr.MergeOnNotStringOrArray, "$merge 'on' field must be either a string or an array of strings, but found %s", mql.TypeName(e.Value))
			}
		case "let":
			d, ok := e.Value.(bson.D)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '$merge.let' is the wrong type '%s', expected type 'object'", mql.TypeName(e.Value))
			}
			o.matchedLet = d
		case "whenMatched":
			switch x := e.Value.(type) {
			case string:
				switch x {
				case "replace", "keepExisting", "merge", "fail":
					o.whenMatched = x
				default:
					return nil, mongoerr.Errorf(mongoerr.BadValue, "Enumeration value '%s' for field '$merge.whenMatched' is not a valid value.", x)
				}
			case bson.A:
				o.whenMatched, matchedPipeline = "pipeline", x
			default:
				return nil, mongoerr.Errorf(mongoerr.MergeWhenMatchedBad, "$merge 'whenMatched' field must be either a string or an array, but found %s", mql.TypeName(e.Value))
			}
		case "whenNotMatched":
			x, ok := e.Value.(string)
			if !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '$merge.whenNotMatched' is the wrong type '%s', expected type 'string'", mql.TypeName(e.Value))
			}
			switch x {
			case "insert", "discard", "fail":
				o.whenNotMatched = x
			default:
				return nil, mongoerr.Errorf(mongoerr.BadValue, "Enumeration value '%s' for field '$merge.whenNotMatched' is not a valid value.", x)
			}
		default:
			return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field '$merge.%s' is an unknown field.", e.Key)
		}
	}
	if !hasInto {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field '$merge.into' is missing but a required field")
	}
	if matchedPipeline != nil {
		u, err := compileUpdateSpec("$merge.whenMatched", matchedPipeline, nil, nil)
		if err != nil {
			return nil, err
		}
		o.matched = u
	} else if o.matchedLet != nil {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "Cannot use 'let' variables with 'whenMatched: %s' mode", o.whenMatched)
	}
	return o, nil
}

// runOutStage writes the documents of src to the stage's target and
// returns the aggregate's reply: an exhausted cursor with an empty batch.
// $out replaces the target atomically (documents written to a temporary
// collection renamed over the target, keeping the target's indexes and
// options, as MongoDB does); $merge writes document by document, in
// batches, like MongoDB's (which is not atomic either).
func (s *Server) runOutStage(req *Request, ns string, o *outStage, src iter.Seq2[bson.D, error], vars map[string]any) (bson.D, error) {
	var err error
	if o.merge {
		err = s.runMerge(o, src, vars)
	} else {
		// $out creates, fills and renames its temporary collection while
		// the pipeline runs: every failure is an executor error.
		err = withExecutorContext(s.runOut(o, src), execContextAggregate)
	}
	if err != nil {
		return nil, err
	}
	if err := s.finishWrite(req); err != nil {
		return nil, err
	}
	return bson.D{{Key: "cursor", Value: bson.D{
		{Key: "firstBatch", Value: bson.A{}},
		{Key: "id", Value: int64(0)},
		{Key: "ns", Value: ns},
	}}}, nil
}

// runOut writes src into a temporary collection and renames it over the
// target; on any error the temporary collection is dropped and the target
// is untouched.
func (s *Server) runOut(o *outStage, src iter.Seq2[bson.D, error]) (err error) {
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return fmt.Errorf("$out: name temporary collection: %w", err)
	}
	tmp := "tmp.agg_out." + hex.EncodeToString(suffix[:])
	err = s.store.Update(func(tx *storage.Tx) error {
		var opts bson.D
		var indexes []storage.IndexSpec
		if target, err := tx.Collection(o.db, o.coll); err != nil {
			return err
		} else if target != nil {
			opts, indexes = target.Options, target.Indexes
		}
		c, err := tx.CreateCollection(o.db, tmp, opts)
		if err != nil {
			return err
		}
		for _, spec := range indexes {
			if spec.Name == "_id_" {
				continue
			}
			if _, err := tx.CreateIndex(c, spec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("$out: %w", err)
	}
	defer func() {
		if err != nil {
			_ = s.store.Update(func(tx *storage.Tx) error {
				_, derr := tx.DropCollection(o.db, tmp)
				return derr
			})
		}
	}()
	if err := s.writeBatches(src, func(tx *storage.Tx, batch []bson.D) error {
		c, err := tx.Collection(o.db, tmp)
		if err != nil {
			return err
		}
		if c == nil {
			return mongoerr.Errorf(mongoerr.NamespaceNotFound, "$out: temporary collection %s.%s was dropped", o.db, tmp)
		}
		for _, d := range batch {
			d = withID(d)
			if err := checkStorable(d); err != nil {
				return err
			}
			// $out inserts as the insert command does.
			filled, err := fillEmptyTimestamps(tx, d)
			if err != nil {
				return err
			}
			if _, err := tx.Insert(c, filled); err != nil {
				return dataErr(err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return s.store.Update(func(tx *storage.Tx) error {
		return tx.RenameCollection(o.db, tmp, o.db, o.coll, true)
	})
}

// runMerge merges src into the target collection (created when missing).
func (s *Server) runMerge(o *outStage, src iter.Seq2[bson.D, error], vars map[string]any) error {
	onID := len(o.on) == 1 && o.on[0] == "_id"
	var index string // the unique index serving "on" when it is not _id
	if err := s.store.Update(func(tx *storage.Tx) error {
		c, err := tx.Collection(o.db, o.coll)
		if err != nil {
			return err
		}
		if !onID {
			if index = uniqueIndexFor(c, o.on); index == "" {
				return mongoerr.Errorf(mongoerr.MergeOnNoUniqueIndex, "Cannot find index to verify that join fields will be unique")
			}
			return nil
		}
		if c == nil {
			_, err = tx.CreateCollection(o.db, o.coll, nil)
		}
		return err
	}); err != nil {
		return err
	}
	var letExprs []struct {
		name string
		expr *mql.Expr
	}
	for _, e := range o.matchedLet {
		x, err := mql.CompileExprVars(e.Value, vars)
		if err != nil {
			return err
		}
		letExprs = append(letExprs, struct {
			name string
			expr *mql.Expr
		}{e.Key, x})
	}
	now := time.Now()
	// The checks above are MongoDB's parse-time checks; what fails from here
	// on (the pipeline, a write) fails while the pipeline runs.
	return withExecutorContext(s.writeBatches(src, func(tx *storage.Tx, batch []bson.D) error {
		c, err := tx.EnsureCollection(o.db, o.coll)
		if err != nil {
			return err
		}
		for _, doc := range batch {
			if onID {
				doc = withID(doc)
			}
			if err := checkStorable(doc); err != nil {
				return err
			}
			var rid storage.RecordID
			var existing bson.D
			var found bool
			if onID {
				id, _ := fieldOf(doc, "_id")
				rid, existing, found, err = tx.Get(c, id)
			} else {
				var vals []any
				if vals, err = mergeOnValues(doc, o.on, c, index); err == nil {
					rid, existing, found, err = tx.LookupUnique(c, index, vals)
				}
			}
			if err != nil {
				return dataErr(err)
			}
			if !found {
				switch o.whenNotMatched {
				case "discard":
					continue
				case "fail":
					return mongoerr.Errorf(mongoerr.MergeStageNoMatchingDocument, "$merge could not find a matching document in the target collection for at least one document in the source collection")
				}
				ins := withID(doc)
				if o.whenMatched != "merge" && o.whenMatched != "keepExisting" {
					// MongoDB inserts it with an insert, a replacement
					// upsert or an upsert of the supplied document, which
					// fill in empty timestamps; merge and keepExisting
					// upsert with $set and $setOnInsert, which do not.
					if ins, err = fillEmptyTimestamps(tx, ins); err != nil {
						return err
					}
				}
				if _, err := tx.Insert(c, ins); err != nil {
					return dataErr(err)
				}
				continue
			}
			var out bson.D
			op := "update"
			switch o.whenMatched {
			case "keepExisting":
				continue
			case "fail":
				// Inserting the document fails on the unique index that matched,
				// with the DuplicateKey error MongoDB reports.
				if _, err := tx.Insert(c, withID(doc)); err != nil {
					return dataErr(err)
				}
				return mongoerr.Errorf(mongoerr.DuplicateKey, "$merge: a document matched with whenMatched: fail")
			case "replace":
				// A replacement update, which fills in empty timestamps.
				filled, err := fillEmptyTimestamps(tx, doc)
				if err != nil {
					return err
				}
				out, op = mergeKeepID(existing, filled), "replace"
			case "merge":
				out = mergeKeepID(existing, mergeFields(existing, doc))
			case "pipeline":
				v := make(map[string]any, len(vars)+len(letExprs)+1)
				for k, x := range vars {
					v[k] = x
				}
				v["new"] = doc
				for _, le := range letExprs {
					x, err := le.expr.EvalVars(doc, vars)
					if err != nil {
						return err
					}
					v[le.name] = x
				}
				if out, _, _, _, err = o.matched.withVars(v).apply(existing, 0, false, now); err != nil {
					return err
				}
			}
			if id, ok := fieldOf(out, "_id"); ok {
				if old, _ := fieldOf(existing, "_id"); !mql.Equal(old, id) {
					return mongoerr.Errorf(mongoerr.ImmutableField, "$merge write error: the (immutable) field '_id' would be altered to _id: %s", mql.FormatValue(id))
				}
			}
			if err := checkStorable(out); err != nil {
				return err
			}
			if err := tx.Replace(c, rid, out, op); err != nil {
				return dataErr(err)
			}
		}
		return nil
	}), execContextAggregate)
}

// writeBatches reads src and hands it to write in batches of outBatch
// documents, each batch in its own storage transaction. Reading happens
// outside any transaction (the source scan uses its own read transactions).
func (s *Server) writeBatches(src iter.Seq2[bson.D, error], write func(tx *storage.Tx, batch []bson.D) error) error {
	batch := make([]bson.D, 0, outBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.store.Update(func(tx *storage.Tx) error { return write(tx, batch) })
		batch = batch[:0]
		return err
	}
	for d, err := range src {
		if err != nil {
			return err
		}
		batch = append(batch, d)
		if len(batch) == outBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// uniqueIndexFor returns the name of a unique, non-partial index of c whose
// key fields are exactly on (in any order), or "".
func uniqueIndexFor(c *storage.Collection, on []string) string {
	if c == nil {
		return ""
	}
	for _, spec := range c.Indexes {
		if !spec.Unique || spec.PartialFilter != nil || len(spec.Key) != len(on) {
			continue
		}
		all := true
		for _, k := range spec.Key {
			if !slices.Contains(on, k.Key) {
				all = false
				break
			}
		}
		if all {
			return spec.Name
		}
	}
	return ""
}

// mergeOnValues returns doc's values of the "on" fields in the order of the
// index's key, refusing missing, null, undefined and array values as
// MongoDB does.
func mergeOnValues(doc bson.D, on []string, c *storage.Collection, index string) ([]any, error) {
	var key bson.D
	for _, spec := range c.Indexes {
		if spec.Name == index {
			key = spec.Key
		}
	}
	vals := make([]any, 0, len(key))
	for _, k := range key {
		var cur any = doc
		parts := strings.Split(k.Key, ".")
		for i, p := range parts {
			d, ok := cur.(bson.D)
			if !ok {
				cur = nil
				break
			}
			v, present := fieldOf(d, p)
			if !present {
				cur = nil
				break
			}
			if _, isArr := v.(bson.A); isArr && i < len(parts)-1 {
				cur = nil
				break
			}
			cur = v
		}
		switch cur.(type) {
		case nil, bson.Undefined, bson.Null:
			return nil, mongoerr.Errorf(mongoerr.MergeOnFieldMissing, "$merge write error: 'on' field '%s' cannot be missing, null, undefined or an array", k.Key)
		case bson.A:
			return nil, mongoerr.Errorf(mongoerr.MergeOnFieldArray, "$merge write error: 'on' field '%s' cannot be missing, null, undefined or an array", k.Key)
		}
		vals = append(vals, cur)
	}
	return vals, nil
}

// mergeFields returns existing with every top-level field of doc set
// (whenMatched: merge).
func mergeFields(existing, doc bson.D) bson.D {
	out := slices.Clone(existing)
	for _, e := range doc {
		if i := slices.IndexFunc(out, func(x bson.E) bool { return x.Key == e.Key }); i >= 0 {
			out[i].Value = e.Value
		} else {
			out = append(out, e)
		}
	}
	return out
}

// mergeKeepID returns doc with existing's _id first when doc has none.
func mergeKeepID(existing, doc bson.D) bson.D {
	if _, ok := fieldOf(doc, "_id"); ok {
		return withID(doc)
	}
	id, _ := fieldOf(existing, "_id")
	return append(bson.D{{Key: "_id", Value: id}}, doc...)
}

// documentsSource evaluates a leading {$documents: <expression>} stage of a
// collection-less aggregate: the expression must give an array of
// documents, which become the pipeline's input.
func documentsSource(spec any, vars map[string]any) (iter.Seq2[bson.D, error], error) {
	x, err := mql.CompileExprVars(spec, vars)
	if err != nil {
		return nil, err
	}
	v, err := x.EvalVars(bson.D{}, vars)
	if err != nil {
		return nil, err
	}
	arr, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.DocumentsNotArrayOfObject, "error during aggregation :: caused by :: an array is expected")
	}
	docs := make([]bson.D, len(arr))
	for i, el := range arr {
		d, ok := el.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.ReplaceRootNewRootNotObject, "'newRoot' expression must evaluate to an object, but resulting value was: %s. Type of resulting value: '%s'.", mql.FormatValue(el), mql.TypeName(el))
		}
		docs[i] = d
	}
	return func(yield func(bson.D, error) bool) {
		for _, d := range docs {
			if !yield(d, nil) {
				return
			}
		}
	}, nil
}
