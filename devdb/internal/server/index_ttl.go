package server

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mql"
)

// ttlInterval is how often expired documents are removed, MongoDB's default
// ttlMonitorSleepSecs (60 s).
const ttlInterval = 60 * time.Second

// ttlDeleteBatch bounds the documents one TTL transaction deletes.
const ttlDeleteBatch = 10000

// startTTLMonitor runs the TTL monitor until the server's context ends.
func (s *Server) startTTLMonitor() {
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		t := time.NewTicker(ttlInterval)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case now := <-t.C:
				if _, err := s.ttlPass(s.ctx, now); err != nil {
					s.log.Warn("devdb: TTL pass failed", "err", err)
				}
			}
		}
	}()
}

// ttlIndex is one TTL index to enforce.
type ttlIndex struct {
	db, coll, field string
	expire          time.Duration
}

// ttlPass deletes, as MongoDB's TTL monitor does, every document whose TTL
// field (a date, or an array holding dates: the earliest counts) is older
// than now minus the index's expireAfterSeconds. Documents without a date
// there never expire. Deletions are ordinary deletes (with oplog entries,
// so change streams see them). It returns the number of deleted documents.
func (s *Server) ttlPass(ctx context.Context, now time.Time) (int, error) {
	var idx []ttlIndex
	err := s.store.View(func(tx *storage.Tx) error {
		cols, err := tx.Collections("")
		if err != nil {
			return err
		}
		for _, c := range cols {
			for _, ix := range c.Indexes {
				if len(ix.Key) != 1 {
					continue
				}
				v, ok := fieldOf(ix.Extra, "expireAfterSeconds")
				if !ok {
					continue
				}
				secs, ok := mql.ToFloat64(v)
				if !ok || secs < 0 {
					continue
				}
				idx = append(idx, ttlIndex{db: c.DB, coll: c.Name, field: ix.Key[0].Key, expire: time.Duration(secs * float64(time.Second))})
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ttl: list indexes: %w", err)
	}
	total := 0
	for _, ix := range idx {
		cutoff := bson.NewDateTimeFromTime(now.Add(-ix.expire))
		filter := bson.D{{Key: ix.field, Value: bson.D{{Key: "$lt", Value: cutoff}}}}
		plan, err := compileQuery(filter, nil)
		if err != nil {
			return total, fmt.Errorf("ttl: compile filter: %w", err)
		}
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			n := 0
			err := s.store.Update(func(tx *storage.Tx) error {
				n = 0
				c, err := tx.Collection(ix.db, ix.coll)
				if err != nil || c == nil {
					return err
				}
				var rids []storage.RecordID
				err = plan.each(tx, c, func(rid storage.RecordID, _ bson.D) (bool, error) {
					rids = append(rids, rid)
					return len(rids) < ttlDeleteBatch, nil
				})
				if err != nil {
					return err
				}
				for _, rid := range rids {
					if _, err := tx.Delete(c, rid); err != nil {
						return err
					}
				}
				n = len(rids)
				return nil
			})
			if err != nil {
				return total, fmt.Errorf("ttl: delete expired from %s.%s: %w", ix.db, ix.coll, err)
			}
			total += n
			if n < ttlDeleteBatch {
				break
			}
		}
	}
	return total, nil
}
