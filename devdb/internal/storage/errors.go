package storage

import (
	"fmt"
	"strings"

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
