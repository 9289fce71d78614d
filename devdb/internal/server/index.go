package server

import (
	"context"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// indexTypes are the string values MongoDB accepts in a key pattern. devdb
// records such indexes but evaluates $text/geo queries only as mql does.
var indexTypes = map[string]bool{"text": true, "2d": true, "2dsphere": true, "hashed": true, "geoHaystack": true, "wildcard": true}

// indexName generates MongoDB's default index name: field_direction joined
// by "_" (for example a_1_b_-1).
func indexName(key bson.D) string {
	parts := make([]string, 0, 2*len(key))
	for _, e := range key {
		parts = append(parts, e.Key)
		switch v := e.Value.(type) {
		case string:
			parts = append(parts, v)
		default:
			parts = append(parts, strings.TrimSuffix(mql.FormatValue(v), ".0"))
		}
	}
	return strings.Join(parts, "_")
}

// parseIndexSpec validates one createIndexes spec. collationGiven reports
// whether it has a collation option: an index without one inherits the
// collection's default collation. A non-simple collation is kept in Extra
// as the full collation document.
func parseIndexSpec(d bson.D) (spec storage.IndexSpec, collationGiven bool, err error) {
	kv, ok := fieldOf(d, "key")
	if !ok {
		return spec, false, mongoerr.Errorf(mongoerr.FailedToParse, "Error in specification %s :: caused by :: The 'key' field is a required property of an index specification", mql.FormatValue(d))
	}
	key, ok := kv.(bson.D)
	if !ok {
		return spec, false, mongoerr.Errorf(mongoerr.TypeMismatch, "Error in specification %s :: caused by :: The field 'key' must be an object, but got %s", mql.FormatValue(d), mql.TypeName(kv))
	}
	if len(key) == 0 {
		return spec, false, mongoerr.Errorf(mongoerr.CannotCreateIndex, "Error in specification %s :: caused by :: Index keys cannot be empty.", mql.FormatValue(d))
	}
	for _, e := range key {
		if e.Key == "" || strings.HasPrefix(e.Key, "$") && e.Key != "$**" && !strings.HasSuffix(e.Key, ".$**") {
			return spec, false, mongoerr.Errorf(mongoerr.CannotCreateIndex, "Error in specification %s :: caused by :: Index key contains an illegal field name: field name starts with '$'.", mql.FormatValue(d))
		}
		switch v := e.Value.(type) {
		case string:
			if !indexTypes[v] {
				return spec, false, mongoerr.Errorf(mongoerr.CannotCreateIndex, "Error in specification %s :: caused by :: Unknown index plugin '%s'", mql.FormatValue(d), v)
			}
		case int32, int64, float64, bson.Decimal128:
			if f, _ := mql.ToFloat64(v); f == 0 {
				return spec, false, mongoerr.Errorf(mongoerr.CannotCreateIndex, "Error in specification %s :: caused by :: Values in the index key pattern can't be 0.", mql.FormatValue(d))
			}
		default:
			return spec, false, mongoerr.Errorf(mongoerr.CannotCreateIndex, "Error in specification %s :: caused by :: Values in v:2 index key pattern cannot be of type %s. Only numbers > 0, numbers < 0, and strings are allowed.", mql.FormatValue(d), mql.TypeName(v))
		}
	}
	spec.Key = key
	spec.Name = indexName(key)
	for _, e := range d {
		var err error
		switch e.Key {
		case "key", "v", "ns", "background":
		case "name":
			n, ok := e.Value.(string)
			if !ok || n == "" {
				return spec, false, mongoerr.Errorf(mongoerr.TypeMismatch, "Error in specification %s :: caused by :: The field 'name' must be a non-empty string", mql.FormatValue(d))
			}
			spec.Name = n
		case "unique":
			spec.Unique, err = boolValue("unique", e.Value)
		case "sparse":
			spec.Sparse, err = boolValue("sparse", e.Value)
		case "partialFilterExpression":
			pf, ok := e.Value.(bson.D)
			if !ok {
				return spec, false, mongoerr.Errorf(mongoerr.TypeMismatch, "Error in specification %s :: caused by :: The field 'partialFilterExpression' must be an object", mql.FormatValue(d))
			}
			if _, err := mql.CompileFilter(pf); err != nil {
				return spec, false, err
			}
			spec.PartialFilter = pf
		case "collation":
			var cd bson.D
			if cd, err = collationOption("collation", e.Value); err != nil {
				return spec, false, err
			}
			collationGiven = true
			if cd != nil {
				spec.Extra = append(spec.Extra, bson.E{Key: "collation", Value: cd})
			}
		default:
			spec.Extra = append(spec.Extra, e)
		}
		if err != nil {
			return spec, false, err
		}
	}
	if spec.Unique {
		for _, e := range key {
			if s, ok := e.Value.(string); ok && s != "" {
				return spec, false, mongoerr.Errorf(mongoerr.CannotCreateIndex, "Error in specification %s :: caused by :: Currently only single field hashed index supported unique: false. Index type %s cannot be unique", mql.FormatValue(d), s)
			}
		}
	}
	if spec.Name == "_id_" {
		if len(key) != 1 || key[0].Key != "_id" {
			return spec, false, mongoerr.Errorf(mongoerr.CannotCreateIndex, "The index name '_id_' is reserved for the _id index, which must have key pattern {_id: 1}, found key: %s", mql.FormatValue(key))
		}
	}
	return spec, collationGiven, nil
}

// cmdCreateIndexes answers createIndexes {indexes: [...]}: the collection is
// created when missing; unique indexes are built from existing documents
// and refused with DuplicateKey (11000) when they already violate it.
func (s *Server) cmdCreateIndexes(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	raw, err := docsArg(req, "indexes", nil)
	if err != nil {
		return nil, err
	}
	if err := checkWriteNS(req.DB, coll); err != nil {
		return nil, err
	}
	specs := make([]storage.IndexSpec, len(raw))
	inherit := make([]bool, len(raw))
	for i, d := range raw {
		var given bool
		if specs[i], given, err = parseIndexSpec(d); err != nil {
			return nil, err
		}
		inherit[i] = !given
		if specs[i].Name == "_id_" && specs[i].Unique {
			specs[i].Unique = false // the _id index is unique by nature; "unique" is not part of its spec
		}
	}
	return s.execWrite(req, "create indexes on", coll, nil, func(tx *storage.Tx) (bson.D, error) {
		c, err := tx.Collection(req.DB, coll)
		if err != nil {
			return nil, err
		}
		createdColl := c == nil
		if c == nil {
			if err := checkTxnCreateNS(req, req.DB, coll); err != nil {
				return nil, err
			}
			if c, err = tx.CreateCollection(req.DB, coll, nil); err != nil {
				return nil, err
			}
		}
		before := len(c.Indexes)
		createdAny := false
		for i, spec := range specs {
			if dc := c.DefaultCollation(); inherit[i] && dc != nil {
				spec.Extra = append(append(bson.D(nil), spec.Extra...), bson.E{Key: "collation", Value: dc.Document()})
			}
			created, err := tx.CreateIndex(c, spec)
			if err != nil {
				return nil, err
			}
			createdAny = createdAny || created
		}
		reply := bson.D{{Key: "numIndexesBefore", Value: int32(before)}, {Key: "numIndexesAfter", Value: int32(len(c.Indexes))}}
		if !createdAny {
			reply = append(reply, bson.E{Key: "note", Value: "all indexes already exist"})
		}
		return append(reply, bson.E{Key: "createdCollectionAutomatically", Value: createdColl}), nil
	})
}

// cmdListIndexes answers listIndexes with a cursor over index specs; a
// missing collection is NamespaceNotFound (26).
func (s *Server) cmdListIndexes(ctx context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	var docs []bson.D
	err = s.store.View(func(tx *storage.Tx) error {
		c, err := tx.Collection(req.DB, coll)
		if err != nil {
			return err
		}
		if c == nil {
			if req.DB == oplogDB && coll == oplogColl {
				// The oplog, which is no catalog entry, has no indexes.
				return nil
			}
			return mongoerr.Errorf(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", req.DB, coll)
		}
		for _, ix := range c.Indexes {
			docs = append(docs, storage.IndexSpecDocument(ix))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list indexes of %s.%s: %w", req.DB, coll, dataErr(err))
	}
	return s.sliceCursor(ctx, req, req.DB+".$cmd.listIndexes."+coll, docs)
}

// cmdDropIndexes answers dropIndexes {index: "*" | name | key pattern |
// [names]}: {nIndexesWas, msg?}.
func (s *Server) cmdDropIndexes(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	which, ok := fieldOf(req.Body, "index")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'dropIndexes.index' is missing but a required field")
	}
	return s.execWrite(req, "drop indexes of", coll, nil, func(tx *storage.Tx) (bson.D, error) {
		c, err := tx.Collection(req.DB, coll)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, mongoerr.Errorf(mongoerr.NamespaceNotFound, "ns not found %s.%s", req.DB, coll)
		}
		was := len(c.Indexes)
		all := false
		var names []string
		switch w := which.(type) {
		case string:
			if w == "*" {
				all = true
				for _, ix := range c.Indexes[1:] {
					names = append(names, ix.Name)
				}
			} else {
				names = []string{w}
			}
		case bson.A:
			for _, el := range w {
				n, ok := el.(string)
				if !ok {
					return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "dropIndexes 'index' array elements must be strings")
				}
				if n == "*" {
					return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "'*' is not allowed in an array of index names")
				}
				names = append(names, n)
			}
		case bson.D:
			found := false
			for _, ix := range c.Indexes {
				if mql.FormatValue(ix.Key) == mql.FormatValue(w) {
					names, found = []string{ix.Name}, true
					break
				}
			}
			if !found {
				return nil, mongoerr.Errorf(mongoerr.IndexNotFound, "can't find index with key: %s", mql.FormatValue(w))
			}
		default:
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'dropIndexes.index' is the wrong type '%s', expected types '[string, object, array]'", mql.TypeName(which))
		}
		for _, n := range names {
			if err := tx.DropIndex(c, n); err != nil {
				return nil, err
			}
		}
		reply := bson.D{{Key: "nIndexesWas", Value: int32(was)}}
		if all {
			reply = append(reply, bson.E{Key: "msg", Value: "non-_id indexes dropped for collection"})
		}
		return reply, nil
	})
}
