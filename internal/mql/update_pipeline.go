package mql

import (
	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// updPipelineStages are the stages MongoDB allows in an update pipeline.
var updPipelineStages = map[string]bool{
	"$addFields": true, "$set": true, "$project": true, "$unset": true,
	"$replaceRoot": true, "$replaceWith": true,
}

// CompilePipelineUpdate compiles an update given as an aggregation pipeline
// ([{$set: ...}, {$unset: ...}]). Only $addFields, $set, $project, $unset,
// $replaceRoot and $replaceWith are allowed (others fail with 72
// InvalidOptions, as in MongoDB); stage errors are those of
// CompilePipeline. The result's Apply replaces the document with the
// pipeline's output, keeping the original _id when the output has none.
func CompilePipelineUpdate(stages []bson.D) (*Update, error) {
	for _, s := range stages {
		if len(s) == 1 && !updPipelineStages[s[0].Key] {
			return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "%s is not allowed to be used within an update", s[0].Key)
		}
	}
	p, err := CompilePipeline(stages)
	if err != nil {
		return nil, err
	}
	return &Update{pipeline: p}, nil
}

// applyPipeline runs a pipeline update on one document with the rules of
// MongoDB's replacement updates: a missing _id is restored (first), a
// different _id is an error (66 ImmutableField), and an output identical to
// the input is a no-op.
func (u *Update) applyPipeline(doc bson.D, _ ApplyContext) (bson.D, bool, error) {
	out, keep, err := u.pipeline.ApplyOne(doc)
	if err != nil {
		return nil, false, err
	}
	if !keep {
		return doc, false, nil
	}
	oldID, hadID := updLookup(doc, "_id")
	newID, hasID := updLookup(out, "_id")
	switch {
	case hadID && !hasID:
		withID := make(bson.D, 0, len(out)+1)
		withID = append(withID, bson.E{Key: "_id", Value: oldID})
		out = append(withID, out...)
	case hadID && !Identical(oldID, newID):
		return nil, false, mongoerr.Errorf(mongoerr.ImmutableField, "After applying the update, the (immutable) field '_id' was found to have been altered to %s", updFormatElement("_id", newID))
	}
	if Identical(out, doc) {
		return doc, false, nil
	}
	return out, true, nil
}
