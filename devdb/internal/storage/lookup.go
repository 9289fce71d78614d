package storage

import (
	"encoding/binary"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mql"
)

// LookupUnique returns the document of c whose key in the unique index
// named index equals values (one value per key field, in the index's key
// order), or ok false. It is the point lookup $merge uses for its "on"
// fields.
func (t *Tx) LookupUnique(c *Collection, index string, values []any) (rid RecordID, doc bson.D, ok bool, err error) {
	b := t.dataBucket(c)
	if b == nil {
		return 0, nil, false, nil
	}
	ib := b.Bucket(indexBucketName(index))
	if ib == nil {
		return 0, nil, false, fmt.Errorf("look up index %s of %s: index has no data", index, c.Namespace())
	}
	var coll *mql.Collation
	for _, spec := range c.Indexes {
		if spec.Name == index {
			coll = spec.Collation()
		}
	}
	var enc []byte
	for _, v := range values {
		enc = appendKeyColl(enc, v, coll)
	}
	r := ib.Get(enc)
	if r == nil {
		return 0, nil, false, nil
	}
	doc, ok, err = t.load(c, b, r)
	return RecordID(binary.BigEndian.Uint64(r)), doc, ok, err
}
