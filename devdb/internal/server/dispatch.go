package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// opCounters are serverStatus.opcounters.
type opCounters struct {
	insert, query, update, delete, getmore, command atomic.Int64
}

// count records one command the way MongoDB's opcounters do: documents
// inserted, update and delete statements, finds, getMores, other commands.
func (o *opCounters) count(req *Request) {
	switch req.Name {
	case "insert":
		o.insert.Add(int64(max(1, dispatchArrayLen(req.Body, "documents"))))
	case "update":
		o.update.Add(int64(max(1, dispatchArrayLen(req.Body, "updates"))))
	case "delete":
		o.delete.Add(int64(max(1, dispatchArrayLen(req.Body, "deletes"))))
	case "find":
		o.query.Add(1)
	case "getMore":
		o.getmore.Add(1)
	default:
		o.command.Add(1)
	}
}

// dispatchArrayLen returns the length of the array field key of d, or 0.
func dispatchArrayLen(d bson.D, key string) int {
	for _, e := range d {
		if e.Key == key {
			if a, ok := e.Value.(bson.A); ok {
				return len(a)
			}
		}
	}
	return 0
}

// cmdField returns the value of the first field key of d.
func cmdField(d bson.D, key string) (any, bool) {
	for _, e := range d {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// handleOpMsg answers an OP_MSG. Framing and structural errors close the
// connection; an oversized or undecodable document gets an error reply.
func (s *Server) handleOpMsg(c *conn, msg wire.Message) ([]byte, error) {
	flags, _ := wire.PeekMsgFlags(msg)
	moreToCome := flags&wire.FlagMoreToCome != 0
	m, err := wire.ParseMsg(msg)
	if err != nil {
		if moreToCome || !(errors.Is(err, wire.ErrDocumentTooLarge) || errors.Is(err, wire.ErrTooDeep)) {
			return nil, err
		}
		ce, _ := asCommandError(err)
		return s.encodeOpMsg(c, msg.Header.RequestID, flags, s.errorReply(ce)), nil
	}
	req, err := decodeOpMsgRequest(c, m)
	var reply bson.D
	if err != nil {
		ce, _ := asCommandError(err)
		reply = s.errorReply(ce)
	} else if reply, err = s.runCommand(c.ctx, req); err != nil {
		return nil, err
	}
	if moreToCome {
		if ok, _ := cmdField(reply, "ok"); ok != 1.0 {
			s.log.Debug("devdb: unacknowledged command failed", "conn", c.id, "reply", reply)
		}
		return nil, nil
	}
	return s.encodeOpMsg(c, msg.Header.RequestID, m.Flags, reply), nil
}

// decodeOpMsgRequest decodes an OP_MSG into a Request: the body, with each
// document sequence appended as a bson.A of bson.D under its identifier.
// The documents of an insert's "documents" sequence that storage.RawInsertable
// accepts stay undecoded, as bson.Raw elements (aliasing the message) that
// cmdInsert stores as they are.
func decodeOpMsgRequest(c *conn, m *wire.Msg) (*Request, error) {
	var body bson.D
	if err := bson.Unmarshal(m.Body, &body); err != nil {
		return nil, mongoerr.Errorf(mongoerr.InvalidBSON, "decode command: %v", err)
	}
	if len(body) == 0 {
		return nil, mongoerr.Errorf(mongoerr.FailedToParse, "empty command document")
	}
	for _, seq := range m.Sequences {
		if _, dup := cmdField(body, seq.Identifier); dup {
			return nil, mongoerr.Errorf(mongoerr.BadValue, "duplicate field %q in OP_MSG body and document sequence", seq.Identifier)
		}
		docs := make(bson.A, len(seq.Documents))
		lazy := body[0].Key == "insert" && seq.Identifier == "documents"
		for i, raw := range seq.Documents {
			if lazy && storage.RawInsertable(raw) {
				docs[i] = raw
				continue
			}
			var d bson.D
			if err := bson.Unmarshal(raw, &d); err != nil {
				return nil, mongoerr.Errorf(mongoerr.InvalidBSON, "decode document %d of sequence %q: %v", i, seq.Identifier, err)
			}
			docs[i] = d
		}
		body = append(body, bson.E{Key: seq.Identifier, Value: docs})
	}
	db, ok := cmdField(body, "$db")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.OpMsgMissingDB, "OP_MSG requests require a $db argument")
	}
	dbName, ok := db.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '$db' is the wrong type '%s', expected type 'string'", mql.TypeName(db))
	}
	if err := checkDBName(dbName); err != nil {
		return nil, err
	}
	return &Request{DB: dbName, Name: body[0].Key, Body: body, ConnID: c.id, Remote: c.remote, conn: c}, nil
}

// checkDBName applies MongoDB's database name rules.
func checkDBName(name string) error {
	if name == "" || len(name) >= 64 || strings.ContainsAny(name, "/\\. \"$\x00") {
		return mongoerr.Errorf(mongoerr.InvalidNamespace, "Invalid database name: '%s'", name)
	}
	return nil
}

// encodeOpMsg marshals reply into an OP_MSG answering requestID, with a
// CRC-32C checksum when the request's flags had FlagChecksumPresent. A reply
// that cannot be marshalled or is too large is replaced by an error reply.
// A reply appendReply encodes is encoded in place after the message's head,
// in one buffer of at least the message's size (c.replyBuf: pooled when
// large, and then valid until the reply is written).
func (s *Server) encodeOpMsg(c *conn, requestID int32, requestFlags uint32, reply bson.D) []byte {
	id, flags := c.replyID(), requestFlags&wire.FlagChecksumPresent
	// Head, body, checksum (4).
	const head, tail = wire.MsgHeadSize, 4
	if n, ok := replySize(reply); ok && n <= wire.MaxCommandSize {
		msg, ok := appendReply(wire.StartMsg(c.replyBuf(head+n+tail), id, requestID, flags), reply)
		if ok && len(msg) == head+n {
			if replyCheck != nil {
				replyCheck(reply, msg[head:])
			}
			return wire.FinishMsg(msg, 0, flags)
		}
	}
	body := s.marshalReply(reply)
	return wire.AppendMsg(make([]byte, 0, head+len(body)+tail), id, requestID, flags, body)
}

// replyCheck, when not nil, is called with every reply appendReply encoded
// and its bytes (tests compare them with bson.Marshal's).
var replyCheck func(reply bson.D, got []byte)

// marshalReply marshals reply, replacing it with an error reply if it cannot
// be marshalled or exceeds the reply size limit. Replies made of the common
// value types are encoded by appendReply (cursor batches copied whole),
// anything else by bson.Marshal.
func (s *Server) marshalReply(reply bson.D) []byte {
	b, ok := encodeReply(reply)
	var err error
	if ok {
		if replyCheck != nil {
			replyCheck(reply, b)
		}
	} else {
		b, err = bson.Marshal(reply)
	}
	if err != nil {
		s.log.Error("devdb: cannot marshal a reply", "err", err)
		b, _ = bson.Marshal(s.errorReply(mongoerr.Errorf(mongoerr.InternalError, "marshal reply: %v", err)))
		return b
	}
	if len(b) > wire.MaxCommandSize {
		b, _ = bson.Marshal(s.errorReply(mongoerr.Errorf(mongoerr.BSONObjectTooLarge, "BSONObj size: %d (0x%x) is invalid. Size must be between 0 and %d(16MB)", len(b), len(b), wire.MaxDocumentSize)))
	}
	return b
}

// handleOpQuery answers a legacy OP_QUERY with an OP_REPLY. Only the
// handshake commands are accepted, on "<db>.$cmd", as in MongoDB 6.0.
func (s *Server) handleOpQuery(c *conn, msg wire.Message) ([]byte, error) {
	q, err := wire.ParseQuery(msg)
	if err != nil {
		return nil, err
	}
	db, coll, _ := strings.Cut(q.FullCollectionName, ".")
	if coll != "$cmd" {
		ce := mongoerr.Errorf(mongoerr.UnsupportedOpQueryCommand, "Unsupported OP_QUERY on %s. The client driver may require an upgrade.", q.FullCollectionName)
		doc, _ := bson.Marshal(bson.D{{Key: "$err", Value: ce.Message}, {Key: "code", Value: int32(ce.Code)}, {Key: "codeName", Value: ce.Code.String()}})
		return wire.AppendReply(nil, c.replyID(), msg.Header.RequestID, wire.ReplyQueryFailure, doc), nil
	}
	var body bson.D
	if err := bson.Unmarshal(q.Query, &body); err != nil {
		return nil, fmt.Errorf("decode OP_QUERY command: %w", err)
	}
	// Drivers wrap the command as {$query: {...}, $readPreference: ...}.
	if len(body) > 0 && (body[0].Key == "$query" || body[0].Key == "query") {
		if inner, ok := body[0].Value.(bson.D); ok {
			body = inner
		}
	}
	var reply bson.D
	switch {
	case len(body) == 0:
		reply = s.errorReply(mongoerr.Errorf(mongoerr.FailedToParse, "empty command document"))
	case body[0].Key != "hello" && body[0].Key != "isMaster" && body[0].Key != "ismaster":
		reply = s.errorReply(mongoerr.Errorf(mongoerr.UnsupportedOpQueryCommand,
			"Unsupported OP_QUERY command: %s. The client driver may require an upgrade. For more details see https://dochub.mongodb.org/core/legacy-opcode-removal", body[0].Key))
	default:
		if err := checkDBName(db); err != nil {
			ce, _ := asCommandError(err)
			reply = s.errorReply(ce)
			break
		}
		reply, err = s.runCommand(c.ctx, &Request{DB: db, Name: body[0].Key, Body: body, ConnID: c.id, Remote: c.remote, conn: c})
		if err != nil {
			return nil, err
		}
	}
	return wire.AppendReply(nil, c.replyID(), msg.Header.RequestID, 0, s.marshalReply(reply)), nil
}

// runCommand runs one command and returns the complete reply, envelope
// included. It never panics: a handler panic becomes an InternalError reply.
// An error means the connection must be closed without a reply (a fail
// point's closeConnection).
func (s *Server) runCommand(ctx context.Context, req *Request) (bson.D, error) {
	s.counters.count(req)
	s.trackSession(req)
	err := s.failCommandBefore(ctx, req)
	var reply bson.D
	if err == nil {
		reply, err = s.invoke(ctx, req)
	}
	if errors.Is(err, errCloseConnection) {
		return nil, fmt.Errorf("run %s: %w", req.Name, err)
	}
	if err != nil {
		ce, unexpected := asCommandError(err)
		if unexpected {
			s.log.Error("devdb: command failed unexpectedly", "command", req.Name, "db", req.DB, "conn", req.ConnID, "err", err)
		}
		if labels := errorLabelsFor(req, ce); len(labels) != len(ce.Labels) {
			ce = &mongoerr.Error{Code: ce.Code, Message: ce.Message, Labels: labels}
		}
		reply := s.errorReply(ce)
		var de *storage.DuplicateKeyError
		if ce.Code == mongoerr.DuplicateKey && errors.As(err, &de) {
			// As MongoDB's DuplicateKey command errors (findAndModify): after codeName.
			reply = slices.Insert(reply, 4, bson.E{Key: "keyPattern", Value: de.KeyPattern}, bson.E{Key: "keyValue", Value: de.KeyValue})
		}
		var ve *storage.ValidationError
		if ce.Code == mongoerr.DocumentValidationFailure && errors.As(err, &ve) {
			reply = slices.Insert(reply, 4, bson.E{Key: "errInfo", Value: validationErrInfo(ve)})
		}
		return reply, nil
	}
	return s.okReply(s.failCommandAfter(req, reply), req.opTime), nil
}

// invoke checks the generic command fields and calls the handler,
// recovering a panic into an InternalError.
func (s *Server) invoke(ctx context.Context, req *Request) (reply bson.D, err error) {
	h, ok := s.handlers[req.Name]
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.CommandNotFound, "no such command: '%s'", req.Name)
	}
	if err := s.admRequireAdmin(req); err != nil {
		return nil, err
	}
	if req.conn != nil && req.conn.secondary {
		if err := secondaryRefuses(req); err != nil {
			return nil, err
		}
	}
	if _, ok := cmdField(req.Body, "autocommit"); ok {
		return s.invokeInTxn(ctx, req, func(ctx context.Context, req *Request) (bson.D, error) {
			return s.invokeHandler(ctx, req, h)
		})
	}
	if _, ok := cmdField(req.Body, "startTransaction"); ok {
		return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "startTransaction requires autocommit: false")
	}
	if req.Name == "commitTransaction" || req.Name == "abortTransaction" {
		return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "%s must be run within a transaction", req.Name)
	}
	if tv, ok := cmdField(req.Body, "txnNumber"); ok {
		s.abortOlderTxn(req, tv)
	}
	return s.invokeHandler(ctx, req, h)
}

// invokeHandler calls the handler h of req, recovering a panic into an
// InternalError.
func (s *Server) invokeHandler(ctx context.Context, req *Request, h HandlerFunc) (reply bson.D, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("devdb: command handler panicked", "command", req.Name, "db", req.DB, "conn", req.ConnID,
				"panic", r, "stack", string(debug.Stack()))
			reply, err = nil, mongoerr.Errorf(mongoerr.InternalError, "internal error while running command '%s'", req.Name)
		}
	}()
	if s.hasViews.Load() {
		if reply, handled, err := s.viewRewrite(req); handled {
			return reply, err
		}
	}
	return h(ctx, req)
}

// okReply appends the success envelope to a handler's reply fields, with
// opTime as operationTime (zero: the last op time).
func (s *Server) okReply(fields bson.D, opTime bson.Timestamp) bson.D {
	reply := make(bson.D, 0, len(fields)+3)
	for _, e := range fields {
		if e.Key != "ok" && e.Key != "operationTime" && e.Key != "$clusterTime" {
			reply = append(reply, e)
		}
	}
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	return s.appendTimesAt(reply, opTime)
}

// errorReply builds {ok: 0, errmsg, code, codeName, errorLabels?} plus the
// cluster time fields.
func (s *Server) errorReply(ce *mongoerr.Error) bson.D {
	reply := bson.D{
		{Key: "ok", Value: 0.0},
		{Key: "errmsg", Value: ce.Message},
		{Key: "code", Value: int32(ce.Code)},
		{Key: "codeName", Value: ce.Code.String()},
	}
	if len(ce.Labels) > 0 {
		labels := make(bson.A, len(ce.Labels))
		for i, l := range ce.Labels {
			labels[i] = l
		}
		reply = append(reply, bson.E{Key: "errorLabels", Value: labels})
	}
	return s.appendTimes(reply)
}

// appendTimes appends $clusterTime and operationTime from the last op time.
func (s *Server) appendTimes(reply bson.D) bson.D {
	return s.appendTimesAt(reply, bson.Timestamp{})
}

// appendTimesAt appends $clusterTime, the last op time, and operationTime:
// opTime, or the last op time when opTime is zero.
func (s *Server) appendTimesAt(reply bson.D, opTime bson.Timestamp) bson.D {
	ts := s.store.LastOpTime()
	if opTime.IsZero() {
		opTime = ts
	}
	return append(reply,
		bson.E{Key: "$clusterTime", Value: bson.D{
			{Key: "clusterTime", Value: ts},
			{Key: "signature", Value: bson.D{
				{Key: "hash", Value: bson.Binary{Subtype: 0, Data: make([]byte, 20)}},
				{Key: "keyId", Value: int64(0)},
			}},
		}},
		bson.E{Key: "operationTime", Value: opTime},
	)
}
