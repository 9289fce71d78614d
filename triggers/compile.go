package triggers

import (
	"context"
	"fmt"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Pipeline returns the aggregation stages that follow $changeStream:
//
//	{$match: {"ns.db": {$ne: <state database>}}}   (deployment-wide triggers only)
//	{$match: {$or: [{operationType: "invalidate"},
//	                {$and: [{operationType: {$in: [<operations>]}}, <match>]}]}}
//	{$project: <project>}            (only when project is set)
//
// The first stage is the loop guard: a trigger watching the whole
// deployment never sees the state database (StateDatabase), so
// changehook's own checkpoint and dead-letter writes cannot trigger
// deliveries that cause more writes. The server applies it, so those events
// never cross the network. (A database or collection trigger cannot name the
// state database: Parse rejects it.) The user's match is a conjunction with
// the operation filter, so a match on operationType still narrows it; an
// invalidate always passes so that the watch loop sees the end of the
// stream. The result is freshly built on each call.
func (t *Trigger) Pipeline() bson.A {
	ops := make(bson.A, len(t.Operations))
	for i, op := range t.Operations {
		ops[i] = op
	}
	var cond any = bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: ops}}}}
	if len(t.Match) > 0 {
		cond = bson.D{{Key: "$and", Value: bson.A{cond, slices.Clone(t.Match)}}}
	}
	var p bson.A
	if t.Database == "" && t.StateDatabase != "" {
		p = append(p, bson.D{{Key: "$match", Value: bson.D{{Key: "ns.db", Value: bson.D{{Key: "$ne", Value: t.StateDatabase}}}}}})
	}
	p = append(p, bson.D{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "operationType", Value: "invalidate"}},
		cond,
	}}}}})
	if len(t.Project) > 0 {
		p = append(p, bson.D{{Key: "$project", Value: slices.Clone(t.Project)}})
	}
	return p
}

// ChangeStreamOptions returns the change stream options the trigger's
// configuration implies: fullDocument (unless default),
// fullDocumentBeforeChange (unless off) and showExpandedEvents when an
// operation type needs it (create, createIndexes, modify, ...). Where the
// stream starts (resumeAfter, startAtOperationTime) is the watch loop's
// business and is not set here.
func (t *Trigger) ChangeStreamOptions() *options.ChangeStreamOptionsBuilder {
	o := options.ChangeStream()
	if t.FullDocument != "" && t.FullDocument != options.Default {
		o.SetFullDocument(t.FullDocument)
	}
	if t.FullDocumentBeforeChange != "" && t.FullDocumentBeforeChange != options.Off {
		o.SetFullDocumentBeforeChange(t.FullDocumentBeforeChange)
	}
	if slices.ContainsFunc(t.Operations, expandedOperation) {
		o.SetShowExpandedEvents(true)
	}
	return o
}

// Namespace describes what the trigger watches: "db.coll" for a collection,
// "db" for a database and "" for the whole deployment.
func (t *Trigger) Namespace() string {
	switch {
	case t.Database == "":
		return ""
	case t.Collection == "":
		return t.Database
	}
	return t.Database + "." + t.Collection
}

// Watch opens the trigger's change stream on client: Collection.Watch,
// Database.Watch or Client.Watch depending on the namespace, with Pipeline
// and the given options (which the caller builds from ChangeStreamOptions).
func (t *Trigger) Watch(ctx context.Context, client *mongo.Client, opts *options.ChangeStreamOptionsBuilder) (*mongo.ChangeStream, error) {
	var (
		cs  *mongo.ChangeStream
		err error
	)
	switch {
	case t.Database == "":
		cs, err = client.Watch(ctx, t.Pipeline(), opts)
	case t.Collection == "":
		cs, err = client.Database(t.Database).Watch(ctx, t.Pipeline(), opts)
	default:
		cs, err = client.Database(t.Database).Collection(t.Collection).Watch(ctx, t.Pipeline(), opts)
	}
	if err != nil {
		return nil, fmt.Errorf("open change stream for trigger %s: %w", t.Name, err)
	}
	return cs, nil
}
