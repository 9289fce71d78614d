package wire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// seedMessages are well-formed messages of every kind the server reads;
// testdata/fuzz holds more (malformed) seeds.
func seedMessages(t testing.TB) [][]byte {
	body := mustDoc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	d := mustDoc(t, bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: bson.A{"x", bson.D{{Key: "b", Value: 2.5}}}}})
	return [][]byte{
		AppendMsg(nil, 1, 0, 0, body),
		AppendMsg(nil, 1, 0, FlagChecksumPresent, body),
		AppendMsgSequence(AppendMsg(nil, 1, 0, FlagMoreToCome, body), "documents", d, d),
		AppendQuery(nil, 1, "admin.$cmd", mustDoc(t, bson.D{{Key: "isMaster", Value: int32(1)}})),
		AppendReply(nil, 1, 1, 0, d),
	}
}

// parseAny runs the parser matching the message's opcode.
func parseAny(m Message) {
	switch m.Header.OpCode {
	case OpMsg:
		if msg, err := ParseMsg(m); err == nil {
			// Every accepted document must be walkable.
			_, _ = msg.Body.Elements()
			for _, s := range msg.Sequences {
				for _, d := range s.Documents {
					_, _ = d.Elements()
				}
			}
		}
		_, _ = PeekMsgFlags(m)
	case OpQuery:
		_, _ = ParseQuery(m)
	case OpReply:
		_, _ = ParseReply(m)
	}
}

// FuzzReadMessage feeds arbitrary byte streams to ReadMessage and then to
// the parser for the message's opcode: nothing may panic, and an accepted
// message must have exactly its declared length.
func FuzzReadMessage(f *testing.F) {
	for _, s := range seedMessages(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for range 4 {
			m, err := ReadMessage(r, 1<<20)
			if err != nil {
				return
			}
			if int(m.Header.Length) != len(m.Raw) || len(m.Raw) < HeaderSize {
				t.Fatalf("message length %d, header says %d", len(m.Raw), m.Header.Length)
			}
			parseAny(m)
		}
	})
}

// FuzzParseOpMsg feeds arbitrary OP_MSG payloads (everything after the
// header) to ParseMsg: it must never panic, and whatever it accepts must
// survive re-encoding of its body.
func FuzzParseOpMsg(f *testing.F) {
	for _, s := range seedMessages(f) {
		if binary.LittleEndian.Uint32(s[12:]) == uint32(OpMsg) {
			f.Add(s[HeaderSize:])
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		raw := finishLength(append(appendHeader(nil, 1, 0, OpMsg), payload...))
		m := Message{Header: parseHeader(raw), Raw: raw}
		msg, err := ParseMsg(m)
		if err != nil {
			return
		}
		if msg.Body == nil {
			t.Fatal("accepted a message without a body")
		}
		again, err := ParseMsg(Message{Header: m.Header, Raw: AppendMsg(nil, 1, 0, 0, msg.Body)})
		if err != nil {
			t.Fatalf("re-encoded body rejected: %v", err)
		}
		if !bytes.Equal(again.Body, msg.Body) {
			t.Fatal("re-encoded body differs")
		}
	})
}

// BenchmarkParseMsgInsert measures parsing an insert of 1,000 documents sent
// as a document sequence, as the Go driver sends batched inserts.
func BenchmarkParseMsgInsert(b *testing.B) {
	body := mustDoc(b, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	docs := make([][]byte, 1000)
	for i := range docs {
		docs[i] = mustDoc(b, bson.D{{Key: "_id", Value: int32(i)}, {Key: "name", Value: "someone"}, {Key: "n", Value: 3.5}})
	}
	raw := AppendMsgSequence(AppendMsg(nil, 1, 0, 0, body), "documents", docs...)
	m := Message{Header: parseHeader(raw), Raw: raw}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMsg(m); err != nil {
			b.Fatal(err)
		}
	}
}
