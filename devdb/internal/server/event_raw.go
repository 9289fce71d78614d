package server

import (
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/changehook/changehook/devdb/internal/storage"
)

// Building change events straight from encoded oplog entries.
//
// The common events (insert, replace, delete with no pre-image requested
// and no user pipeline) are appended as BSON directly from the entry's
// encoded sub-documents, without decoding the entry into an OplogEntry and
// re-encoding the event. The bytes are exactly those bson.Marshal produces
// for buildEvent's bson.D (TestBuildEventRawMatches checks this); every other
// event takes the decoding path.

// rawEventOK reports whether the event of entry r can be built by
// buildEventRaw for a stream with images im.
func rawEventOK(r *storage.RawOplogEntry, im csImages) bool {
	if _, txn := r.Lookup("lsid"); txn {
		return false // a transaction's write: buildEvent adds txnNumber and lsid
	}
	switch r.Op {
	case opInsert:
		return true
	case opReplace, opDelete:
		return im.fullDocumentBeforeChange == fdOff || im.fullDocumentBeforeChange == ""
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

// buildEventRaw appends the encoded event of entry r (rawEventOK) and
// returns it with its token; ok is false when the entry's fields are not
// shaped as expected, and the caller then takes the decoding path.
func buildEventRaw(r *storage.RawOplogEntry, im csImages) (raw []byte, tok resumeToken, ok bool) {
	wall, found := r.Lookup("wall")
	if !found || wall.Type != bsoncore.TypeDateTime {
		return nil, tok, false
	}
	dk, ok := rawDoc(r, "documentKey")
	if !ok {
		return nil, tok, false
	}
	var doc []byte
	if r.Op != opDelete {
		if doc, ok = rawDoc(r, "doc"); !ok {
			return nil, tok, false
		}
		if doc == nil {
			doc = emptyDoc
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

	size := 160 + len(r.DB) + len(r.Coll) + len(doc) + len(dk)
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
	if r.Op != opDelete {
		b = bsoncore.AppendDocumentElement(b, "fullDocument", doc)
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
	b = append(b, 0)
	b = bsoncore.UpdateLength(b, idx, int32(len(b)-int(idx)))
	return b, tok, true
}

// appendTokenString appends the token's _data string as a BSON string value
// (length, upper-case hex, NUL): the bytes of String, without allocating.
func appendTokenString(b []byte, t resumeToken) []byte {
	var raw [tokenLen]byte
	t.put(raw[:])
	b = bsoncore.AppendInt32(b, int32(2*tokenLen+1))
	const digits = "0123456789ABCDEF"
	for _, c := range raw {
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
