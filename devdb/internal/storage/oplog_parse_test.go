package storage

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// parseRawOplogEntryValidated is parseRawOplogEntry as it was with a
// separate bsoncore Validate pass: the reference for the one-pass parse.
func parseRawOplogEntryValidated(r *RawOplogEntry) bool {
	if bsoncore.Document(r.Raw).Validate() != nil {
		return false
	}
	h := oplogHeader{ts: &r.TS, op: &r.Op, db: &r.DB, coll: &r.Coll, toDB: &r.ToDB, toColl: &r.ToColl}
	r.parsed = walkOplogEntry(r.Raw, h, func(key []byte, v bsoncore.Value) {
		for i, f := range rawFields {
			if f == string(key) && r.vals[i].Type == 0 {
				r.vals[i] = v
			}
		}
	})
	return r.parsed
}

// sameParse fails t unless parseRawOplogEntry accepting raw implies the
// reference accepting it with the same fields.
func sameParse(t *testing.T, raw []byte) bool {
	t.Helper()
	got := RawOplogEntry{Raw: raw}
	want := RawOplogEntry{Raw: raw}
	okGot, okWant := parseRawOplogEntry(&got), parseRawOplogEntryValidated(&want)
	if okGot && (!okWant || !reflect.DeepEqual(got, want)) {
		t.Fatalf("%x: one-pass parse %v %+v, validated parse %v %+v", raw, okGot, got, okWant, want)
	}
	return okGot
}

// oplogSamples are encoded oplog entries of every kind appendOplog writes.
func oplogSamples(t testing.TB) [][]byte {
	t.Helper()
	wall := time.Unix(1_700_000_000, 0)
	uuid := bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{7}, 16)}
	ents := []OplogEntry{
		{TS: bson.Timestamp{T: 1, I: 1}, Wall: wall, Op: "i", DB: "db", Coll: "c", UUID: uuid,
			DocumentKey: bson.D{{Key: "_id", Value: 1}}, Doc: bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: "y"}}},
		{TS: bson.Timestamp{T: 2, I: 1}, Wall: wall, Op: "u", DB: "db", Coll: "c", UUID: uuid, Images: true,
			DocumentKey: bson.D{{Key: "_id", Value: 1}}, Doc: bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: "z"}}, Pre: bson.D{{Key: "_id", Value: 1}}},
		{TS: bson.Timestamp{T: 3, I: 1}, Wall: wall, Op: "d", DB: "db", Coll: "c", UUID: uuid, DocumentKey: bson.D{{Key: "_id", Value: "k"}}},
		{TS: bson.Timestamp{T: 4, I: 1}, Wall: wall, Op: "rename", DB: "db", Coll: "c", ToDB: "db2", ToColl: "c2"},
		{TS: bson.Timestamp{T: 5, I: 1}, Wall: wall, Op: "dropDatabase", DB: "db"},
	}
	var out [][]byte
	for _, e := range ents {
		raw, err := bson.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// TestParseRawOplogEntryValidates: the one-pass parse accepts every entry
// appendOplog's shapes produce, and for every single-byte change,
// truncation, trailing byte and declared-length change of them it accepts
// only what the Validate-then-walk reference accepts, with the same fields.
func TestParseRawOplogEntryValidates(t *testing.T) {
	accepted := 0
	for _, raw := range oplogSamples(t) {
		if !sameParse(t, raw) {
			t.Fatalf("%x: a well-formed entry was not accepted", raw)
		}
		for i := range raw {
			for _, b := range []byte{0x00, 0x01, 0x7F, 0xFF, raw[i] + 1, raw[i] - 1} {
				m := bytes.Clone(raw)
				m[i] = b
				if sameParse(t, m) {
					accepted++
				}
			}
			sameParse(t, raw[:i])
		}
		sameParse(t, append(bytes.Clone(raw), 0))
		for _, n := range []int{0, 4, 5, len(raw) - 1, len(raw) + 1, -1} {
			m := append(bytes.Clone(raw), 0, 0, 0, 0)
			binary.LittleEndian.PutUint32(m, uint32(int32(n)))
			sameParse(t, m)
		}
	}
	if accepted == 0 {
		t.Fatal("no mutated entry was accepted: the test checks nothing")
	}
}

// FuzzParseRawOplogEntryValidates: for any bytes, the one-pass parse
// accepting them implies the validated parse accepting them, with the same
// fields.
func FuzzParseRawOplogEntryValidates(f *testing.F) {
	for _, raw := range oplogSamples(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameParse(t, raw) })
}
