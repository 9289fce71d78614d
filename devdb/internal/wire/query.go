package wire

import (
	"encoding/binary"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Query is a parsed legacy OP_QUERY.
type Query struct {
	// Flags are the OP_QUERY flag bits (ignored by devdb).
	Flags int32
	// FullCollectionName is "db.collection"; commands use "db.$cmd".
	FullCollectionName string
	// NumberToSkip and NumberToReturn are the legacy paging fields.
	NumberToSkip, NumberToReturn int32
	// Query is the query (for commands: the command) document.
	Query bson.Raw
	// ReturnFieldsSelector is the optional projection; nil if absent.
	ReturnFieldsSelector bson.Raw
}

// ParseQuery parses an OP_QUERY. The query document may be up to
// MaxCommandSize bytes. Errors wrap ErrMalformed or ErrDocumentTooLarge. The
// returned documents alias m.Raw.
func ParseQuery(m Message) (*Query, error) {
	if m.Header.OpCode != OpQuery {
		return nil, fmt.Errorf("parse OP_QUERY: opcode %d: %w", m.Header.OpCode, ErrMalformed)
	}
	r := &reader{b: m.Raw, off: HeaderSize}
	q := &Query{}
	var ok bool
	if q.Flags, ok = r.int32(); !ok {
		return nil, fmt.Errorf("parse OP_QUERY: truncated flags: %w", ErrMalformed)
	}
	if q.FullCollectionName, ok = r.cstring(); !ok {
		return nil, fmt.Errorf("parse OP_QUERY: unterminated collection name: %w", ErrMalformed)
	}
	if q.NumberToSkip, ok = r.int32(); !ok {
		return nil, fmt.Errorf("parse OP_QUERY: truncated numberToSkip: %w", ErrMalformed)
	}
	if q.NumberToReturn, ok = r.int32(); !ok {
		return nil, fmt.Errorf("parse OP_QUERY: truncated numberToReturn: %w", ErrMalformed)
	}
	doc, err := r.document(MaxCommandSize, "OP_QUERY query")
	if err != nil {
		return nil, fmt.Errorf("parse OP_QUERY: %w", err)
	}
	q.Query = doc
	if r.remaining() > 0 {
		sel, err := r.document(MaxDocumentSize, "OP_QUERY returnFieldsSelector")
		if err != nil {
			return nil, fmt.Errorf("parse OP_QUERY: %w", err)
		}
		q.ReturnFieldsSelector = sel
	}
	if r.remaining() > 0 {
		return nil, fmt.Errorf("parse OP_QUERY: %d trailing bytes: %w", r.remaining(), ErrMalformed)
	}
	return q, nil
}

// AppendQuery appends an OP_QUERY with the given collection name and query
// document (flags, skip and return count zero but numberToReturn -1, as
// drivers send commands). It is used by tests to build legacy handshakes.
func AppendQuery(dst []byte, requestID int32, fullCollectionName string, query []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, requestID, 0, OpQuery)
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = append(dst, fullCollectionName...)
	dst = append(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	neg1 := int32(-1)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(neg1))
	dst = append(dst, query...)
	finishLength(dst[start:])
	return dst
}

// Reply is a parsed OP_REPLY (used by tests and tools acting as clients).
type Reply struct {
	// ResponseFlags are the OP_REPLY flags (ReplyQueryFailure, ...).
	ResponseFlags int32
	// CursorID is the legacy cursor id (always 0 from devdb).
	CursorID int64
	// StartingFrom is the legacy cursor position.
	StartingFrom int32
	// Documents are the returned documents.
	Documents []bson.Raw
}

// AppendReply appends an OP_REPLY answering responseTo with the given
// response flags, cursor id 0 and the given documents.
func AppendReply(dst []byte, requestID, responseTo int32, flags int32, docs ...[]byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, requestID, responseTo, OpReply)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(flags))
	dst = binary.LittleEndian.AppendUint64(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(docs)))
	for _, d := range docs {
		dst = append(dst, d...)
	}
	finishLength(dst[start:])
	return dst
}

// ParseReply parses an OP_REPLY. Errors wrap ErrMalformed or
// ErrDocumentTooLarge.
func ParseReply(m Message) (*Reply, error) {
	if m.Header.OpCode != OpReply {
		return nil, fmt.Errorf("parse OP_REPLY: opcode %d: %w", m.Header.OpCode, ErrMalformed)
	}
	r := &reader{b: m.Raw, off: HeaderSize}
	rep := &Reply{}
	var ok bool
	if rep.ResponseFlags, ok = r.int32(); !ok {
		return nil, fmt.Errorf("parse OP_REPLY: truncated flags: %w", ErrMalformed)
	}
	lo, ok1 := r.uint32()
	hi, ok2 := r.uint32()
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("parse OP_REPLY: truncated cursor id: %w", ErrMalformed)
	}
	rep.CursorID = int64(uint64(hi)<<32 | uint64(lo))
	if rep.StartingFrom, ok = r.int32(); !ok {
		return nil, fmt.Errorf("parse OP_REPLY: truncated startingFrom: %w", ErrMalformed)
	}
	n, ok := r.int32()
	if !ok || n < 0 {
		return nil, fmt.Errorf("parse OP_REPLY: invalid numberReturned: %w", ErrMalformed)
	}
	for i := int32(0); i < n; i++ {
		doc, err := r.document(MaxCommandSize, "OP_REPLY document")
		if err != nil {
			return nil, fmt.Errorf("parse OP_REPLY: %w", err)
		}
		rep.Documents = append(rep.Documents, doc)
	}
	if r.remaining() > 0 {
		return nil, fmt.Errorf("parse OP_REPLY: %d trailing bytes: %w", r.remaining(), ErrMalformed)
	}
	return rep, nil
}
