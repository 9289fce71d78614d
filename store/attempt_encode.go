package store

import (
	"bytes"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The stored form of a bucket's records.
//
// A bucket document's "records" field is one binary value that the database
// never looks inside: every lookup selects buckets by their top-level
// fields and reads the records in the reader. Three layouts exist.
//
// Format 0 (written by earlier versions, still read): binary subtype 0x00
// holding a BSON array document of the records, each a document with
// AttemptRecord's BSON field names. The bucket's records' distinct
// webhook-ids and document keys are in top-level arrays, webhookIds and
// documentKeys.
//
// Format 1 (written by earlier versions, still read): binary subtype 0x80
// holding
//
//	version   1 byte, 0x01
//	count     uvarint: the number of records
//	base      varint: a time, in milliseconds since the Unix epoch (the
//	          bucket's oldest record's "at")
//	records   count records, oldest first
//
// with the top-level webhookIds and documentKeys arrays of format 0, which
// the records' webhookId and documentKey index.
//
// Format 2 (written now): binary subtype 0x80 holding
//
//	version   1 byte, 0x02
//	count     uvarint: the number of records
//	base      varint: as in format 1
//	webhooks  uvarint n, then n distinct webhook-ids, each a byte 0
//	          followed by a uvarint length L > 0 and L bytes, or a byte 1
//	          followed by 16 bytes b: the webhook-id "msg_" followed by
//	          the 26 characters of b in lower-case base32 without padding
//	          (alphabet a-z2-7), the form changehook's webhook-ids have
//	keys      uvarint n, then n distinct document keys, each a byte 0
//	          followed by a uvarint length L > 0 and L bytes (a BSON
//	          document), a byte 1 followed by 12 bytes: the document
//	          {_id: ObjectId} of that ObjectId, or a byte 2 followed by a
//	          varint d: the document {_id: ObjectId} of the ObjectId that
//	          shares its first 9 bytes with the previous entry's ObjectId
//	          (of form 1 or 2) and whose 3-byte counter is that entry's
//	          plus d
//	records   count records, oldest first, as in format 1, their
//	          webhookId and documentKey indexing the lists above
//
// and no top-level arrays: a bucket of format 2 has instead a key summary
// of those values in its top-level "keys" field (see attempt_summary.go),
// so that the database keeps no index entry per record.
//
// In formats 1 and 2 a uvarint is an unsigned LEB128 varint and a varint a
// zigzag-coded signed one (Go's encoding/binary AppendUvarint and
// AppendVarint). Times are milliseconds since the Unix epoch, the precision
// of a BSON date, and decode in UTC as a BSON date does. Each record is
//
//	flags        uvarint: bit 0 id as a delta, 1 id in full, 2 webhookId,
//	             3 documentKey, 4 failed (Failed is true), 5 startedAt,
//	             6 attempt, 7 status, 8 latency in nanoseconds, 9 latency
//	             as bits, 10 partition, 11 error, 12 response, 13 events,
//	             14 documentKeyOmitted (DocumentKeyOmitted is true),
//	             15 skippedFrom, 16 skippedTo, 17 by; a set bit says the
//	             field is present (below, in this order); a bit above 17
//	             is an error
//	kind         code (see below) of Kind: "delivery", "replay", "skipped"
//	operation    code of Operation: "insert", "update", "replace",
//	             "delete", "drop", "rename", "dropDatabase", "invalidate"
//	reason       code of Reason: "client_error", "server_error",
//	             "rate_limited", "timeout", "connection", "redirect",
//	             "canceled", "payload_error", "dropped", "blocked", "auth",
//	             "tls", "skipped"
//	id           with bit 0: varint, the difference of the 3-byte
//	             counter (bytes 9..11) from the previous record's ID, whose
//	             first 9 bytes it shares (before the first record: the zero
//	             ID); with bit 1: the 12 bytes; with neither: the zero
//	             ID
//	at           varint: At minus the previous record's At (the first
//	             record: minus base)
//	startedAt    if bit 5: varint, At minus StartedAt
//	skippedFrom  if bit 15: varint, SkippedFrom minus At
//	skippedTo    if bit 16: varint, SkippedTo minus At
//	webhookId    if bit 2: uvarint index into the bucket's webhook-ids
//	             (format 1: the top-level webhookIds; format 2: the
//	             list in the data)
//	documentKey  if bit 3: uvarint index into the bucket's document
//	             keys (likewise)
//	events       if bit 13: varint
//	attempt      if bit 6: varint
//	status       if bit 7: varint
//	latencyMs    if bit 8: uvarint n, the value being the
//	             float64 n/1e6 (a latency measured in nanoseconds); if
//	             bit 9: 8 bytes, the IEEE 754 bits little
//	             endian; with neither: +0
//	partition, error, response, by
//	             each if its flag is set: uvarint length L and L bytes, or
//	             L = 0: the previous record's value of the same field
//
// A code is one byte: 0 is "", 1 is followed by a uvarint length and that
// many bytes of the value (not empty), and 2+i is the field's list's value
// i, counting from 0 (the lists are part of the format: never reordered,
// only extended). A field absent by its flag is its zero value (the fields
// format 0 left out as empty). Records hold no trigger (the bucket's). Data
// that ends early or has bytes after its records, both bits of the id or of
// the latency, an index beyond the bucket's lists, an unknown code, a
// repeat of an empty value or (format 2) a list entry of an unknown form
// or a document key that is not a document does not decode.
const (
	recordsSubtypeV0 = 0x00
	recordsSubtypeV1 = 0x80
	recordsVersion1  = 0x01
	recordsVersion2  = 0x02
)

// Bits of a format 1 record's flags (bit i is 1<<i; see the format).
const (
	recFlagIDDelta = 1 << iota
	recFlagIDFull
	recFlagWebhook
	recFlagDocumentKey
	recFlagFailed
	recFlagStarted
	recFlagAttempt
	recFlagStatus
	recFlagLatencyNs
	recFlagLatencyBits
	recFlagPartition
	recFlagError
	recFlagResponse
	recFlagEvents
	recFlagDocumentKeyOmitted
	recFlagSkippedFrom
	recFlagSkippedTo
	recFlagBy
	recFlagsKnown = recFlagBy<<1 - 1
)

// Coded values of format 1 (see the format's description: append only).
var (
	kindCodes      = []string{"delivery", "replay", "skipped"}
	operationCodes = []string{"insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate"}
	reasonCodes    = []string{"client_error", "server_error", "rate_limited", "timeout", "connection", "redirect",
		"canceled", "payload_error", "dropped", "blocked", "auth", "tls", "skipped"}
)

// MarshalBSON encodes the bucket: its top-level fields as the driver's
// reflection encoder does from the struct tags, its key summary as "keys"
// and "records" as a format 2 binary value (see above). The history writer
// encodes every record the runner's deliveries make, on the runner's CPU.
func (b *attemptBucket) MarshalBSON() ([]byte, error) {
	if b.refs == nil {
		b.index()
	}
	n := b.len()
	size := 160 + len(b.Trigger) + 24*n + summaryBits(len(b.WebhookIDs)+len(b.DocumentKeys))/8
	for _, w := range b.WebhookIDs {
		size += len(w) + 2
	}
	for _, k := range b.DocumentKeys {
		size += len(k) + 2
	}
	for i := range n {
		r := b.rec(i)
		size += len(r.Partition) + len(r.Error) + len(r.Response) + len(r.By)
	}
	if b.sc == nil {
		return appendBucket(make([]byte, 0, size), b)
	}
	// A writer batch's bucket: its encoding goes to its reused buffer
	// (the driver copies it before InsertMany returns).
	buf := b.sc.bufs[b.si][:0]
	if cap(buf) < size {
		buf = make([]byte, 0, size)
	}
	out, err := appendBucket(buf, b)
	b.sc.bufs[b.si] = out
	return out, err
}

// appendBucket appends b's BSON document to dst (b indexed).
func appendBucket(dst []byte, b *attemptBucket) ([]byte, error) {
	idx, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendObjectIDElement(dst, "_id", b.ID)
	dst = bsoncore.AppendStringElement(dst, "trigger", b.Trigger)
	dst = appendTime(dst, "first", b.First)
	dst = appendTime(dst, "last", b.Last)
	dst = appendInt(dst, "n", b.N)
	dst = bsoncore.AppendBooleanElement(dst, "failed", b.Failed)
	// Binary values (subtype 0x80) written in place: type, key, length,
	// subtype, then the data, whose length is patched in.
	dst = bsoncore.AppendHeader(dst, bsoncore.TypeBinary, "keys")
	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0, recordsSubtypeV1)
	start := len(dst)
	dst = appendSummary(dst, b.keyHashes())
	binary.LittleEndian.PutUint32(dst[lenAt:], uint32(len(dst)-start))
	dst = bsoncore.AppendHeader(dst, bsoncore.TypeBinary, "records")
	lenAt = len(dst)
	dst = append(dst, 0, 0, 0, 0, recordsSubtypeV1)
	start = len(dst)
	dst = b.appendRecords(dst, recordsVersion2)
	binary.LittleEndian.PutUint32(dst[lenAt:], uint32(len(dst)-start))
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// keyHashes returns the key summary hashes of b's distinct webhook-ids and
// document keys (b indexed).
func (b *attemptBucket) keyHashes() []uint64 {
	m := len(b.WebhookIDs) + len(b.DocumentKeys)
	var hs []uint64
	if b.sc != nil {
		// The bucket's part of its batch's scratch: 2 per record.
		hs = b.sc.hashes[2*b.su : 2*b.su : 2*b.su+m]
	} else {
		hs = make([]uint64, 0, m)
	}
	for _, w := range b.WebhookIDs {
		hs = append(hs, summaryWebhookHash(w))
	}
	for _, k := range b.DocumentKeys {
		hs = append(hs, summaryKeyHash(k))
	}
	return hs
}

// webhookIDEncoding is the base32 of changehook's webhook-ids
// (dispatcher.WebhookID): "msg_" and 26 characters encoding 16 bytes.
var webhookIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// webhookIDValues maps a byte to its value in webhookIDEncoding's
// alphabet, 0xff for a byte outside it.
var webhookIDValues = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "abcdefghijklmnopqrstuvwxyz234567" {
		t[c] = byte(i)
	}
	return t
}()

// compactWebhookID returns the 16 bytes b of a webhook-id of changehook's
// form, "msg_" followed by the 26 characters of b in webhookIDEncoding,
// and false for any other text: one the encoding would not produce again
// from its bytes (a character outside the alphabet, or the last
// character's 2 bits beyond the 128 set). It is the decoding and the
// re-encoding check of webhookIDEncoding in one pass
// (TestCompactWebhookIDMatchesBase32).
func compactWebhookID(w string) (raw [16]byte, ok bool) {
	if len(w) != 30 || w[:4] != "msg_" {
		return raw, false
	}
	var acc uint64 // the bits read and not yet written, in its low bits
	bits, j := 0, 0
	for i := 4; i < 30; i++ {
		v := webhookIDValues[w[i]]
		if v == 0xff {
			return raw, false
		}
		acc = acc<<5 | uint64(v)
		if bits += 5; bits >= 8 {
			bits -= 8
			raw[j] = byte(acc >> bits)
			j++
		}
	}
	// 26 characters are 130 bits: 16 bytes and 2 bits, zero in the
	// encoding of 16 bytes.
	return raw, acc&(1<<bits-1) == 0
}

// Forms of a format 2 list entry.
const (
	entryLiteral = 0x00
	entryCompact = 0x01
	entryDelta   = 0x02
)

// appendWebhookEntry appends w as an entry of format 2's webhook-id list.
func appendWebhookEntry(dst []byte, w string) []byte {
	if raw, ok := compactWebhookID(w); ok {
		dst = append(dst, entryCompact)
		return append(dst, raw[:]...)
	}
	dst = append(dst, entryLiteral)
	dst = binary.AppendUvarint(dst, uint64(len(w)))
	return append(dst, w...)
}

// objectIDKeyPrefix is the start of the document {_id: ObjectId}: its
// length (22), the element's type and name.
var objectIDKeyPrefix = [9]byte{22, 0, 0, 0, byte(bsoncore.TypeObjectID), '_', 'i', 'd', 0}

// appendKeyEntry appends k as an entry of format 2's document key list;
// prev is the ObjectId of the previous entry of form 1 or 2 (the zero
// ObjectId before the first), which it updates.
func appendKeyEntry(dst []byte, k bson.Raw, prev *bson.ObjectID) []byte {
	if len(k) == 22 && [9]byte(k[:9]) == objectIDKeyPrefix && k[21] == 0 {
		id := bson.ObjectID(k[9:21])
		if !prev.IsZero() && [9]byte(id[:9]) == [9]byte(prev[:9]) {
			dst = append(dst, entryDelta)
			dst = binary.AppendVarint(dst, int64(idCounter(id))-int64(idCounter(*prev)))
		} else {
			dst = append(dst, entryCompact)
			dst = append(dst, id[:]...)
		}
		*prev = id
		return dst
	}
	dst = append(dst, entryLiteral)
	dst = binary.AppendUvarint(dst, uint64(len(k)))
	return append(dst, k...)
}

// msOf is t as a BSON date's milliseconds.
func msOf(t time.Time) int64 { return int64(bson.NewDateTimeFromTime(t)) }

// timeOfMS is the time of a BSON date's milliseconds, as the driver decodes
// it.
func timeOfMS(ms int64) time.Time { return time.Unix(ms/1000, ms%1000*1000000).UTC() }

// appendRecords appends b's records in format version (1: their
// webhook-ids and document keys are b's top-level arrays; 2: listed in the
// data) (b indexed).
func (b *attemptBucket) appendRecords(dst []byte, version byte) []byte {
	n := b.len()
	base := msOf(b.First)
	dst = append(dst, version)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendVarint(dst, base)
	if version == recordsVersion2 {
		dst = binary.AppendUvarint(dst, uint64(len(b.WebhookIDs)))
		for _, w := range b.WebhookIDs {
			dst = appendWebhookEntry(dst, w)
		}
		dst = binary.AppendUvarint(dst, uint64(len(b.DocumentKeys)))
		var prev bson.ObjectID
		for _, k := range b.DocumentKeys {
			dst = appendKeyEntry(dst, k, &prev)
		}
	}
	var prevID bson.ObjectID
	prevAt := base
	var zero AttemptRecord
	prev := &zero
	for i := range n {
		r := b.rec(i)
		w, d := b.refs[2*i], b.refs[2*i+1]
		var flags uint64
		switch {
		case r.ID.IsZero():
		case [9]byte(r.ID[:9]) == [9]byte(prevID[:9]):
			flags |= recFlagIDDelta
		default:
			flags |= recFlagIDFull
		}
		if w >= 0 {
			flags |= recFlagWebhook
		}
		if d >= 0 {
			flags |= recFlagDocumentKey
		}
		if r.DocumentKeyOmitted {
			flags |= recFlagDocumentKeyOmitted
		}
		if r.Failed {
			flags |= recFlagFailed
		}
		if !r.StartedAt.IsZero() {
			flags |= recFlagStarted
		}
		if !r.SkippedFrom.IsZero() {
			flags |= recFlagSkippedFrom
		}
		if !r.SkippedTo.IsZero() {
			flags |= recFlagSkippedTo
		}
		if r.Events != 0 {
			flags |= recFlagEvents
		}
		if r.Attempt != 0 {
			flags |= recFlagAttempt
		}
		if r.Status != 0 {
			flags |= recFlagStatus
		}
		latNs, latMode := latencyMode(r.LatencyMS)
		flags |= latMode
		if r.Partition != "" {
			flags |= recFlagPartition
		}
		if r.Error != "" {
			flags |= recFlagError
		}
		if r.Response != "" {
			flags |= recFlagResponse
		}
		if r.By != "" {
			flags |= recFlagBy
		}
		dst = binary.AppendUvarint(dst, flags)
		dst = appendCode(dst, kindCodes, r.Kind)
		dst = appendCode(dst, operationCodes, r.Operation)
		dst = appendCode(dst, reasonCodes, r.Reason)
		switch {
		case flags&recFlagIDDelta != 0:
			dst = binary.AppendVarint(dst, int64(idCounter(r.ID))-int64(idCounter(prevID)))
		case flags&recFlagIDFull != 0:
			dst = append(dst, r.ID[:]...)
		}
		prevID = r.ID
		at := msOf(r.At)
		dst = binary.AppendVarint(dst, at-prevAt)
		prevAt = at
		if flags&recFlagStarted != 0 {
			dst = binary.AppendVarint(dst, at-msOf(r.StartedAt))
		}
		if flags&recFlagSkippedFrom != 0 {
			dst = binary.AppendVarint(dst, msOf(r.SkippedFrom)-at)
		}
		if flags&recFlagSkippedTo != 0 {
			dst = binary.AppendVarint(dst, msOf(r.SkippedTo)-at)
		}
		if w >= 0 {
			dst = binary.AppendUvarint(dst, uint64(w))
		}
		if d >= 0 {
			dst = binary.AppendUvarint(dst, uint64(d))
		}
		if r.Events != 0 {
			dst = binary.AppendVarint(dst, int64(r.Events))
		}
		if r.Attempt != 0 {
			dst = binary.AppendVarint(dst, int64(r.Attempt))
		}
		if r.Status != 0 {
			dst = binary.AppendVarint(dst, int64(r.Status))
		}
		switch latMode {
		case recFlagLatencyNs:
			dst = binary.AppendUvarint(dst, latNs)
		case recFlagLatencyBits:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.LatencyMS))
		}
		dst = appendRepeatable(dst, r.Partition, prev.Partition)
		dst = appendRepeatable(dst, r.Error, prev.Error)
		dst = appendRepeatable(dst, r.Response, prev.Response)
		dst = appendRepeatable(dst, r.By, prev.By)
		prev = r
	}
	return dst
}

// latencyMode returns how a latency is stored: not at all (+0), as
// nanoseconds n when l is exactly float64(n)/1e6, or as its bits.
func latencyMode(l float64) (uint64, uint64) {
	if math.Float64bits(l) == 0 {
		return 0, 0
	}
	if l > 0 && l < 1<<53/1e6 {
		n := uint64(math.Round(l * 1e6))
		if float64(n)/1e6 == l {
			return n, recFlagLatencyNs
		}
	}
	return 0, recFlagLatencyBits
}

// idCounter is the counter of an ObjectID (its last 3 bytes).
func idCounter(id bson.ObjectID) uint32 {
	return uint32(id[9])<<16 | uint32(id[10])<<8 | uint32(id[11])
}

// appendCode appends s as a code of the values list.
func appendCode(dst []byte, values []string, s string) []byte {
	if s == "" {
		return append(dst, 0)
	}
	for i, v := range values {
		if v == s {
			return append(dst, byte(2+i))
		}
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendRepeatable appends s (not empty; nothing when empty, its flag
// unset) as a length and its bytes, or a length 0 when it is prev.
func appendRepeatable(dst []byte, s, prev string) []byte {
	switch {
	case s == "":
		return dst
	case s == prev:
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
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
	Keys         bson.Binary   `bson:"keys,omitempty"`
	Records      bson.Binary   `bson:"records"`
}

// UnmarshalBSON decodes a bucket with records in format 2, 1 or 0 (a
// projection without "records" leaves Records empty). Records that do not
// decode are an error naming the bucket. The top-level fields are read
// directly when they have the types MarshalBSON writes (decodeStored),
// otherwise by the driver's reflection decoder.
func (b *attemptBucket) UnmarshalBSON(data []byte) error {
	sb, ok := decodeStored(data)
	if !ok {
		sb = storedBucket{}
		if err := bson.Unmarshal(data, &sb); err != nil {
			return err
		}
	}
	*b = attemptBucket{ID: sb.ID, Trigger: sb.Trigger, First: sb.First, Last: sb.Last, N: sb.N, Failed: sb.Failed,
		WebhookIDs: sb.WebhookIDs, DocumentKeys: sb.DocumentKeys}
	if sb.Keys.Subtype == recordsSubtypeV1 && sb.Keys.Data != nil {
		b.summary, b.hasSummary = sb.Keys.Data, true
	}
	if len(sb.Records.Data) == 0 {
		return nil
	}
	var err error
	switch sb.Records.Subtype {
	case recordsSubtypeV1:
		b.Records, b.WebhookIDs, b.DocumentKeys, err = decodeRecords(sb.Records.Data, sb.WebhookIDs, sb.DocumentKeys)
	case recordsSubtypeV0:
		b.Records, err = decodeRecordsV0(sb.Records.Data)
	default:
		err = fmt.Errorf("binary subtype %#x is not a records format this version knows", sb.Records.Subtype)
	}
	if err != nil {
		return fmt.Errorf("decode the records of history bucket %s: %w", sb.ID.Hex(), err)
	}
	return nil
}

// decodeStored reads a bucket's top-level fields from a copy of data
// (the bucket's document keys and records refer to it), as the driver
// decodes them into a storedBucket; ok is false when a field has a type
// MarshalBSON does not write or data is not valid BSON (the driver then
// decodes it, or reports the problem).
func decodeStored(data []byte) (sb storedBucket, ok bool) {
	doc := bsoncore.Document(bytes.Clone(data))
	if doc.Validate() != nil {
		return sb, false
	}
	elems, err := doc.Elements()
	if err != nil {
		return sb, false
	}
	for _, e := range elems {
		v := e.Value()
		switch e.Key() {
		case "_id":
			sb.ID, ok = v.ObjectIDOK()
		case "trigger":
			sb.Trigger, ok = v.StringValueOK()
		case "first":
			var ms int64
			ms, ok = v.DateTimeOK()
			sb.First = timeOfMS(ms)
		case "last":
			var ms int64
			ms, ok = v.DateTimeOK()
			sb.Last = timeOfMS(ms)
		case "n":
			var n32 int32
			if n32, ok = v.Int32OK(); ok {
				sb.N = int(n32)
			} else {
				var n64 int64
				n64, ok = v.Int64OK()
				sb.N = int(n64)
			}
		case "failed":
			sb.Failed, ok = v.BooleanOK()
		case "webhookIds":
			var arr bsoncore.Array
			if arr, ok = v.ArrayOK(); !ok {
				break
			}
			vals, err := arr.Values()
			if err != nil {
				return sb, false
			}
			sb.WebhookIDs = make([]string, len(vals))
			for i, w := range vals {
				if sb.WebhookIDs[i], ok = w.StringValueOK(); !ok {
					return sb, false
				}
			}
		case "documentKeys":
			var arr bsoncore.Array
			if arr, ok = v.ArrayOK(); !ok {
				break
			}
			vals, err := arr.Values()
			if err != nil {
				return sb, false
			}
			sb.DocumentKeys = make([]bson.Raw, len(vals))
			for i, k := range vals {
				var d bsoncore.Document
				if d, ok = k.DocumentOK(); !ok {
					return sb, false
				}
				sb.DocumentKeys[i] = bson.Raw(d)
			}
		case "keys":
			sb.Keys.Subtype, sb.Keys.Data, ok = v.BinaryOK()
		case "records":
			sb.Records.Subtype, sb.Records.Data, ok = v.BinaryOK()
		default:
			ok = true // a field the bucket does not have: ignored, as the driver does
		}
		if !ok {
			return storedBucket{}, false
		}
	}
	return sb, true
}

// decodeRecordsV0 decodes format 0: a BSON array of record documents.
func decodeRecordsV0(data []byte) ([]AttemptRecord, error) {
	vals, err := bson.Raw(data).Values()
	if err != nil {
		return nil, err
	}
	recs := make([]AttemptRecord, len(vals))
	for i, v := range vals {
		doc, ok := v.DocumentOK()
		if !ok {
			return nil, fmt.Errorf("record %d is a %s, not a document", i, v.Type)
		}
		if err := bson.Unmarshal(doc, &recs[i]); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
	}
	return recs, nil
}

// errShortRecords reports records data that ends inside a record.
var errShortRecords = errors.New("records data ends early")

// recordsReader reads format 1 data (held as one string, so that the
// records' strings share its memory).
type recordsReader struct {
	s   string
	off int
	err error
}

func (rd *recordsReader) fail(err error) {
	if rd.err == nil {
		rd.err = err
	}
}

func (rd *recordsReader) byte() byte {
	if rd.off >= len(rd.s) {
		rd.fail(errShortRecords)
		return 0
	}
	c := rd.s[rd.off]
	rd.off++
	return c
}

func (rd *recordsReader) uvarint() uint64 {
	var x uint64
	for shift := uint(0); ; shift += 7 {
		if rd.off >= len(rd.s) {
			rd.fail(errShortRecords)
			return 0
		}
		c := rd.s[rd.off]
		rd.off++
		if shift == 63 && c > 1 {
			rd.fail(errors.New("records data holds a varint that overflows 64 bits"))
			return 0
		}
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x
		}
	}
}

func (rd *recordsReader) varint() int64 {
	u := rd.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// bytes returns the next n bytes.
func (rd *recordsReader) bytes(n uint64) string {
	if n > uint64(len(rd.s)-rd.off) {
		rd.fail(errShortRecords)
		rd.off = len(rd.s)
		return ""
	}
	s := rd.s[rd.off : rd.off+int(n)]
	rd.off += int(n)
	return s
}

// code reads a code of values.
func (rd *recordsReader) code(values []string) string {
	c := rd.byte()
	switch {
	case c == 0:
		return ""
	case c == 1:
		s := rd.bytes(rd.uvarint())
		if s == "" && rd.err == nil {
			rd.fail(errors.New("records data holds an empty literal"))
		}
		return s
	case int(c-2) < len(values):
		return values[c-2]
	}
	rd.fail(fmt.Errorf("records data holds the unknown code %d", c))
	return ""
}

// repeatable reads a length-prefixed string or, for length 0, prev.
func (rd *recordsReader) repeatable(prev string) string {
	n := rd.uvarint()
	if n == 0 {
		if prev == "" && rd.err == nil {
			rd.fail(errors.New("records data repeats an empty value"))
		}
		return prev
	}
	return rd.bytes(n)
}

// readLists reads format 2's lists of webhook-ids and document keys.
func (rd *recordsReader) readLists() ([]string, []bson.Raw, error) {
	// An entry takes at least 2 bytes.
	nw := rd.uvarint()
	if nw > uint64(len(rd.s)-rd.off)/2 {
		return nil, nil, fmt.Errorf("records data cannot hold %d webhook-ids", nw)
	}
	ws := make([]string, nw)
	// The compact webhook-ids' text, made one string at the end that the
	// webhook-ids share: compactAt[i] is the end of entry i's text in it
	// (0: a literal entry).
	var text []byte
	var compactAt []int32
	for i := range ws {
		switch rd.byte() {
		case entryLiteral:
			n := rd.uvarint()
			if n == 0 && rd.err == nil {
				return nil, nil, fmt.Errorf("webhook-id %d is empty", i)
			}
			ws[i] = rd.bytes(n)
		case entryCompact:
			if raw := rd.bytes(16); len(raw) == 16 {
				if compactAt == nil {
					compactAt = make([]int32, nw)
					text = make([]byte, 0, 30*(len(ws)-i))
				}
				text = append(text, "msg_"...)
				text = webhookIDEncoding.AppendEncode(text, []byte(raw))
				compactAt[i] = int32(len(text))
			}
		default:
			if rd.err == nil {
				return nil, nil, fmt.Errorf("webhook-id %d has an unknown form", i)
			}
		}
		if rd.err != nil {
			return nil, nil, fmt.Errorf("webhook-id %d: %w", i, rd.err)
		}
	}
	if compactAt != nil {
		all := string(text)
		for i, end := range compactAt {
			if end > 0 {
				ws[i] = all[end-30 : end]
			}
		}
	}
	nd := rd.uvarint()
	if nd > uint64(len(rd.s)-rd.off)/2 {
		return nil, nil, fmt.Errorf("records data cannot hold %d document keys", nd)
	}
	ds := make([]bson.Raw, nd)
	var compact []byte // the documents of compact keys, one allocation
	var prev bson.ObjectID
	// oidKey appends the document {_id: id} to compact as key i.
	oidKey := func(i int, id bson.ObjectID) {
		if compact == nil {
			compact = make([]byte, 0, 22*(len(ds)-i))
		}
		start := len(compact)
		compact = append(compact, objectIDKeyPrefix[:]...)
		compact = append(compact, id[:]...)
		compact = append(compact, 0)
		ds[i] = bson.Raw(compact[start:len(compact):len(compact)])
		prev = id
	}
	for i := range ds {
		switch rd.byte() {
		case entryLiteral:
			k := rd.bytes(rd.uvarint())
			if rd.err == nil && bsoncore.Document(k).Validate() != nil {
				return nil, nil, fmt.Errorf("document key %d is not a BSON document", i)
			}
			ds[i] = bson.Raw(k)
		case entryCompact:
			if id := rd.bytes(12); len(id) == 12 {
				oidKey(i, bson.ObjectID([]byte(id)))
			}
		case entryDelta:
			c := int64(idCounter(prev)) + rd.varint()
			if rd.err == nil && (prev.IsZero() || c < 0 || c >= 1<<24) {
				return nil, nil, fmt.Errorf("document key %d has an ObjectId counter out of range or no previous ObjectId", i)
			}
			id := prev
			id[9], id[10], id[11] = byte(c>>16), byte(c>>8), byte(c)
			oidKey(i, id)
		default:
			if rd.err == nil {
				return nil, nil, fmt.Errorf("document key %d has an unknown form", i)
			}
		}
		if rd.err != nil {
			return nil, nil, fmt.Errorf("document key %d: %w", i, rd.err)
		}
	}
	return ws, ds, nil
}

// decodeRecords decodes format 1 data of a bucket with the top-level
// webhookIDs and documentKeys, or format 2 data; it returns the records and
// the lists of webhook-ids and document keys they index.
func decodeRecords(data []byte, webhookIDs []string, documentKeys []bson.Raw) ([]AttemptRecord, []string, []bson.Raw, error) {
	rd := recordsReader{s: string(data)}
	version := rd.byte()
	if version != recordsVersion1 && version != recordsVersion2 {
		return nil, nil, nil, fmt.Errorf("records format version %d is not one this version knows", version)
	}
	n := rd.uvarint()
	base := rd.varint()
	if rd.err != nil {
		return nil, nil, nil, rd.err
	}
	if version == recordsVersion2 {
		var err error
		if webhookIDs, documentKeys, err = rd.readLists(); err != nil {
			return nil, nil, nil, err
		}
	}
	// A record takes at least 5 bytes (flags, three codes, at).
	if n > uint64(len(data))/5 {
		return nil, nil, nil, fmt.Errorf("records data of %d bytes cannot hold %d records", len(data), n)
	}
	if n == 0 {
		if rd.off != len(rd.s) {
			return nil, nil, nil, errors.New("records data has bytes after its records")
		}
		return nil, webhookIDs, documentKeys, nil
	}
	recs := make([]AttemptRecord, n)
	var prevID bson.ObjectID
	prevAt := base
	prev := &AttemptRecord{}
	for i := range recs {
		r := &recs[i]
		flags := rd.uvarint()
		if flags&^recFlagsKnown != 0 && rd.err == nil {
			return nil, nil, nil, fmt.Errorf("record %d has unknown flags %#x", i, flags&^recFlagsKnown)
		}
		r.Kind = rd.code(kindCodes)
		r.Operation = rd.code(operationCodes)
		r.Reason = rd.code(reasonCodes)
		switch flags & (recFlagIDDelta | recFlagIDFull) {
		case recFlagIDDelta:
			c := int64(idCounter(prevID)) + rd.varint()
			if (c < 0 || c >= 1<<24) && rd.err == nil {
				return nil, nil, nil, fmt.Errorf("record %d has an id counter out of range", i)
			}
			r.ID = prevID
			r.ID[9], r.ID[10], r.ID[11] = byte(c>>16), byte(c>>8), byte(c)
		case recFlagIDFull:
			copy(r.ID[:], rd.bytes(12))
		case recFlagIDDelta | recFlagIDFull:
			return nil, nil, nil, fmt.Errorf("record %d has two id forms", i)
		}
		prevID = r.ID
		at := prevAt + rd.varint()
		prevAt = at
		r.At = timeOfMS(at)
		if flags&recFlagStarted != 0 {
			r.StartedAt = timeOfMS(at - rd.varint())
		}
		if flags&recFlagSkippedFrom != 0 {
			r.SkippedFrom = timeOfMS(at + rd.varint())
		}
		if flags&recFlagSkippedTo != 0 {
			r.SkippedTo = timeOfMS(at + rd.varint())
		}
		if flags&recFlagWebhook != 0 {
			switch w := rd.uvarint(); {
			case w < uint64(len(webhookIDs)):
				r.WebhookID = webhookIDs[w]
			case rd.err == nil:
				return nil, nil, nil, fmt.Errorf("record %d names webhook-id %d of the bucket's %d", i, w, len(webhookIDs))
			}
		}
		if flags&recFlagDocumentKey != 0 {
			switch d := rd.uvarint(); {
			case d < uint64(len(documentKeys)):
				r.DocumentKey = documentKeys[d]
			case rd.err == nil:
				return nil, nil, nil, fmt.Errorf("record %d names document key %d of the bucket's %d", i, d, len(documentKeys))
			}
		}
		r.DocumentKeyOmitted = flags&recFlagDocumentKeyOmitted != 0
		r.Failed = flags&recFlagFailed != 0
		if flags&recFlagEvents != 0 {
			r.Events = int(rd.varint())
		}
		if flags&recFlagAttempt != 0 {
			r.Attempt = int(rd.varint())
		}
		if flags&recFlagStatus != 0 {
			r.Status = int(rd.varint())
		}
		switch flags & (recFlagLatencyNs | recFlagLatencyBits) {
		case recFlagLatencyNs:
			r.LatencyMS = float64(rd.uvarint()) / 1e6
		case recFlagLatencyBits:
			if b := rd.bytes(8); len(b) == 8 {
				r.LatencyMS = math.Float64frombits(binary.LittleEndian.Uint64([]byte(b)))
			}
		case recFlagLatencyNs | recFlagLatencyBits:
			return nil, nil, nil, fmt.Errorf("record %d has two latency forms", i)
		}
		if flags&recFlagPartition != 0 {
			r.Partition = rd.repeatable(prev.Partition)
		}
		if flags&recFlagError != 0 {
			r.Error = rd.repeatable(prev.Error)
		}
		if flags&recFlagResponse != 0 {
			r.Response = rd.repeatable(prev.Response)
		}
		if flags&recFlagBy != 0 {
			r.By = rd.repeatable(prev.By)
		}
		if rd.err != nil {
			return nil, nil, nil, fmt.Errorf("record %d: %w", i, rd.err)
		}
		prev = r
	}
	if rd.off != len(rd.s) {
		return nil, nil, nil, fmt.Errorf("records data has %d bytes after its %d records", len(rd.s)-rd.off, n)
	}
	return recs, webhookIDs, documentKeys, nil
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
	return bsoncore.AppendDateTimeElement(dst, key, msOf(t))
}
