package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// registerQueryCommands registers the query, update and aggregate commands.
func (s *Server) registerQueryCommands() {
	s.handle("count", s.cmdCount)
	s.handle("distinct", s.cmdDistinct)
	s.handle("find", s.cmdFind)
	s.handle("update", s.cmdUpdate)
	s.handle("findAndModify", s.cmdFindAndModify)
	s.handle("findandmodify", s.cmdFindAndModify)
	s.handle("aggregate", s.cmdAggregate)
}

// updatePipelineStages are the stages MongoDB allows in a pipeline-style update.
var updatePipelineStages = map[string]bool{
	"$addFields": true, "$set": true, "$project": true, "$unset": true, "$replaceRoot": true, "$replaceWith": true,
}

// compilePipelineUpdate compiles a pipeline-style update (the stages
// MongoDB allows there) into a streaming pipeline applied per document.
func compilePipelineUpdate(stages []bson.D) (*mql.Pipeline, error) {
	for _, st := range stages {
		if len(st) != 1 {
			return nil, mongoerr.Errorf(mongoerr.StageNotOneField, "A pipeline stage specification object must contain exactly one field.")
		}
		if !updatePipelineStages[st[0].Key] {
			return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "%s is not allowed to be used within an update", st[0].Key)
		}
	}
	return mql.CompilePipeline(stages)
}
