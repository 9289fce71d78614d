package storage

import (
	"encoding/binary"
	"strconv"
)

// RawInsertable reports whether the document raw may be written as it is
// instead of through its decoded form: an inserted document (from an
// OP_MSG sequence, validated by the wire parser) stored as the client sent
// it (Tx.InsertRaw) instead of decoded, checked (the server's
// checkStorable), given its _id first (withID) and encoded again (Insert);
// or a stored document written as a delete's pre-image (Tx.Delete) instead
// of decoded and encoded again. The decoded path would write exactly these
// bytes and accept the document when
//
//   - the first field is _id and no other top-level field is _id (withID
//     moves nothing, generates nothing);
//   - the _id is not an array, regex or undefined, and holds no
//     $-prefixed field name at any depth (checkStorable);
//   - the document nests at most MaxStoredDepth levels (checkStorable);
//   - no top-level field other than _id holds the empty timestamp
//     Timestamp(0, 0), which the insert fills in with a cluster time (the
//     server's fillEmptyTimestamps);
//   - every value is of a type that decodes to bson.D/bson.A values and
//     encodes back to the same bytes: double, string, document, array with
//     the keys "0", "1", … in order (encoding renumbers them), binary other
//     than the old subtype 2, ObjectID, boolean stored as 0 or 1, date,
//     null, int32, timestamp, int64, decimal128, MinKey, MaxKey.
//
// Anything else (regexes, whose options encoding sorts, JavaScript, symbols,
// DBPointers, undefined, malformed bytes) takes the decoded path, which
// writes or refuses it as before. The differential tests hold the two paths
// to the same stored bytes, oplog entries, replies and errors.
func RawInsertable(raw []byte) bool {
	elems, ok := docElements(raw)
	if !ok || len(elems) == 0 {
		return false
	}
	var w rawWalker
	for i := 0; len(elems) > 0; i++ {
		t, key, val, rest, ok := nextElement(elems)
		if !ok {
			return false
		}
		elems = rest
		isID := string(key) == "_id"
		if isID != (i == 0) {
			return false // _id not first, or a second _id
		}
		if !isID && t == 0x11 && string(val) == "\x00\x00\x00\x00\x00\x00\x00\x00" {
			return false // an empty timestamp the insert fills in
		}
		if isID {
			switch t {
			case 0x04, 0x0B, 0x06: // array, regex, undefined
				return false
			case 0x03:
				w.noDollar = true
			}
		}
		if !w.value(t, val, 2) {
			return false
		}
		w.noDollar = false
	}
	return true
}

// MaxStoredDepth is MongoDB's documented nesting limit for stored
// documents: the document itself is level 1 and every embedded document or
// array adds one.
const MaxStoredDepth = 100

// rawWalker checks the values of a document for RawInsertable.
type rawWalker struct {
	// noDollar refuses $-prefixed field names (inside _id).
	noDollar bool
	num      []byte
}

// value checks a value of type t whose bytes are val; a document or array
// value is at nesting level depth.
func (w *rawWalker) value(t byte, val []byte, depth int) bool {
	switch t {
	case 0x01, 0x09, 0x11, 0x12: // double, date, timestamp, int64
		return len(val) == 8
	case 0x10: // int32
		return len(val) == 4
	case 0x13: // decimal128
		return len(val) == 16
	case 0x07: // ObjectID
		return len(val) == 12
	case 0x0A, 0xFF, 0x7F: // null, MinKey, MaxKey
		return len(val) == 0
	case 0x08: // boolean
		return len(val) == 1 && val[0] <= 1
	case 0x02: // string: int32 length (counting the NUL), bytes, NUL
		if len(val) < 5 {
			return false
		}
		n := int(int32(binary.LittleEndian.Uint32(val)))
		return n >= 1 && n == len(val)-4 && val[len(val)-1] == 0
	case 0x05: // binary: int32 length, subtype, bytes
		if len(val) < 5 {
			return false
		}
		n := int(int32(binary.LittleEndian.Uint32(val)))
		return n >= 0 && n == len(val)-5 && val[4] != 0x02
	case 0x03, 0x04:
		if depth > MaxStoredDepth {
			return false
		}
		elems, ok := docElements(val)
		if !ok {
			return false
		}
		for i := 0; len(elems) > 0; i++ {
			et, key, ev, rest, ok := nextElement(elems)
			if !ok {
				return false
			}
			elems = rest
			if t == 0x04 {
				w.num = strconv.AppendInt(w.num[:0], int64(i), 10)
				if string(key) != string(w.num) {
					return false
				}
			} else if w.noDollar && len(key) > 0 && key[0] == '$' {
				return false
			}
			if !w.value(et, ev, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// docElements returns the element bytes of the document doc (between its
// length and its final NUL), or ok false when the framing is wrong.
func docElements(doc []byte) ([]byte, bool) {
	if len(doc) < 5 || int(int32(binary.LittleEndian.Uint32(doc))) != len(doc) || doc[len(doc)-1] != 0 {
		return nil, false
	}
	return doc[4 : len(doc)-1], true
}

// nextElement splits the first element off elems: its type, key, value
// bytes and the elements after it. Only the types rawWalker accepts are
// measured; any other type fails (ok false).
func nextElement(elems []byte) (t byte, key, val, rest []byte, ok bool) {
	t = elems[0]
	end := -1
	for i := 1; i < len(elems); i++ {
		if elems[i] == 0 {
			end = i
			break
		}
	}
	if end < 0 {
		return 0, nil, nil, nil, false
	}
	key, v := elems[1:end], elems[end+1:]
	var n int
	switch t {
	case 0x01, 0x09, 0x11, 0x12:
		n = 8
	case 0x10:
		n = 4
	case 0x13:
		n = 16
	case 0x07:
		n = 12
	case 0x0A, 0xFF, 0x7F:
		n = 0
	case 0x08:
		n = 1
	case 0x02:
		if len(v) < 4 {
			return 0, nil, nil, nil, false
		}
		n = 4 + int(int32(binary.LittleEndian.Uint32(v)))
	case 0x05:
		if len(v) < 4 {
			return 0, nil, nil, nil, false
		}
		n = 5 + int(int32(binary.LittleEndian.Uint32(v)))
	case 0x03, 0x04:
		if len(v) < 4 {
			return 0, nil, nil, nil, false
		}
		n = int(int32(binary.LittleEndian.Uint32(v)))
	default:
		return 0, nil, nil, nil, false
	}
	if n < 0 || n > len(v) {
		return 0, nil, nil, nil, false
	}
	return t, key, v[:n], v[n:], true
}
