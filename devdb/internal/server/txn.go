package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// Multi-document transactions (MongoDB's "Transactions" and the drivers'
// transactions specification), on storage's shadow transactions
// (storage.Engine.InShadow, CommitTxn).
//
// A transaction starts with the first command carrying lsid, txnNumber,
// autocommit: false and startTransaction: true; every later command of it
// carries the same lsid and txnNumber with autocommit: false and ends with
// commitTransaction or abortTransaction. Its statements read a snapshot
// taken when it starts, see their own writes and nobody else's; nothing of
// it is visible outside until commit, which stores all its writes (and their
// oplog entries, carrying lsid and txnNumber) in one storage transaction.
// A statement that fails aborts the transaction, as in MongoDB.
//
// Write conflicts: a statement writing a document that another open
// transaction has written, or that another writer changed after the
// snapshot, fails with WriteConflict (112, TransientTransactionError), and
// commit fails the same way when such a change happened meanwhile. A write
// outside any transaction is never blocked by an open transaction: it
// proceeds, and the transaction that had written the same document fails
// with WriteConflict (MongoDB makes the outside write wait instead).

// DefaultTransactionLifetimeLimit is MongoDB's transactionLifetimeLimitSeconds
// default: an open transaction older than this is aborted.
const DefaultTransactionLifetimeLimit = 60 * time.Second

// maxTransactionBytes bounds the writes one transaction may buffer (the
// encoded size of its oplog entries); beyond it a statement fails with
// TransactionTooLarge (334).
const maxTransactionBytes = 64 << 20

// maxFinishedTransactions bounds how many finished transactions (kept to
// answer a retried commitTransaction or abortTransaction) the table keeps.
const maxFinishedTransactions = 10000

// txnState is a transaction's state.
type txnState int

const (
	txnActive txnState = iota
	txnCommitted
	txnAborted
)

// transaction is one session's current (or last) multi-document transaction.
type transaction struct {
	// run serialises the transaction's commands.
	run sync.Mutex

	key    [16]byte
	lsid   bson.D // {id, uid}, as change events report it
	number int64

	// mu guards the fields below.
	mu      sync.Mutex
	state   txnState
	reason  string // why an aborted transaction was aborted
	snap    bson.Timestamp
	ops     []*storage.OplogEntry
	opBytes int64
	held    []string // storage.DocKey of the documents it holds
	timer   *time.Timer
	// commitTS is the committed transaction's commit time (zero without
	// writes): the operationTime a commitTransaction answers with.
	commitTS bson.Timestamp
}

// txnTable is the server's transactions by session.
type txnTable struct {
	mu        sync.Mutex
	bySession map[[16]byte]*transaction
	// holders maps storage.DocKey to the open transaction that wrote it.
	holders map[string]*transaction
}

// txnCommands are the commands allowed in a transaction (MongoDB 6.0).
var txnCommands = map[string]bool{
	"find": true, "getMore": true, "killCursors": true, "insert": true, "update": true, "delete": true,
	"findAndModify": true, "findandmodify": true, "aggregate": true, "distinct": true,
	"commitTransaction": true, "abortTransaction": true, "create": true, "createIndexes": true,
}

// dataStore is what a command reads and writes through: the storage engine,
// or an open transaction's view of it (txnStore).
type dataStore interface {
	View(fn func(*storage.Tx) error) error
	Update(fn func(*storage.Tx) error) error
}

// data returns the store req's command reads and writes through.
func (s *Server) data(req *Request) dataStore {
	if req != nil && req.txn != nil {
		return txnStore{s: s, t: req.txn}
	}
	return s.store
}

// txnStore runs reads and writes inside transaction t: each call is one
// shadow transaction on t's snapshot with t's writes applied, and the writes
// it makes are added to t's.
type txnStore struct {
	s *Server
	t *transaction
}

// View implements dataStore.
func (ts txnStore) View(fn func(*storage.Tx) error) error { return ts.Update(fn) }

// Update implements dataStore.
func (ts txnStore) Update(fn func(*storage.Tx) error) error {
	t := ts.t
	t.mu.Lock()
	if t.state != txnActive {
		err := t.endedError()
		t.mu.Unlock()
		return err
	}
	snap := &storage.Snapshot{At: t.snap, Ops: t.ops, Check: ts.s.txns.holdFor(t)}
	n := len(t.ops)
	t.mu.Unlock()
	ops, err := ts.s.store.InShadow(snap, fn)
	if err != nil || len(ops) == 0 {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != txnActive || len(t.ops) != n {
		return t.endedError()
	}
	for _, op := range ops {
		raw, err := bson.Marshal(op)
		if err != nil {
			return fmt.Errorf("record transaction write: %w", err)
		}
		t.opBytes += int64(len(raw))
	}
	if t.opBytes > maxTransactionBytes {
		return mongoerr.Errorf(mongoerr.TransactionTooLarge, "Total size of all transaction operations must be less than %d. Actual size is %d", maxTransactionBytes, t.opBytes)
	}
	t.ops = append(t.ops, ops...)
	return nil
}

// endedError is the error for using t after it ended (t.mu held).
func (t *transaction) endedError() error {
	if t.state == txnCommitted {
		return mongoerr.Errorf(mongoerr.TransactionCommitted, "Transaction %d has been committed.", t.number)
	}
	msg := fmt.Sprintf("Transaction with { txnNumber: %d } has been aborted.", t.number)
	if t.reason != "" {
		msg = fmt.Sprintf("Transaction %d has been aborted because %s.", t.number, t.reason)
	}
	return mongoerr.Errorf(mongoerr.NoSuchTransaction, "%s", msg)
}

// holdFor returns the storage.Snapshot.Check of transaction t: a document
// held by another open transaction is a WriteConflict; otherwise t holds it
// from now on.
func (tt *txnTable) holdFor(t *transaction) func(key string) error {
	return func(key string) error {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		h := tt.holders[key]
		if h == t {
			return nil
		}
		if h != nil {
			return storage.WriteConflictError()
		}
		if tt.holders == nil {
			tt.holders = map[string]*transaction{}
		}
		tt.holders[key] = t
		t.mu.Lock()
		t.held = append(t.held, key)
		t.mu.Unlock()
		return nil
	}
}

// finish ends t (active) with state, releasing what it holds. reason says
// why an abort happened, for later errors ("" for an explicit abort).
func (s *Server) finishTxn(t *transaction, state txnState, reason string) {
	t.mu.Lock()
	if t.state != txnActive {
		t.mu.Unlock()
		return
	}
	t.state, t.reason = state, reason
	held := t.held
	t.held, t.ops = nil, nil
	if t.timer != nil {
		t.timer.Stop()
	}
	t.mu.Unlock()
	s.txns.mu.Lock()
	for _, k := range held {
		if s.txns.holders[k] == t {
			delete(s.txns.holders, k)
		}
	}
	s.txns.mu.Unlock()
}

// abortSessions aborts the open transactions of the sessions keys, or of
// every session when keys is nil (endSessions, killSessions,
// killAllSessions).
func (s *Server) abortSessions(keys [][16]byte) {
	s.txns.mu.Lock()
	var open []*transaction
	if keys == nil {
		for k, t := range s.txns.bySession {
			open = append(open, t)
			delete(s.txns.bySession, k)
		}
	}
	for _, k := range keys {
		if t := s.txns.bySession[k]; t != nil {
			open = append(open, t)
			delete(s.txns.bySession, k)
		}
	}
	s.txns.mu.Unlock()
	for _, t := range open {
		s.abortTxn(t, "its session ended")
	}
}

// abortOlderTxn aborts the open transaction of req's session when req, a
// command outside any transaction (a retryable write), carries a newer
// txnNumber, as MongoDB does.
func (s *Server) abortOlderTxn(req *Request, tv any) {
	n, ok := tv.(int64)
	if !ok {
		return
	}
	lv, _ := cmdField(req.Body, "lsid")
	key, ok := sessionKey(lv)
	if !ok {
		return
	}
	s.txns.mu.Lock()
	t := s.txns.bySession[key]
	s.txns.mu.Unlock()
	if t != nil && t.number < n {
		s.abortTxn(t, "a newer retryable write started on its session")
	}
}

// abortTxn aborts t if it is still active, after its running command (if
// any) finished: commands of t hold t.run, so a commit never races an abort.
func (s *Server) abortTxn(t *transaction, reason string) {
	t.run.Lock()
	defer t.run.Unlock()
	s.finishTxn(t, txnAborted, reason)
}

// txnArgs are a command's transaction fields.
type txnArgs struct {
	key    [16]byte
	lsid   bson.D
	number int64
	start  bool
}

// parseTxnArgs reads and checks the transaction fields of req, a command
// carrying autocommit.
func parseTxnArgs(req *Request) (txnArgs, error) {
	var a txnArgs
	av, _ := cmdField(req.Body, "autocommit")
	if b, ok := av.(bool); !ok {
		return a, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'OperationSessionInfo.autocommit' is the wrong type '%s', expected type 'bool'", mql.TypeName(av))
	} else if b {
		return a, mongoerr.Errorf(mongoerr.InvalidOptions, "autocommit:true is not supported")
	}
	lv, ok := cmdField(req.Body, "lsid")
	if !ok {
		return a, mongoerr.Errorf(mongoerr.InvalidOptions, "Transaction number requires a session ID to also be specified")
	}
	if a.key, ok = sessionKey(lv); !ok {
		return a, mongoerr.Errorf(mongoerr.BadValue, "lsid must be {id: UUID}")
	}
	tv, ok := cmdField(req.Body, "txnNumber")
	if !ok {
		return a, mongoerr.Errorf(mongoerr.InvalidOptions, "'autocommit' field requires a transaction number to also be specified")
	}
	if a.number, ok = tv.(int64); !ok {
		return a, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'OperationSessionInfo.txnNumber' is the wrong type '%s', expected type 'long'", mql.TypeName(tv))
	}
	if a.number < 0 {
		return a, mongoerr.Errorf(mongoerr.BadValue, "Transaction number cannot be negative")
	}
	if sv, ok := cmdField(req.Body, "startTransaction"); ok {
		b, isBool := sv.(bool)
		if !isBool || !b {
			return a, mongoerr.Errorf(mongoerr.InvalidOptions, "startTransaction must be true")
		}
		a.start = true
	}
	a.lsid = bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: a.key[:]}},
		{Key: "uid", Value: bson.Binary{Subtype: bson.TypeBinaryGeneric, Data: noUserUID[:]}}}
	return a, nil
}

// checkTxnReadConcern applies MongoDB's readConcern rule for the first
// command of a transaction: level local, majority or snapshot.
func checkTxnReadConcern(req *Request) error {
	rc, ok := cmdField(req.Body, "readConcern")
	if !ok {
		return nil
	}
	d, _ := rc.(bson.D)
	if lv, ok := fieldOf(d, "level"); ok {
		switch lv {
		case "local", "majority", "snapshot":
		default:
			return mongoerr.Errorf(mongoerr.InvalidOptions, "The readConcern level must be either 'local' (default), 'majority' or 'snapshot' in order to run in a transaction")
		}
	}
	return nil
}

// beginTxnCommand finds (or, for startTransaction, starts) the transaction
// of req, a command carrying autocommit, and checks that req may run in it.
// It returns the transaction with its run lock held.
func (s *Server) beginTxnCommand(req *Request) (*transaction, error) {
	a, err := parseTxnArgs(req)
	if err != nil {
		return nil, err
	}
	commitOrAbort := req.Name == "commitTransaction" || req.Name == "abortTransaction"
	if !txnCommands[req.Name] {
		return nil, mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "Cannot run '%s' in a multi-document transaction.", req.Name)
	}
	if !commitOrAbort && internalDatabase(req.DB) {
		return nil, mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "Cannot run command against the '%s' database in a transaction.", req.DB)
	}
	if coll, _ := req.Body[0].Value.(string); coll == "system.profile" && !commitOrAbort {
		// The profiler writes system.profile outside any transaction.
		return nil, mongoerr.Errorf(mongoerr.OperationNotSupportedInTransaction, "Cannot run command against the '%s.%s' collection in a transaction.", req.DB, coll)
	}
	if _, ok := cmdField(req.Body, "writeConcern"); ok && !commitOrAbort {
		return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "Cannot set write concern after starting a transaction.")
	}
	s.txns.mu.Lock()
	t := s.txns.bySession[a.key]
	var old *transaction
	switch {
	case t != nil && a.number < t.number:
		s.txns.mu.Unlock()
		return nil, mongoerr.Errorf(mongoerr.TransactionTooOld, "Cannot start transaction %d on session %s because a newer transaction %d has already started.", a.number, sessionString(mustMarshal(a.lsid[:1])), t.number)
	case a.start && t != nil && a.number == t.number:
		s.txns.mu.Unlock()
		return nil, mongoerr.Errorf(mongoerr.ConflictingOperationInProgress, "Cannot start transaction %d on session %s because a transaction with the same number has already started.", a.number, sessionString(mustMarshal(a.lsid[:1])))
	case a.start:
		if commitOrAbort {
			s.txns.mu.Unlock()
			return nil, mongoerr.Errorf(mongoerr.NoSuchTransaction, "Given transaction number %d does not match any in-progress transactions.", a.number)
		}
		if err := checkTxnReadConcern(req); err != nil {
			s.txns.mu.Unlock()
			return nil, err
		}
		// The snapshot includes every write a client has read so far.
		snap, err := s.store.CommittedOpTime()
		if err != nil {
			s.txns.mu.Unlock()
			return nil, err
		}
		old = t
		t = &transaction{key: a.key, lsid: a.lsid, number: a.number, state: txnActive, snap: snap}
		if s.txns.bySession == nil {
			s.txns.bySession = map[[16]byte]*transaction{}
		}
		s.txns.pruneLocked()
		s.txns.bySession[a.key] = t
		limit := s.opts.TransactionLifetimeLimit
		// The timer may fire before AfterFunc returns; its abort reads
		// t.timer under t.mu, so t.timer is set under t.mu too.
		t.mu.Lock()
		t.timer = time.AfterFunc(limit, func() {
			s.abortTxn(t, fmt.Sprintf("it exceeded the transaction lifetime limit of %s", limit))
		})
		t.mu.Unlock()
	case t == nil || a.number > t.number:
		s.txns.mu.Unlock()
		if !commitOrAbort || !s.committedBefore(a) {
			return nil, mongoerr.Errorf(mongoerr.NoSuchTransaction, "Given transaction number %d does not match any in-progress transactions.", a.number)
		}
		// Committed before devdb restarted (or before the table forgot it).
		t = &transaction{key: a.key, lsid: a.lsid, number: a.number, state: txnCommitted}
		s.txns.mu.Lock()
		if cur := s.txns.bySession[a.key]; cur == nil || cur.number < a.number {
			if s.txns.bySession == nil {
				s.txns.bySession = map[[16]byte]*transaction{}
			}
			s.txns.pruneLocked()
			s.txns.bySession[a.key] = t
		}
	}
	s.txns.mu.Unlock()
	if old != nil {
		s.abortTxn(old, "a newer transaction started on its session")
	}
	if !a.start {
		if _, ok := cmdField(req.Body, "readConcern"); ok && !commitOrAbort {
			return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "Only the first command in a transaction may specify a readConcern")
		}
	}
	t.run.Lock()
	return t, nil
}

// commitRecord is the session table's command fingerprint of a committed
// transaction.
const commitRecord = "commitTransaction"

// committedBefore reports whether the session table records the commit of
// transaction a.number of a's session.
func (s *Server) committedBefore(a txnArgs) bool {
	var rec *storage.SessionTxn
	err := s.store.View(func(tx *storage.Tx) error {
		var err error
		rec, err = tx.SessionTxn(mustMarshal(a.lsid[:1]), s.now(), retrySessionTimeout)
		return err
	})
	return err == nil && rec != nil && rec.TxnNumber == a.number && rec.Command == commitRecord
}

// pruneLocked forgets finished transactions when the table is full (tt.mu held).
func (tt *txnTable) pruneLocked() {
	if len(tt.bySession) < maxFinishedTransactions {
		return
	}
	for k, t := range tt.bySession {
		t.mu.Lock()
		done := t.state != txnActive
		t.mu.Unlock()
		if done {
			delete(tt.bySession, k)
		}
	}
}

// mustMarshal encodes d (an lsid built by parseTxnArgs, always encodable).
func mustMarshal(d bson.D) []byte {
	b, _ := bson.Marshal(d)
	return b
}

// invokeInTxn runs req, a command carrying autocommit, in its transaction.
// A statement that fails (an error or writeErrors) aborts the transaction.
func (s *Server) invokeInTxn(ctx context.Context, req *Request, h HandlerFunc) (bson.D, error) {
	t, err := s.beginTxnCommand(req)
	if err != nil {
		return nil, err
	}
	defer t.run.Unlock()
	switch req.Name {
	case "commitTransaction":
		return s.commitTxn(req, t)
	case "abortTransaction":
		t.mu.Lock()
		state := t.state
		var err error
		if state != txnActive {
			err = t.endedError()
		}
		t.mu.Unlock()
		if err != nil {
			return nil, err
		}
		s.finishTxn(t, txnAborted, "")
		return txnWriteConcernReply(req), s.finishWrite(req)
	}
	t.mu.Lock()
	if t.state != txnActive {
		err := t.endedError()
		t.mu.Unlock()
		return nil, err
	}
	t.mu.Unlock()
	req.txn = t
	reply, err := h(ctx, req)
	if err != nil {
		s.finishTxn(t, txnAborted, "a statement failed")
		return nil, err
	}
	if _, failed := cmdField(reply, "writeErrors"); failed {
		s.finishTxn(t, txnAborted, "a statement failed")
	}
	return reply, nil
}

// commitTxn commits t; a transaction already committed is answered with
// success again (commitTransaction is retryable). The reply's operationTime
// is the commit's cluster time, which all the transaction's change events
// report as clusterTime (a change stream started at it shows them all), not
// the time of the transaction's last oplog entry.
func (s *Server) commitTxn(req *Request, t *transaction) (bson.D, error) {
	t.mu.Lock()
	state, snap, ops, commitTS := t.state, t.snap, t.ops, t.commitTS
	var err error
	if state == txnAborted {
		err = t.endedError()
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if state == txnActive {
		// The session table records the commit in the same storage
		// transaction, so a commit retried after a restart still succeeds
		// (MongoDB's config.transactions).
		session, now := mustMarshal(t.lsid[:1]), s.now()
		reply := mustMarshal(bson.D{})
		record := func(tx *storage.Tx) error {
			return tx.PutSessionTxn(session, &storage.SessionTxn{TxnNumber: t.number, Command: commitRecord, Reply: reply, LastUse: now}, retryLimits())
		}
		var err error
		commitTS, err = s.store.CommitTxn(snap, ops, &storage.TxnInfo{LSID: t.lsid, TxnNumber: t.number}, record)
		if err != nil {
			s.finishTxn(t, txnAborted, "its commit failed")
			var ce *mongoerr.Error
			if errors.As(err, &ce) {
				return nil, ce
			}
			return nil, fmt.Errorf("commit transaction %d: %w", t.number, dataErr(err))
		}
		t.mu.Lock()
		t.commitTS = commitTS
		t.mu.Unlock()
		s.finishTxn(t, txnCommitted, "")
	}
	if !commitTS.IsZero() {
		req.opTime = commitTS
	}
	return txnWriteConcernReply(req), s.finishWrite(req)
}

// txnWriteConcernReply returns the reply of a commitTransaction or
// abortTransaction that succeeded: empty, or with the writeConcernError a
// single-node replica set gives for a write concern it cannot satisfy (w
// above 1, a tag other than "majority"), as MongoDB reports it after
// applying the commit.
func txnWriteConcernReply(req *Request) bson.D {
	wc, _ := cmdField(req.Body, "writeConcern")
	d, _ := wc.(bson.D)
	w, ok := fieldOf(d, "w")
	if !ok {
		return bson.D{}
	}
	var code mongoerr.Code
	var msg string
	switch v := w.(type) {
	case string:
		if v == "majority" {
			return bson.D{}
		}
		code, msg = mongoerr.UnknownReplWriteConcern, fmt.Sprintf("No write concern mode named '%s' found in replica set configuration", v)
	default:
		if n, ok := mql.ToFloat64(v); !ok || n <= 1 {
			return bson.D{}
		}
		code, msg = mongoerr.UnsatisfiableWriteConcern, "Not enough data-bearing nodes"
	}
	return bson.D{{Key: "writeConcernError", Value: bson.D{
		{Key: "code", Value: int32(code)}, {Key: "codeName", Value: code.String()}, {Key: "errmsg", Value: msg}}}}
}
