package server

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// Resume tokens.
//
// A change stream resume token is the document {_data: "<hex>"} where the hex
// string encodes a fixed-width, big-endian binary record, so that comparing
// two tokens' bytes (or their upper-case hex strings) orders them exactly as
// the change stream delivers events:
//
//	offset size field
//	     0    1 0x82 (as MongoDB's KeyString tokens, which open with a Timestamp)
//	     1    4 cluster time, seconds
//	     5    4 cluster time, increment
//	     9    1 format version (tokenVersion)
//	    10    1 token type: 0 high-water mark, 128 event (MongoDB's values)
//	    11    1 fromInvalidate: 1 for an invalidate event, else 0
//	    12    1 1 when a collection UUID follows, else 0
//	    13   16 collection UUID (zero when absent)
//	    29    4 FNV-1a hash of the event identity (operation type, namespace,
//	          document key); 0 for high-water marks
//	    33    4 only in the token of a fragment of a split event
//	          ($changeStreamSplitLargeEvent): the fragment's index, from 0
//
// As in MongoDB, a high-water-mark token at time T sorts before every event
// token at T, and an invalidate sorts right after the event that caused it;
// a fragment's token sorts after its event's and before the next fragment's.
const (
	tokenMarker  = 0x82
	tokenVersion = 1
	tokenLen     = 33
	// tokenSplitLen is the length of a fragment's token.
	tokenSplitLen  = tokenLen + 4
	tokenTypeHWM   = 0
	tokenTypeEvent = 128
)

// resumeToken is a decoded resume token.
type resumeToken struct {
	// ClusterTime is the cluster time of the event, or the high-water mark.
	ClusterTime bson.Timestamp
	// HighWaterMark is set for postBatchResumeToken-style tokens that stand
	// for a position rather than an event.
	HighWaterMark bool
	// FromInvalidate is set for the token of an invalidate event.
	FromInvalidate bool
	// UUID is the collection UUID of the event, when it has one.
	UUID    [16]byte
	HasUUID bool
	// EventHash identifies the event at ClusterTime (0 for high-water marks).
	EventHash uint32
	// Split marks the token of a fragment of a split event, Fragment its
	// index (from 0; splitEvent.fragment is Fragment+1).
	Split    bool
	Fragment uint32
}

// highWaterMark returns the high-water-mark token for cluster time ts: a
// stream resumed from it returns every event at or after ts.
func highWaterMark(ts bson.Timestamp) resumeToken {
	return resumeToken{ClusterTime: ts, HighWaterMark: true}
}

// size returns the length of the token's binary form.
func (t resumeToken) size() int {
	if t.Split {
		return tokenSplitLen
	}
	return tokenLen
}

// bytes returns the token's binary form.
func (t resumeToken) bytes() []byte {
	b := make([]byte, t.size())
	t.put(b)
	return b
}

// put writes the token's binary form into b, which must be zeroed and at
// least t.size() long.
func (t resumeToken) put(b []byte) {
	b[0] = tokenMarker
	binary.BigEndian.PutUint32(b[1:5], t.ClusterTime.T)
	binary.BigEndian.PutUint32(b[5:9], t.ClusterTime.I)
	b[9] = tokenVersion
	if !t.HighWaterMark {
		b[10] = tokenTypeEvent
	}
	if t.FromInvalidate {
		b[11] = 1
	}
	if t.HasUUID {
		b[12] = 1
		copy(b[13:29], t.UUID[:])
	}
	binary.BigEndian.PutUint32(b[29:33], t.EventHash)
	if t.Split {
		binary.BigEndian.PutUint32(b[33:37], t.Fragment)
	}
}

// String returns the token's _data string: upper-case hex, as MongoDB prints it.
func (t resumeToken) String() string {
	var raw [tokenSplitLen]byte
	n := t.size()
	t.put(raw[:n])
	var s [2 * tokenSplitLen]byte
	const digits = "0123456789ABCDEF"
	for i, c := range raw[:n] {
		s[2*i], s[2*i+1] = digits[c>>4], digits[c&0x0f]
	}
	return string(s[:2*n])
}

// Doc returns the token as the event _id / postBatchResumeToken document.
func (t resumeToken) Doc() bson.D {
	return bson.D{{Key: "_data", Value: t.String()}}
}

// compare orders two tokens as the stream delivers them: -1, 0 or +1.
func (t resumeToken) compare(u resumeToken) int {
	return bytes.Compare(t.bytes(), u.bytes())
}

// invalidTokenError is the error for a resume token that cannot be decoded.
func invalidTokenError(format string, args ...any) *mongoerr.Error {
	return &mongoerr.Error{
		Code:    260,
		Message: "Bad resume token: " + fmt.Sprintf(format, args...),
	}
}

// parseResumeToken decodes a resumeAfter/startAfter value. Anything that is
// not a token this server produced is rejected with InvalidResumeToken (260).
func parseResumeToken(v any) (resumeToken, error) {
	var doc bson.D
	switch d := v.(type) {
	case bson.D:
		doc = d
	case bson.Raw:
		if err := bson.Unmarshal(d, &doc); err != nil {
			return resumeToken{}, invalidTokenError("not a document: %v", err)
		}
	default:
		return resumeToken{}, invalidTokenError("expected an object, found %s", mql.TypeName(v))
	}
	var data any
	found := false
	for _, e := range doc {
		switch e.Key {
		case "_data":
			data, found = e.Value, true
		case "_typeBits":
			// MongoDB tokens may carry _typeBits; ours never do, but a
			// document with it is still recognisably a token.
		default:
			return resumeToken{}, invalidTokenError("unexpected field %q", e.Key)
		}
	}
	if !found {
		return resumeToken{}, invalidTokenError("_data of missing or of wrong type")
	}
	s, ok := data.(string)
	if !ok {
		return resumeToken{}, invalidTokenError("_data of missing or of wrong type")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return resumeToken{}, invalidTokenError("resume token string was not a valid hex string")
	}
	if (len(b) != tokenLen && len(b) != tokenSplitLen) || b[0] != tokenMarker || b[9] != tokenVersion {
		return resumeToken{}, invalidTokenError("%q is not a resume token issued by this server", s)
	}
	t := resumeToken{
		ClusterTime: bson.Timestamp{T: binary.BigEndian.Uint32(b[1:5]), I: binary.BigEndian.Uint32(b[5:9])},
		EventHash:   binary.BigEndian.Uint32(b[29:33]),
	}
	switch b[10] {
	case tokenTypeHWM:
		t.HighWaterMark = true
	case tokenTypeEvent:
	default:
		return resumeToken{}, invalidTokenError("unknown token type %d", b[10])
	}
	switch b[11] {
	case 0:
	case 1:
		t.FromInvalidate = true
	default:
		return resumeToken{}, invalidTokenError("bad fromInvalidate flag %d", b[11])
	}
	switch b[12] {
	case 0:
		if !bytes.Equal(b[13:29], make([]byte, 16)) {
			return resumeToken{}, invalidTokenError("UUID bytes without UUID flag")
		}
	case 1:
		t.HasUUID = true
		copy(t.UUID[:], b[13:29])
	default:
		return resumeToken{}, invalidTokenError("bad UUID flag %d", b[12])
	}
	if len(b) == tokenSplitLen {
		t.Split, t.Fragment = true, binary.BigEndian.Uint32(b[33:37])
	}
	if t.HighWaterMark && (t.FromInvalidate || t.HasUUID || t.EventHash != 0 || t.Split) {
		return resumeToken{}, invalidTokenError("high-water-mark token with event fields")
	}
	if t.FromInvalidate && t.Split {
		return resumeToken{}, invalidTokenError("invalidate token of a split event")
	}
	return t, nil
}

// eventHash identifies an event within its cluster time: operation type,
// namespace and document key.
func eventHash(op, db, coll string, documentKey bson.D) uint32 {
	h := fnv.New32a()
	h.Write([]byte(op))
	h.Write([]byte{0})
	h.Write([]byte(db))
	h.Write([]byte{0})
	h.Write([]byte(coll))
	h.Write([]byte{0})
	if documentKey != nil {
		if raw, err := bson.Marshal(documentKey); err == nil {
			h.Write(raw)
		}
	}
	return h.Sum32()
}

// csTSLess reports whether a is before b.
func csTSLess(a, b bson.Timestamp) bool {
	return a.T < b.T || (a.T == b.T && a.I < b.I)
}

// csTSNext returns the smallest timestamp after ts.
func csTSNext(ts bson.Timestamp) bson.Timestamp {
	if ts.I == ^uint32(0) {
		return bson.Timestamp{T: ts.T + 1, I: 0}
	}
	return bson.Timestamp{T: ts.T, I: ts.I + 1}
}
