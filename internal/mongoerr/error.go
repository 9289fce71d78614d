// Package mongoerr holds MongoDB's error codes and the error type that
// carries one. The query language (internal/mql) and devdb's server and
// storage report every MongoDB error as an *Error; devdb's server sends it to
// the client as {ok: 0, code, codeName, errmsg, errorLabels}.
package mongoerr

import "fmt"

// Error is an error a MongoDB server reports: a code, a message in MongoDB's
// wording and, for some errors, labels.
type Error struct {
	// Code is MongoDB's numeric error code; Code.String() is its codeName.
	Code Code
	// Message is the errmsg sent to the client.
	Message string
	// Labels are the errorLabels sent with the error, such as
	// "ResumableChangeStreamError"; nil for none.
	Labels []string
}

// Errorf returns an *Error with code and the message fmt.Sprintf(format,
// args...).
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error returns the message prefixed with the code's name, for logs, for
// example "BadValue: unknown operator: $foo".
func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }
