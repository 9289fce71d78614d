package mql

import (
	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// geoQuery is the table of geospatial query operators, which devdb does
// not implement: $near and $nearSphere fail as MongoDB does without a
// geospatial index, the others with NotImplemented ($geoWithin, $within and
// $geoIntersects, which MongoDB evaluates without an index, with an
// *UnevaluatedError).
func geoQuery() map[string]queryCompiler {
	near := func([]string, bson.E, compileCx) (matchNode, error) {
		return nil, mongoerr.Errorf(mongoerr.NoQueryExecutionPlans, "error processing query: planner returned error :: caused by :: unable to find index for $geoNear query")
	}
	unsupported := func(_ []string, op bson.E, _ compileCx) (matchNode, error) {
		if IsUnevaluatedOperator(op.Key) {
			return nil, unevaluated(op.Key)
		}
		return nil, mongoerr.Errorf(mongoerr.NotImplemented, "%s is not supported by devdb", op.Key)
	}
	return map[string]queryCompiler{
		"$near":          near,
		"$nearSphere":    near,
		"$geoWithin":     unsupported,
		"$geoIntersects": unsupported,
		"$within":        unsupported,
		"$maxDistance":   unsupported,
		"$minDistance":   unsupported,
	}
}
