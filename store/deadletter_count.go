package store

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// DeadLettersCollection returns the deadletters collection, for watching
// its change stream (a runner recounts its dead-letter gauges when it
// changes).
func (s *Store) DeadLettersCollection() *mongo.Collection { return s.deadLetters }

// CountDeadLetters returns the number of dead letters of trigger stored now
// (an index-backed count on MongoDB: deadletters has an index led by
// trigger).
func (s *Store) CountDeadLetters(ctx context.Context, trigger string) (int64, error) {
	n, err := s.deadLetters.CountDocuments(ctx, bson.D{{Key: "trigger", Value: trigger}})
	if err != nil {
		return 0, fmt.Errorf("count dead letters of trigger %q: %w", trigger, err)
	}
	return n, nil
}
