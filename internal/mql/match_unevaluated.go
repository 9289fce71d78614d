package mql

import (
	"github.com/changehook/changehook/internal/mongoerr"
)

// unevaluatedOperators are the query operators MongoDB evaluates in a
// $match (a change stream's included) that mql does not implement.
var unevaluatedOperators = map[string]bool{
	"$geoWithin":     true,
	"$geoIntersects": true,
	"$within":        true, // MongoDB's deprecated spelling of $geoWithin
	"$sampleRate":    true,
}

// IsUnevaluatedOperator reports whether name is a query operator MongoDB
// evaluates in a $match but mql does not: $geoWithin (and its old
// spelling $within), $geoIntersects and $sampleRate. A filter using one
// fails to compile with an *UnevaluatedError.
func IsUnevaluatedOperator(name string) bool { return unevaluatedOperators[name] }

// UnevaluatedError is the error of compiling a filter that uses a query
// operator MongoDB evaluates but mql does not (IsUnevaluatedOperator). It
// wraps the NotImplemented *mongoerr.Error that devdb answers with, so
// errors.As finds either.
type UnevaluatedError struct {
	// Operator is the operator's name, such as "$geoWithin".
	Operator string
	err      *mongoerr.Error
}

// unevaluated returns the *UnevaluatedError of op.
func unevaluated(op string) *UnevaluatedError {
	return &UnevaluatedError{Operator: op, err: mongoerr.Errorf(mongoerr.NotImplemented, "%s is not supported by devdb", op)}
}

// Error returns the wrapped error's text: "NotImplemented: $geoWithin is
// not supported by devdb".
func (e *UnevaluatedError) Error() string { return e.err.Error() }

// Unwrap returns the NotImplemented *mongoerr.Error.
func (e *UnevaluatedError) Unwrap() error { return e.err }
