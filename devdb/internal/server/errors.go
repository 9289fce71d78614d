package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mql"
)

// MongoDB error codes devdb reports. The names follow MongoDB's code names;
// codes mql reports too are mql's constants, so both packages name a code
// the same way and CodeNameOf finds its name in one table.
const (
	// CodeInternalError is InternalError (1): an unexpected server failure.
	CodeInternalError = mql.CodeInternalError
	// CodeBadValue is BadValue (2).
	CodeBadValue = mql.CodeBadValue
	// CodeNoSuchKey is NoSuchKey (4).
	CodeNoSuchKey = mql.CodeNoSuchKey
	// CodeFailedToParse is FailedToParse (9).
	CodeFailedToParse = mql.CodeFailedToParse
	// CodeTypeMismatch is TypeMismatch (14).
	CodeTypeMismatch = mql.CodeTypeMismatch
	// CodeAuthenticationFailed is AuthenticationFailed (18).
	CodeAuthenticationFailed int32 = 18
	// CodeIllegalOperation is IllegalOperation (20).
	CodeIllegalOperation = mql.CodeIllegalOperation
	// CodeInvalidBSON is InvalidBSON (22).
	CodeInvalidBSON int32 = 22
	// CodeInvalidNamespace is InvalidNamespace (73).
	CodeInvalidNamespace int32 = 73
	// CodeCursorNotFound is CursorNotFound (43).
	CodeCursorNotFound int32 = 43
	// CodeCommandNotFound is CommandNotFound (59).
	CodeCommandNotFound int32 = 59
	// CodeInvalidOptions is InvalidOptions (72).
	CodeInvalidOptions = mql.CodeInvalidOptions
	// CodeCommandNotSupported is CommandNotSupported (115).
	CodeCommandNotSupported int32 = 115
	// CodeCursorInUse is CursorInUse (143).
	CodeCursorInUse int32 = 143
	// CodeUnsupportedOpQueryCommand is UnsupportedOpQueryCommand (352).
	CodeUnsupportedOpQueryCommand int32 = 352
	// CodeLocation40414 is the IDL code (40414) for a missing required field.
	CodeLocation40414 int32 = 40414
	// CodeLocation40415 is the IDL code (40415) for an unknown field.
	CodeLocation40415 int32 = 40415
	// CodeLocation40571 is the code (40571) for an OP_MSG without $db.
	CodeLocation40571 int32 = 40571
	// CodeBSONObjectTooLarge is BSONObjectTooLarge (10334).
	CodeBSONObjectTooLarge int32 = 10334
	// CodeMaxTimeMSExpired is MaxTimeMSExpired (50).
	CodeMaxTimeMSExpired int32 = 50
	// CodeInterrupted is Interrupted (11601).
	CodeInterrupted int32 = 11601
	// CodeCursorKilled is CursorKilled (237).
	CodeCursorKilled int32 = 237
)

// devdbCodeName returns MongoDB's name for one of the codes above that mql
// does not define.
func devdbCodeName(code int32) (string, bool) {
	switch code {
	case CodeAuthenticationFailed:
		return "AuthenticationFailed", true
	case CodeInvalidBSON:
		return "InvalidBSON", true
	case CodeInvalidNamespace:
		return "InvalidNamespace", true
	case CodeCursorNotFound:
		return "CursorNotFound", true
	case CodeCommandNotFound:
		return "CommandNotFound", true
	case CodeCommandNotSupported:
		return "CommandNotSupported", true
	case CodeCursorInUse:
		return "CursorInUse", true
	case CodeUnsupportedOpQueryCommand:
		return "UnsupportedOpQueryCommand", true
	case CodeBSONObjectTooLarge:
		return "BSONObjectTooLarge", true
	case CodeMaxTimeMSExpired:
		return "MaxTimeMSExpired", true
	case CodeInterrupted:
		return "Interrupted", true
	case CodeCursorKilled:
		return "CursorKilled", true
	}
	return "", false
}

// CodeNameOf returns MongoDB's code name for code, or "Location<code>" for
// codes MongoDB reports without a name (and codes devdb does not know).
func CodeNameOf(code int32) string {
	if n, ok := devdbCodeName(code); ok {
		return n
	}
	return mql.CodeName(code)
}

// NewCommandError returns a *CommandError with code, its MongoDB code name
// (CodeNameOf) and a message formatted with fmt.Sprintf.
func NewCommandError(code int32, format string, args ...any) *CommandError {
	return &CommandError{Code: code, CodeName: CodeNameOf(code), Message: fmt.Sprintf(format, args...)}
}

// codedError returns the *CommandError for an error that already carries a
// MongoDB code, naming the code with CodeNameOf when codeName is empty.
func codedError(code int32, codeName, message string) *CommandError {
	if codeName == "" {
		codeName = CodeNameOf(code)
	}
	return &CommandError{Code: code, CodeName: codeName, Message: message}
}

// asCommandError converts err into the *CommandError sent to the client:
// *CommandError as is, *storage.Error and *mql.Error with their codes,
// context cancellation as Interrupted and deadlines as MaxTimeMSExpired, wire
// errors as BSONObjectTooLarge or InvalidBSON, anything else as InternalError. The
// second result reports whether err was unexpected (and should be logged).
func asCommandError(err error) (*CommandError, bool) {
	var ce *CommandError
	if errors.As(err, &ce) {
		return ce, false
	}
	var se *storage.Error
	if errors.As(err, &se) {
		return codedError(se.Code, se.CodeName, se.Message), false
	}
	var me *mql.Error
	if errors.As(err, &me) {
		return codedError(me.Code, me.CodeName, me.Message), false
	}
	switch {
	case errors.Is(err, context.Canceled):
		return NewCommandError(CodeInterrupted, "operation was interrupted"), false
	case errors.Is(err, context.DeadlineExceeded):
		return NewCommandError(CodeMaxTimeMSExpired, "operation exceeded time limit"), false
	case errors.Is(err, wire.ErrDocumentTooLarge):
		return NewCommandError(CodeBSONObjectTooLarge, "%v", err), false
	case errors.Is(err, wire.ErrMalformed):
		return NewCommandError(CodeInvalidBSON, "%v", err), false
	}
	return NewCommandError(CodeInternalError, "%v", err), true
}
