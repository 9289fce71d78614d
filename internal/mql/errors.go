// Package mql evaluates the MongoDB query language without any I/O: BSON
// comparison and sort order, query filters, sort specifications,
// projections, update operators and aggregation expressions and stages.
//
// Values follow the shared value model described in ARCHITECTURE.md:
// documents are bson.D, arrays bson.A, scalars the Go types the driver
// decodes into any, and an absent field is Missing.
//
// Every error a query or update can cause in MongoDB is a *mongoerr.Error
// with MongoDB's code and wording.
package mql

import "github.com/changehook/changehook/internal/mongoerr"

// badValue returns a BadValue *mongoerr.Error with a formatted message.
func badValue(format string, args ...any) *mongoerr.Error {
	return mongoerr.Errorf(mongoerr.BadValue, format, args...)
}
