package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/changehook/changehook/devdb/internal/storage"
)

// Building change events straight from encoded oplog entries.
//
// The events of document writes (insert, update, replace, delete, with any
// fullDocument and fullDocumentBeforeChange mode) outside multi-document
// transactions are appended as BSON directly from the entry's encoded
// sub-documents, without decoding the entry into an OplogEntry and
// re-encoding the event; an update's updateDescription is read from the
// encoded diff the entry carries (appendDiffDescription) or, without one,
// computed on the encoded pre- and post-image (appendUpdateDescription). The bytes are
// exactly those bson.Marshal produces for buildEvent's bson.D
// (TestBuildEventRawMatches, and every raw event of the change-stream tests
// through rawEventCheck); every other event, and one whose required image is
// missing, takes the decoding path.

// rawEventOK reports whether the event of entry r can be built by
// buildEventRaw for a stream with images im.
func rawEventOK(r *storage.RawOplogEntry, _ csImages) bool {
	if _, txn := r.Lookup("lsid"); txn {
		return false // a transaction's write: buildEvent adds txnNumber and lsid
	}
	switch r.Op {
	case opInsert, opUpdate, opReplace, opDelete:
		return true
	}
	return false
}

// rawDoc returns the embedded document at key in r, or nil when absent; ok
// is false when the field has another type.
func rawDoc(r *storage.RawOplogEntry, key string) (doc []byte, ok bool) {
	v, found := r.Lookup(key)
	if !found {
		return nil, true
	}
	d, ok := v.DocumentOK()
	return d, ok
}

// emptyDoc is the encoded empty document.
var emptyDoc = []byte{5, 0, 0, 0, 0}

// rawImage is csStoredImage for an encoded image img (nil: absent) of an
// entry whose images field is images: the image, or nil for null; ok is
// false when mode is required and the image is missing (the decoding path
// then reports the error).
func rawImage(images bool, img []byte, mode string) (out []byte, ok bool) {
	if images && img != nil {
		return img, true
	}
	return nil, mode != fdRequired
}

// appendDocOrNull appends the element key holding doc, or null when doc is
// nil.
func appendDocOrNull(b []byte, key string, doc []byte) []byte {
	if doc == nil {
		return bsoncore.AppendNullElement(b, key)
	}
	return bsoncore.AppendDocumentElement(b, key, doc)
}

// eventFixedSize bounds the bytes of an event built by buildEventRaw
// besides its namespace's names and its documents: the framing, _id with
// its hex token string, operationType, clusterTime, collectionUUID,
// wallTime, the ns subdocument's frame and every document field's key.
const eventFixedSize = 5 + (1 + 4 + 4 + 1 + 6 + 4 + 2*tokenLen + 1 + 1) + (1 + 14 + 4 + 11) + (1 + 12 + 8) +
	(1 + 15 + 4 + 1 + 16) + (1 + 9 + 8) + (1 + 13) + (1 + 3 + 4 + 1 + 3 + 4 + 1 + 1 + 5 + 4 + 1 + 1) + (1 + 12) +
	(1 + 18) + (1 + 25)

// buildEventRaw appends the encoded event of entry r (rawEventOK) and
// returns it with its token; ok is false when the entry's fields are not
// shaped as expected, a required image is missing or the updateLookup
// failed, and the caller then takes the decoding path.
func buildEventRaw(r *storage.RawOplogEntry, im csImages) (raw []byte, tok resumeToken, ok bool) {
	wall, found := r.Lookup("wall")
	if !found || wall.Type != bsoncore.TypeDateTime {
		return nil, tok, false
	}
	dk, ok := rawDoc(r, "documentKey")
	if !ok {
		return nil, tok, false
	}
	var doc, pre []byte
	if r.Op != opDelete {
		if doc, ok = rawDoc(r, "doc"); !ok {
			return nil, tok, false
		}
	}
	if r.Op != opInsert {
		if pre, ok = rawDoc(r, "pre"); !ok {
			return nil, tok, false
		}
	}
	images := false
	if v, found := r.Lookup("images"); found {
		if images, ok = v.BooleanOK(); !ok {
			return nil, tok, false
		}
	}
	var uuid bsoncore.Value
	hasUUIDField := false
	if v, found := r.Lookup("uuid"); found {
		if v.Type != bsoncore.TypeBinary {
			return nil, tok, false
		}
		uuid, hasUUIDField = v, true
	}
	tok = resumeToken{ClusterTime: r.TS, EventHash: eventHashRaw(r.Op, r.DB, r.Coll, dk)}
	if hasUUIDField {
		if _, data, ok := uuid.BinaryOK(); ok && len(data) == 16 {
			copy(tok.UUID[:], data)
			tok.HasUUID = true
		}
	}

	// The images the event carries, as buildEvent chooses them.
	var fullDoc []byte
	hasFullDoc := false
	switch r.Op {
	case opInsert, opReplace:
		fullDoc, hasFullDoc = doc, true
		if fullDoc == nil {
			fullDoc = emptyDoc
		}
	case opUpdate:
		switch im.fullDocument {
		case fdUpdateLookup:
			if fullDoc, ok = rawLookup(r, uuid, dk, im); !ok {
				return nil, tok, false
			}
			hasFullDoc = true
		case fdWhenAvailable, fdRequired:
			if fullDoc, ok = rawImage(images, doc, im.fullDocument); !ok {
				return nil, tok, false
			}
			hasFullDoc = true
		}
	}
	var preImage []byte
	hasPreImage := false
	if r.Op != opInsert && im.fullDocumentBeforeChange != fdOff && im.fullDocumentBeforeChange != "" {
		if preImage, ok = rawImage(images, pre, im.fullDocumentBeforeChange); !ok {
			return nil, tok, false
		}
		hasPreImage = true
	}

	// The fixed fields come to at most eventFixedSize bytes (with the
	// hex token string); an update's description adds about the update's
	// own size.
	size := eventFixedSize + len(r.DB) + len(r.Coll) + len(fullDoc) + len(dk) + len(preImage)
	if r.Op == opUpdate {
		size += len(doc)
	}
	idx, b := bsoncore.ReserveLength(make([]byte, 0, size))
	// _id: {_data: "<hex>"}
	b = bsoncore.AppendHeader(b, bsoncore.TypeEmbeddedDocument, "_id")
	tidx, b := bsoncore.ReserveLength(b)
	b = bsoncore.AppendHeader(b, bsoncore.TypeString, "_data")
	b = appendTokenString(b, tok)
	b = append(b, 0)
	b = bsoncore.UpdateLength(b, tidx, int32(len(b)-int(tidx)))

	b = bsoncore.AppendStringElement(b, "operationType", r.Op)
	b = bsoncore.AppendTimestampElement(b, "clusterTime", r.TS.T, r.TS.I)
	if im.expanded && hasUUIDField {
		if _, data, ok := uuid.BinaryOK(); ok && len(data) > 0 {
			b = bsoncore.AppendHeader(b, bsoncore.TypeBinary, "collectionUUID")
			b = append(b, uuid.Data...)
		}
	}
	b = bsoncore.AppendHeader(b, bsoncore.TypeDateTime, "wallTime")
	b = append(b, wall.Data...)
	if hasFullDoc {
		b = appendDocOrNull(b, "fullDocument", fullDoc)
	}
	b = bsoncore.AppendHeader(b, bsoncore.TypeEmbeddedDocument, "ns")
	nidx, b := bsoncore.ReserveLength(b)
	b = bsoncore.AppendStringElement(b, "db", r.DB)
	if r.Coll != "" {
		b = bsoncore.AppendStringElement(b, "coll", r.Coll)
	}
	b = append(b, 0)
	b = bsoncore.UpdateLength(b, nidx, int32(len(b)-int(nidx)))
	if dk == nil {
		dk = emptyDoc
	}
	b = bsoncore.AppendDocumentElement(b, "documentKey", dk)
	if r.Op == opUpdate {
		b = bsoncore.AppendHeader(b, bsoncore.TypeEmbeddedDocument, "updateDescription")
		if diff, found := r.Lookup("diff"); found {
			// What the update's operators logged.
			dd, isDoc := diff.DocumentOK()
			if !isDoc {
				return nil, tok, false
			}
			b, ok = appendDiffDescription(b, dd)
		} else {
			b, ok = appendUpdateDescription(b, pre, doc)
		}
		if !ok {
			return nil, tok, false
		}
	}
	if hasPreImage {
		b = appendDocOrNull(b, "fullDocumentBeforeChange", preImage)
	}
	b = append(b, 0)
	b = bsoncore.UpdateLength(b, idx, int32(len(b)-int(idx)))
	return b, tok, true
}

// rawLookup is the updateLookup of an update event built from its encoded
// entry: the current document with the entry's document key (as stored,
// with lookupRaw; else as bson.Marshal encodes the bson.D lookup returns),
// or nil (null) when there is none; ok is false when the key cannot be
// decoded or the lookup failed.
func rawLookup(r *storage.RawOplogEntry, uuid bsoncore.Value, dk []byte, im csImages) ([]byte, bool) {
	ent := storage.OplogEntry{TS: r.TS, Op: r.Op, DB: r.DB, Coll: r.Coll}
	if uuid.Type == bsoncore.TypeBinary {
		st, data, ok := uuid.BinaryOK()
		if !ok {
			return nil, false
		}
		ent.UUID = bson.Binary{Subtype: st, Data: data}
	}
	if dk != nil {
		if err := bson.Unmarshal(dk, &ent.DocumentKey); err != nil {
			return nil, false
		}
	}
	if im.lookupRaw != nil {
		// The stored bytes: those bson.Marshal gives for the document
		// lookup decodes (storage.TestGetRawMatchesGet).
		raw, err := im.lookupRaw(&ent)
		return raw, err == nil
	}
	doc, err := im.lookup(&ent)
	if err != nil {
		return nil, false
	}
	if doc == nil {
		return nil, true
	}
	raw, err := bson.Marshal(doc)
	if err != nil {
		return nil, false
	}
	return raw, true
}

// appendTokenString appends the token's _data string as a BSON string value
// (length, upper-case hex, NUL): the bytes of String, without allocating.
func appendTokenString(b []byte, t resumeToken) []byte {
	var raw [tokenSplitLen]byte
	n := t.size()
	t.put(raw[:n])
	b = bsoncore.AppendInt32(b, int32(2*n+1))
	const digits = "0123456789ABCDEF"
	for _, c := range raw[:n] {
		b = append(b, digits[c>>4], digits[c&0x0f])
	}
	return append(b, 0)
}

// eventHashRaw is eventHash (FNV-1a) with the document key given encoded
// (nil when absent), computed without allocating.
func eventHashRaw(op, db, coll string, documentKey []byte) uint32 {
	const prime = 16777619
	h := uint32(2166136261)
	for _, s := range [3]string{op, db, coll} {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint32(s[i])) * prime
		}
		h *= prime // the NUL separator: h ^ 0 == h
	}
	for _, c := range documentKey {
		h = (h ^ uint32(c)) * prime
	}
	return h
}
