package server

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/changehook/changehook/devdb/internal/storage"
	"github.com/changehook/changehook/devdb/internal/wire"
)

// rawCommand sends body as an OP_MSG with the document sequence "documents"
// (when docs is not nil) and returns the reply's body bytes.
func rawCommand(t *testing.T, r *rawConn, body bson.D, docs [][]byte) []byte {
	t.Helper()
	b, err := bson.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	id := r.nextID()
	msg := wire.AppendMsg(nil, id, 0, 0, b)
	if docs != nil {
		msg = wire.AppendMsgSequence(msg, "documents", docs...)
	}
	r.send(msg)
	m, err := wire.ReadMessage(r.nc, 0)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	pm, err := wire.ParseMsg(m)
	if err != nil {
		t.Fatalf("parse reply: %v", err)
	}
	return bytes.Clone(pm.Body)
}

// maskGenerated returns a copy of the document raw with every ObjectID not
// made by the test (first byte 0xaa) zeroed, and the values of the top-level
// fields named in zero zeroed: what differs between two servers given the
// same commands and clock (generated _ids, collection UUIDs, resume tokens).
func maskGenerated(raw []byte, zero ...string) []byte {
	out := bytes.Clone(raw)
	var walk func(d bsoncore.Document, top bool)
	walk = func(d bsoncore.Document, top bool) {
		elems, err := d.Elements()
		if err != nil {
			return
		}
		var zeroed []bsoncore.Value
		for _, e := range elems {
			v := e.Value()
			switch v.Type {
			case bsoncore.TypeObjectID:
				if v.Data[0] != 0xaa {
					clear(v.Data)
				}
			case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
				walk(v.Data, false)
			}
			if top {
				for _, z := range zero {
					if e.Key() == z {
						zeroed = append(zeroed, v)
					}
				}
			}
		}
		for _, v := range zeroed {
			clear(v.Data)
		}
	}
	walk(out, true)
	return out
}

// rawInsertState is what a client or a later reader can see of a server's
// writes: the stored documents of each collection, the oplog and the change
// events.
func rawInsertState(t *testing.T, s *Server, colls []string) (docs map[string][][]byte, oplog [][]byte) {
	t.Helper()
	docs = map[string][][]byte{}
	err := s.store.View(func(tx *storage.Tx) error {
		for _, name := range colls {
			c, err := tx.Collection("diff", name)
			if err != nil || c == nil {
				return err
			}
			err = tx.Scan(c, 0, func(_ storage.RecordID, raw bson.Raw) (bool, error) {
				docs[name] = append(docs[name], maskGenerated(raw))
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.store.OplogRawAfter(bson.Timestamp{}, func(r *storage.RawOplogEntry) bool {
		oplog = append(oplog, maskGenerated(r.Raw, "uuid"))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return docs, oplog
}

// rawInsertEvents returns the change events of database diff (except those
// of the collection big, whose events exceed the size limit) up to the
// insert into the collection end.
func rawInsertEvents(t *testing.T, s *Server, from bson.Timestamp) [][]byte {
	t.Helper()
	client := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := client.Database("diff").Watch(ctx, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "ns.coll", Value: bson.D{{Key: "$ne", Value: "big"}}}}}}},
		options.ChangeStream().SetStartAtOperationTime(&from).SetShowExpandedEvents(true).SetFullDocumentBeforeChange(options.WhenAvailable))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cs.Close(context.Background()) }()
	var out [][]byte
	for cs.Next(ctx) {
		out = append(out, maskGenerated(cs.Current, "_id", "collectionUUID"))
		if get(bsonD(t, cs.Current), "ns", "coll") == "end" {
			return out
		}
	}
	t.Fatalf("change stream ended: %v", cs.Err())
	return nil
}

func bsonD(t *testing.T, raw []byte) bson.D {
	t.Helper()
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRawInsertDifferential runs the same inserts through a server that
// stores documents as the client sent them where it may (InsertRaw) and a
// server that decodes every document (the reference), on the same clock,
// and requires identical replies, stored documents, oplog entries and
// change events.
func TestRawInsertDifferential(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	servers := []*Server{
		startTestServer(t, Options{}, testHooks{storageNow: clock}),
		startTestServer(t, Options{}, testHooks{storageNow: clock, decodedWrites: true}),
	}
	corpus, _ := rawInsertCorpus(t)
	badBool := corpus[len(corpus)-1] // a boolean byte 2: the whole command fails to decode
	corpus = corpus[:len(corpus)-1]
	mk := func(d bson.D) []byte {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oid := func(n byte) bson.ObjectID { return bson.ObjectID{0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n} }
	// A document of exactly size bytes: {_id?, pad: "xxx…"}.
	sized := func(size int, id bool) []byte {
		d := bson.D{}
		if id {
			d = append(d, bson.E{Key: "_id", Value: oid(200)})
		}
		d = append(d, bson.E{Key: "pad", Value: ""})
		base := len(mk(d))
		d[len(d)-1].Value = strings.Repeat("x", size-base)
		b := mk(d)
		if len(b) != size {
			t.Fatalf("sized document has %d bytes, want %d", len(b), size)
		}
		return b
	}
	insert := func(coll string, ordered bool, extra ...bson.E) bson.D {
		return append(bson.D{{Key: "insert", Value: coll}, {Key: "ordered", Value: ordered}, {Key: "$db", Value: "diff"}}, extra...)
	}
	del := func(coll string, q bson.D, limit int32) bson.D {
		return bson.D{{Key: "delete", Value: coll}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: q}, {Key: "limit", Value: limit}}}}, {Key: "$db", Value: "diff"}}
	}
	upd := func(coll string, q, u bson.D, multi, upsert bool) bson.D {
		return bson.D{{Key: "update", Value: coll}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: q}, {Key: "u", Value: u},
			{Key: "multi", Value: multi}, {Key: "upsert", Value: upsert}}}}, {Key: "$db", Value: "diff"}}
	}
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{9}, 16)}}}
	type step struct {
		name string
		body bson.D
		docs [][]byte
	}
	steps := []step{
		{"unique index", bson.D{{Key: "createIndexes", Value: "uniq"}, {Key: "indexes", Value: bson.A{
			bson.D{{Key: "key", Value: bson.D{{Key: "u", Value: 1}}}, {Key: "name", Value: "u_1"}, {Key: "unique", Value: true}}}}, {Key: "$db", Value: "diff"}}, nil},
		{"validator", bson.D{{Key: "create", Value: "valid"}, {Key: "validator", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "int"}}}}}, {Key: "$db", Value: "diff"}}, nil},
		{"pre-images", bson.D{{Key: "create", Value: "images"}, {Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}, {Key: "$db", Value: "diff"}}, nil},
		{"corpus unordered", insert("plain", false), corpus},
		{"corpus ordered", insert("ordered", true), corpus},
		{"corpus again (duplicates)", insert("plain", false), corpus},
		{"images", insert("images", true), corpus[:5]},
		{"no _id, _id not first", insert("plain", false), [][]byte{
			mk(bson.D{{Key: "a", Value: 1}}), mk(bson.D{{Key: "a", Value: 1}, {Key: "_id", Value: oid(1)}}),
			mk(bson.D{{Key: "_id", Value: oid(2)}, {Key: "a", Value: bson.A{1, 2}}}), mk(bson.D{{Key: "_id", Value: oid(1)}})}},
		{"unique", insert("uniq", false), [][]byte{
			mk(bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: "a"}}), mk(bson.D{{Key: "_id", Value: 2}, {Key: "u", Value: "a"}}),
			mk(bson.D{{Key: "_id", Value: 3}, {Key: "u", Value: bson.A{"b", "c"}}}), mk(bson.D{{Key: "_id", Value: 4}, {Key: "u", Value: "c"}}),
			mk(bson.D{{Key: "_id", Value: 5}}), mk(bson.D{{Key: "_id", Value: 6}}), mk(bson.D{{Key: "u", Value: "d"}}), mk(bson.D{{Key: "_id", Value: 1}, {Key: "u", Value: "z"}})}},
		{"unique ordered", insert("uniq", true), [][]byte{
			mk(bson.D{{Key: "_id", Value: 10}, {Key: "u", Value: "e"}}), mk(bson.D{{Key: "_id", Value: 11}, {Key: "u", Value: "a"}}), mk(bson.D{{Key: "_id", Value: 12}, {Key: "u", Value: "f"}})}},
		{"validation", insert("valid", false), [][]byte{
			mk(bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: int32(1)}}), mk(bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: "no"}}),
			mk(bson.D{{Key: "_id", Value: 3}}), mk(bson.D{{Key: "x", Value: int32(4)}})}},
		{"validation bypassed", insert("valid", true, bson.E{Key: "bypassDocumentValidation", Value: true}), [][]byte{mk(bson.D{{Key: "_id", Value: 20}, {Key: "x", Value: "ok"}})}},
		{"16 MiB", insert("big", false), [][]byte{sized(storage.MaxDocumentSize, true), sized(storage.MaxDocumentSize-10, false)}},
		{"16 MiB with the _id added", insert("big", false), [][]byte{sized(storage.MaxDocumentSize-17, false), sized(storage.MaxDocumentSize, true)}},
		{"invalid boolean", insert("plain", false), [][]byte{corpus[0], badBool}},
		{"over 16 MiB", insert("big", false), [][]byte{sized(storage.MaxDocumentSize+1, true)}},
		{"in the body", insert("plain", false, bson.E{Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "body"}}}}), nil},
		{"corpus of empty timestamps", insert("plain", false), [][]byte{
			mk(bson.D{{Key: "_id", Value: "ets3"}, {Key: "t", Value: bson.Timestamp{}}, {Key: "x", Value: 1}, {Key: "u", Value: bson.Timestamp{}}}),
			mk(bson.D{{Key: "t", Value: bson.Timestamp{}}}),
			mk(bson.D{{Key: "_id", Value: "ets4"}, {Key: "n", Value: bson.D{{Key: "t", Value: bson.Timestamp{}}}}, {Key: "one", Value: bson.Timestamp{I: 1}}}),
			mk(bson.D{{Key: "_id", Value: "ets3"}, {Key: "t", Value: bson.Timestamp{}}}),
			mk(bson.D{{Key: "_id", Value: "ets5"}, {Key: "t", Value: bson.Timestamp{}}, {Key: "bad", Value: bson.Undefined{}}})}},
		{"corpus of empty timestamps, ordered", insert("ordered", true), [][]byte{
			mk(bson.D{{Key: "_id", Value: "ets6"}, {Key: "t", Value: bson.Timestamp{}}}), mk(bson.D{{Key: "_id", Value: "ets7"}, {Key: "t", Value: bson.Timestamp{I: 9}}})}},
		{"transaction", insert("txn", true, bson.E{Key: "lsid", Value: lsid}, bson.E{Key: "txnNumber", Value: int64(1)},
			bson.E{Key: "autocommit", Value: false}, bson.E{Key: "startTransaction", Value: true}), corpus[:5]},
		{"transaction insert", insert("txn", false, bson.E{Key: "lsid", Value: lsid}, bson.E{Key: "txnNumber", Value: int64(1)},
			bson.E{Key: "autocommit", Value: false}), [][]byte{mk(bson.D{{Key: "_id", Value: "t"}}), mk(bson.D{{Key: "a", Value: 1}}),
			mk(bson.D{{Key: "_id", Value: "t2"}, {Key: "a", Value: bson.A{1, bson.D{{Key: "b", Value: 2.5}}}}})}},
		{"commit", bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(1)},
			{Key: "autocommit", Value: false}, {Key: "$db", Value: "admin"}}, nil},
		{"update all", upd("ordered", bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "z", Value: 1}}}}, true, false), nil},
		{"replace one", upd("ordered", bson.D{{Key: "_id", Value: "str"}}, bson.D{{Key: "_id", Value: "str"}, {Key: "r", Value: bson.A{1, 2}}}, false, false), nil},
		{"update with a unique index", upd("uniq", bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: "zz"}}}}, false, false), nil},
		{"update a unique key to a duplicate", upd("uniq", bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "u", Value: "e"}}}}, false, false), nil},
		{"update with pre-images", upd("images", bson.D{}, bson.D{{Key: "$inc", Value: bson.D{{Key: "cnt", Value: 1}}}}, true, false), nil},
		{"update failing validation", upd("valid", bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: "s"}}}}, false, false), nil},
		{"upsert", upd("plain", bson.D{{Key: "_id", Value: "up"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}, false, true), nil},
		{"update: replace with an empty timestamp", upd("ordered", bson.D{{Key: "_id", Value: "ets6"}}, bson.D{{Key: "t", Value: bson.Timestamp{}}, {Key: "n", Value: bson.D{{Key: "t", Value: bson.Timestamp{}}}}}, false, false), nil},
		{"update: upsert a replacement with an empty timestamp", upd("ordered", bson.D{{Key: "_id", Value: "ets8"}}, bson.D{{Key: "t", Value: bson.Timestamp{}}}, false, true), nil},
		{"delete one", del("plain", bson.D{{Key: "_id", Value: "str"}}, 1), nil},
		{"delete all", del("plain", bson.D{}, 0), nil},
		{"delete with a unique index", del("uniq", bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: 5}}}}, 0), nil},
		{"delete with pre-images", del("images", bson.D{}, 0), nil},
		{"delete 16 MiB", del("big", bson.D{}, 0), nil},
		{"delete in a transaction", append(del("txn", bson.D{}, 0), bson.E{Key: "lsid", Value: lsid}, bson.E{Key: "txnNumber", Value: int64(2)},
			bson.E{Key: "autocommit", Value: false}, bson.E{Key: "startTransaction", Value: true}), nil},
		{"commit", bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(2)},
			{Key: "autocommit", Value: false}, {Key: "$db", Value: "admin"}}, nil},
		{"end", insert("end", true), [][]byte{mk(bson.D{{Key: "_id", Value: 1}})}},
	}
	conns := []*rawConn{dialRaw(t, servers[0]), dialRaw(t, servers[1])}
	for _, st := range steps {
		var replies [2][]byte
		for i, r := range conns {
			replies[i] = maskGenerated(rawCommand(t, r, st.body, st.docs))
		}
		if !bytes.Equal(replies[0], replies[1]) {
			t.Fatalf("%s: raw path replied %v, decoded path %v", st.name, bson.Raw(replies[0]), bson.Raw(replies[1]))
		}
		if (strings.HasPrefix(st.name, "corpus") || strings.HasPrefix(st.name, "delete") || strings.HasPrefix(st.name, "update") || st.name == "commit") && !strings.Contains(bson.Raw(replies[0]).String(), `"ok": {"$numberDouble":"1.0"}`) {
			t.Fatalf("%s: reply %v, want ok", st.name, bson.Raw(replies[0]))
		}
	}
	colls := []string{"plain", "ordered", "uniq", "valid", "big", "images", "txn", "end"}
	docs0, oplog0 := rawInsertState(t, servers[0], colls)
	docs1, oplog1 := rawInsertState(t, servers[1], colls)
	for _, name := range colls {
		if len(docs0[name]) != len(docs1[name]) || len(docs0["ordered"]) == 0 {
			t.Fatalf("collection %s: %d documents by the raw path, %d by the decoded path", name, len(docs0[name]), len(docs1[name]))
		}
		for i := range docs0[name] {
			if !bytes.Equal(docs0[name][i], docs1[name][i]) {
				t.Fatalf("collection %s document %d differs: raw path %x, decoded path %x", name, i, docs0[name][i][:min(200, len(docs0[name][i]))], docs1[name][i][:min(200, len(docs1[name][i]))])
			}
		}
	}
	if len(oplog0) != len(oplog1) {
		t.Fatalf("oplog: %d entries by the raw path, %d by the decoded path", len(oplog0), len(oplog1))
	}
	for i := range oplog0 {
		if !bytes.Equal(oplog0[i], oplog1[i]) {
			t.Fatalf("oplog entry %d differs:\nraw     %.2000s\ndecoded %.2000s", i, bson.Raw(oplog0[i]), bson.Raw(oplog1[i]))
		}
	}
	from := bson.Timestamp{T: uint32(clock().Unix()), I: 1} // the first entry
	ev0, ev1 := rawInsertEvents(t, servers[0], from), rawInsertEvents(t, servers[1], from)
	if len(ev0) != len(ev1) {
		t.Fatalf("%d change events by the raw path, %d by the decoded path", len(ev0), len(ev1))
	}
	for i := range ev0 {
		if !bytes.Equal(ev0[i], ev1[i]) {
			t.Fatalf("change event %d differs:\nraw     %.2000s\ndecoded %.2000s", i, bson.Raw(ev0[i]), bson.Raw(ev1[i]))
		}
	}
	t.Logf("%d documents, %d oplog entries, %d change events compared", len(docs0["plain"])+len(docs0["ordered"]), len(oplog0), len(ev0))
}
