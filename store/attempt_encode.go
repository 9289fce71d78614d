package store

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// MarshalBSON encodes the bucket: its top-level fields as the driver's
// reflection encoder does from the struct tags, and "records" as a binary
// value (subtype 0) holding the BSON array of the records, each encoded as
// the driver would encode an AttemptRecord except that zero times are left
// out (the driver ignores omitzero and writes year 1; both decode to the
// zero time, and a test compares the two). It takes a fraction of the
// driver's time: the history writer encodes every record the runner's
// deliveries make, on the runner's CPU.
func (b *attemptBucket) MarshalBSON() ([]byte, error) {
	size := 256
	for i := range b.Records {
		size += recordSize(&b.Records[i])
	}
	return appendBucket(make([]byte, 0, size), b)
}

// appendBucket appends b's BSON document to dst.
func appendBucket(dst []byte, b *attemptBucket) ([]byte, error) {
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
	// "records": binary subtype 0, written in place: type, key, length,
	// subtype, then the array document, whose length is patched in.
	dst = bsoncore.AppendHeader(dst, bsoncore.TypeBinary, "records")
	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0x00)
	start := len(dst)
	ridx, dst := bsoncore.AppendArrayStart(dst)
	for i := range b.Records {
		if dst, err = appendRecord(dst, strconv.Itoa(i), &b.Records[i]); err != nil {
			return nil, err
		}
	}
	if dst, err = bsoncore.AppendArrayEnd(dst, ridx); err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(dst[lenAt:], uint32(len(dst)-start))
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// storedBucket is a bucket as stored, its records still encoded.
type storedBucket struct {
	ID           bson.ObjectID `bson:"_id"`
	Trigger      string        `bson:"trigger"`
	First        time.Time     `bson:"first"`
	Last         time.Time     `bson:"last"`
	N            int           `bson:"n"`
	Failed       bool          `bson:"failed"`
	WebhookIDs   []string      `bson:"webhookIds,omitempty"`
	DocumentKeys []bson.Raw    `bson:"documentKeys,omitempty"`
	Records      bson.Binary   `bson:"records"`
}

// UnmarshalBSON decodes a bucket written by MarshalBSON (a projection
// without "records" leaves Records empty).
func (b *attemptBucket) UnmarshalBSON(data []byte) error {
	var sb storedBucket
	if err := bson.Unmarshal(data, &sb); err != nil {
		return err
	}
	*b = attemptBucket{ID: sb.ID, Trigger: sb.Trigger, First: sb.First, Last: sb.Last, N: sb.N, Failed: sb.Failed,
		WebhookIDs: sb.WebhookIDs, DocumentKeys: sb.DocumentKeys}
	if len(sb.Records.Data) == 0 {
		return nil
	}
	vals, err := bson.Raw(sb.Records.Data).Values()
	if err != nil {
		return fmt.Errorf("decode the records of history bucket %s: %w", sb.ID.Hex(), err)
	}
	b.Records = make([]AttemptRecord, len(vals))
	for i, v := range vals {
		doc, ok := v.DocumentOK()
		if !ok {
			return fmt.Errorf("decode the records of history bucket %s: record %d is a %s, not a document", sb.ID.Hex(), i, v.Type)
		}
		if err := bson.Unmarshal(doc, &b.Records[i]); err != nil {
			return fmt.Errorf("decode the records of history bucket %s: record %d: %w", sb.ID.Hex(), i, err)
		}
	}
	return nil
}

// appendRecord appends r as the embedded document key of dst, field by
// field as AttemptRecord's struct tags say (omitempty, omitzero).
func appendRecord(dst []byte, key string, r *AttemptRecord) ([]byte, error) {
	idx, dst := bsoncore.AppendDocumentElementStart(dst, key)
	if !r.ID.IsZero() {
		dst = bsoncore.AppendObjectIDElement(dst, "_id", r.ID)
	}
	dst = bsoncore.AppendStringElement(dst, "kind", r.Kind)
	dst = appendString(dst, "trigger", r.Trigger)
	dst = appendString(dst, "partition", r.Partition)
	dst = appendString(dst, "webhookId", r.WebhookID)
	if len(r.DocumentKey) > 0 {
		dst = bsoncore.AppendDocumentElement(dst, "documentKey", r.DocumentKey)
	}
	if r.DocumentKeyOmitted {
		dst = bsoncore.AppendBooleanElement(dst, "documentKeyOmitted", true)
	}
	dst = appendString(dst, "operation", r.Operation)
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
	dst = appendString(dst, "reason", r.Reason)
	dst = appendString(dst, "error", r.Error)
	dst = bsoncore.AppendDoubleElement(dst, "latencyMs", r.LatencyMS)
	dst = appendString(dst, "response", r.Response)
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
	dst = appendString(dst, "by", r.By)
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// appendString appends a string element unless s is empty (omitempty).
func appendString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return bsoncore.AppendStringElement(dst, key, s)
}

// appendInt appends an int as the driver does: int32 when it fits.
func appendInt(dst []byte, key string, n int) []byte {
	if int(int32(n)) == n {
		return bsoncore.AppendInt32Element(dst, key, int32(n))
	}
	return bsoncore.AppendInt64Element(dst, key, int64(n))
}

// appendTime appends t as a BSON date (milliseconds), as the driver does.
func appendTime(dst []byte, key string, t time.Time) []byte {
	return bsoncore.AppendDateTimeElement(dst, key, int64(bson.NewDateTimeFromTime(t)))
}
