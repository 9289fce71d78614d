package storage

import (
	"fmt"
	"strings"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// MaxDocumentSize is MongoDB's maximum BSON document size (16 MiB).
const MaxDocumentSize = 16 * 1024 * 1024

// DuplicateKeyError reports a unique index violation (code 11000). Its Error
// text is MongoDB's E11000 message, for example
// `E11000 duplicate key error collection: db.coll index: name_1 dup key: { name: "x" }`.
type DuplicateKeyError struct {
	// DB and Coll name the collection, Index the violated index.
	DB, Coll, Index string
	// KeyPattern is the index's key pattern, e.g. {name: 1}.
	KeyPattern bson.D
	// KeyValue is the duplicated key, e.g. {name: "x"}.
	KeyValue bson.D
}

// Error implements error with MongoDB's E11000 message.
func (e *DuplicateKeyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "E11000 duplicate key error collection: %s.%s index: %s dup key: { ", e.DB, e.Coll, e.Index)
	for i, kv := range e.KeyValue {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(kv.Key)
		b.WriteString(": ")
		b.WriteString(mql.FormatValue(kv.Value))
	}
	b.WriteString(" }")
	return b.String()
}

// DocumentTooLargeError reports a document whose BSON is larger than
// MaxDocumentSize, refused by the write that was to store it; nothing was
// changed. It unwraps to MongoDB's error for an insert (BadValue, "object to
// insert too large. size in bytes: N, max size: 16777216"); an update or an
// upsert reports it with its own code and message (see MongoDB's update
// stage).
type DocumentTooLargeError struct {
	// Size is the document's BSON size in bytes.
	Size int
}

// Error implements error with MongoDB's message for an insert.
func (e *DocumentTooLargeError) Error() string {
	return fmt.Sprintf("object to insert too large. size in bytes: %d, max size: %d", e.Size, MaxDocumentSize)
}

// Unwrap returns the error MongoDB reports for an insert of the document.
func (e *DocumentTooLargeError) Unwrap() error {
	return &mongoerr.Error{Code: mongoerr.BadValue, Message: e.Error()}
}
