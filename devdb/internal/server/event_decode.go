package server

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// decodeEventD decodes an encoded change event (or any document) into a
// bson.D holding exactly the values bson.Unmarshal produces, without the
// driver's reflection. It handles the common BSON types; ok is false on
// anything else (old binary subtype 2, code with scope, deprecated types)
// and the caller then uses bson.Unmarshal. TestDecodeEventDMatches checks it
// against bson.Unmarshal.
func decodeEventD(raw []byte) (bson.D, bool) {
	var d bson.D
	ok := decodeDocInto(raw, &d, nil)
	return d, ok
}

// decodeDocInto decodes the document raw as a bson.D into *d, or (when d is
// nil) as a bson.A into *a.
func decodeDocInto(raw []byte, d *bson.D, a *bson.A) bool {
	rest, ok := docElements(raw)
	if !ok {
		return false
	}
	// Collect into stack buffers, then copy into exactly sized slices.
	var dbuf [16]bson.E
	var abuf [16]any
	out, arr := dbuf[:0], abuf[:0]
	for len(rest) > 0 {
		key, v, next, ok := nextElement(rest)
		if !ok {
			return false
		}
		rest = next
		val, ok := decodeValue(v)
		if !ok {
			return false
		}
		if d != nil {
			out = append(out, bson.E{Key: eventKey(key), Value: val})
		} else {
			arr = append(arr, val)
		}
	}
	if d != nil {
		*d = append(make(bson.D, 0, len(out)), out...)
	} else {
		*a = append(make(bson.A, 0, len(arr)), arr...)
	}
	return true
}

// docElements checks the framing of the encoded document raw (its length
// prefix and terminating zero) and returns its elements' bytes.
func docElements(raw []byte) ([]byte, bool) {
	if len(raw) < 5 {
		return nil, false
	}
	n := int(int32(uint32(raw[0]) | uint32(raw[1])<<8 | uint32(raw[2])<<16 | uint32(raw[3])<<24))
	if n != len(raw) || raw[n-1] != 0 {
		return nil, false
	}
	return raw[4 : n-1], true
}

// nextElement reads the first element of rest (a document's elements, see
// docElements): its key, its value and the elements after it; ok is false
// when it is malformed.
func nextElement(rest []byte) (key []byte, v bsoncore.Value, next []byte, ok bool) {
	t := bsoncore.Type(rest[0])
	end := -1
	for i := 1; i < len(rest); i++ {
		if rest[i] == 0 {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, v, nil, false
	}
	v, next, ok = bsoncore.ReadValue(rest[end+1:], t)
	return rest[1:end], v, next, ok
}

// eventKey returns key as a string, without allocating for the field names
// of change events.
func eventKey(key []byte) string {
	switch string(key) {
	case "_id":
		return "_id"
	case "_data":
		return "_data"
	case "operationType":
		return "operationType"
	case "clusterTime":
		return "clusterTime"
	case "collectionUUID":
		return "collectionUUID"
	case "wallTime":
		return "wallTime"
	case "fullDocument":
		return "fullDocument"
	case "ns":
		return "ns"
	case "db":
		return "db"
	case "coll":
		return "coll"
	case "documentKey":
		return "documentKey"
	}
	return string(key)
}

// decodeValue converts one BSON value to the Go value bson.Unmarshal
// decodes it to inside a bson.D.
func decodeValue(v bsoncore.Value) (any, bool) {
	switch v.Type {
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		return f, ok
	case bsoncore.TypeString:
		s, ok := v.StringValueOK()
		return s, ok
	case bsoncore.TypeEmbeddedDocument:
		var d bson.D
		return d, decodeDocInto(v.Data, &d, nil)
	case bsoncore.TypeArray:
		var a bson.A
		return a, decodeDocInto(v.Data, nil, &a)
	case bsoncore.TypeBinary:
		st, data, ok := v.BinaryOK()
		if !ok || st == 0x02 {
			return nil, false
		}
		return bson.Binary{Subtype: st, Data: append(make([]byte, 0, len(data)), data...)}, true
	case bsoncore.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		return bson.ObjectID(oid), ok
	case bsoncore.TypeBoolean:
		b, ok := v.BooleanOK()
		return b, ok
	case bsoncore.TypeDateTime:
		dt, ok := v.DateTimeOK()
		return bson.DateTime(dt), ok
	case bsoncore.TypeNull:
		return nil, true
	case bsoncore.TypeInt32:
		i, ok := v.Int32OK()
		return i, ok
	case bsoncore.TypeTimestamp:
		t, i, ok := v.TimestampOK()
		return bson.Timestamp{T: t, I: i}, ok
	case bsoncore.TypeInt64:
		i, ok := v.Int64OK()
		return i, ok
	case bsoncore.TypeDecimal128:
		h, l, ok := v.Decimal128OK()
		return bson.NewDecimal128(h, l), ok
	}
	return nil, false
}
