package storage

import "go.mongodb.org/mongo-driver/v2/bson"

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
	v := b.Bucket(keyDocs).Get(r)
	if v == nil {
		return nil, false, nil
	}
	return append(bson.Raw(nil), v...), true, nil
}
