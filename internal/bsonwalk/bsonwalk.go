// Package bsonwalk reads the top-level elements of a BSON document in one
// pass, for the hot paths that pick a few fields out of every change event
// (a bson.Raw.Lookup per field walks the document from its first element
// each time, reading every key three times and every value's length twice).
package bsonwalk

import (
	"encoding/binary"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Walker yields a document's top-level elements in order. Its zero value
// is an empty, well-formed document.
//
// It reads lengths as bson.Raw.LookupErr does and stops at the first
// element it cannot read that way: a key without its NUL, a type byte of
// 0, a declared length that is negative, too short or past the data, or a
// value of an unknown type. Malformed then reports true, and a caller that
// must answer for any input (not only for what a driver hands it) falls
// back to LookupErr. Every element yielded before that is the one
// LookupErr would find, and for a well-formed document the elements are
// exactly bson.Raw.Elements' (TestWalkerMatchesElements).
type Walker struct {
	rem []byte // the elements not yet read, without the document's NUL
	bad bool
}

// New starts a walk over doc. A doc whose declared length is not len(doc),
// or which does not end with its NUL, is malformed from the start.
func New(doc []byte) Walker {
	if len(doc) < 5 || int64(int32(binary.LittleEndian.Uint32(doc))) != int64(len(doc)) || doc[len(doc)-1] != 0 {
		return Walker{bad: true}
	}
	return Walker{rem: doc[4 : len(doc)-1]}
}

// Next returns the next element's key and value; ok is false at the end
// of the document and at the first element that cannot be read (see
// Malformed). key and v.Value alias the document's bytes.
func (w *Walker) Next() (key []byte, v bson.RawValue, ok bool) {
	rem := w.rem // empty once the walk is malformed
	if len(rem) == 0 {
		return nil, v, false
	}
	t := bsoncore.Type(rem[0])
	k := 1
	for k < len(rem) && rem[k] != 0 {
		k++
	}
	if k >= len(rem) || t == 0 {
		return w.stop()
	}
	data := rem[k+1:]
	n := fixedLength(t)
	switch t {
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray, bsoncore.TypeString:
		// A document's or a string's length as LookupErr reads it; an
		// unusual one (negative, too short) is malformed.
		if len(data) < 4 {
			return w.stop()
		}
		l := int(int32(binary.LittleEndian.Uint32(data)))
		switch {
		case t != bsoncore.TypeString && l >= 5:
			n = l
		case t == bsoncore.TypeString && l >= 1:
			n = l + 4
		default:
			return w.stop()
		}
	default:
		if n < 0 {
			val, _, vok := bsoncore.ReadValue(data, t)
			if !vok {
				return w.stop()
			}
			n = len(val.Data)
			if n < 4 && t != bsoncore.TypeRegex {
				// Shorter than its own length prefix: LookupErr finds
				// the element but cannot read its value.
				return w.stop()
			}
		}
	}
	if n > len(data) {
		return w.stop()
	}
	w.rem = data[n:]
	return rem[1:k], bson.RawValue{Type: bson.Type(t), Value: data[:n]}, true
}

// stop ends a malformed walk.
func (w *Walker) stop() (key []byte, v bson.RawValue, ok bool) {
	w.rem, w.bad = nil, true
	return nil, v, false
}

// Malformed reports whether the walk stopped at something it cannot read
// (see Walker); false at the end of a well-formed document and while
// elements remain.
func (w *Walker) Malformed() bool { return w.bad }

// fixedLength is the length of a value of type t when every value of it
// has the same length, -1 otherwise.
func fixedLength(t bsoncore.Type) int {
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
