package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// castagnoli is the CRC-32C table OP_MSG checksums use.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sequence is an OP_MSG kind-1 section: a named sequence of documents, as
// drivers send the documents of insert, the updates of update and the
// deletes of delete.
type Sequence struct {
	// Identifier names the command field the documents belong to
	// (for example "documents").
	Identifier string
	// Documents are the validated documents, aliasing the message buffer.
	Documents []bson.Raw
}

// Msg is a parsed OP_MSG.
type Msg struct {
	// Flags are the message's flag bits (FlagChecksumPresent, ...).
	Flags uint32
	// Body is the kind-0 section: the command document. It aliases the
	// message buffer.
	Body bson.Raw
	// Sequences are the kind-1 sections in message order.
	Sequences []Sequence
}

// MoreToCome reports whether the sender expects no reply.
func (m *Msg) MoreToCome() bool { return m.Flags&FlagMoreToCome != 0 }

// PeekMsgFlags returns the flag bits of an OP_MSG without parsing it, so that
// a caller can tell whether a reply is expected even when ParseMsg fails.
func PeekMsgFlags(m Message) (uint32, bool) {
	p := m.Payload()
	if len(p) < 4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(p), true
}

// ParseMsg parses an OP_MSG. It checks the CRC-32C checksum when
// FlagChecksumPresent is set, rejects unknown required flag bits (0-15),
// requires exactly one body section, and validates every document; the
// body and each sequence document may be up to MaxCommandSize bytes, as
// mongod parses them: a document over MaxDocumentSize reaches the command,
// which refuses it as MongoDB does (an insert's "object to insert too
// large" write error). Errors wrap ErrMalformed or ErrDocumentTooLarge. The
// returned documents alias m.Raw.
func ParseMsg(m Message) (*Msg, error) {
	if m.Header.OpCode != OpMsg {
		return nil, fmt.Errorf("parse OP_MSG: opcode %d: %w", m.Header.OpCode, ErrMalformed)
	}
	if len(m.Raw) < HeaderSize+4 {
		return nil, fmt.Errorf("parse OP_MSG: %d bytes is too short for the flag bits: %w", len(m.Raw), ErrMalformed)
	}
	flags := binary.LittleEndian.Uint32(m.Raw[HeaderSize:])
	if unknown := flags & requiredFlagMask &^ knownRequiredFlags; unknown != 0 {
		return nil, fmt.Errorf("parse OP_MSG: unrecognized required flag bits %#x: %w", unknown, ErrMalformed)
	}
	end := len(m.Raw)
	if flags&FlagChecksumPresent != 0 {
		if end < HeaderSize+4+4 {
			return nil, fmt.Errorf("parse OP_MSG: checksum flag set but no room for a checksum: %w", ErrMalformed)
		}
		end -= 4
		want := binary.LittleEndian.Uint32(m.Raw[end:])
		if got := crc32.Checksum(m.Raw[:end], castagnoli); got != want {
			return nil, fmt.Errorf("parse OP_MSG: checksum %#08x does not match computed %#08x: %w", want, got, ErrMalformed)
		}
	}
	msg := &Msg{Flags: flags}
	r := &reader{b: m.Raw[:end], off: HeaderSize + 4}
	seen := map[string]bool{}
	for r.remaining() > 0 {
		kind, _ := r.byte()
		switch kind {
		case 0:
			if msg.Body != nil {
				return nil, fmt.Errorf("parse OP_MSG: more than one body section: %w", ErrMalformed)
			}
			doc, err := r.document(MaxCommandSize, "OP_MSG body")
			if err != nil {
				return nil, fmt.Errorf("parse OP_MSG: %w", err)
			}
			msg.Body = doc
		case 1:
			seq, err := readSequence(r)
			if err != nil {
				return nil, fmt.Errorf("parse OP_MSG: %w", err)
			}
			if seen[seq.Identifier] {
				return nil, fmt.Errorf("parse OP_MSG: duplicate document sequence %q: %w", seq.Identifier, ErrMalformed)
			}
			seen[seq.Identifier] = true
			msg.Sequences = append(msg.Sequences, seq)
		default:
			return nil, fmt.Errorf("parse OP_MSG: unknown section kind %d: %w", kind, ErrMalformed)
		}
	}
	if msg.Body == nil {
		return nil, fmt.Errorf("parse OP_MSG: no body section: %w", ErrMalformed)
	}
	return msg, nil
}

// readSequence reads a kind-1 section after its kind byte.
func readSequence(r *reader) (Sequence, error) {
	size, ok := r.int32()
	if !ok {
		return Sequence{}, fmt.Errorf("read document sequence: truncated size: %w", ErrMalformed)
	}
	// size counts itself; the identifier needs at least its NUL byte.
	if size < 5 || int(size)-4 > r.remaining() {
		return Sequence{}, fmt.Errorf("read document sequence: size %d invalid with %d bytes left: %w", size, r.remaining()+4, ErrMalformed)
	}
	body, _ := r.bytes(int(size) - 4)
	sr := &reader{b: body}
	id, ok := sr.cstring()
	if !ok {
		return Sequence{}, fmt.Errorf("read document sequence: unterminated identifier: %w", ErrMalformed)
	}
	if id == "" {
		return Sequence{}, fmt.Errorf("read document sequence: empty identifier: %w", ErrMalformed)
	}
	seq := Sequence{Identifier: id}
	for sr.remaining() > 0 {
		doc, err := sr.document(MaxCommandSize, fmt.Sprintf("document %d of sequence %q", len(seq.Documents), id))
		if err != nil {
			return Sequence{}, fmt.Errorf("read document sequence: %w", err)
		}
		seq.Documents = append(seq.Documents, doc)
	}
	return seq, nil
}

// AppendMsg appends an OP_MSG with the given flags (FlagChecksumPresent adds
// a CRC-32C checksum) and a single body section holding body, which must be
// a complete BSON document.
func AppendMsg(dst []byte, requestID, responseTo int32, flags uint32, body []byte) []byte {
	start := len(dst)
	dst = append(StartMsg(dst, requestID, responseTo, flags), body...)
	return FinishMsg(dst, start, flags)
}

// MsgHeadSize is the size of the head StartMsg appends: the header, the
// flags and the kind-0 section's kind byte.
const MsgHeadSize = HeaderSize + 4 + 1

// StartMsg appends the head of an OP_MSG (header, flags and the kind-0
// section's kind byte) to dst; the caller appends the body and calls
// FinishMsg with the head's offset in dst and the same flags. Encoding a
// body straight after its head spares the copy AppendMsg makes.
func StartMsg(dst []byte, requestID, responseTo int32, flags uint32) []byte {
	dst = appendHeader(dst, requestID, responseTo, OpMsg)
	dst = binary.LittleEndian.AppendUint32(dst, flags)
	return append(dst, 0)
}

// FinishMsg completes the OP_MSG started at dst[start:] by StartMsg: it sets
// the message length and, when flags has FlagChecksumPresent, appends the
// CRC-32C checksum.
func FinishMsg(dst []byte, start int, flags uint32) []byte {
	if flags&FlagChecksumPresent != 0 {
		binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start+4))
		return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
	}
	finishLength(dst[start:])
	return dst
}

// AppendMsgSequence appends a kind-1 section to an OP_MSG built by
// AppendMsg without the checksum flag, and fixes the message length. It is
// used by tests to build the messages drivers send.
func AppendMsgSequence(msg []byte, identifier string, docs ...[]byte) []byte {
	msg = append(msg, 1)
	sizeAt := len(msg)
	msg = binary.LittleEndian.AppendUint32(msg, 0)
	msg = append(msg, identifier...)
	msg = append(msg, 0)
	for _, d := range docs {
		msg = append(msg, d...)
	}
	binary.LittleEndian.PutUint32(msg[sizeAt:], uint32(len(msg)-sizeAt))
	return finishLength(msg)
}
