// Package wire frames and parses MongoDB wire protocol messages: the
// standard 16-byte header, OP_MSG (opcode 2013) in both directions, the
// legacy OP_QUERY (2004) that drivers still use for their first handshake,
// and OP_REPLY (1) to answer it. OP_COMPRESSED (2012) is recognised only so
// that it can be refused: devdb never advertises compression.
//
// The package performs no I/O beyond reading one message from an
// io.Reader, holds no state and is safe for concurrent use. Every parser
// validates lengths before slicing and never panics on malformed input
// (see the fuzz tests).
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Opcodes of the messages this package knows.
const (
	// OpReply is the legacy reply to OP_QUERY.
	OpReply int32 = 1
	// OpQuery is the legacy query message, still used for the first handshake.
	OpQuery int32 = 2004
	// OpCompressed wraps a compressed message; devdb refuses it.
	OpCompressed int32 = 2012
	// OpMsg is the extensible message format of MongoDB 3.6+.
	OpMsg int32 = 2013
)

// Size limits, as MongoDB enforces them.
const (
	// HeaderSize is the size of the standard message header.
	HeaderSize = 16
	// MaxMessageSize is the largest message accepted (maxMessageSizeBytes).
	MaxMessageSize = 48000000
	// MaxDocumentSize is the largest user document (maxBsonObjectSize).
	MaxDocumentSize = 16 * 1024 * 1024
	// MaxCommandSize is the largest command body: MongoDB allows 16 KiB of
	// slack over MaxDocumentSize for the command's own fields.
	MaxCommandSize = MaxDocumentSize + 16*1024
)

// OP_MSG flag bits.
const (
	// FlagChecksumPresent says the message ends with a CRC-32C checksum.
	FlagChecksumPresent uint32 = 1 << 0
	// FlagMoreToCome says the sender will not wait for a reply (requests) or
	// that another reply follows (exhaust replies).
	FlagMoreToCome uint32 = 1 << 1
	// FlagExhaustAllowed says the client accepts exhaust replies; devdb
	// ignores it and always answers one reply per request.
	FlagExhaustAllowed uint32 = 1 << 16
	// requiredFlagMask covers the bits a receiver must understand (0-15).
	requiredFlagMask uint32 = 0xFFFF
	// knownRequiredFlags are the required bits this package understands.
	knownRequiredFlags = FlagChecksumPresent | FlagMoreToCome
)

// OP_REPLY response flags.
const (
	// ReplyQueryFailure marks an OP_REPLY whose single document is an
	// error ({$err, code}).
	ReplyQueryFailure int32 = 1 << 1
)

// ErrMessageSize is returned (wrapped) by ReadMessage for a message whose
// declared length is below HeaderSize or above the limit; the connection
// must be closed, as MongoDB does.
var ErrMessageSize = errors.New("invalid message length")

// ErrDocumentTooLarge is returned (wrapped) by the parsers for a document
// larger than its limit (MaxCommandSize for an OP_MSG body or sequence
// document, MaxDocumentSize for OP_QUERY's field selector). It
// corresponds to MongoDB's BSONObjectTooLarge (10334).
var ErrDocumentTooLarge = errors.New("BSON document too large")

// ErrMalformed is returned (wrapped) by the parsers for a message whose
// structure is invalid: truncated sections, bad lengths, invalid BSON,
// unknown required flag bits or a checksum mismatch.
var ErrMalformed = errors.New("malformed message")

// Header is the standard message header that starts every message.
type Header struct {
	// Length is the whole message's length in bytes, header included.
	Length int32
	// RequestID identifies the message.
	RequestID int32
	// ResponseTo is the RequestID of the request a reply answers (0 for requests).
	ResponseTo int32
	// OpCode is the message type (OpMsg, OpQuery, ...).
	OpCode int32
}

// Message is one framed message as read from a connection.
type Message struct {
	// Header is the decoded header.
	Header Header
	// Raw is the whole message, header included (Raw[:HeaderSize] is the
	// header); the OP_MSG checksum covers it.
	Raw []byte
}

// Payload returns the bytes after the header.
func (m Message) Payload() []byte { return m.Raw[HeaderSize:] }

// ReadMessage reads one message from r. A declared length below HeaderSize
// or above maxSize (MaxMessageSize when maxSize <= 0) yields an error
// wrapping ErrMessageSize; I/O errors are returned wrapped (io.EOF unwrapped
// when the stream ends cleanly before a message). The caller should close
// the connection on any error: the stream is no longer in sync.
func ReadMessage(r io.Reader, maxSize int) (Message, error) {
	if maxSize <= 0 {
		maxSize = MaxMessageSize
	}
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Message{}, io.EOF
		}
		return Message{}, fmt.Errorf("read message header: %w", err)
	}
	h := parseHeader(hdr[:])
	if h.Length < HeaderSize || int64(h.Length) > int64(maxSize) {
		return Message{}, fmt.Errorf("read message: length %d outside [%d, %d]: %w", h.Length, HeaderSize, maxSize, ErrMessageSize)
	}
	raw := make([]byte, h.Length)
	copy(raw, hdr[:])
	if _, err := io.ReadFull(r, raw[HeaderSize:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, fmt.Errorf("read message body: %w", err)
	}
	return Message{Header: h, Raw: raw}, nil
}

func parseHeader(b []byte) Header {
	return Header{
		Length:     int32(binary.LittleEndian.Uint32(b[0:])),
		RequestID:  int32(binary.LittleEndian.Uint32(b[4:])),
		ResponseTo: int32(binary.LittleEndian.Uint32(b[8:])),
		OpCode:     int32(binary.LittleEndian.Uint32(b[12:])),
	}
}

// appendHeader appends a header with a zero length; finishLength fills it in.
func appendHeader(dst []byte, requestID, responseTo, opCode int32) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(requestID))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(responseTo))
	return binary.LittleEndian.AppendUint32(dst, uint32(opCode))
}

// finishLength writes len(msg) into the header's length field.
func finishLength(msg []byte) []byte {
	binary.LittleEndian.PutUint32(msg, uint32(len(msg)))
	return msg
}

// reader walks a byte slice without ever slicing past its end.
type reader struct {
	b   []byte
	off int
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) int32() (int32, bool) {
	if r.remaining() < 4 {
		return 0, false
	}
	v := int32(binary.LittleEndian.Uint32(r.b[r.off:]))
	r.off += 4
	return v, true
}

func (r *reader) uint32() (uint32, bool) {
	v, ok := r.int32()
	return uint32(v), ok
}

func (r *reader) byte() (byte, bool) {
	if r.remaining() < 1 {
		return 0, false
	}
	v := r.b[r.off]
	r.off++
	return v, true
}

// cstring reads a NUL-terminated string.
func (r *reader) cstring() (string, bool) {
	for i := r.off; i < len(r.b); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.off:i])
			r.off = i + 1
			return s, true
		}
	}
	return "", false
}

// bytes reads n bytes (without copying).
func (r *reader) bytes(n int) ([]byte, bool) {
	if n < 0 || r.remaining() < n {
		return nil, false
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v, true
}

// document reads one BSON document, checking its declared length against
// the remaining bytes and limit and validating its structure.
func (r *reader) document(limit int, what string) ([]byte, error) {
	if r.remaining() < 5 {
		return nil, fmt.Errorf("read %s: %d bytes left, need at least 5: %w", what, r.remaining(), ErrMalformed)
	}
	n := int(int32(binary.LittleEndian.Uint32(r.b[r.off:])))
	if n < 5 || n > r.remaining() {
		return nil, fmt.Errorf("read %s: document length %d invalid with %d bytes left: %w", what, n, r.remaining(), ErrMalformed)
	}
	if n > limit {
		return nil, fmt.Errorf("read %s: document of %d bytes exceeds the %d-byte limit: %w", what, n, limit, ErrDocumentTooLarge)
	}
	doc, _ := r.bytes(n)
	if err := validateDocument(doc); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return doc, nil
}
