package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// DeadLettersIndex is the name of the dead letters' index on
// {trigger: 1, deadLetteredAt: 1, _id: 1}. It serves every dead-letter
// query: one trigger's dead letters oldest first (equality on trigger, then
// the index order) and every trigger's, ordered by trigger then time (the
// whole index order), so listing, replaying and purging never need an
// in-memory sort, whatever the number or size of the dead letters.
const DeadLettersIndex = "trigger_1_deadLetteredAt_1__id_1"

// indexSpec is one index of a state collection.
type indexSpec struct {
	// collection is the state collection's name.
	collection string
	// model is the index; its name is always set so that logs and
	// conflicts name it.
	model mongo.IndexModel
}

// indexSpecs lists every index changehook keeps on its state collections.
// Each is created by EnsureIndexes; add new ones here.
func (s *Store) indexSpecs() []indexSpec {
	specs := []indexSpec{
		{collection: DeadLettersCollection, model: mongo.IndexModel{
			Keys:    bson.D{{Key: "trigger", Value: 1}, {Key: "deadLetteredAt", Value: 1}, {Key: "_id", Value: 1}},
			Options: options.Index().SetName(DeadLettersIndex),
		}},
	}
	for _, m := range attemptIndexes(s.retention()) {
		specs = append(specs, indexSpec{collection: AttemptsCollection, model: m})
	}
	return specs
}

// EnsureIndexes creates every index of the state collections that does not
// exist yet (creating a missing collection). It is idempotent: an index that
// already exists with the same key pattern and options is left as it is. It
// is called when run and dev start and by the state commands; an error names
// the collection and the index. The attempts collection's TTL index follows
// SetHistoryRetention: when the retention changed, its expireAfterSeconds
// is changed first; a history stored in the older layout of one document per
// record is converted into buckets first.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	db := s.checkpoints.Database()
	if err := s.prepareAttempts(ctx); err != nil {
		return err
	}
	for _, spec := range s.indexSpecs() {
		if _, err := db.Collection(spec.collection).Indexes().CreateOne(ctx, spec.model); err != nil {
			return fmt.Errorf("create index %s on %s.%s: %w", indexName(spec.model), db.Name(), spec.collection, err)
		}
	}
	return nil
}

// indexName returns the name set on m (every spec sets one).
func indexName(m mongo.IndexModel) string {
	if m.Options != nil {
		var o options.IndexOptions
		for _, set := range m.Options.Opts {
			_ = set(&o)
		}
		if o.Name != nil {
			return *o.Name
		}
	}
	return fmt.Sprint(m.Keys)
}
