package server

import (
	"context"
	"fmt"
	"iter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// collStatsSource runs a leading $collStats stage: one document {ns, host,
// localTime, storageStats?, count?} for db.coll. storageStats has the
// collection's document count and BSON size exactly; its storage and index
// sizes are devdb's estimate (collStats.storageSize, indexSize). latencyStats
// and queryExecStats are refused: devdb does not keep them.
func (s *Server) collStatsSource(req *Request, db, coll string, spec any) (iter.Seq2[bson.D, error], error) {
	if coll == "" {
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "$collStats must be run against a collection namespace")
	}
	if req.txn != nil {
		return nil, mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "Operation not permitted in transaction :: caused by :: $collStats cannot run in a multi-document transaction")
	}
	d, ok := spec.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "$collStats must take a nested object but found: %v", spec)
	}
	var storageStats, count bool
	scale := int64(1)
	for _, e := range d {
		opts, isDoc := e.Value.(bson.D)
		switch e.Key {
		case "storageStats", "count":
			if !isDoc {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '$collStats.%s' is the wrong type '%s', expected type 'object'", e.Key, mql.TypeName(e.Value))
			}
			if e.Key == "count" {
				count = true
				continue
			}
			storageStats = true
			v, ok := fieldOf(opts, "scale")
			var err error
			if scale, err = scaleArg("$collStats.storageStats.scale", v, ok); err != nil {
				return nil, err
			}
		case "latencyStats", "queryExecStats":
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not keep $collStats' %s", e.Key)
		default:
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "BSON field '$collStats.%s' is an unknown field.", e.Key)
		}
	}
	out := bson.D{{Key: "ns", Value: db + "." + coll}, {Key: "host", Value: s.advertised}, {Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())}}
	if storageStats || count {
		cs, found, err := s.collectionStats(db, coll)
		if err != nil {
			return nil, err
		}
		if !found {
			what := "storageStats"
			if !storageStats {
				what = "count"
			}
			return nil, mongoerr.Errorf(mongoerr.NamespaceNotFound, "Unable to retrieve %s in $collStats stage :: caused by :: Collection [%s.%s] not found.", what, db, coll)
		}
		if storageStats {
			out = append(out, bson.E{Key: "storageStats", Value: s.storageStats(cs, scale)})
		}
		if count {
			out = append(out, bson.E{Key: "count", Value: statNumber(cs.n)})
		}
	}
	return func(yield func(bson.D, error) bool) { yield(out, nil) }, nil
}

// collStats is what devdb knows of a collection's size: its document
// count, their total BSON size, whether it is capped (the oplog) and its
// indexes.
type collStats struct {
	n, size int64
	capped  bool
	indexes []storage.IndexSpec
}

// collectionStats returns db.coll's collStats (found false when it does not
// exist); a view is CommandNotSupportedOnView.
func (s *Server) collectionStats(db, coll string) (cs collStats, found bool, err error) {
	err = s.store.View(func(tx *storage.Tx) error {
		if isOplog(db, coll) {
			cs, found = collStats{n: tx.OplogCount(), size: tx.OplogSize(), capped: true}, true
			return nil
		}
		c, err := tx.Collection(db, coll)
		if err != nil || c == nil {
			return err
		}
		if _, _, isView := viewDefinition(c.Options); isView {
			return mongoerr.Errorf(mongoerr.CommandNotSupportedOnView, "Namespace %s.%s is a view, not a collection", db, coll)
		}
		cs.n, cs.size = tx.Stats(c)
		cs.indexes, found = c.Indexes, true
		return nil
	})
	if err != nil {
		return collStats{}, false, fmt.Errorf("statistics of %s.%s: %w", db, coll, dataErr(err))
	}
	return cs, found, nil
}

// Sizes devdb estimates in 4 KiB pages (pageSize), as listDatabases'
// sizeOnDisk: a collection's storage is its documents' bytes rounded up
// plus one page, an index one page per 32 KiB of documents, at least one.
func (cs collStats) storageSize() int64 { return (cs.size+pageSize-1)/pageSize*pageSize + pageSize }
func (cs collStats) indexSize() int64 {
	return max(pageSize, (cs.size/8+pageSize-1)/pageSize*pageSize)
}

// storageStats is $collStats' storageStats (and, flattened, the collStats
// command's reply) of cs, sizes divided by scale.
func (s *Server) storageStats(cs collStats, scale int64) bson.D {
	indexSizes := bson.D{}
	var totalIndex int64
	for _, ix := range cs.indexes {
		indexSizes = append(indexSizes, bson.E{Key: ix.Name, Value: statNumber(cs.indexSize() / scale)})
		totalIndex += cs.indexSize()
	}
	st := bson.D{{Key: "size", Value: statNumber(cs.size / scale)}, {Key: "count", Value: statNumber(cs.n)}}
	if cs.n > 0 {
		st = append(st, bson.E{Key: "avgObjSize", Value: statNumber(cs.size / cs.n)})
	}
	st = append(st,
		bson.E{Key: "numOrphanDocs", Value: int32(0)},
		bson.E{Key: "storageSize", Value: statNumber(cs.storageSize() / scale)},
		bson.E{Key: "freeStorageSize", Value: int32(0)},
		bson.E{Key: "capped", Value: cs.capped})
	if cs.capped {
		st = append(st, bson.E{Key: "maxSize", Value: statNumber(s.store.OplogMaxBytes() / scale)})
	}
	return append(st,
		bson.E{Key: "nindexes", Value: int32(len(cs.indexes))},
		bson.E{Key: "indexBuilds", Value: bson.A{}},
		bson.E{Key: "totalIndexSize", Value: statNumber(totalIndex / scale)},
		bson.E{Key: "totalSize", Value: statNumber((cs.storageSize() + totalIndex) / scale)},
		bson.E{Key: "indexSizes", Value: indexSizes},
		bson.E{Key: "scaleFactor", Value: int32(min(scale, 1<<31-1))})
}

// scaleArg reads a statistics command's optional scale (a positive
// integer; 1 when absent).
func scaleArg(field string, v any, present bool) (int64, error) {
	if !present || v == nil {
		return 1, nil
	}
	n, err := intValue(field, v)
	if err != nil {
		return 0, err
	}
	if n < 1 {
		return 0, mongoerr.Errorf(mongoerr.BadValue, "BSON field 'scale' value must be >= 1, actual value '%d'", n)
	}
	return n, nil
}

// cmdCollStats answers collStats {collStats: coll, scale?}: $collStats'
// storageStats flattened beside ns, as MongoDB 6.0's deprecated command
// does; a collection that does not exist has zero sizes (no error).
func (s *Server) cmdCollStats(_ context.Context, req *Request) (bson.D, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return nil, err
	}
	v, ok := fieldOf(req.Body, "scale")
	scale, err := scaleArg("collStats.scale", v, ok)
	if err != nil {
		return nil, err
	}
	cs, _, err := s.collectionStats(req.DB, coll)
	if err != nil {
		return nil, err
	}
	return append(bson.D{{Key: "ns", Value: req.DB + "." + coll}}, s.storageStats(cs, scale)...), nil
}

// cmdDBStats answers dbStats {dbStats: 1, scale?}: the database's
// collections (local's includes the oplog), views, documents and sizes
// (estimated as listDatabases' are), summed over its collections.
func (s *Server) cmdDBStats(_ context.Context, req *Request) (bson.D, error) {
	if err := storage.ValidateDBName(req.DB); err != nil {
		return nil, dataErr(err)
	}
	v, ok := fieldOf(req.Body, "scale")
	scale, err := scaleArg("dbStats.scale", v, ok)
	if err != nil {
		return nil, err
	}
	var colls, views, indexes int64
	var objects, data, stor, index int64
	add := func(cs collStats) {
		colls++
		objects += cs.n
		data += cs.size
		stor += cs.storageSize()
		indexes += int64(len(cs.indexes))
		index += int64(len(cs.indexes)) * cs.indexSize()
	}
	err = s.store.View(func(tx *storage.Tx) error {
		cols, err := tx.Collections(req.DB)
		if err != nil {
			return err
		}
		for _, c := range cols {
			if _, _, isView := viewDefinition(c.Options); isView {
				views++
				continue
			}
			n, size := tx.Stats(c)
			add(collStats{n: n, size: size, indexes: c.Indexes})
		}
		if req.DB == oplogDB {
			add(collStats{n: tx.OplogCount(), size: tx.OplogSize(), capped: true})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("statistics of %s: %w", req.DB, dataErr(err))
	}
	out := bson.D{
		{Key: "db", Value: req.DB},
		{Key: "collections", Value: statNumber(colls)},
		{Key: "views", Value: statNumber(views)},
		{Key: "objects", Value: statNumber(objects)},
	}
	avg := float64(0)
	if objects > 0 {
		avg = float64(data) / float64(objects)
	}
	// Sizes are divided as MongoDB divides them, in floating point.
	scaled := func(n int64) float64 { return float64(n) / float64(scale) }
	return append(out,
		bson.E{Key: "avgObjSize", Value: avg},
		bson.E{Key: "dataSize", Value: scaled(data)},
		bson.E{Key: "storageSize", Value: scaled(stor)},
		bson.E{Key: "indexes", Value: statNumber(indexes)},
		bson.E{Key: "indexSize", Value: scaled(index)},
		bson.E{Key: "totalSize", Value: scaled(stor + index)},
		bson.E{Key: "scaleFactor", Value: statNumber(scale)}), nil
}

// statNumber is a count or size as MongoDB's statistics append it
// (BSONObjBuilder::appendNumber): an int below 2^30 in magnitude, else a
// long.
func statNumber(n int64) any {
	if -(1<<30) < n && n < 1<<30 {
		return int32(n)
	}
	return n
}
