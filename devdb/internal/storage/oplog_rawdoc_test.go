package storage

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestOplogEntryRawDocInStep keeps oplogEntryRawDoc the same as OplogEntry
// (exported fields, in order, with the same names, tags and types) except
// for Doc and Pre, already encoded.
func TestOplogEntryRawDocInStep(t *testing.T) {
	a, b := reflect.TypeFor[OplogEntry](), reflect.TypeFor[oplogEntryRawDoc]()
	var exported []reflect.StructField
	for i := range a.NumField() {
		if f := a.Field(i); f.IsExported() {
			exported = append(exported, f)
		}
	}
	if len(exported) != b.NumField() {
		t.Fatalf("OplogEntry has %d exported fields, oplogEntryRawDoc %d", len(exported), b.NumField())
	}
	for i, fa := range exported {
		fb := b.Field(i)
		wantType := fa.Type
		if fa.Name == "Doc" || fa.Name == "Pre" {
			wantType = reflect.TypeFor[bson.Raw]()
		}
		if fa.Name != fb.Name || fa.Tag != fb.Tag || fb.Type != wantType {
			t.Errorf("field %d: OplogEntry %s %v %q, oplogEntryRawDoc %s %v %q", i, fa.Name, fa.Type, fa.Tag, fb.Name, fb.Type, fb.Tag)
		}
	}
}

// TestMarshalEntryRawDoc checks that an entry with its document or
// pre-image already encoded is written as bson.Marshal writes the entry with
// them decoded.
func TestMarshalEntryRawDoc(t *testing.T) {
	doc := bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: bson.A{"x", bson.D{{Key: "b", Value: 2.5}}}}}
	raw, err := bson.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	commit := bson.Timestamp{T: 7, I: 8}
	full := OplogEntry{TS: bson.Timestamp{T: 1, I: 2}, Wall: time.UnixMilli(1234).UTC(), Op: "insert", DB: "d", Coll: "c",
		UUID: bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{1}, 16)}, DocumentKey: doc[:1], Doc: doc,
		Pre: bson.D{{Key: "p", Value: 1}}, Images: true, ToDB: "x", ToColl: "y", Extra: bson.D{{Key: "e", Value: 1}},
		LSID: bson.D{{Key: "id", Value: 1}}, TxnNumber: 3, CommitTS: &commit}
	for _, ent := range []OplogEntry{full, {TS: full.TS, Wall: full.Wall, Op: "insert", DB: "d", Coll: "c", DocumentKey: doc[:1], Doc: doc}} {
		want, err := bson.Marshal(&ent)
		if err != nil {
			t.Fatal(err)
		}
		var pre bson.Raw
		if ent.Pre != nil {
			if pre, err = bson.Marshal(ent.Pre); err != nil {
				t.Fatal(err)
			}
		}
		r := ent
		r.Doc, r.docRaw = nil, raw
		got, err := marshalEntry(&r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("marshalEntry with the raw document:\n%v\nwant\n%v", bson.Raw(got), bson.Raw(want))
		}
		for _, withDoc := range []bool{false, true} {
			r := ent
			r.Pre, r.preRaw = nil, pre
			if withDoc {
				r.Doc, r.docRaw = nil, raw
			}
			got, err := marshalEntry(&r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("marshalEntry with the raw pre-image (and document: %v):\n%v\nwant\n%v", withDoc, bson.Raw(got), bson.Raw(want))
			}
		}
		got, _ = marshalEntry(&ent)
		var back OplogEntry
		if err := bson.Unmarshal(got, &back); err != nil || !reflect.DeepEqual(back.Doc, doc) {
			t.Fatalf("decoded Doc = %v (%v), want %v", back.Doc, err, doc)
		}
	}
}
