package storage

import (
	"bytes"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// GetRaw is Get returning the stored encoded document (a copy owned by the
// caller) instead of decoding it: for readers that pass the document on
// as it is, such as a change stream's updateLookup.
func (t *Tx) GetRaw(c *Collection, id any) (raw bson.Raw, ok bool, err error) {
	b := t.dataBucket(c)
	if b == nil {
		return nil, false, nil
	}
	r := b.Bucket(indexBucketName("_id_")).Get(KeyStringCollation(id, c.IDCollation()))
	if r == nil {
		return nil, false, nil
	}
	v, _, err := t.docValue(c, b.Bucket(keyDocs), r)
	if v == nil || err != nil {
		return nil, false, err
	}
	return append(bson.Raw(nil), v...), true, nil
}

// CollectionCache keeps the catalog entry CollectionCached decoded last.
// The zero value is empty; it is not safe for concurrent use.
type CollectionCache struct {
	key, raw []byte
	c        *Collection
}

// CollectionCached is Collection for a reader that looks up the same
// collection again and again (a change stream's updateLookup, once per
// event): when the stored catalog entry of db.coll has the bytes decoded last
// time, that decoded entry is returned again instead of decoding the bytes
// anew. The result is shared with later calls: the caller must not modify it.
func (t *Tx) CollectionCached(db, coll string, cache *CollectionCache) (*Collection, error) {
	key := catalogKey(db, coll)
	v := t.tx.Bucket(bucketCatalog).Get(key)
	if v == nil {
		return nil, nil
	}
	if cache.c != nil && bytes.Equal(cache.key, key) && bytes.Equal(cache.raw, v) {
		return cache.c, nil
	}
	c := new(Collection)
	if err := bson.Unmarshal(v, c); err != nil {
		return nil, fmt.Errorf("decode catalog entry %s.%s: %w", db, coll, err)
	}
	cache.key, cache.raw, cache.c = key, append(cache.raw[:0], v...), c
	return c, nil
}
