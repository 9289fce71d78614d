package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// mustDoc marshals d for hand-built test messages.
func mustDoc(t testing.TB, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatalf("marshal %v: %v", d, err)
	}
	return b
}

// bigDoc returns a valid document of exactly size bytes (size >= 16).
func bigDoc(t testing.TB, size int) []byte {
	t.Helper()
	// doc = int32 len | 0x02 "s\x00" int32 strlen | str bytes \x00 | \x00
	strLen := size - 4 - 1 - 2 - 4 - 1 - 1
	doc := make([]byte, 0, size)
	doc = binary.LittleEndian.AppendUint32(doc, uint32(size))
	doc = append(doc, 0x02, 's', 0)
	doc = binary.LittleEndian.AppendUint32(doc, uint32(strLen+1))
	doc = append(doc, bytes.Repeat([]byte{'x'}, strLen)...)
	doc = append(doc, 0, 0)
	if len(doc) != size {
		t.Fatalf("bigDoc: built %d bytes, want %d", len(doc), size)
	}
	return doc
}

func message(t testing.TB, raw []byte) Message {
	t.Helper()
	m, err := ReadMessage(bytes.NewReader(raw), 0)
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	return m
}

// rawMsg builds an OP_MSG from flags and already-encoded sections.
func rawMsg(flags uint32, sections ...[]byte) []byte {
	b := appendHeader(nil, 7, 0, OpMsg)
	b = binary.LittleEndian.AppendUint32(b, flags)
	for _, s := range sections {
		b = append(b, s...)
	}
	return finishLength(b)
}

func bodySection(doc []byte) []byte { return append([]byte{0}, doc...) }

func seqSection(id string, docs ...[]byte) []byte {
	b := []byte{1, 0, 0, 0, 0}
	b = append(b, id...)
	b = append(b, 0)
	for _, d := range docs {
		b = append(b, d...)
	}
	binary.LittleEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

func withChecksum(raw []byte) []byte {
	out := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)+4))
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
}

func TestReadMessage(t *testing.T) {
	ping := AppendMsg(nil, 1, 0, 0, mustDoc(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}))
	hdr := func(length int32) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint32(b, uint32(length))
		binary.LittleEndian.PutUint32(b[12:], uint32(OpMsg))
		return b
	}
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
		wantLen int
	}{
		{name: "valid", in: ping, wantLen: len(ping)},
		{name: "two messages read one", in: append(append([]byte{}, ping...), ping...), wantLen: len(ping)},
		{name: "empty stream", in: nil, wantErr: io.EOF},
		{name: "truncated header", in: ping[:10], wantErr: io.ErrUnexpectedEOF},
		{name: "truncated body", in: ping[:len(ping)-1], wantErr: io.ErrUnexpectedEOF},
		{name: "length below header", in: hdr(15), wantErr: ErrMessageSize},
		{name: "negative length", in: hdr(-1), wantErr: ErrMessageSize},
		{name: "length above default max", in: hdr(MaxMessageSize + 1), wantErr: ErrMessageSize},
		{name: "length above custom max", in: ping, max: len(ping) - 1, wantErr: ErrMessageSize},
		{name: "header only", in: hdr(16), wantLen: 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ReadMessage(bytes.NewReader(tt.in), tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadMessage: %v", err)
			}
			if len(m.Raw) != tt.wantLen || int(m.Header.Length) != tt.wantLen {
				t.Fatalf("read %d bytes (header says %d), want %d", len(m.Raw), m.Header.Length, tt.wantLen)
			}
		})
	}
}

func TestParseMsg(t *testing.T) {
	body := mustDoc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	d1 := mustDoc(t, bson.D{{Key: "_id", Value: int32(1)}})
	d2 := mustDoc(t, bson.D{{Key: "_id", Value: int32(2)}})
	badBSON := append([]byte(nil), d1...)
	badBSON[4] = 0x77 // unknown element type
	tests := []struct {
		name      string
		raw       []byte
		wantErr   error
		wantFlags uint32
		wantSeqs  map[string]int
	}{
		{name: "body only", raw: rawMsg(0, bodySection(body))},
		{name: "body and sequence", raw: rawMsg(0, bodySection(body), seqSection("documents", d1, d2)), wantSeqs: map[string]int{"documents": 2}},
		{name: "sequence before body", raw: rawMsg(0, seqSection("documents", d1), bodySection(body)), wantSeqs: map[string]int{"documents": 1}},
		{name: "empty sequence", raw: rawMsg(0, bodySection(body), seqSection("documents")), wantSeqs: map[string]int{"documents": 0}},
		{name: "two sequences", raw: rawMsg(0, bodySection(body), seqSection("a", d1), seqSection("b", d1, d2)), wantSeqs: map[string]int{"a": 1, "b": 2}},
		{name: "valid checksum", raw: withChecksum(rawMsg(FlagChecksumPresent, bodySection(body))), wantFlags: FlagChecksumPresent},
		{name: "moreToCome", raw: rawMsg(FlagMoreToCome, bodySection(body)), wantFlags: FlagMoreToCome},
		{name: "exhaustAllowed and other optional bits ignored", raw: rawMsg(FlagExhaustAllowed|1<<20, bodySection(body)), wantFlags: FlagExhaustAllowed | 1<<20},
		{name: "bad checksum", raw: func() []byte {
			b := withChecksum(rawMsg(FlagChecksumPresent, bodySection(body)))
			b[len(b)-1] ^= 0xff
			return b
		}(), wantErr: ErrMalformed},
		{name: "checksum flag without room", raw: rawMsg(FlagChecksumPresent), wantErr: ErrMalformed},
		{name: "unknown required flag", raw: rawMsg(1<<2, bodySection(body)), wantErr: ErrMalformed},
		{name: "no sections", raw: rawMsg(0), wantErr: ErrMalformed},
		{name: "no body", raw: rawMsg(0, seqSection("documents", d1)), wantErr: ErrMalformed},
		{name: "two bodies", raw: rawMsg(0, bodySection(body), bodySection(body)), wantErr: ErrMalformed},
		{name: "unknown section kind", raw: rawMsg(0, bodySection(body), []byte{2, 5, 0, 0, 0, 0}), wantErr: ErrMalformed},
		{name: "truncated body", raw: rawMsg(0, bodySection(body)[:len(body)-2]), wantErr: ErrMalformed},
		{name: "invalid BSON body", raw: rawMsg(0, bodySection(badBSON)), wantErr: ErrMalformed},
		{name: "invalid BSON in sequence", raw: rawMsg(0, bodySection(body), seqSection("documents", badBSON)), wantErr: ErrMalformed},
		{name: "duplicate sequence", raw: rawMsg(0, bodySection(body), seqSection("a", d1), seqSection("a", d2)), wantErr: ErrMalformed},
		{name: "empty identifier", raw: rawMsg(0, bodySection(body), seqSection("", d1)), wantErr: ErrMalformed},
		{name: "sequence size past end", raw: func() []byte {
			s := seqSection("documents", d1)
			binary.LittleEndian.PutUint32(s[1:], uint32(len(s)+10))
			return rawMsg(0, bodySection(body), s)
		}(), wantErr: ErrMalformed},
		{name: "sequence size too small", raw: rawMsg(0, bodySection(body), []byte{1, 4, 0, 0, 0}), wantErr: ErrMalformed},
		{name: "unterminated identifier", raw: rawMsg(0, bodySection(body), []byte{1, 7, 0, 0, 0, 'a', 'b', 'c'}), wantErr: ErrMalformed},
		{name: "trailing garbage in sequence", raw: rawMsg(0, bodySection(body), seqSection("documents", d1, []byte{1, 2})), wantErr: ErrMalformed},
		{name: "flags truncated", raw: finishLength(append(appendHeader(nil, 1, 0, OpMsg), 0, 0)), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMsg(message(t, tt.raw))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMsg: %v", err)
			}
			if m.Flags != tt.wantFlags {
				t.Errorf("flags = %#x, want %#x", m.Flags, tt.wantFlags)
			}
			if got := m.Body.Lookup("insert").StringValue(); got != "c" {
				t.Errorf("body insert = %q, want c", got)
			}
			if m.MoreToCome() != (tt.wantFlags&FlagMoreToCome != 0) {
				t.Errorf("MoreToCome = %v", m.MoreToCome())
			}
			got := map[string]int{}
			for _, s := range m.Sequences {
				got[s.Identifier] = len(s.Documents)
			}
			if len(got) != len(tt.wantSeqs) {
				t.Fatalf("sequences = %v, want %v", got, tt.wantSeqs)
			}
			for id, n := range tt.wantSeqs {
				if got[id] != n {
					t.Errorf("sequence %q has %d documents, want %d", id, got[id], n)
				}
			}
		})
	}
}

func TestParseMsgSizeLimits(t *testing.T) {
	body := mustDoc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	tests := []struct {
		name    string
		raw     []byte
		wantErr error
	}{
		{name: "body at command limit", raw: rawMsg(0, bodySection(bigDoc(t, MaxCommandSize)))},
		{name: "body over command limit", raw: rawMsg(0, bodySection(bigDoc(t, MaxCommandSize+1))), wantErr: ErrDocumentTooLarge},
		{name: "sequence document over 16 MiB", raw: rawMsg(0, bodySection(body), seqSection("documents", bigDoc(t, MaxDocumentSize+1)))},
		{name: "sequence document at command limit", raw: rawMsg(0, bodySection(body), seqSection("documents", bigDoc(t, MaxCommandSize)))},
		{name: "sequence document over command limit", raw: rawMsg(0, bodySection(body), seqSection("documents", bigDoc(t, MaxCommandSize+1))), wantErr: ErrDocumentTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMsg(message(t, tt.raw))
			if tt.wantErr == nil && err != nil {
				t.Fatalf("ParseMsg: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestAppendMsgRoundTrip(t *testing.T) {
	body := mustDoc(t, bson.D{{Key: "ok", Value: 1.0}})
	for _, flags := range []uint32{0, FlagChecksumPresent, FlagMoreToCome} {
		raw := AppendMsg([]byte("prefix"), 3, 9, flags, body)[len("prefix"):]
		m := message(t, raw)
		if m.Header.RequestID != 3 || m.Header.ResponseTo != 9 || m.Header.OpCode != OpMsg {
			t.Fatalf("flags %#x: header = %+v", flags, m.Header)
		}
		got, err := ParseMsg(m)
		if err != nil {
			t.Fatalf("flags %#x: ParseMsg: %v", flags, err)
		}
		if !bytes.Equal(got.Body, body) || got.Flags != flags {
			t.Fatalf("flags %#x: round trip body %v flags %#x", flags, got.Body, got.Flags)
		}
	}
	d1 := mustDoc(t, bson.D{{Key: "a", Value: int32(1)}})
	raw := AppendMsgSequence(AppendMsg(nil, 1, 0, 0, body), "documents", d1, d1)
	got, err := ParseMsg(message(t, raw))
	if err != nil {
		t.Fatalf("ParseMsg with sequence: %v", err)
	}
	if len(got.Sequences) != 1 || len(got.Sequences[0].Documents) != 2 {
		t.Fatalf("sequences = %+v", got.Sequences)
	}
}

func TestParseQuery(t *testing.T) {
	q := mustDoc(t, bson.D{{Key: "isMaster", Value: int32(1)}, {Key: "helloOk", Value: true}})
	sel := mustDoc(t, bson.D{{Key: "a", Value: int32(1)}})
	valid := AppendQuery(nil, 5, "admin.$cmd", q)
	withSel := finishLength(append(append([]byte{}, valid...), sel...))
	tests := []struct {
		name    string
		raw     []byte
		wantErr error
		wantSel bool
	}{
		{name: "handshake", raw: valid},
		{name: "with selector", raw: withSel, wantSel: true},
		{name: "trailing bytes", raw: finishLength(append(append([]byte{}, withSel...), 1, 2, 3)), wantErr: ErrMalformed},
		{name: "unterminated name", raw: finishLength(append(appendHeader(nil, 1, 0, OpQuery), 0, 0, 0, 0, 'a', 'b')), wantErr: ErrMalformed},
		{name: "no query", raw: finishLength(append(appendHeader(nil, 1, 0, OpQuery), 0, 0, 0, 0, 'a', 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)), wantErr: ErrMalformed},
		{name: "truncated flags", raw: finishLength(append(appendHeader(nil, 1, 0, OpQuery), 0)), wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseQuery(message(t, tt.raw))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseQuery: %v", err)
			}
			if got.FullCollectionName != "admin.$cmd" || got.NumberToReturn != -1 || !bytes.Equal(got.Query, q) {
				t.Fatalf("query = %+v", got)
			}
			if (got.ReturnFieldsSelector != nil) != tt.wantSel {
				t.Fatalf("selector = %v, want present %v", got.ReturnFieldsSelector, tt.wantSel)
			}
		})
	}
}

func TestReplyRoundTrip(t *testing.T) {
	d := mustDoc(t, bson.D{{Key: "ok", Value: 1.0}, {Key: "ismaster", Value: true}})
	raw := AppendReply(nil, 2, 5, ReplyQueryFailure, d)
	m := message(t, raw)
	if m.Header.ResponseTo != 5 || m.Header.OpCode != OpReply {
		t.Fatalf("header = %+v", m.Header)
	}
	rep, err := ParseReply(m)
	if err != nil {
		t.Fatalf("ParseReply: %v", err)
	}
	if rep.ResponseFlags != ReplyQueryFailure || rep.CursorID != 0 || len(rep.Documents) != 1 || !bytes.Equal(rep.Documents[0], d) {
		t.Fatalf("reply = %+v", rep)
	}
	truncated := finishLength(append([]byte(nil), raw[:len(raw)-3]...))
	if _, err := ParseReply(message(t, truncated)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ParseReply(truncated) = %v, want ErrMalformed", err)
	}
}

func TestParsersRejectWrongOpcode(t *testing.T) {
	msg := message(t, AppendReply(nil, 1, 1, 0))
	if _, err := ParseMsg(msg); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseMsg(OP_REPLY) = %v", err)
	}
	if _, err := ParseQuery(msg); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseQuery(OP_REPLY) = %v", err)
	}
	q := message(t, AppendQuery(nil, 1, "a.$cmd", mustDoc(t, bson.D{{Key: "x", Value: 1}})))
	if _, err := ParseReply(q); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "opcode") {
		t.Errorf("ParseReply(OP_QUERY) = %v", err)
	}
}
