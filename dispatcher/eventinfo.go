package dispatcher

import (
	"encoding/binary"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// scanInfoFields returns the values of ev's first "documentKey" and first
// "operationType" elements (Type 0: not found) in one walk over the
// event's elements, as two raw.LookupErr calls would find them; ok is
// false when the walk met anything it does not read as LookupErr does
// (the declared length is not the data's, an element it cannot skip), and
// the caller looks the fields up with LookupErr instead
// (TestScanInfoFieldsMatchesLookup). The observers' fields are read for
// every attempt of an observed delivery: LookupErr reads each key three
// times and each value's length twice.
func scanInfoFields(raw []byte) (dk, op bson.RawValue, ok bool) {
	if len(raw) < 5 || int(binary.LittleEndian.Uint32(raw)) != len(raw) || raw[len(raw)-1] != 0 {
		return dk, op, false
	}
	rem := raw[4 : len(raw)-1]
	for len(rem) > 0 && (dk.Type == 0 || op.Type == 0) {
		t := bsoncore.Type(rem[0])
		k := 1
		for k < len(rem) && rem[k] != 0 {
			k++
		}
		if k >= len(rem) || t == 0 {
			return dk, op, false
		}
		key := rem[1:k]
		data := rem[k+1:]
		n := fixedValueLength(t)
		switch t {
		case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray, bsoncore.TypeString:
			// A document's or a string's length, as valueLength reads
			// it; an unusual one (negative, too short) is left to
			// LookupErr.
			if len(data) < 4 {
				return dk, op, false
			}
			l := int(int32(binary.LittleEndian.Uint32(data)))
			switch {
			case t != bsoncore.TypeString && l >= 5:
				n = l
			case t == bsoncore.TypeString && l >= 1:
				n = l + 4
			default:
				return dk, op, false
			}
		default:
			if n < 0 {
				v, _, vok := bsoncore.ReadValue(data, t)
				if !vok {
					return dk, op, false
				}
				n = len(v.Data)
			}
		}
		if n > len(data) {
			return dk, op, false
		}
		switch {
		case dk.Type == 0 && string(key) == "documentKey":
			dk = bson.RawValue{Type: bson.Type(t), Value: data[:n]}
		case op.Type == 0 && string(key) == "operationType":
			op = bson.RawValue{Type: bson.Type(t), Value: data[:n]}
		}
		rem = data[n:]
	}
	return dk, op, true
}

// fixedValueLength is the length of a value of type t when every value of
// it has the same length, -1 otherwise.
func fixedValueLength(t bsoncore.Type) int {
	switch t {
	case bsoncore.TypeDouble, bsoncore.TypeDateTime, bsoncore.TypeTimestamp, bsoncore.TypeInt64:
		return 8
	case bsoncore.TypeObjectID:
		return 12
	case bsoncore.TypeBoolean:
		return 1
	case bsoncore.TypeNull, bsoncore.TypeUndefined, bsoncore.TypeMinKey, bsoncore.TypeMaxKey:
		return 0
	case bsoncore.TypeInt32:
		return 4
	case bsoncore.TypeDecimal128:
		return 16
	}
	return -1
}
