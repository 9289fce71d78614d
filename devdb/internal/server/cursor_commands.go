package server

import (
	"context"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// registerCursorCommands registers getMore and killCursors.
func (s *Server) registerCursorCommands() {
	s.command("getMore", "return the next batch of a cursor", s.cmdGetMore).apiV1()
	s.command("killCursors", "close cursors", s.cmdKillCursors).apiV1()
}

// cmdGetMore answers {getMore: <long>, collection, batchSize?, maxTimeMS?}
// with {cursor: {nextBatch, <ReplyFields>, id, ns}}. An awaitable cursor
// waits up to maxTimeMS (1s when absent) for data and stays open on an
// empty batch; any cursor is closed when exhausted or when the batch fails.
func (s *Server) cmdGetMore(ctx context.Context, req *Request) (bson.D, error) {
	id, ok := req.Body[0].Value.(int64)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'getMore.getMore' is the wrong type '%s', expected type 'long'", mql.TypeName(req.Body[0].Value))
	}
	collV, ok := cmdField(req.Body, "collection")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'getMore.collection' is missing but a required field")
	}
	coll, ok := collV.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'getMore.collection' is the wrong type '%s', expected type 'string'", mql.TypeName(collV))
	}
	// batchSize 0, like none, fills the batch up to its byte limit.
	batchSize := 0
	if v, ok := cmdField(req.Body, "batchSize"); ok && v != nil {
		n, err := sizeValue("getMore.batchSize", "batchSize", v)
		if err != nil {
			return nil, err
		}
		batchSize = int(min(n, math.MaxInt32))
	}
	maxTime, hasMaxTime := time.Duration(0), false
	if v, ok := cmdField(req.Body, "maxTimeMS"); ok && v != nil {
		n, err := intValue("getMore.maxTimeMS", v)
		if err != nil {
			return nil, err
		}
		if n < 0 || n > math.MaxInt32 {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "%d value for maxTimeMS is out of range [0, %d]", n, math.MaxInt32)
		}
		// Present is what counts, as on MongoDB: 0 on an awaitable cursor
		// waits not at all (not the 1 s default), and on any other cursor
		// is refused like any maxTimeMS.
		maxTime, hasMaxTime = time.Duration(n)*time.Millisecond, true
	}
	ns := req.DB + "." + coll
	c, cctx, err := s.cursors.pin(ctx, id, ns)
	if err != nil {
		return nil, err
	}
	if err := s.failGetMore(c.opts.Awaitable); err != nil {
		s.cursors.unpin(c, true) // a getMore failing after checkout destroys its cursor
		return nil, err
	}
	var await time.Duration
	switch {
	case c.opts.Awaitable && hasMaxTime:
		await = maxTime
	case c.opts.Awaitable:
		await = cursorDefaultAwait
	case hasMaxTime:
		s.cursors.unpin(c, false)
		return nil, mongoerr.Errorf(mongoerr.BadValue, "cannot set maxTimeMS on getMore command for a non-awaitData cursor")
	}
	docs, exhausted, err := c.src.NextBatch(cctx, batchSize, cursorMaxBatchBytes, await)
	if err != nil {
		killed := cctx.Err() != nil && ctx.Err() == nil
		s.cursors.unpin(c, true)
		if killed {
			// killCursors interrupts the getMore using the cursor, as
			// MongoDB's killOperation(CursorKilled) does.
			return nil, withExecutorContext(mongoerr.Errorf(mongoerr.CursorKilled, "operation was interrupted"), execContextGetMore)
		}
		return nil, withExecutorContext(err, execContextGetMore)
	}
	extra := c.src.ReplyFields()
	// A cursor killed after its batch was built is gone once unpinned,
	// but its batch goes out with its id, as on MongoDB (the next getMore
	// is CursorNotFound): an id of 0 would say it was exhausted.
	s.cursors.unpin(c, exhausted)
	if exhausted {
		id = 0
	}
	return bson.D{{Key: "cursor", Value: cursorSubdoc("nextBatch", docs, extra, id, ns)}}, nil
}

// cmdKillCursors answers {killCursors: coll, cursors: [<long>...]} with
// {cursorsKilled, cursorsNotFound, cursorsAlive, cursorsUnknown}. As on
// MongoDB a cursor is found by its id whatever collection the command
// names, and null elements are skipped (MongoDB's IDL reads null as
// absent).
func (s *Server) cmdKillCursors(_ context.Context, req *Request) (bson.D, error) {
	if _, ok := req.Body[0].Value.(string); !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'killCursors.killCursors' is the wrong type '%s', expected type 'string'", mql.TypeName(req.Body[0].Value))
	}
	idsV, ok := cmdField(req.Body, "cursors")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'killCursors.cursors' is missing but a required field")
	}
	ids, ok := idsV.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'killCursors.cursors' is the wrong type '%s', expected type 'array'", mql.TypeName(idsV))
	}
	// The whole list is read before any cursor is killed, as MongoDB
	// parses the command first.
	var valid []int64
	for i, v := range ids {
		switch id := v.(type) {
		case int64:
			valid = append(valid, id)
		case nil, bson.Undefined:
		default:
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'killCursors.cursors.%d' is the wrong type '%s', expected type 'long'", i, mql.TypeName(v))
		}
	}
	killed, notFound := bson.A{}, bson.A{}
	for _, id := range valid {
		if s.cursors.kill(id) {
			killed = append(killed, id)
		} else {
			notFound = append(notFound, id)
		}
	}
	return bson.D{
		{Key: "cursorsKilled", Value: killed},
		{Key: "cursorsNotFound", Value: notFound},
		{Key: "cursorsAlive", Value: bson.A{}},
		{Key: "cursorsUnknown", Value: bson.A{}},
	}, nil
}
