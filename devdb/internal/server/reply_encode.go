package server

import (
	"encoding/binary"
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Encoding command replies without the driver's reflection.
//
// A reply is a bson.D of a few envelope fields and, for cursor replies, an
// array of already encoded documents (bson.Raw) that may reach 16 MiB.
// bson.Marshal walks every element of every raw document to copy it, and
// grows its buffer by doubling; appendReply computes the exact size first
// and copies each raw document whole. It handles the value types replies
// are built from and reports false on anything else (and on a raw document
// whose framing is wrong, a key with a NUL byte, …), and marshalReply then
// uses bson.Marshal. The bytes are those bson.Marshal produces
// (TestAppendReplyMatchesMarshal, and every reply of the package's tests
// through replyCheck).

// replySize returns the encoded size of the document d, or false when it
// holds a value appendReply does not encode.
func replySize(d bson.D) (int, bool) {
	n := 5
	for _, e := range d {
		if strings.IndexByte(e.Key, 0) >= 0 {
			return 0, false
		}
		vs, ok := replyValueSize(e.Value)
		if !ok {
			return 0, false
		}
		n += 2 + len(e.Key) + vs
	}
	return n, true
}

// replyArraySize is replySize for an array.
func replyArraySize(a bson.A) (int, bool) {
	n := 5
	var key [20]byte
	for i, v := range a {
		vs, ok := replyValueSize(v)
		if !ok {
			return 0, false
		}
		n += 2 + len(appendIndexKey(key[:0], i)) + vs
	}
	return n, true
}

// replyValueSize returns the encoded size of one value (without its type
// byte and key).
func replyValueSize(v any) (int, bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case bson.D:
		return replySize(x)
	case bson.A:
		return replyArraySize(x)
	case bson.Raw:
		if !rawFramed(x) {
			return 0, false
		}
		return len(x), true
	case string:
		return 5 + len(x), true
	case bool:
		return 1, true
	case int32:
		return 4, true
	case int:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return 4, true
		}
		return 8, true
	case int64, float64, bson.Timestamp, bson.DateTime:
		return 8, true
	case bson.ObjectID:
		return 12, true
	case bson.Binary:
		if x.Subtype == bson.TypeBinaryBinaryOld {
			return 0, false
		}
		return 5 + len(x.Data), true
	}
	return 0, false
}

// rawFramed reports whether r's length prefix is its length and it ends
// with a NUL: the framing bson.Marshal would otherwise reject.
func rawFramed(r bson.Raw) bool {
	return len(r) >= 5 && int(int32(binary.LittleEndian.Uint32(r))) == len(r) && r[len(r)-1] == 0
}

// appendReply appends the encoded document d to dst. It returns false on a
// value replySize refuses (the caller checked replySize first, so it does
// not).
func appendReply(dst []byte, d bson.D) ([]byte, bool) {
	idx, dst := bsoncore.ReserveLength(dst)
	for _, e := range d {
		pos := len(dst)
		dst = append(dst, 0)
		dst = append(dst, e.Key...)
		dst = append(dst, 0)
		var ok bool
		if dst, ok = appendReplyValue(dst, pos, e.Value); !ok {
			return dst, false
		}
	}
	dst = append(dst, 0)
	return bsoncore.UpdateLength(dst, idx, int32(len(dst)-int(idx))), true
}

// appendReplyValue appends the value v of an element whose type byte is at
// dst[pos] (written here) and whose key follows it.
func appendReplyValue(dst []byte, pos int, v any) ([]byte, bool) {
	t := bsoncore.TypeNull
	ok := true
	switch x := v.(type) {
	case nil:
	case bson.D:
		t = bsoncore.TypeEmbeddedDocument
		dst, ok = appendReply(dst, x)
	case bson.A:
		t = bsoncore.TypeArray
		idx, out := bsoncore.ReserveLength(dst)
		for i, v := range x {
			at := len(out)
			out = append(out, 0)
			out = appendIndexKey(out, i)
			out = append(out, 0)
			if out, ok = appendReplyValue(out, at, v); !ok {
				return out, false
			}
		}
		out = append(out, 0)
		dst = bsoncore.UpdateLength(out, idx, int32(len(out)-int(idx)))
	case bson.Raw:
		t = bsoncore.TypeEmbeddedDocument
		ok = rawFramed(x)
		dst = append(dst, x...)
	case string:
		t = bsoncore.TypeString
		dst = bsoncore.AppendString(dst, x)
	case bool:
		t = bsoncore.TypeBoolean
		dst = bsoncore.AppendBoolean(dst, x)
	case int32:
		t = bsoncore.TypeInt32
		dst = bsoncore.AppendInt32(dst, x)
	case int:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			t = bsoncore.TypeInt32
			dst = bsoncore.AppendInt32(dst, int32(x))
		} else {
			t = bsoncore.TypeInt64
			dst = bsoncore.AppendInt64(dst, int64(x))
		}
	case int64:
		t = bsoncore.TypeInt64
		dst = bsoncore.AppendInt64(dst, x)
	case float64:
		t = bsoncore.TypeDouble
		dst = bsoncore.AppendDouble(dst, x)
	case bson.Timestamp:
		t = bsoncore.TypeTimestamp
		dst = bsoncore.AppendTimestamp(dst, x.T, x.I)
	case bson.DateTime:
		t = bsoncore.TypeDateTime
		dst = bsoncore.AppendDateTime(dst, int64(x))
	case bson.ObjectID:
		t = bsoncore.TypeObjectID
		dst = bsoncore.AppendObjectID(dst, x)
	case bson.Binary:
		t = bsoncore.TypeBinary
		ok = x.Subtype != bson.TypeBinaryBinaryOld
		dst = bsoncore.AppendBinary(dst, x.Subtype, x.Data)
	default:
		return dst, false
	}
	dst[pos] = byte(t)
	return dst, ok
}

// appendIndexKey appends the decimal form of i (an array element's key).
func appendIndexKey(dst []byte, i int) []byte {
	if i < 10 {
		return append(dst, byte('0'+i))
	}
	var buf [20]byte
	p := len(buf)
	for i > 0 {
		p--
		buf[p] = byte('0' + i%10)
		i /= 10
	}
	return append(dst, buf[p:]...)
}

// encodeReply encodes reply in one exactly sized buffer, or reports false
// when appendReply cannot encode it.
func encodeReply(reply bson.D) ([]byte, bool) {
	n, ok := replySize(reply)
	if !ok {
		return nil, false
	}
	buf, ok := appendReply(make([]byte, 0, n), reply)
	if !ok || len(buf) != n {
		return nil, false
	}
	return buf, true
}
