package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// compileUserStages compiles the validated stages that follow $changeStream
// with mql's pipeline compiler; every allowed stage is streaming, so each
// event goes through ApplyOne on its own.
func compileUserStages(stages []bson.D) (csPipeline, error) {
	p, err := mql.CompilePipeline(stages)
	if err != nil {
		return nil, err
	}
	if !p.Streaming() {
		return nil, mongoerr.Errorf(mongoerr.IllegalOperation, "%v is not permitted in a $changeStream pipeline", p.StageNames())
	}
	return p, nil
}
