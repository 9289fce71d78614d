package store

import (
	"context"
	"fmt"
	"regexp"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TriggerCheckpoints returns every checkpoint of trigger, whatever its
// partitioning: the one under the trigger's name and those under its
// partitions' keys "NAME/p<i>of<N>" for any N, ordered by key. A trigger
// whose partitions changed without `checkpoints repartition` has
// checkpoints under keys it no longer uses.
func (s *Store) TriggerCheckpoints(ctx context.Context, trigger string) ([]Checkpoint, error) {
	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "_id", Value: trigger}},
		bson.D{{Key: "_id", Value: bson.Regex{Pattern: "^" + regexp.QuoteMeta(trigger) + `/p[0-9]+of[0-9]+$`}}},
	}}, positioned}
	cur, err := s.checkpoints.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(10000))
	if err != nil {
		return nil, fmt.Errorf("list checkpoints of trigger %q: %w", trigger, err)
	}
	var docs []checkpointDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list checkpoints of trigger %q: %w", trigger, err)
	}
	out := make([]Checkpoint, len(docs))
	for i, d := range docs {
		out[i] = d.checkpoint()
	}
	return out, nil
}

// DeleteFreeLease removes the lease document of key unless someone holds it
// unexpired (by the state database's clock): used when a key is no longer
// in use (after `checkpoints repartition`). Deleting a missing or held lease
// does nothing and is not an error.
func (s *Store) DeleteFreeLease(ctx context.Context, key string) error {
	free := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "$eq", Value: bson.A{bson.D{{Key: "$ifNull", Value: bson.A{"$owner", ""}}}, ""}}},
		bson.D{{Key: "$lte", Value: bson.A{"$expiresAt", "$$NOW"}}},
	}}}
	if _, err := s.leases().DeleteOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "$expr", Value: free}}); err != nil {
		return fmt.Errorf("delete lease %q: %w", key, err)
	}
	return nil
}
