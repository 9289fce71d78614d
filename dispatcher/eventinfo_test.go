package dispatcher

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/bsonwalk/bsonwalktest"
)

// infoEvents are change events of every shape the observers' fields are
// read from: the server's field order, other orders, repeated and missing
// fields, fields of every type before them.
func infoEvents(t testing.TB) [][]byte {
	tok := bson.D{{Key: "_data", Value: "8267A1B2C3000000012B042C0100296E5A1004ABCDEF0123456789ABCDEF0123456789"}}
	full := bsonwalktest.EveryType()
	ns := bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}
	dk := bson.D{{Key: "_id", Value: bson.NewObjectID()}}
	docs := []bson.D{
		{{Key: "_id", Value: tok}, {Key: "operationType", Value: "insert"}, {Key: "clusterTime", Value: bson.Timestamp{T: 1, I: 2}},
			{Key: "wallTime", Value: bson.NewDateTimeFromTime(time.Now())}, {Key: "fullDocument", Value: full}, {Key: "ns", Value: ns}, {Key: "documentKey", Value: dk}},
		{{Key: "_id", Value: tok}, {Key: "documentKey", Value: dk}, {Key: "operationType", Value: "update"}},
		{{Key: "_id", Value: tok}, {Key: "operationType", Value: "drop"}, {Key: "ns", Value: ns}},
		{{Key: "_id", Value: tok}, {Key: "documentKey", Value: "not a document"}, {Key: "operationType", Value: int32(4)}},
		{{Key: "documentKey", Value: dk}, {Key: "documentKey", Value: bson.D{}}, {Key: "operationType", Value: "delete"}, {Key: "operationType", Value: "insert"}},
		{{Key: "fullDocument", Value: full}},
		{},
	}
	var out [][]byte
	for _, d := range docs {
		raw, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// TestScanInfoFieldsMatchesLookup checks the one-walk reader of the
// observers' fields against raw.LookupErr on well-formed events (where it
// must answer) and on corrupted ones (where it answers the same or leaves
// the event to LookupErr), and eventInfo's result against the lookups'.
func TestScanInfoFieldsMatchesLookup(t *testing.T) {
	s := &Sender{observers: []observer{{f: func(Attempt) {}}}}
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(raw []byte, wellFormed bool) {
		t.Helper()
		dk, op, ok := scanInfoFields(raw)
		if wellFormed && !ok {
			t.Fatalf("%v: not read", bson.Raw(raw))
		}
		wantDK, _ := bson.Raw(raw).LookupErr("documentKey")
		wantOp, _ := bson.Raw(raw).LookupErr("operationType")
		if ok && (dk.Type != wantDK.Type || !bytes.Equal(dk.Value, wantDK.Value) || op.Type != wantOp.Type || !bytes.Equal(op.Value, wantOp.Value)) {
			t.Fatalf("%x: read %v / %v, LookupErr %v / %v", raw, dk, op, wantDK, wantOp)
		}
		info, want := s.eventInfo(Event{Raw: raw}), eventInfoByLookup(raw)
		if !bytes.Equal(info.documentKey, want.documentKey) || info.operation != want.operation {
			t.Fatalf("%x: eventInfo %v %q, by lookups %v %q", raw, info.documentKey, info.operation, want.documentKey, want.operation)
		}
	}
	for _, raw := range infoEvents(t) {
		check(raw, true)
		for range 3000 {
			check(bsonwalktest.Corrupt(rng, raw), false)
		}
	}
}

// eventInfoByLookup is eventInfo by two raw.LookupErr calls.
func eventInfoByLookup(raw bson.Raw) eventInfo {
	var info eventInfo
	if v, err := raw.LookupErr("documentKey"); err == nil {
		info.documentKey, _ = v.DocumentOK()
	}
	if v, err := raw.LookupErr("operationType"); err == nil && v.Type == bson.TypeString && len(v.Value) >= 5 {
		if n := int(binary.LittleEndian.Uint32(v.Value)); n >= 1 && n <= len(v.Value)-4 && v.Value[3+n] == 0 {
			info.operation = string(v.Value[4 : 3+n])
		}
	}
	return info
}

// BenchmarkEventInfo reads the observers' fields of a change event shaped
// as the server sends it (documentKey after fullDocument and ns).
func BenchmarkEventInfo(b *testing.B) {
	s := &Sender{observers: []observer{{f: func(Attempt) {}}}}
	ev := Event{Raw: infoEvents(b)[0]}
	b.ReportAllocs()
	for b.Loop() {
		if info := s.eventInfo(ev); info.operation != "insert" || len(info.documentKey) != 22 {
			b.Fatal(info)
		}
	}
}
