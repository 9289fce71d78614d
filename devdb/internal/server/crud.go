package server

import (
	"context"
	"errors"
	"fmt"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// registerCRUD registers the data commands (CRUD, catalog, indexes and
// aggregate) and starts the TTL monitor, which stops with the server.
func (s *Server) registerCRUD() {
	s.command("insert", "insert documents", s.cmdInsert).apiV1()
	s.command("delete", "delete documents", s.cmdDelete).apiV1()
	s.command("create", "create a collection or view", s.cmdCreate).apiV1()
	s.command("drop", "drop a collection or view", s.cmdDrop).apiV1()
	s.command("dropDatabase", "drop a database", s.cmdDropDatabase).apiV1()
	s.command("listDatabases", "list the databases", s.cmdListDatabases).admin().apiV1()
	s.command("listCollections", "list the collections and views of a database", s.cmdListCollections).apiV1()
	s.command("collStats", "report a collection's storage statistics", s.cmdCollStats)
	s.command("dbStats", "report a database's storage statistics", s.cmdDBStats)
	s.command("renameCollection", "rename a collection, also across databases", s.cmdRenameCollection).admin()
	s.command("collMod", "change a collection's options", s.cmdCollMod).apiV1()
	s.command("createIndexes", "create indexes", s.cmdCreateIndexes).apiV1()
	s.command("listIndexes", "list a collection's indexes", s.cmdListIndexes).apiV1()
	s.command("dropIndexes", "drop indexes", s.cmdDropIndexes).apiV1()
	s.command("deleteIndexes", "the former name of dropIndexes", s.cmdDropIndexes)
	s.registerQueryCommands()
	s.startTTLMonitor()
}

// dataErr converts a storage duplicate-key error into the DuplicateKey
// *mongoerr.Error the client sees, keeping the storage error reachable
// (errors.As) for the reply's keyPattern and keyValue; other errors pass
// through unchanged, and so does an error already converted and given an
// executor's context (withExecutorContext).
func dataErr(err error) error {
	var ce *contextError
	if errors.As(err, &ce) {
		return err
	}
	var de *storage.DuplicateKeyError
	if errors.As(err, &de) {
		return &dupKeyError{ce: &mongoerr.Error{Code: mongoerr.DuplicateKey, Message: de.Error()}, de: de}
	}
	var ve *storage.ValidationError
	if errors.As(err, &ve) {
		return &validationErr{ce: &mongoerr.Error{Code: mongoerr.DocumentValidationFailure, Message: ve.Error()}, ve: ve}
	}
	return err
}

// validationErr is a DocumentValidationFailure command error: both the
// *mongoerr.Error and the *storage.ValidationError (for errInfo).
type validationErr struct {
	ce *mongoerr.Error
	ve *storage.ValidationError
}

func (e *validationErr) Error() string   { return e.ce.Error() }
func (e *validationErr) Unwrap() []error { return []error{e.ce, e.ve} }

// validationErrInfo is a DocumentValidationFailure's errInfo:
// {failingDocumentId, details}.
func validationErrInfo(ve *storage.ValidationError) bson.D {
	return bson.D{{Key: "failingDocumentId", Value: ve.ID}, {Key: "details", Value: ve.Details}}
}

// dupKeyError is a DuplicateKey command error: both the *mongoerr.Error and
// the *storage.DuplicateKeyError it was made from.
type dupKeyError struct {
	ce *mongoerr.Error
	de *storage.DuplicateKeyError
}

func (e *dupKeyError) Error() string   { return e.ce.Error() }
func (e *dupKeyError) Unwrap() []error { return []error{e.ce, e.de} }

// writeErrorDoc renders err as one writeErrors entry of a write command:
// {index, code, [keyPattern, keyValue,] errmsg}.
func writeErrorDoc(index int, err error) bson.D {
	var de *storage.DuplicateKeyError
	if errors.As(err, &de) {
		return bson.D{{Key: "index", Value: int32(index)}, {Key: "code", Value: int32(mongoerr.DuplicateKey)},
			{Key: "keyPattern", Value: de.KeyPattern}, {Key: "keyValue", Value: de.KeyValue}, {Key: "errmsg", Value: de.Error()}}
	}
	ce, _ := asCommandError(dataErr(err))
	d := bson.D{{Key: "index", Value: int32(index)}, {Key: "code", Value: int32(ce.Code)}, {Key: "errmsg", Value: ce.Message}}
	var ve *storage.ValidationError
	if errors.As(err, &ve) {
		d = append(d, bson.E{Key: "errInfo", Value: validationErrInfo(ve)})
	}
	return d
}

// isWriteError reports whether err fails only one statement of a write
// command (reported in writeErrors) rather than the whole command. The
// errors that end a multi-document transaction (a write conflict, a
// snapshot too old, a transaction too large) fail the whole command.
func isWriteError(err error) bool {
	var de *storage.DuplicateKeyError
	var ve *storage.ValidationError
	var me *mongoerr.Error
	if errors.As(err, &de) || errors.As(err, &ve) {
		return true
	}
	if !errors.As(err, &me) {
		return false
	}
	switch me.Code {
	case mongoerr.WriteConflict, mongoerr.SnapshotTooOld, mongoerr.TransactionTooLarge, mongoerr.NoSuchTransaction, mongoerr.TransactionCommitted:
		return false
	}
	return true
}

// collectionArg returns the collection named by the command's first field.
func collectionArg(req *Request) (string, error) {
	if len(req.Body) == 0 {
		return "", mongoerr.Errorf(mongoerr.FailedToParse, "empty command")
	}
	name, ok := req.Body[0].Value.(string)
	if !ok {
		return "", mongoerr.Errorf(mongoerr.InvalidNamespace, "collection name has invalid type %s", mql.TypeName(req.Body[0].Value))
	}
	if err := storage.ValidateCollName(req.DB, name); err != nil {
		return "", dataErr(err)
	}
	return name, nil
}

// docArg returns the optional document field key of the command.
func docArg(req *Request, key string) (bson.D, bool, error) {
	v, ok := fieldOf(req.Body, key)
	if !ok || v == nil {
		return nil, false, nil
	}
	d, ok := v.(bson.D)
	if !ok {
		return nil, false, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'object'", req.Name, key, mql.TypeName(v))
	}
	return d, true, nil
}

// boolArg returns the optional boolean field key (numbers are accepted as
// MongoDB's IDL does).
func boolArg(req *Request, key string, def bool) (bool, error) {
	v, ok := fieldOf(req.Body, key)
	if !ok || v == nil {
		return def, nil
	}
	return boolValue(req.Name+"."+key, v)
}

func boolValue(field string, v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case int32, int64, float64, bson.Decimal128:
		f, _ := mql.ToFloat64(x)
		return f != 0, nil
	}
	return false, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'bool'", field, mql.TypeName(v))
}

// sizeArg returns the optional field key of the command as MongoDB's IDL
// reads a safeInt64 field with the validator {gte: 0} (find's skip, limit
// and batchSize); ok is false when it is absent or null.
func sizeArg(req *Request, key string) (n int64, ok bool, err error) {
	v, found := fieldOf(req.Body, key)
	if !found || v == nil {
		return 0, false, nil
	}
	n, err = sizeValue(req.Name+"."+key, key, v)
	return n, err == nil, err
}

// sizeValue reads v, the value of the field named key (field is its path
// for a type error), as MongoDB's IDL reads a safeInt64 with the validator
// {gte: 0}: any number, a double or decimal truncated toward zero (NaN as
// 0, out-of-range values clamped); a negative value is refused with
// Location51024 "BSON field '<key>' value must be >= 0, actual value '<n>'".
func sizeValue(field, key string, v any) (int64, error) {
	var n int64
	switch x := v.(type) {
	case int32:
		n = int64(x)
	case int64:
		n = x
	case float64, bson.Decimal128:
		f, _ := mql.ToFloat64(x)
		switch {
		case math.IsNaN(f):
		case f >= math.MaxInt64:
			n = math.MaxInt64
		case f <= math.MinInt64:
			n = math.MinInt64
		default:
			n = int64(f)
		}
	default:
		return intValue(field, v)
	}
	if n < 0 {
		return 0, mongoerr.Errorf(mongoerr.IDLValueOutOfRange, "BSON field '%s' value must be >= 0, actual value '%d'", key, n)
	}
	return n, nil
}

// intArg returns the optional integer field key.
func intArg(req *Request, key string, def int64) (int64, error) {
	v, ok := fieldOf(req.Body, key)
	if !ok || v == nil {
		return def, nil
	}
	return intValue(req.Name+"."+key, v)
}

// docsArg returns the array-of-documents field key (documents, updates,
// deletes), which the server has already merged from OP_MSG sequences.
// With raws not nil, it also accepts the undecoded documents of an insert
// (bson.Raw, see decodeOpMsgRequest): *raws is then as long as the result,
// holding each undecoded document where the result holds nil.
func docsArg(req *Request, key string, raws *[]bson.Raw) ([]bson.D, error) {
	v, ok := fieldOf(req.Body, key)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field '%s.%s' is missing but a required field", req.Name, key)
	}
	arr, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'array'", req.Name, key, mql.TypeName(v))
	}
	if raws != nil {
		*raws = make([]bson.Raw, len(arr))
	}
	out := make([]bson.D, len(arr))
	for i, el := range arr {
		if r, ok := el.(bson.Raw); ok && raws != nil {
			(*raws)[i] = r
			continue
		}
		d, ok := el.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.%s.%d' is the wrong type '%s', expected type 'object'", req.Name, key, i, mql.TypeName(el))
		}
		out[i] = d
	}
	if len(out) == 0 || len(out) > maxWriteBatchSize {
		return nil, mongoerr.Errorf(mongoerr.InvalidLength, "Write batch sizes must be between 1 and %d. Got %d operations.", maxWriteBatchSize, len(out))
	}
	return out, nil
}

// maxWriteBatchSize is hello's maxWriteBatchSize.
const maxWriteBatchSize = 100000

// finishWrite honours the command's writeConcern: {j: true} (or fsync)
// flushes storage to disk before the reply.
func (s *Server) finishWrite(req *Request) error {
	wc, ok := fieldOf(req.Body, "writeConcern")
	if !ok {
		return nil
	}
	d, ok := wc.(bson.D)
	if !ok {
		return nil
	}
	for _, k := range []string{"j", "fsync"} {
		if v, ok := fieldOf(d, k); ok {
			if b, _ := boolValue("writeConcern."+k, v); b {
				return s.store.Sync()
			}
		}
	}
	return nil
}

// writeBatch is the common part of a batched write command (insert,
// update, delete).
type writeBatch struct {
	coll    string
	stmts   []bson.D        // the statements of the array field
	raws    []bson.Raw      // insert: the undecoded documents, where stmts holds nil
	ordered bool            // stop at the first failing statement
	rw      *retryableWrite // nil for an ordinary (non-retryable) write
}

// parseWriteBatch reads a batched write command: the collection, the
// statements array field key (see docsArg), ordered (default true) and the
// retryable-write identity, in that order, returning the first error.
func (s *Server) parseWriteBatch(req *Request, key string) (writeBatch, error) {
	coll, err := collectionArg(req)
	if err != nil {
		return writeBatch{}, err
	}
	var raws []bson.Raw
	rawsArg := &raws
	if key != "documents" {
		rawsArg = nil
	}
	stmts, err := docsArg(req, key, rawsArg)
	if err != nil {
		return writeBatch{}, err
	}
	ordered, err := boolArg(req, "ordered", true)
	if err != nil {
		return writeBatch{}, err
	}
	rw, err := s.retryableWriteOf(req, coll, len(stmts), ordered)
	if err != nil {
		return writeBatch{}, err
	}
	return writeBatch{coll: coll, stmts: stmts, raws: raws, ordered: ordered, rw: rw}, nil
}

// execWrite runs a write command on db.coll in one storage update
// transaction and returns its reply. When rw (nil for an ordinary write)
// was already executed, the recorded reply is replayed and exec is not
// called; otherwise exec's reply is recorded for rw in the same
// transaction. A failure is returned as "<op> <db>.<coll>: <err>", storage
// errors converted by dataErr; after success the command's writeConcern is
// honoured (finishWrite).
//
// A retryable write evaluates the onPrimaryTransactionalWrite fail point
// for each document it wrote, before it commits: the fail point closes the
// connection (errCloseConnection, the default) after the write commits, or
// rolls the write back (failBeforeCommitExceptionCode) and then closes the
// connection or fails with that code.
func (s *Server) execWrite(req *Request, op, coll string, rw *retryableWrite, exec func(tx *storage.Tx) (bson.D, error)) (bson.D, error) {
	var reply bson.D
	var tw transactionalWrite
	bypass, err := boolArg(req, "bypassDocumentValidation", false)
	if err != nil {
		return nil, err
	}
	err = s.data(req).Update(func(tx *storage.Tx) error {
		if bypass {
			tx.SkipValidation()
		}
		if s.hooks.decodedWrites {
			tx.DecodeDocuments()
		}
		r, done, err := s.replayWrite(tx, rw)
		if err != nil || done {
			reply = r
			return err
		}
		if reply, err = exec(tx); err != nil {
			return err
		}
		if rw != nil {
			if tw = s.onTransactionalWrite(tx.DocumentWrites()); tw.fail != nil {
				return tw.fail
			}
		}
		return s.recordWrite(tx, rw, reply)
	})
	if tw.fail != nil && tw.closeConn {
		return nil, errCloseConnection // rolled back, and the client sees a network error
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s.%s: %w", op, req.DB, coll, dataErr(err))
	}
	if err := s.finishWrite(req); err != nil {
		return nil, err
	}
	if tw.closeConn {
		return nil, errCloseConnection
	}
	return reply, nil
}

// eachStatement runs stmt(i) for the statements 0..n-1 of a write batch and
// returns the writeErrors entries (writeErrorDoc) of those failing with a
// statement-level error (isWriteError). Any other error aborts the batch and
// is returned. An ordered batch stops at its first failing statement.
func eachStatement(n int, ordered bool, stmt func(i int) error) (bson.A, error) {
	var writeErrs bson.A
	for i := range n {
		err := stmt(i)
		if err == nil {
			continue
		}
		if !isWriteError(err) {
			return nil, err
		}
		writeErrs = append(writeErrs, writeErrorDoc(i, err))
		if ordered {
			break
		}
	}
	return writeErrs, nil
}

// withWriteErrors appends writeErrors to a write command's reply when there
// are any.
func withWriteErrors(reply bson.D, writeErrs bson.A) bson.D {
	if len(writeErrs) > 0 {
		reply = append(reply, bson.E{Key: "writeErrors", Value: writeErrs})
	}
	return reply
}

// checkStorable rejects documents MongoDB refuses to store: _id values of
// type array, regex or undefined. Dollar-prefixed field names are accepted,
// top-level and nested, as MongoDB 5.0+ accepts them in inserts and upserts
// (manual: "Field Names with Periods and Dollar Signs").
//
// Inside _id, MongoDB 5.0+ refuses $-prefixed field names at any depth
// (DollarPrefixedFieldName 52). A document nested deeper than
// maxStoredDepth levels is Overflow (15).
func checkStorable(doc bson.D) error {
	if docDepth(doc, 1) > maxStoredDepth {
		return mongoerr.Errorf(mongoerr.Overflow, "cannot insert document because it exceeds %d levels of nesting", maxStoredDepth)
	}
	for _, e := range doc {
		if e.Key == "_id" {
			switch v := e.Value.(type) {
			case bson.A:
				return mongoerr.Errorf(mongoerr.BadValue, "can't use an array for _id")
			case bson.Regex:
				return mongoerr.Errorf(mongoerr.BadValue, "can't use a regex for _id")
			case bson.Undefined:
				return mongoerr.Errorf(mongoerr.BadValue, "can't use a undefined for _id")
			case bson.D:
				if name, ok := dollarKeyIn(v, 0); ok {
					return mongoerr.Errorf(mongoerr.DollarPrefixedFieldName, "_id fields may not contain '$'-prefixed fields: %s is not valid for storage.", name)
				}
			}
		}
	}
	return nil
}

// maxStoredDepth is MongoDB's documented nesting limit for stored
// documents: the document itself is level 1 and every embedded document or
// array adds one.
const maxStoredDepth = storage.MaxStoredDepth

// docDepth returns the nesting depth of v, which is at level depth, counting
// at most to maxStoredDepth+1 (deeper levels are not visited).
func docDepth(v any, depth int) int {
	if depth > maxStoredDepth {
		return depth
	}
	deepest := depth
	switch x := v.(type) {
	case bson.D:
		for _, e := range x {
			switch e.Value.(type) {
			case bson.D, bson.A:
				if d := docDepth(e.Value, depth+1); d > deepest {
					if deepest = d; deepest > maxStoredDepth {
						return deepest
					}
				}
			}
		}
	case bson.A:
		for _, el := range x {
			switch el.(type) {
			case bson.D, bson.A:
				if d := docDepth(el, depth+1); d > deepest {
					if deepest = d; deepest > maxStoredDepth {
						return deepest
					}
				}
			}
		}
	}
	return deepest
}

// dollarKeyIn returns the first $-prefixed field name in v (a document or
// array, searched depth first to maxStoredDepth levels), if any.
func dollarKeyIn(v any, depth int) (string, bool) {
	if depth > maxStoredDepth {
		return "", false
	}
	switch x := v.(type) {
	case bson.D:
		for _, e := range x {
			if len(e.Key) > 0 && e.Key[0] == '$' {
				return e.Key, true
			}
			if name, ok := dollarKeyIn(e.Value, depth+1); ok {
				return name, true
			}
		}
	case bson.A:
		for _, el := range x {
			if name, ok := dollarKeyIn(el, depth+1); ok {
				return name, true
			}
		}
	}
	return "", false
}

// withID returns doc with an _id: a generated ObjectID first when missing,
// and an existing _id moved to the front (as mongod stores it).
func withID(doc bson.D) bson.D {
	for i, e := range doc {
		if e.Key == "_id" {
			if i == 0 {
				return doc
			}
			out := make(bson.D, 0, len(doc))
			out = append(out, e)
			out = append(out, doc[:i]...)
			return append(out, doc[i+1:]...)
		}
	}
	out := make(bson.D, 0, len(doc)+1)
	out = append(out, bson.E{Key: "_id", Value: bson.NewObjectID()})
	return append(out, doc...)
}

// cmdInsert answers insert: {n, writeErrors?}. Ordered inserts stop at the
// first failing document; unordered ones report every failure. Documents
// that succeed are committed either way.
func (s *Server) cmdInsert(_ context.Context, req *Request) (bson.D, error) {
	b, err := s.parseWriteBatch(req, "documents")
	if err != nil {
		return nil, err
	}
	if err := checkBatchWriteNS(req, b.coll); err != nil {
		return nil, err
	}
	return s.execWrite(req, "insert into", b.coll, b.rw, func(tx *storage.Tx) (bson.D, error) {
		n := 0
		c, err := tx.EnsureCollection(req.DB, b.coll)
		if err != nil {
			return nil, err
		}
		writeErrs, err := eachStatement(len(b.stmts), b.ordered, func(i int) error {
			d := b.stmts[i]
			if b.raws != nil && b.raws[i] != nil {
				if !s.hooks.decodedWrites {
					if _, err := tx.InsertRaw(c, b.raws[i]); err != nil {
						return err
					}
					n++
					return nil
				}
				if err := bson.Unmarshal(b.raws[i], &d); err != nil {
					return mongoerr.Errorf(mongoerr.InvalidBSON, "decode document %d: %v", i, err)
				}
			}
			if err := checkStorable(d); err != nil {
				return err
			}
			d, err := fillEmptyTimestamps(tx, d)
			if err != nil {
				return err
			}
			if _, err := tx.Insert(c, withID(d)); err != nil {
				return err
			}
			n++
			return nil
		})
		if err != nil {
			return nil, err
		}
		return withWriteErrors(bson.D{{Key: "n", Value: int32(n)}}, writeErrs), nil
	})
}

// fieldOf returns the value of the first field key of d.
func fieldOf(d bson.D, key string) (any, bool) {
	for _, e := range d {
		if e.Key == key {
			return e.Value, true
		}
	}
	return nil, false
}

// intValue converts a numeric command field to int64: int32, int64 and
// integral doubles are accepted, as MongoDB's IDL does for numeric fields.
func intValue(field string, v any) (int64, error) {
	switch n := v.(type) {
	case int32:
		return int64(n), nil
	case int64:
		return n, nil
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt64 && n < math.MaxInt64 {
			return int64(n), nil
		}
		return 0, mongoerr.Errorf(mongoerr.BadValue, "BSON field '%s' value must be an integer, got %v", field, n)
	case bson.Decimal128:
		if i, ok := mql.ToInt64(n); ok {
			return i, nil
		}
	}
	return 0, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected types '[long, int, decimal, double']", field, mql.TypeName(v))
}
