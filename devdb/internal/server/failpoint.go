package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// Fail points (MongoDB's test commands, enabled by Options.EnableTestCommands
// as mongod's enableTestCommands): configureFailPoint turns on one of the fail
// points below, which make later commands fail the way the driver
// specifications' tests need. Without test commands configureFailPoint does
// not exist (CommandNotFound), as in MongoDB.
const (
	// fpFailCommand fails the commands named in data.failCommands before they
	// run: errorCode (with errorLabels), closeConnection, blockConnection +
	// blockTimeMS; or after they run: writeConcernError. data.appName limits
	// it to connections whose handshake named that application.
	fpFailCommand = "failCommand"
	// fpFailGetMoreAfterCursorCheckout fails getMore once its cursor is found
	// (data.errorCode or data.closeConnection); the cursor is destroyed and a
	// change stream's error carries ResumableChangeStreamError when its code
	// is resumable.
	fpFailGetMoreAfterCursorCheckout = "failGetMoreAfterCursorCheckout"
	// fpOnPrimaryTransactionalWrite is evaluated once per document written by
	// a retryable write: by default the connection is closed after the write
	// commits (the client sees a network error, the write is done); with
	// data.failBeforeCommitExceptionCode the write is rolled back and fails
	// with that code. data.closeConnection: false keeps the connection.
	fpOnPrimaryTransactionalWrite = "onPrimaryTransactionalWrite"
)

// errCloseConnection makes the connection close without a reply: a fail
// point's closeConnection. The command's effects (if any) stay.
var errCloseConnection = errors.New("fail point: close the connection")

// failMode is when a configured fail point fires.
type failMode int

const (
	modeOff         failMode = iota
	modeAlwaysOn             // every evaluation
	modeTimes                // the next n evaluations, then off
	modeSkip                 // every evaluation after the first n
	modeProbability          // each evaluation with probability p
)

// failPoint is one configured fail point.
type failPoint struct {
	mode failMode
	n    int64   // remaining times (modeTimes) or skips (modeSkip)
	p    float64 // modeProbability
	data bson.D
	// entered counts the evaluations that fired, reported as the count of
	// the next configureFailPoint.
	entered int64
}

// failPoints is the server's fail point registry. It is safe for concurrent
// use; with no fail point configured, fire costs one atomic load.
type failPoints struct {
	active atomic.Int32 // number of points not off
	mu     sync.Mutex
	points map[string]*failPoint
}

// knownFailPoints are the names configureFailPoint accepts.
var knownFailPoints = []string{fpFailCommand, fpFailGetMoreAfterCursorCheckout, fpOnPrimaryTransactionalWrite}

// fire evaluates the fail point name for one occasion: when it is on and
// match(data) accepts (nil accepts everything), its mode decides whether it
// fires; a firing returns its data. Only accepted evaluations consume
// times/skip, as in MongoDB.
func (f *failPoints) fire(name string, match func(data bson.D) bool) (bson.D, bool) {
	if f.active.Load() == 0 {
		return nil, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fp := f.points[name]
	if fp == nil || fp.mode == modeOff {
		return nil, false
	}
	if match != nil && !match(fp.data) {
		return nil, false
	}
	switch fp.mode {
	case modeTimes:
		fp.n--
		if fp.n <= 0 {
			fp.mode = modeOff
			f.active.Add(-1)
		}
	case modeSkip:
		if fp.n > 0 {
			fp.n--
			return nil, false
		}
	case modeProbability:
		if rand.Float64() >= fp.p {
			return nil, false
		}
	}
	fp.entered++
	return fp.data, true
}

// set configures name and returns how often it fired before.
func (f *failPoints) set(name string, fp *failPoint) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.points == nil {
		f.points = map[string]*failPoint{}
	}
	old := f.points[name]
	var entered int64
	if old != nil {
		entered = old.entered
		if old.mode != modeOff {
			f.active.Add(-1)
		}
	}
	if fp.mode != modeOff {
		f.active.Add(1)
	}
	f.points[name] = fp
	return entered
}

// registerTestCommands registers configureFailPoint (Options.EnableTestCommands).
func (s *Server) registerTestCommands() {
	s.command("configureFailPoint", "configure a fail point (test command)", s.cmdConfigureFailPoint).admin()
}

// cmdConfigureFailPoint answers {configureFailPoint: NAME, mode, data?} on
// the admin database with {count: <times the point fired before>}.
func (s *Server) cmdConfigureFailPoint(_ context.Context, req *Request) (bson.D, error) {
	name, ok := req.Body[0].Value.(string)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field 'configureFailPoint' is the wrong type '%s', expected type 'string'", mql.TypeName(req.Body[0].Value))
	}
	if !slices.Contains(knownFailPoints, name) {
		return nil, mongoerr.Errorf(mongoerr.FailPointSetFailed, "%s not found (devdb implements the fail points %v)", name, knownFailPoints)
	}
	fp := &failPoint{}
	modeV, ok := cmdField(req.Body, "mode")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.IDLMissingField, "BSON field 'configureFailPoint.mode' is missing but a required field")
	}
	if err := parseFailMode(modeV, fp); err != nil {
		return nil, err
	}
	if v, ok := cmdField(req.Body, "data"); ok {
		d, ok := v.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "the 'data' option must be a BSON object")
		}
		if err := checkFailPointData(name, d); err != nil {
			return nil, err
		}
		fp.data = d
	}
	count := s.failPoints.set(name, fp)
	s.log.Info("devdb: fail point configured", "failPoint", name, "mode", modeV, "data", fp.data)
	return bson.D{{Key: "count", Value: count}}, nil
}

// parseFailMode reads configureFailPoint's mode into fp: "off", "alwaysOn",
// {times: n}, {skip: n} or {activationProbability: p}.
func parseFailMode(v any, fp *failPoint) error {
	bad := mongoerr.Errorf(mongoerr.BadValue, "'mode' must be one of 'off', 'alwaysOn', 'times', and 'activationProbability'")
	switch m := v.(type) {
	case string:
		switch m {
		case "off":
			fp.mode = modeOff
		case "alwaysOn":
			fp.mode = modeAlwaysOn
		default:
			return bad
		}
		return nil
	case bson.D:
		if len(m) != 1 {
			return bad
		}
		switch m[0].Key {
		case "times", "skip":
			n, err := intValue("mode."+m[0].Key, m[0].Value)
			if err != nil {
				return err
			}
			if n < 0 {
				return mongoerr.Errorf(mongoerr.BadValue, "'%s' option to 'mode' must be positive", m[0].Key)
			}
			fp.n = n
			fp.mode = modeSkip
			if m[0].Key == "times" {
				fp.mode = modeTimes
				if n == 0 {
					fp.mode = modeOff
				}
			}
			return nil
		case "activationProbability":
			p, ok := mql.ToFloat64(m[0].Value)
			if !ok || p < 0 || p > 1 {
				return mongoerr.Errorf(mongoerr.BadValue, "'activationProbability' option to 'mode' must be a double between 0 and 1")
			}
			fp.mode, fp.p = modeProbability, p
			return nil
		}
	}
	return bad
}

// checkFailPointData rejects data the named fail point could not use.
func checkFailPointData(name string, d bson.D) error {
	for _, e := range d {
		switch e.Key {
		case "failCommands", "errorLabels":
			a, ok := e.Value.(bson.A)
			if !ok {
				return mongoerr.Errorf(mongoerr.TypeMismatch, "fail point %s: '%s' must be an array of strings", name, e.Key)
			}
			for _, x := range a {
				if _, ok := x.(string); !ok {
					return mongoerr.Errorf(mongoerr.TypeMismatch, "fail point %s: '%s' must be an array of strings", name, e.Key)
				}
			}
		case "errorCode", "blockTimeMS", "failBeforeCommitExceptionCode":
			if _, err := intValue(name+"."+e.Key, e.Value); err != nil {
				return err
			}
		case "writeConcernError":
			if _, ok := e.Value.(bson.D); !ok {
				return mongoerr.Errorf(mongoerr.TypeMismatch, "fail point %s: 'writeConcernError' must be an object", name)
			}
		}
	}
	if v, ok := fieldOf(d, "blockConnection"); ok && mql.Truthy(v) {
		if _, ok := fieldOf(d, "blockTimeMS"); !ok {
			return mongoerr.Errorf(mongoerr.InvalidOptions, "must specify 'blockTimeMS' when 'blockConnection' is true")
		}
	}
	return nil
}

// failCommandApplies reports whether failCommand's data targets req: its
// name is in failCommands and, with appName, the connection's handshake
// named that application.
func failCommandApplies(data bson.D, req *Request) bool {
	if req.Name == "configureFailPoint" {
		return false
	}
	cmds, _ := fieldOf(data, "failCommands")
	a, _ := cmds.(bson.A)
	if !slices.Contains(a, any(req.Name)) {
		return false
	}
	if app, ok := fieldOf(data, "appName"); ok {
		return app == req.appName()
	}
	return true
}

// dataBool returns the boolean (or truthy) field key of a fail point's data.
func dataBool(data bson.D, key string) bool {
	v, ok := fieldOf(data, key)
	return ok && mql.Truthy(v)
}

// dataInt returns the integer field key of a fail point's data.
func dataInt(data bson.D, key string) (int64, bool) {
	v, ok := fieldOf(data, key)
	if !ok {
		return 0, false
	}
	n, err := intValue(key, v)
	return n, err == nil
}

// dataLabels returns the errorLabels of a fail point's data: nil when it has
// none (the server then computes labels as usual), else a non-nil slice that
// replaces them (possibly empty), as MongoDB's errorLabels override does.
func dataLabels(data bson.D) []string {
	v, ok := fieldOf(data, "errorLabels")
	if !ok {
		return nil
	}
	a, _ := v.(bson.A)
	labels := make([]string, 0, len(a))
	for _, x := range a {
		if s, ok := x.(string); ok {
			labels = append(labels, s)
		}
	}
	return labels
}

// failCommandBefore applies failCommand to req before it runs: it blocks
// for blockTimeMS (blockConnection), then closes the connection
// (errCloseConnection) or fails with errorCode. A nil error lets the command
// run.
func (s *Server) failCommandBefore(ctx context.Context, req *Request) error {
	data, ok := s.failPoints.fire(fpFailCommand, func(data bson.D) bool {
		_, hasCode := dataInt(data, "errorCode")
		return failCommandApplies(data, req) &&
			(hasCode || dataBool(data, "closeConnection") || dataBool(data, "blockConnection"))
	})
	if !ok {
		return nil
	}
	if dataBool(data, "blockConnection") {
		ms, _ := dataInt(data, "blockTimeMS")
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if dataBool(data, "closeConnection") {
		return errCloseConnection
	}
	if code, ok := dataInt(data, "errorCode"); ok {
		return &mongoerr.Error{Code: mongoerr.Code(code), Message: "Failing command via 'failCommand' failpoint", Labels: dataLabels(data)}
	}
	return nil
}

// failCommandAfter applies failCommand's writeConcernError to the reply of
// req, which succeeded: the reply gains the writeConcernError document and
// the labels of the fail point, or those MongoDB computes for it.
func (s *Server) failCommandAfter(req *Request, reply bson.D) bson.D {
	data, ok := s.failPoints.fire(fpFailCommand, func(data bson.D) bool {
		_, hasWCE := fieldOf(data, "writeConcernError")
		return hasWCE && failCommandApplies(data, req)
	})
	if !ok {
		return reply
	}
	wceV, _ := fieldOf(data, "writeConcernError")
	wce, _ := wceV.(bson.D)
	reply = append(reply, bson.E{Key: "writeConcernError", Value: wce})
	labels := dataLabels(data)
	if labels == nil {
		code, _ := dataInt(wce, "code")
		if isRetryableWriteCommand(req) && isRetryableWriteErrorCode(mongoerr.Code(code)) {
			labels = []string{labelRetryableWrite}
		}
	}
	if len(labels) > 0 {
		reply = append(reply, bson.E{Key: "errorLabels", Value: stringsToA(labels)})
	}
	return reply
}

// failGetMore applies failGetMoreAfterCursorCheckout to a getMore whose
// cursor c was found: it returns the error to answer (the caller destroys
// the cursor), or nil.
func (s *Server) failGetMore(changeStream bool) error {
	data, ok := s.failPoints.fire(fpFailGetMoreAfterCursorCheckout, nil)
	if !ok {
		return nil
	}
	if dataBool(data, "closeConnection") {
		return errCloseConnection
	}
	code, ok := dataInt(data, "errorCode")
	if !ok {
		return nil
	}
	e := &mongoerr.Error{Code: mongoerr.Code(code), Message: "Failing command via 'failGetMoreAfterCursorCheckout' failpoint"}
	if changeStream && isResumableChangeStreamCode(e.Code) {
		e.Labels = []string{labelResumable}
	}
	return e
}

// transactionalWrite is the outcome of onPrimaryTransactionalWrite for one
// retryable write command.
type transactionalWrite struct {
	// fail is the error that rolls the write back (failBeforeCommitExceptionCode).
	fail error
	// closeConn closes the connection after the write commits.
	closeConn bool
}

// onTransactionalWrite evaluates onPrimaryTransactionalWrite once for each
// of the writes documents a retryable write made, before it commits, and
// returns what the first firing asks for.
func (s *Server) onTransactionalWrite(writes int) transactionalWrite {
	for range writes {
		data, ok := s.failPoints.fire(fpOnPrimaryTransactionalWrite, nil)
		if !ok {
			continue
		}
		var out transactionalWrite
		if v, ok := fieldOf(data, "closeConnection"); !ok || mql.Truthy(v) {
			out.closeConn = true
		}
		if code, ok := dataInt(data, "failBeforeCommitExceptionCode"); ok {
			out.fail = mongoerr.Errorf(mongoerr.Code(code), "Failing write due to failpoint. The write must not be reflected.")
		}
		return out
	}
	return transactionalWrite{}
}

// Error labels MongoDB computes (see errorLabelsFor).
const (
	labelRetryableWrite = "RetryableWriteError"
	labelTransientTxn   = "TransientTransactionError"
)

// isRetryableWriteCommand reports whether req is a retryable write: a write
// command with txnNumber outside a multi-document transaction, or a
// transaction's commitTransaction or abortTransaction.
func isRetryableWriteCommand(req *Request) bool {
	if _, ok := cmdField(req.Body, "txnNumber"); !ok {
		return false
	}
	_, inTxn := cmdField(req.Body, "autocommit")
	switch req.Name {
	case "insert", "update", "delete", "findAndModify", "findandmodify":
		return !inTxn
	case "commitTransaction", "abortTransaction":
		return inTxn
	}
	return false
}

// isTransientTransactionError reports whether a command of a
// multi-document transaction failing with code earns the
// TransientTransactionError label (MongoDB's isTransientTransactionError):
// write conflicts, snapshot and routing errors, and, except for
// commitTransaction and abortTransaction, retryable errors; NoSuchTransaction
// always.
func isTransientTransactionError(req *Request, code mongoerr.Code) bool {
	if _, ok := cmdField(req.Body, "txnNumber"); !ok {
		return false
	}
	if _, ok := cmdField(req.Body, "autocommit"); !ok {
		return false
	}
	switch code {
	case mongoerr.WriteConflict, mongoerr.LockTimeout, mongoerr.PreparedTransactionInProgress, mongoerr.SnapshotTooOld,
		mongoerr.SnapshotUnavailable, mongoerr.StaleConfig, mongoerr.StaleShardVersion, mongoerr.StaleEpoch,
		mongoerr.NoSuchTransaction:
		return true
	}
	if req.Name == "commitTransaction" || req.Name == "abortTransaction" {
		return false
	}
	return isRetryableWriteErrorCode(code)
}

// isRetryableWriteErrorCode reports whether code is in MongoDB's
// RetriableError category, which earns a retryable write's error the
// RetryableWriteError label.
func isRetryableWriteErrorCode(code mongoerr.Code) bool {
	switch code {
	case mongoerr.HostUnreachable, mongoerr.HostNotFound, mongoerr.NetworkTimeout, mongoerr.ShutdownInProgress,
		mongoerr.PrimarySteppedDown, mongoerr.ExceededTimeLimit, mongoerr.SocketException, mongoerr.NotWritablePrimary,
		mongoerr.InterruptedAtShutdown, mongoerr.InterruptedDueToReplStateChange, mongoerr.NotPrimaryNoSecondaryOk,
		mongoerr.NotPrimaryOrSecondary, mongoerr.ReadConcernMajorityNotAvailableYet:
		return true
	}
	return false
}

// isResumableChangeStreamCode reports whether a change stream's getMore
// failing with code earns ResumableChangeStreamError (MongoDB 6.0's list).
func isResumableChangeStreamCode(code mongoerr.Code) bool {
	switch code {
	case mongoerr.StaleShardVersion, mongoerr.StaleEpoch, mongoerr.StaleConfig, mongoerr.RetryChangeStream,
		mongoerr.FailedToSatisfyReadPreference:
		return true
	}
	return isRetryableWriteErrorCode(code) && code != mongoerr.ReadConcernMajorityNotAvailableYet
}

// errorLabelsFor returns the labels of an error reply to req: the error's
// own labels when it has them (a nil Labels means none were decided), else
// TransientTransactionError for a transaction's command failing with a
// transient code (isTransientTransactionError) and RetryableWriteError for a
// retryable write or a commit or abort failing with a retryable code.
func errorLabelsFor(req *Request, ce *mongoerr.Error) []string {
	if ce.Labels != nil {
		return ce.Labels
	}
	var labels []string
	if isTransientTransactionError(req, ce.Code) {
		labels = append(labels, labelTransientTxn)
	}
	if isRetryableWriteCommand(req) && isRetryableWriteErrorCode(ce.Code) {
		labels = append(labels, labelRetryableWrite)
	}
	return labels
}

// stringsToA converts labels to a BSON array.
func stringsToA(ss []string) bson.A {
	a := make(bson.A, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}
