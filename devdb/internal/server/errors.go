package server

import (
	"context"
	"errors"

	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
)

// asCommandError converts err into the *mongoerr.Error sent to the client:
// a *mongoerr.Error (from a handler, mql or storage) as is, context
// cancellation as Interrupted and deadlines as MaxTimeMSExpired, wire errors
// as BSONObjectTooLarge or InvalidBSON, anything else as InternalError. The
// second result reports whether err was unexpected (and should be logged).
func asCommandError(err error) (*mongoerr.Error, bool) {
	var me *mongoerr.Error
	if errors.As(err, &me) {
		return me, false
	}
	switch {
	case errors.Is(err, context.Canceled):
		return mongoerr.Errorf(mongoerr.Interrupted, "operation was interrupted"), false
	case errors.Is(err, context.DeadlineExceeded):
		return mongoerr.Errorf(mongoerr.MaxTimeMSExpired, "operation exceeded time limit"), false
	case errors.Is(err, wire.ErrTooDeep):
		return mongoerr.Errorf(mongoerr.Overflow, "%s: %d", wire.ErrTooDeep.Error(), wire.MaxDepth), false
	case errors.Is(err, wire.ErrDocumentTooLarge):
		return mongoerr.Errorf(mongoerr.BSONObjectTooLarge, "%v", err), false
	case errors.Is(err, wire.ErrMalformed):
		return mongoerr.Errorf(mongoerr.InvalidBSON, "%v", err), false
	}
	return mongoerr.Errorf(mongoerr.InternalError, "%v", err), true
}
