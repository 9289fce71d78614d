package store

import (
	"encoding/binary"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// appendBucketV1 appends b's BSON document to dst with its records in
// format 1, as the previous version wrote them: the records' distinct
// webhook-ids and document keys in the top-level arrays webhookIds and
// documentKeys (indexed by the database) and no key summary. Tests use it
// to check that such buckets are still read, found and trimmed.
func appendBucketV1(dst []byte, b *attemptBucket) ([]byte, error) {
	if b.refs == nil {
		b.index()
	}
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendObjectIDElement(dst, "_id", b.ID)
	dst = bsoncore.AppendStringElement(dst, "trigger", b.Trigger)
	dst = appendTime(dst, "first", b.First)
	dst = appendTime(dst, "last", b.Last)
	dst = appendInt(dst, "n", b.N)
	dst = bsoncore.AppendBooleanElement(dst, "failed", b.Failed)
	var err error
	if len(b.WebhookIDs) > 0 {
		var aidx int32
		aidx, dst = bsoncore.AppendArrayElementStart(dst, "webhookIds")
		for i, w := range b.WebhookIDs {
			dst = bsoncore.AppendStringElement(dst, strconv.Itoa(i), w)
		}
		if dst, err = bsoncore.AppendArrayEnd(dst, aidx); err != nil {
			return nil, err
		}
	}
	if len(b.DocumentKeys) > 0 {
		var aidx int32
		aidx, dst = bsoncore.AppendArrayElementStart(dst, "documentKeys")
		for i, k := range b.DocumentKeys {
			dst = bsoncore.AppendDocumentElement(dst, strconv.Itoa(i), k)
		}
		if dst, err = bsoncore.AppendArrayEnd(dst, aidx); err != nil {
			return nil, err
		}
	}
	dst = bsoncore.AppendHeader(dst, bsoncore.TypeBinary, "records")
	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0, recordsSubtypeV1)
	start := len(dst)
	dst = b.appendRecords(dst, recordsVersion1)
	binary.LittleEndian.PutUint32(dst[lenAt:], uint32(len(dst)-start))
	return bsoncore.AppendDocumentEnd(dst, idx)
}
