package update

import (
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// pipelineStages are the stages MongoDB allows in an update pipeline; this
// is the one list devdb checks update pipelines against.
var pipelineStages = map[string]bool{
	"$addFields": true, "$set": true, "$project": true, "$unset": true,
	"$replaceRoot": true, "$replaceWith": true,
}

// CompilePipeline compiles an update given as an aggregation pipeline
// ([{$set: ...}, {$unset: ...}]). A stage document without exactly one field
// fails with 40323 and a stage other than $addFields, $set, $project,
// $unset, $replaceRoot and $replaceWith with 72 InvalidOptions, as in
// MongoDB; other stage errors are those of mql.CompilePipeline. The caller
// replaces a document with the pipeline's output by the rules of replacement
// updates (devdb's update command).
func CompilePipeline(stages []bson.D) (*mql.Pipeline, error) {
	for _, s := range stages {
		if len(s) != 1 {
			return nil, mongoerr.Errorf(mongoerr.StageNotOneField, "A pipeline stage specification object must contain exactly one field.")
		}
		if !pipelineStages[s[0].Key] {
			return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "%s is not allowed to be used within an update", s[0].Key)
		}
	}
	return mql.CompilePipeline(stages)
}
