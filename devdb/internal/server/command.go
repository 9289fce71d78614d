package server

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Request is one decoded command as a handler sees it.
//
// Body is the command document. For OP_MSG, each document-sequence section
// (kind 1, as drivers send for insert/update/delete) is appended to Body as a
// bson.A of bson.D under the sequence's identifier, so handlers never see the
// wire format.
type Request struct {
	// DB is the target database ($db for OP_MSG, the namespace prefix for OP_QUERY).
	DB string
	// Name is the command name exactly as sent (the first key of Body).
	Name string
	// Body is the whole command document.
	Body bson.D
	// ConnID is the server-assigned connection id (hello's connectionId).
	ConnID int64
	// Remote is the client's address as host:port.
	Remote string

	// conn is the connection the request came on; nil for requests built
	// by tests.
	conn *conn
	// cursorNS, when set, is the namespace an aggregate registers its
	// cursor under (a view's, for reads on views).
	cursorNS string
	// txn is the multi-document transaction the command runs in, or nil.
	txn *transaction
	// explain, when not nil, asks the handler of an explainable command to
	// answer with its explain output instead of running (see cmdExplain).
	explain *explainRequest
	// opTime, when not zero, is the operationTime of the command's
	// successful reply, set by its handler (a commitTransaction's commit
	// time); otherwise the reply carries the last op time.
	opTime bson.Timestamp
}

// appName returns the application name the request's connection gave in its
// handshake (client.application.name), or "".
func (r *Request) appName() string {
	if r.conn == nil {
		return ""
	}
	return r.conn.appName
}

// HandlerFunc answers one command. It returns the reply fields without "ok",
// "operationTime" and "$clusterTime", which the server adds. An error that is
// (or wraps) a *mongoerr.Error is sent as a command error with its
// code; any other error is sent as InternalError (code 1).
type HandlerFunc func(ctx context.Context, req *Request) (bson.D, error)

// CursorSource produces the documents of one server-side cursor. The cursor
// manager owns a registered source: it calls NextBatch from at most one
// goroutine at a time and calls Close exactly once (exhaustion, killCursors,
// timeout reaping or server shutdown).
type CursorSource interface {
	// NextBatch returns up to n documents (n <= 0 means "no limit but
	// maxBytes") whose total size, each counted with batchElemSize (the
	// document plus its array element header in the reply), stays within
	// maxBytes; a single document larger than maxBytes is returned alone. For awaitable
	// cursors (change streams) it may block up to await for new data, and
	// must return early when ctx is done. exhausted reports that the cursor
	// has nothing more to return, ever.
	NextBatch(ctx context.Context, n, maxBytes int, await time.Duration) (docs []bson.Raw, exhausted bool, err error)
	// ReplyFields returns extra fields for the reply's cursor subdocument
	// after the batch just returned (for example postBatchResumeToken); nil
	// for none.
	ReplyFields() bson.D
	// Close releases the source's resources.
	Close()
}

// CursorOptions says how a new cursor's first batch is produced and how later
// getMores treat it.
type CursorOptions struct {
	// BatchSize is the first batch's document limit; 0 means the default
	// (101 documents, as MongoDB does), and 0 sent explicitly by a client for
	// an aggregate means an empty first batch (set ZeroBatch).
	BatchSize int
	// ZeroBatch requests an empty first batch (explicit cursor.batchSize 0).
	ZeroBatch bool
	// SingleBatch closes the cursor after the first batch.
	SingleBatch bool
	// Awaitable cursors (change streams) block in getMore up to maxTimeMS
	// (default 1s) waiting for data, and are never exhausted by an empty batch.
	Awaitable bool
	// ExecutorContext is the context MongoDB's command adds to an error
	// raised while its first batch is built ("Executor error during find
	// command", "PlanExecutor error during aggregation"); empty for commands
	// whose errors carry none. getMore always adds its own.
	ExecutorContext string
}

// batchElemOverhead is what one document adds to a reply's batch array
// beyond its own bytes: the element type byte, the decimal index key (at most
// 7 digits: a 16 MiB batch holds fewer than 10 million documents) and the
// key's NUL.
const batchElemOverhead = 1 + 7 + 1

// batchElemSize is the size a document counts for against a batch's byte
// limit, so that a full batch still fits in the reply size limit.
func batchElemSize(doc bson.Raw) int { return len(doc) + batchElemOverhead }
