package store

// appendBucketV1 appends b's BSON document to dst with its records in
// format 1, as the previous version wrote them: the records' distinct
// webhook-ids and document keys in the top-level arrays webhookIds and
// documentKeys (indexed by the database) and no key summary. Tests use it
// to check that such buckets are still read, found and trimmed.
func appendBucketV1(dst []byte, b *attemptBucket) ([]byte, error) {
	return appendLegacyBucket(dst, b, recordsSubtypeV1, func(dst []byte) ([]byte, error) {
		return b.appendRecords(dst, recordsVersion1), nil
	})
}
