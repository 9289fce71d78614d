package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/changehook/changehook/internal/mongoerr"
	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// docKey returns the _id of doc as the document key {_id: …}.
func docKey(doc bson.D) (bson.D, error) {
	id, ok := lookupField(doc, "_id")
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "document has no _id")
	}
	return bson.D{{Key: "_id", Value: id}}, nil
}

func (t *Tx) docs(c *Collection) (*bolt.Bucket, error) {
	b := t.dataBucket(c)
	if b == nil {
		return nil, mongoerr.Errorf(mongoerr.NamespaceNotFound, "collection %s was dropped", c.Namespace())
	}
	return b.Bucket(keyDocs), nil
}

func encodeDoc(doc bson.D) ([]byte, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "cannot encode document: %v", err)
	}
	if len(raw) > MaxDocumentSize {
		return nil, &DocumentTooLargeError{Size: len(raw)}
	}
	return raw, nil
}

// uniqueKeys computes doc's keys for every unique index of c, checks that
// none is held by a record other than self, and returns them per index.
func (t *Tx) uniqueKeys(c *Collection, doc bson.D, self []byte) ([][]indexKey, error) {
	keys, err := t.allKeys(c, doc)
	if err != nil {
		return nil, err
	}
	err = t.eachIndexKey(c, keys, func(ib *bolt.Bucket, spec IndexSpec, k indexKey) error {
		if rid := ib.Get(k.enc); rid != nil && !bytes.Equal(rid, self) {
			return &DuplicateKeyError{DB: c.DB, Coll: c.Name, Index: spec.Name, KeyPattern: spec.Key, KeyValue: k.vals}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// putKeys points every key in keys (per index of c, as uniqueKeys returns
// them) at record rid.
func (t *Tx) putKeys(c *Collection, keys [][]indexKey, rid []byte) error {
	return t.eachIndexKey(c, keys, func(ib *bolt.Bucket, spec IndexSpec, k indexKey) error {
		if err := ib.Put(k.enc, rid); err != nil {
			return fmt.Errorf("write index %s: %w", spec.Name, err)
		}
		return nil
	})
}

// deleteKeys removes the keys in keys that still point at record rid.
func (t *Tx) deleteKeys(c *Collection, keys [][]indexKey, rid []byte) error {
	return t.eachIndexKey(c, keys, func(ib *bolt.Bucket, spec IndexSpec, k indexKey) error {
		if cur := ib.Get(k.enc); cur != nil && bytes.Equal(cur, rid) {
			if err := ib.Delete(k.enc); err != nil {
				return fmt.Errorf("delete index key %s: %w", spec.Name, err)
			}
		}
		return nil
	})
}

// eachIndexKey calls fn for every key in keys (one slice per index of c)
// with the bucket of its index, stopping at the first error.
func (t *Tx) eachIndexKey(c *Collection, keys [][]indexKey, fn func(ib *bolt.Bucket, spec IndexSpec, k indexKey) error) error {
	b := t.dataBucket(c)
	for i, ks := range keys {
		if len(ks) == 0 {
			continue
		}
		spec := c.Indexes[i]
		ib := b.Bucket(indexBucketName(spec.Name))
		if ib == nil {
			return fmt.Errorf("look up index %s of %s: index has no data", spec.Name, c.Namespace())
		}
		for _, k := range ks {
			if err := fn(ib, spec, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// allKeys computes doc's unique-index keys without checking for conflicts.
func (t *Tx) allKeys(c *Collection, doc bson.D) ([][]indexKey, error) {
	out := make([][]indexKey, len(c.Indexes))
	for i, spec := range c.Indexes {
		if !spec.Unique && spec.Name != "_id_" {
			continue
		}
		keys, ok, err := t.indexKeys(spec, doc)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i] = keys
		}
	}
	return out, nil
}

// Insert stores doc (which must have an _id) in c and appends an "insert"
// entry. A unique index violation is a *DuplicateKeyError and a document over
// 16 MiB a *DocumentTooLargeError; on error nothing is changed.
func (t *Tx) Insert(c *Collection, doc bson.D) (RecordID, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	dk, err := docKey(doc)
	if err != nil {
		return 0, err
	}
	if err := t.checkWrite(c, dk[0].Value); err != nil {
		return 0, err
	}
	raw, err := encodeDoc(doc)
	if err != nil {
		return 0, err
	}
	return t.insert(c, dk, raw, doc)
}

// InsertRaw is Insert of the document encoded as raw, stored and written to
// the oplog as these bytes, without decoding or encoding the document when
// no validator and no unique index other than _id needs its fields. raw
// must be a valid document whose first field is its only top-level _id and
// which bson.Marshal of its decoded bson.D reproduces byte for byte (the
// caller checks; Insert of that bson.D then does exactly what InsertRaw
// does). raw must stay unchanged until the transaction ends.
func (t *Tx) InsertRaw(c *Collection, raw bson.Raw) (RecordID, error) {
	if err := t.writable(); err != nil {
		return 0, err
	}
	id, err := firstValue(raw)
	if err != nil {
		return 0, err
	}
	dk := bson.D{{Key: "_id", Value: id}}
	if err := t.checkWrite(c, id); err != nil {
		return 0, err
	}
	if len(raw) > MaxDocumentSize {
		return 0, &DocumentTooLargeError{Size: len(raw)}
	}
	var doc bson.D
	if t.decodeDocuments || t.needsFields(c) {
		if err := bson.Unmarshal(raw, &doc); err != nil {
			return 0, mongoerr.Errorf(mongoerr.BadValue, "cannot decode document: %v", err)
		}
	} else {
		// Only the _id index's key is computed (allKeys): {_id} is
		// all of the document it reads.
		doc = dk
	}
	return t.insert(c, dk, raw, doc)
}

// needsFields reports whether inserting into c reads fields of the document
// other than _id: a validator to check (validate) or a unique index other
// than _id to compute keys for (allKeys).
func (t *Tx) needsFields(c *Collection) bool {
	return (!t.skipValidation && len(c.Options) > 0) || t.uniqueFields(c)
}

// uniqueFields reports whether c has a unique index other than _id, whose
// keys (allKeys) read fields of a document other than _id.
func (t *Tx) uniqueFields(c *Collection) bool {
	for _, spec := range c.Indexes {
		if spec.Unique && spec.Name != "_id_" {
			return true
		}
	}
	return false
}

// DecodeDocuments makes this transaction's writes decode every document
// they store or remove and encode it again, as they did before InsertRaw
// and the raw pre-images of Delete: the reference the differential tests
// compare those with.
func (t *Tx) DecodeDocuments() { t.decodeDocuments = true }

// firstValue decodes the value of raw's first field as bson.Unmarshal into a
// bson.D decodes it.
func firstValue(raw bson.Raw) (any, error) {
	var d bson.D
	el, err := bsoncore.Document(raw).IndexErr(0)
	if err == nil {
		first := make([]byte, 0, len(el)+5)
		first = binary.LittleEndian.AppendUint32(first, uint32(len(el)+5))
		first = append(append(first, el...), 0)
		err = bson.Unmarshal(first, &d)
	}
	if err != nil || len(d) != 1 || d[0].Key != "_id" {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "document has no _id first")
	}
	return d[0].Value, nil
}

// insert is the common part of Insert and InsertRaw: the document (with key
// dk) encoded as raw, decoded as doc (at least its _id when neither
// validation nor a unique index other than _id reads it, see needsFields).
// The oplog entry gets raw as its document, not encoded again (unless
// DecodeDocuments asked for the reference path).
func (t *Tx) insert(c *Collection, dk bson.D, raw []byte, doc bson.D) (RecordID, error) {
	docs, err := t.docs(c)
	if err != nil {
		return 0, err
	}
	if err := t.validate(c, nil, doc); err != nil {
		return 0, err
	}
	keys, err := t.uniqueKeys(c, doc, nil)
	if err != nil {
		return 0, err
	}
	seq, err := docs.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("allocate record id: %w", err)
	}
	rid := u64(seq)
	if err := t.putValue(docs, rid, raw, false, false); err != nil {
		return 0, fmt.Errorf("insert into %s: %w", c.Namespace(), err)
	}
	if err := t.putKeys(c, keys, rid); err != nil {
		return 0, err
	}
	if err := t.addStats(c, 1, int64(len(raw))); err != nil {
		return 0, err
	}
	ent := &OplogEntry{Op: "insert", DB: c.DB, Coll: c.Name, UUID: c.UUID, DocumentKey: dk, Images: c.Images()}
	if t.decodeDocuments {
		ent.Doc = doc
	} else {
		ent.docRaw = raw
	}
	return RecordID(seq), t.appendOplog(ent)
}

// Get returns the document of c whose _id equals id (numerically equal
// values of different types match; strings compare under the _id index's
// collation, the collection's default), or ok false.
func (t *Tx) Get(c *Collection, id any) (rid RecordID, doc bson.D, ok bool, err error) {
	b := t.dataBucket(c)
	if b == nil {
		return 0, nil, false, nil
	}
	r := b.Bucket(indexBucketName("_id_")).Get(KeyStringCollation(id, c.IDCollation()))
	if r == nil {
		return 0, nil, false, nil
	}
	doc, ok, err = t.load(c, b, r)
	return RecordID(binary.BigEndian.Uint64(r)), doc, ok, err
}

// Load returns the document stored under rid, or ok false.
func (t *Tx) Load(c *Collection, rid RecordID) (bson.D, bool, error) {
	if _, err := t.docs(c); err != nil {
		return nil, false, err
	}
	return t.load(c, t.dataBucket(c), u64(uint64(rid)))
}

// load decodes the document stored under rid in c's bucket b.
func (t *Tx) load(c *Collection, b *bolt.Bucket, rid []byte) (bson.D, bool, error) {
	v, err := t.docBytes(c, b, rid)
	if v == nil || err != nil {
		return nil, false, err
	}
	var doc bson.D
	if err := bson.Unmarshal(v, &doc); err != nil {
		return nil, false, fmt.Errorf("decode document: %w", err)
	}
	return doc, true, nil
}

// docBytes returns the encoded document stored under rid in c's bucket b,
// nil when there is none; it points into storage (valid only in the
// transaction), whether stored inline or in a bucket of its own.
func (t *Tx) docBytes(c *Collection, b *bolt.Bucket, rid []byte) ([]byte, error) {
	v, _, err := t.docValue(c, b.Bucket(keyDocs), rid)
	return v, err
}

// docValue is getValue for record rid of c in its document bucket docs; a
// damaged value bucket is a *DamagedError.
func (t *Tx) docValue(c *Collection, docs *bolt.Bucket, rid []byte) (v []byte, own bool, err error) {
	v, own, err = getValue(docs, rid)
	if err != nil {
		return nil, false, t.damagedDoc(c, rid, err)
	}
	return v, own, nil
}

// damagedDoc reports the damaged record rid of c.
func (t *Tx) damagedDoc(c *Collection, rid []byte, err error) error {
	return &DamagedError{Dir: t.e.dir, Err: fmt.Errorf("read record %d of %s: %w", binary.BigEndian.Uint64(rid), c.Namespace(), err)}
}

// Replace overwrites the document stored under rid with doc and appends an
// entry with operation op ("update" or "replace") carrying the pre- and
// post-image. The _id must not change (the caller enforces MongoDB's
// ImmutableField rule). A doc over 16 MiB is a *DocumentTooLargeError,
// checked before the collection's validator. On error nothing is changed.
// The entry's post-image
// is the stored encoding of doc, and its pre-image the stored bytes of the
// old document when RawInsertable accepts them, neither encoded again.
func (t *Tx) Replace(c *Collection, rid RecordID, doc bson.D, op string) error {
	return t.ReplaceDiff(c, rid, doc, op, nil)
}

// ReplaceDiff is Replace for an update that logged its own $v: 2 diff
// (nil: none), which the entry carries as its Diff.
func (t *Tx) ReplaceDiff(c *Collection, rid RecordID, doc bson.D, op string, diff bson.D) error {
	if err := t.writable(); err != nil {
		return err
	}
	docs, err := t.docs(c)
	if err != nil {
		return err
	}
	key := u64(uint64(rid))
	// oldRaw points into storage and stays valid until the transaction
	// ends, also after the value is replaced (bbolt writes changed pages
	// elsewhere).
	oldRaw, own, err := t.docValue(c, docs, key)
	if err != nil {
		return err
	}
	if oldRaw == nil {
		return mongoerr.Errorf(mongoerr.BadValue, "record %d of %s does not exist", rid, c.Namespace())
	}
	var old bson.D
	if err := bson.Unmarshal(oldRaw, &old); err != nil {
		return fmt.Errorf("decode document: %w", err)
	}
	if id, _ := lookupField(old, "_id"); t.shadow != nil {
		if err := t.checkWrite(c, id); err != nil {
			return err
		}
	}
	// The size first, as MongoDB's update stage checks it before the
	// collection validates the document.
	raw, err := encodeDoc(doc)
	if err != nil {
		return err
	}
	if err := t.validate(c, old, doc); err != nil {
		return err
	}
	oldKeys, err := t.allKeys(c, old)
	if err != nil {
		return err
	}
	newKeys, err := t.uniqueKeys(c, doc, key)
	if err != nil {
		return err
	}
	oldSize := int64(len(oldRaw))
	if err := t.deleteKeys(c, oldKeys, key); err != nil {
		return err
	}
	if err := t.putKeys(c, newKeys, key); err != nil {
		return err
	}
	if err := t.putValue(docs, key, raw, true, own); err != nil {
		return fmt.Errorf("update %s: %w", c.Namespace(), err)
	}
	if err := t.addStats(c, 0, int64(len(raw))-oldSize); err != nil {
		return err
	}
	dk, err := docKey(old)
	if err != nil {
		return err
	}
	ent := &OplogEntry{Op: op, DB: c.DB, Coll: c.Name, UUID: c.UUID, DocumentKey: dk, Doc: doc, Pre: old, Diff: diff, Images: c.Images()}
	if !t.decodeDocuments {
		// raw is doc encoded; oldRaw (still valid until the transaction
		// ends) is old encoded when RawInsertable accepts it.
		ent.Doc, ent.docRaw = nil, raw
		if RawInsertable(oldRaw) {
			ent.Pre, ent.preRaw = nil, oldRaw
		}
	}
	return t.appendOplog(ent)
}

// Delete removes the document stored under rid and appends a "delete"
// entry; ok is false when there was none. The stored bytes of a document
// RawInsertable accepts are the entry's pre-image as they are, and the
// document is not decoded unless a unique index other than _id needs its
// fields.
func (t *Tx) Delete(c *Collection, rid RecordID) (bool, error) {
	if err := t.writable(); err != nil {
		return false, err
	}
	docs, err := t.docs(c)
	if err != nil {
		return false, err
	}
	key := u64(uint64(rid))
	oldRaw, own, err := t.docValue(c, docs, key)
	if err != nil {
		return false, err
	}
	if oldRaw == nil {
		return false, nil
	}
	size := int64(len(oldRaw))
	var old bson.D
	var preRaw bson.Raw
	if !t.decodeDocuments && RawInsertable(oldRaw) {
		// The entry's pre-image is written from oldRaw (marshalEntry).
		preRaw = oldRaw
	}
	if preRaw != nil && !t.uniqueFields(c) {
		id, err := firstValue(oldRaw)
		if err != nil {
			return false, err
		}
		// Only the _id index's key is computed (allKeys).
		old = bson.D{{Key: "_id", Value: id}}
	} else if err := bson.Unmarshal(oldRaw, &old); err != nil {
		return false, fmt.Errorf("decode document: %w", err)
	}
	if id, _ := lookupField(old, "_id"); t.shadow != nil {
		if err := t.checkWrite(c, id); err != nil {
			return false, err
		}
	}
	keys, err := t.allKeys(c, old)
	if err != nil {
		return false, err
	}
	dk, err := docKey(old)
	if err != nil {
		return false, err
	}
	ent := &OplogEntry{Op: "delete", DB: c.DB, Coll: c.Name, UUID: c.UUID, DocumentKey: dk, Pre: old, Images: c.Images()}
	if preRaw != nil {
		// Encoded now, before the record's bytes go away with it.
		ent.Pre, ent.preRaw = nil, preRaw
	}
	if err := t.deleteKeys(c, keys, key); err != nil {
		return false, err
	}
	if err := t.addStats(c, -1, -size); err != nil {
		return false, err
	}
	if err := t.appendOplog(ent); err != nil {
		return false, err
	}
	if err := deleteValue(docs, key, own); err != nil {
		return false, fmt.Errorf("delete from %s: %w", c.Namespace(), err)
	}
	return true, nil
}

// Scan calls fn for every document of c with a record id greater than after,
// in record id (natural) order, until fn returns false or an error. raw is
// valid only during the call.
func (t *Tx) Scan(c *Collection, after RecordID, fn func(rid RecordID, raw bson.Raw) (bool, error)) error {
	b := t.dataBucket(c)
	if b == nil {
		return nil
	}
	docs := b.Bucket(keyDocs)
	cur := docs.Cursor()
	for k, v := cur.Seek(u64(uint64(after) + 1)); k != nil; k, v = cur.Next() {
		if v == nil {
			var err error
			if v, err = cursorValue(docs, k, v); err != nil {
				return t.damagedDoc(c, k, err)
			}
		}
		more, err := fn(RecordID(binary.BigEndian.Uint64(k)), v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}
