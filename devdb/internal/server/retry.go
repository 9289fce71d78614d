package server

import (
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// Retryable writes (driver specification "Retryable Writes"): a write command
// that carries lsid and txnNumber is executed at most once. Its reply is
// recorded in the session table (storage.SessionTxn, MongoDB's
// config.transactions) in the same storage transaction as the write, and a
// retry with the same txnNumber is answered from the record without being
// executed again. Only the latest txnNumber of each session is kept; an older
// one fails with TransactionTooOld (225). Records expire after
// logicalSessionTimeoutMinutes without a retryable write in the session and
// the table is capped (least recently used records are evicted first).

const (
	// retrySessionTimeout is how long a session's record outlives its last
	// retryable write: hello's logicalSessionTimeoutMinutes.
	retrySessionTimeout = time.Duration(admSessionTimeoutMinutes) * time.Minute
	// retryMaxSessions caps the number of sessions with a record.
	retryMaxSessions = 100_000
	// retryMaxBytes caps the records' total size (replies included).
	retryMaxBytes = 256 << 20
)

// retryLimits returns the session table's bounds.
func retryLimits() storage.SessionLimits {
	return storage.SessionLimits{Timeout: retrySessionTimeout, MaxSessions: retryMaxSessions, MaxBytes: retryMaxBytes}
}

// retryableWrite identifies one retryable write command.
type retryableWrite struct {
	// session is the encoded lsid document, the session table's key.
	session []byte
	// txn is the command's txnNumber.
	txn int64
	// command fingerprints the command: name, namespace and statement count.
	command string
	// stmts and ordered describe the batch, to compute retriedStmtIds.
	stmts   int
	ordered bool
	// findAndModify marks a findAndModify (one statement, retriedStmtId).
	findAndModify bool
	// now is the time the command arrived.
	now time.Time
}

// now returns the server's clock (a test hook may replace it).
func (s *Server) now() time.Time {
	if s.hooks.now != nil {
		return s.hooks.now()
	}
	return time.Now()
}

// retryableWriteOf returns the identity of req as a retryable write, or nil
// when it carries no txnNumber (an ordinary write). stmts is the number of
// statements of the batch (1 for findAndModify). A txnNumber that is not a
// long, is negative or comes without lsid is refused as MongoDB does.
func (s *Server) retryableWriteOf(req *Request, coll string, stmts int, ordered bool) (*retryableWrite, error) {
	tv, ok := fieldOf(req.Body, "txnNumber")
	if !ok || req.txn != nil {
		// An ordinary write, or a statement of a multi-document
		// transaction (whose commit is retryable instead).
		return nil, nil
	}
	txn, ok := tv.(int64)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'OperationSessionInfo.txnNumber' is the wrong type '%s', expected type 'long'", mql.TypeName(tv))
	}
	if txn < 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "Transaction number cannot be negative")
	}
	lv, ok := fieldOf(req.Body, "lsid")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "Transaction number requires a session ID to also be specified")
	}
	lsid, ok := lv.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'OperationSessionInfo.lsid' is the wrong type '%s', expected type 'object'", mql.TypeName(lv))
	}
	if _, ok := fieldOf(lsid, "id"); !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'OperationSessionInfo.lsid.id' is missing but a required field")
	}
	key, err := bson.Marshal(lsid)
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "encode lsid: %v", err)
	}
	if len(key) > storage.MaxSessionKey {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "lsid is too large (%d bytes)", len(key))
	}
	return &retryableWrite{
		session:       key,
		txn:           txn,
		command:       req.Name + " " + req.DB + "." + coll + " " + strconv.Itoa(stmts),
		stmts:         stmts,
		ordered:       ordered,
		findAndModify: req.Name == "findAndModify" || req.Name == "findandmodify",
		now:           s.now(),
	}, nil
}

// replayWrite looks rw up in the session table inside the write transaction
// tx. done reports that rw was already executed: reply is then the recorded
// reply (with retriedStmtIds) and the caller must not execute the command.
// A txnNumber older than the session's latest is TransactionTooOld (225);
// the same txnNumber with a different command is IllegalOperation (20). A
// nil rw (not a retryable write) is never done.
func (s *Server) replayWrite(tx *storage.Tx, rw *retryableWrite) (reply bson.D, done bool, err error) {
	if rw == nil {
		return nil, false, nil
	}
	rec, err := tx.SessionTxn(rw.session, rw.now, retrySessionTimeout)
	if err != nil || rec == nil || rw.txn > rec.TxnNumber {
		return nil, false, err
	}
	if rw.txn < rec.TxnNumber {
		return nil, false, &mongoerr.Error{Code: mongoerr.TransactionTooOld,
			Message: fmt.Sprintf("Cannot start transaction %d on session %s because a newer transaction %d has already started.", rw.txn, sessionString(rw.session), rec.TxnNumber)}
	}
	if rec.Command != rw.command {
		return nil, false, mongoerr.Errorf(mongoerr.IllegalOperation,
			"txnNumber %d of session %s was already used by a different write (%s); a retry must repeat the same command", rw.txn, sessionString(rw.session), rec.Command)
	}
	if err := bson.Unmarshal(rec.Reply, &reply); err != nil {
		return nil, false, fmt.Errorf("replay retryable write: decode recorded reply: %w", err)
	}
	rec.LastUse = rw.now
	if err := tx.PutSessionTxn(rw.session, rec, retryLimits()); err != nil {
		return nil, false, fmt.Errorf("replay retryable write: %w", err)
	}
	return withRetriedStmtIDs(reply, rw), true, nil
}

// recordWrite records reply as the result of rw inside the write
// transaction tx that executed it; a nil rw records nothing.
func (s *Server) recordWrite(tx *storage.Tx, rw *retryableWrite, reply bson.D) error {
	if rw == nil {
		return nil
	}
	raw, err := bson.Marshal(reply)
	if err != nil {
		return fmt.Errorf("record retryable write: encode reply: %w", err)
	}
	rec := &storage.SessionTxn{TxnNumber: rw.txn, Command: rw.command, Reply: raw, LastUse: rw.now}
	if err := tx.PutSessionTxn(rw.session, rec, retryLimits()); err != nil {
		return fmt.Errorf("record retryable write: %w", err)
	}
	return nil
}

// withRetriedStmtIDs adds to a replayed reply the ids of the statements that
// had been executed, as MongoDB does: retriedStmtId for findAndModify,
// retriedStmtIds for batch writes (every statement without a write error,
// and for an ordered batch only those before the first error). Statement
// ids are the statements' positions in the batch.
func withRetriedStmtIDs(reply bson.D, rw *retryableWrite) bson.D {
	if rw.findAndModify {
		return append(reply, bson.E{Key: "retriedStmtId", Value: int32(0)})
	}
	failed := map[int32]bool{}
	first := int32(rw.stmts)
	if we, ok := fieldOf(reply, "writeErrors"); ok {
		arr, _ := we.(bson.A)
		for _, e := range arr {
			d, _ := e.(bson.D)
			if iv, ok := fieldOf(d, "index"); ok {
				if i, ok := iv.(int32); ok {
					failed[i] = true
					first = min(first, i)
				}
			}
		}
	}
	ids := bson.A{}
	for i := range int32(rw.stmts) {
		if rw.ordered && i >= first {
			break
		}
		if !failed[i] {
			ids = append(ids, i)
		}
	}
	if len(ids) == 0 {
		return reply
	}
	return append(reply, bson.E{Key: "retriedStmtIds", Value: ids})
}

// sessionString renders an encoded lsid for error messages.
func sessionString(key []byte) string {
	var d bson.D
	if err := bson.Unmarshal(key, &d); err != nil {
		return "<invalid lsid>"
	}
	return mql.FormatValue(d)
}
