// Package mql evaluates the MongoDB query language without any I/O: BSON
// comparison and sort order, query filters, sort specifications,
// projections, update operators and aggregation expressions and stages.
//
// Values follow the shared value model described in ARCHITECTURE.md:
// documents are bson.D, arrays bson.A, scalars the Go types the driver
// decodes into any, and an absent field is Missing.
package mql

import "fmt"

// Error codes used by mql: Code + MongoDB's code name (Location<n> for codes
// MongoDB reports without a name) = MongoDB's numeric code.
const (
	// CodeInternalError is MongoDB's InternalError (1).
	CodeInternalError int32 = 1
	// CodeBadValue is MongoDB's BadValue (2).
	CodeBadValue int32 = 2
	// CodeNoSuchKey is MongoDB's NoSuchKey (4).
	CodeNoSuchKey int32 = 4
	// CodeFailedToParse is MongoDB's FailedToParse (9).
	CodeFailedToParse int32 = 9
	// CodeTypeMismatch is MongoDB's TypeMismatch (14).
	CodeTypeMismatch int32 = 14
	// CodeOverflow is MongoDB's Overflow (15).
	CodeOverflow int32 = 15
	// CodeInvalidLength is MongoDB's InvalidLength (16).
	CodeInvalidLength int32 = 16
	// CodeIllegalOperation is MongoDB's IllegalOperation (20).
	CodeIllegalOperation int32 = 20
	// CodeIndexNotFound is MongoDB's IndexNotFound (27).
	CodeIndexNotFound int32 = 27
	// CodePathNotViable is MongoDB's PathNotViable (28).
	CodePathNotViable int32 = 28
	// CodeConflictingUpdateOperators is MongoDB's ConflictingUpdateOperators (40).
	CodeConflictingUpdateOperators int32 = 40
	// CodeLocation51091 is the code MongoDB reports for a regular expression
	// that does not compile (51091, a Location code).
	CodeLocation51091 int32 = 51091
	// CodeDollarPrefixedFieldName is MongoDB's DollarPrefixedFieldName (52).
	CodeDollarPrefixedFieldName int32 = 52
	// CodeInvalidIDField is MongoDB's InvalidIdField (53).
	CodeInvalidIDField int32 = 53
	// CodeNotSingleValueField is MongoDB's NotSingleValueField (54).
	CodeNotSingleValueField int32 = 54
	// CodeEmptyFieldName is MongoDB's EmptyFieldName (56).
	CodeEmptyFieldName int32 = 56
	// CodeDottedFieldName is MongoDB's DottedFieldName (57).
	CodeDottedFieldName int32 = 57
	// CodeImmutableField is MongoDB's ImmutableField (66).
	CodeImmutableField int32 = 66
	// CodeInvalidOptions is MongoDB's InvalidOptions (72).
	CodeInvalidOptions int32 = 72
	// CodeInvalidPipelineOperator is MongoDB's InvalidPipelineOperator (168).
	CodeInvalidPipelineOperator int32 = 168
	// CodeNotImplemented is MongoDB's NotImplemented (238); mql uses it for
	// query features MongoDB has and devdb does not ($where, $jsonSchema, geo).
	CodeNotImplemented int32 = 238
	// CodeConversionFailure is MongoDB's ConversionFailure (241).
	CodeConversionFailure int32 = 241
	// CodeNoQueryExecutionPlans is MongoDB's NoQueryExecutionPlans (291).
	CodeNoQueryExecutionPlans int32 = 291
	// CodeLocation31254 is the Location code (31254) MongoDB
	// 4.4+ reports for an exclusion inside an inclusion projection.
	CodeLocation31254 int32 = 31254
	// CodeLocation31253 is the Location code (31253) MongoDB
	// 4.4+ reports for an inclusion inside an exclusion projection.
	CodeLocation31253 int32 = 31253
	// CodeLocation31250 is the Location code (31250) MongoDB reports
	// for a projection path that collides with another ("a" and "a.b").
	CodeLocation31250 int32 = 31250
	// CodeLocation31249 is the Location code (31249) MongoDB
	// reports for a path collision involving a prefix of another path.
	CodeLocation31249 int32 = 31249
)

// Error is a MongoDB query-language error: the numeric code and code name a
// MongoDB server reports with it, and a message in MongoDB's wording. devdb
// turns it into a command error {ok: 0, code, codeName, errmsg}.
type Error struct {
	// Code is MongoDB's numeric error code (for example 2 for BadValue).
	Code int32
	// Name is MongoDB's name for Code (for example "BadValue"); it is
	// "Location<code>" for codes MongoDB does not name.
	CodeName string
	// Message is the human-readable errmsg.
	Message string
}

// Error returns the message prefixed with the code name, for logs.
func (e *Error) Error() string {
	if e.CodeName == "" {
		return e.Message
	}
	return e.CodeName + ": " + e.Message
}

// Errorf returns a *Error with the given code and code name and a message
// formatted with fmt.Sprintf. An empty codeName is replaced with the name
// MongoDB uses for code ("Location<code>" when MongoDB has no name for it).
func Errorf(code int32, codeName, format string, args ...any) *Error {
	if codeName == "" {
		codeName = CodeName(code)
	}
	return &Error{Code: code, CodeName: codeName, Message: fmt.Sprintf(format, args...)}
}

// CodeName returns MongoDB's name for an error code, or "Location<code>"
// when MongoDB reports the code without a name.
func CodeName(code int32) string {
	switch code {
	case CodeInternalError:
		return "InternalError"
	case CodeBadValue:
		return "BadValue"
	case CodeNoSuchKey:
		return "NoSuchKey"
	case CodeFailedToParse:
		return "FailedToParse"
	case CodeTypeMismatch:
		return "TypeMismatch"
	case CodeOverflow:
		return "Overflow"
	case CodeInvalidLength:
		return "InvalidLength"
	case CodeIllegalOperation:
		return "IllegalOperation"
	case CodeIndexNotFound:
		return "IndexNotFound"
	case CodePathNotViable:
		return "PathNotViable"
	case CodeConflictingUpdateOperators:
		return "ConflictingUpdateOperators"
	case CodeDollarPrefixedFieldName:
		return "DollarPrefixedFieldName"
	case CodeInvalidIDField:
		return "InvalidIdField"
	case CodeNotSingleValueField:
		return "NotSingleValueField"
	case CodeEmptyFieldName:
		return "EmptyFieldName"
	case CodeDottedFieldName:
		return "DottedFieldName"
	case CodeImmutableField:
		return "ImmutableField"
	case CodeInvalidOptions:
		return "InvalidOptions"
	case CodeInvalidPipelineOperator:
		return "InvalidPipelineOperator"
	case CodeNotImplemented:
		return "NotImplemented"
	case CodeConversionFailure:
		return "ConversionFailure"
	case CodeNoQueryExecutionPlans:
		return "NoQueryExecutionPlans"
	}
	return fmt.Sprintf("Location%d", code)
}

// badValue is shorthand for Errorf(CodeBadValue, "BadValue", ...).
func badValue(format string, args ...any) *Error {
	return Errorf(CodeBadValue, "BadValue", format, args...)
}
