package server

import (
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
// sizes are devdb's estimate (4 KiB pages, as listDatabases' sizeOnDisk).
// latencyStats and queryExecStats are refused: devdb does not keep them.
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
			if v, ok := fieldOf(opts, "scale"); ok {
				n, err := intValue("$collStats.storageStats.scale", v)
				if err != nil {
					return nil, err
				}
				if n < 1 {
					return nil, mongoerr.Errorf(mongoerr.BadValue, "BSON field 'scale' value must be >= 1, actual value '%d'", n)
				}
				scale = n
			}
		case "latencyStats", "queryExecStats":
			return nil, mongoerr.Errorf(mongoerr.CommandNotSupported, "devdb does not keep $collStats' %s", e.Key)
		default:
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "BSON field '$collStats.%s' is an unknown field.", e.Key)
		}
	}
	out := bson.D{{Key: "ns", Value: db + "." + coll}, {Key: "host", Value: s.advertised}, {Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())}}
	if storageStats || count {
		var n, size int64
		var capped bool
		var indexes []storage.IndexSpec
		found := true
		err := s.store.View(func(tx *storage.Tx) error {
			if isOplog(db, coll) {
				n, size, capped = tx.OplogCount(), tx.OplogSize(), true
				return nil
			}
			c, err := tx.Collection(db, coll)
			if err != nil || c == nil {
				found = false
				return err
			}
			if _, _, isView := viewDefinition(c.Options); isView {
				return mongoerr.Errorf(mongoerr.CommandNotSupportedOnView, "Namespace %s.%s is a view, not a collection", db, coll)
			}
			n, size = tx.Stats(c)
			indexes = c.Indexes
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("$collStats on %s.%s: %w", db, coll, dataErr(err))
		}
		if !found {
			what := "storageStats"
			if !storageStats {
				what = "count"
			}
			return nil, mongoerr.Errorf(mongoerr.NamespaceNotFound, "Unable to retrieve %s in $collStats stage :: caused by :: Collection [%s.%s] not found.", what, db, coll)
		}
		if storageStats {
			out = append(out, bson.E{Key: "storageStats", Value: s.storageStats(n, size, capped, indexes, scale)})
		}
		if count {
			out = append(out, bson.E{Key: "count", Value: statNumber(n)})
		}
	}
	return func(yield func(bson.D, error) bool) { yield(out, nil) }, nil
}

// storageStats is $collStats' storageStats of a collection of n documents
// of size bytes in all, sizes divided by scale.
func (s *Server) storageStats(n, size int64, capped bool, indexes []storage.IndexSpec, scale int64) bson.D {
	storageSize := (size+pageSize-1)/pageSize*pageSize + pageSize
	indexSizes := bson.D{}
	var totalIndex int64
	for _, ix := range indexes {
		// An index is estimated at one page per 4 KiB of documents it may
		// hold, at least one.
		est := max(pageSize, (size/8+pageSize-1)/pageSize*pageSize)
		indexSizes = append(indexSizes, bson.E{Key: ix.Name, Value: statNumber(est / scale)})
		totalIndex += est
	}
	st := bson.D{{Key: "size", Value: statNumber(size / scale)}, {Key: "count", Value: statNumber(n)}}
	if n > 0 {
		st = append(st, bson.E{Key: "avgObjSize", Value: statNumber(size / n)})
	}
	st = append(st,
		bson.E{Key: "numOrphanDocs", Value: int32(0)},
		bson.E{Key: "storageSize", Value: statNumber(storageSize / scale)},
		bson.E{Key: "freeStorageSize", Value: int32(0)},
		bson.E{Key: "capped", Value: capped})
	if capped {
		st = append(st, bson.E{Key: "maxSize", Value: statNumber(s.store.OplogMaxBytes() / scale)})
	}
	return append(st,
		bson.E{Key: "nindexes", Value: int32(len(indexes))},
		bson.E{Key: "indexBuilds", Value: bson.A{}},
		bson.E{Key: "totalIndexSize", Value: statNumber(totalIndex / scale)},
		bson.E{Key: "totalSize", Value: statNumber((storageSize + totalIndex) / scale)},
		bson.E{Key: "indexSizes", Value: indexSizes},
		bson.E{Key: "scaleFactor", Value: int32(min(scale, 1<<31-1))})
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
