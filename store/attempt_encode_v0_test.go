package store

import (
	"encoding/binary"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// appendBucketV0 appends b's BSON document to dst with its records in
// format 0, as earlier versions wrote them: a binary value (subtype 0)
// holding the BSON array of the records, each encoded as the driver encodes
// an AttemptRecord except that zero times are left out. Tests use it to
// check that such buckets are still read.
func appendBucketV0(dst []byte, b *attemptBucket) ([]byte, error) {
	return appendLegacyBucket(dst, b, 0x00, func(dst []byte) ([]byte, error) {
		ridx, dst := bsoncore.AppendArrayStart(dst)
		var err error
		for i := range b.len() {
			if dst, err = appendRecordV0(dst, strconv.Itoa(i), b.rec(i)); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(dst, ridx)
	})
}

// appendLegacyBucket appends b's BSON document to dst as formats 0 and 1
// laid it out: the bucket's fields, its distinct webhook-ids and document
// keys in the top-level arrays webhookIds and documentKeys, and records, a
// binary value of the given subtype whose content appendRecords writes.
func appendLegacyBucket(dst []byte, b *attemptBucket, subtype byte, appendRecords func([]byte) ([]byte, error)) ([]byte, error) {
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
	dst = append(dst, 0, 0, 0, 0, subtype)
	start := len(dst)
	if dst, err = appendRecords(dst); err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(dst[lenAt:], uint32(len(dst)-start))
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// appendRecordV0 appends r as the embedded document key of dst, field by
// field as AttemptRecord's struct tags say (omitempty, omitzero).
func appendRecordV0(dst []byte, key string, r *AttemptRecord) ([]byte, error) {
	idx, dst := bsoncore.AppendDocumentElementStart(dst, key)
	if !r.ID.IsZero() {
		dst = bsoncore.AppendObjectIDElement(dst, "_id", r.ID)
	}
	dst = bsoncore.AppendStringElement(dst, "kind", r.Kind)
	dst = appendStringV0(dst, "trigger", r.Trigger)
	dst = appendStringV0(dst, "partition", r.Partition)
	dst = appendStringV0(dst, "webhookId", r.WebhookID)
	if len(r.DocumentKey) > 0 {
		dst = bsoncore.AppendDocumentElement(dst, "documentKey", r.DocumentKey)
	}
	if r.DocumentKeyOmitted {
		dst = bsoncore.AppendBooleanElement(dst, "documentKeyOmitted", true)
	}
	dst = appendStringV0(dst, "operation", r.Operation)
	if r.Events != 0 {
		dst = appendInt(dst, "events", r.Events)
	}
	if r.Attempt != 0 {
		dst = appendInt(dst, "attempt", r.Attempt)
	}
	dst = bsoncore.AppendBooleanElement(dst, "failed", r.Failed)
	if r.Status != 0 {
		dst = appendInt(dst, "status", r.Status)
	}
	dst = appendStringV0(dst, "reason", r.Reason)
	dst = appendStringV0(dst, "error", r.Error)
	dst = bsoncore.AppendDoubleElement(dst, "latencyMs", r.LatencyMS)
	dst = appendStringV0(dst, "response", r.Response)
	if !r.StartedAt.IsZero() {
		dst = appendTime(dst, "startedAt", r.StartedAt)
	}
	dst = appendTime(dst, "at", r.At)
	if !r.SkippedFrom.IsZero() {
		dst = appendTime(dst, "skippedFrom", r.SkippedFrom)
	}
	if !r.SkippedTo.IsZero() {
		dst = appendTime(dst, "skippedTo", r.SkippedTo)
	}
	dst = appendStringV0(dst, "by", r.By)
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// appendStringV0 appends a string element unless s is empty (omitempty).
func appendStringV0(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return bsoncore.AppendStringElement(dst, key, s)
}
