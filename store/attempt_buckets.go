package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Bucket bounds: InsertAttempts cuts a trigger's records into buckets that
// respect all three.
const (
	// maxBucketRecords bounds the records of one bucket.
	maxBucketRecords = 512
	// bucketSpan bounds the time between a bucket's oldest and newest
	// record, so that a listing continued after a cursor reads only the
	// buckets whose newest record is at most bucketSpan after it, and the
	// TTL index keeps a record at most bucketSpan longer than a record of
	// its own.
	bucketSpan = time.Minute
	// maxBucketBytes bounds a bucket's estimated size, far below MongoDB's
	// 16 MiB document limit (a record is at most about 3.5 KiB after
	// Truncate, so the record bound usually comes first).
	maxBucketBytes = 4 << 20
	// recordOverhead bounds a record's stored size without its variable
	// text (format 2: flags, codes, id, times, numbers, indexes and
	// lengths take at most about 80 bytes; its webhook-id and document
	// key's list entries and key summary bits a few more).
	recordOverhead = 128
)

// attemptBucket is the stored form of the history: the records of one
// trigger written together, oldest first, with what selecting buckets needs
// at the top level (the trigger, the range first..last of the records'
// times, indexed; the count; whether one failed) and a key summary of the
// records' webhook-ids and document keys (see attempt_summary.go). The
// records themselves are one binary value in a compact format (see
// MarshalBSON and the format's description in attempt_encode.go): every
// record-level filter runs in the reader, so the database never needs to
// look inside, and a batch of records costs it one value and a few index
// keys instead of a dozen values and two index keys per record.
type attemptBucket struct {
	ID      bson.ObjectID `bson:"_id"`
	Trigger string        `bson:"trigger"`
	// First and Last are the oldest and newest record's At.
	First time.Time `bson:"first"`
	Last  time.Time `bson:"last"`
	// N is the number of records.
	N int `bson:"n"`
	// Failed reports that at least one record is a failed attempt.
	Failed bool `bson:"failed"`
	// WebhookIDs and DocumentKeys are the records' distinct values
	// (stored in the records' data; a bucket of format 0 or 1 has them
	// as top-level arrays).
	WebhookIDs   []string   `bson:"-"`
	DocumentKeys []bson.Raw `bson:"-"`
	// Records are the bucket's records (their Trigger is not stored:
	// the bucket's) or, with order, the records they are taken from.
	// MarshalBSON and UnmarshalBSON store them as the binary "records".
	Records []AttemptRecord `bson:"-"`
	// order, when set, lists the bucket's records as indexes into
	// Records, oldest first (a bucket of a writer batch refers to the
	// caller's records instead of copying them).
	order []int32
	// refs holds, for the i-th record, the index of its webhook-id in
	// WebhookIDs (refs[2i]) and of its document key in DocumentKeys
	// (refs[2i+1]), -1 for none; set by index.
	refs []int32
	// summary is a decoded bucket's key summary (hasSummary: it has one;
	// a bucket of format 0 or 1 has the top-level arrays instead).
	summary    []byte
	hasSummary bool
	// sc, when set, is the scratch memory of the writer batch the bucket
	// belongs to (its encoding goes to sc.bufs[si]); see batchScratch.
	sc     *batchScratch
	si, su int // the bucket's index in the batch, its first record's in sc
}

// len returns the number of records of b.
func (b *attemptBucket) len() int {
	if b.order != nil {
		return len(b.order)
	}
	return len(b.Records)
}

// rec returns b's i-th record.
func (b *attemptBucket) rec(i int) *AttemptRecord {
	if b.order != nil {
		return &b.Records[b.order[i]]
	}
	return &b.Records[i]
}

// newBucket builds the bucket with id of trigger's records: recs (sorted
// oldest first) or, when order is not nil, the records of recs it lists in
// that order. Their Trigger is ignored.
func newBucket(id bson.ObjectID, trigger string, recs []AttemptRecord, order []int32) attemptBucket {
	b := attemptBucket{ID: id, Trigger: trigger, Records: recs, order: order}
	b.index()
	return b
}

// batchScratch is the memory one InsertAttempts call needs besides the
// records, reused from batch to batch (Store.scratch): cutting the batch
// into buckets, their indexes and their encodings allocated about 200 bytes
// per record, all garbage once the insert returned. A batch's buckets take
// consecutive parts of refs, webhooks, keys and hashes (their records
// partition the batch, so each part is sized by its bucket's records);
// tables serves the buckets' indexing one after the other; bufs[i] holds
// bucket i's encoding, which the driver copies before InsertMany returns.
// reset drops every reference to the batch's records.
type batchScratch struct {
	pos      []recordPos
	order    []int32
	buckets  []attemptBucket
	docs     []any
	refs     []int32
	tables   []int32
	webhooks []string
	keys     []bson.Raw
	hashes   []uint64
	bufs     [][]byte
	used     int // records of the batch's buckets indexed so far
}

// grow sizes sc for a batch of n records.
func (sc *batchScratch) grow(n int) {
	sc.refs = slices.Grow(sc.refs[:0], 2*n)[:2*n]
	sc.webhooks = slices.Grow(sc.webhooks[:0], n)[:n]
	sc.keys = slices.Grow(sc.keys[:0], n)[:n]
	sc.hashes = slices.Grow(sc.hashes[:0], 2*n)[:2*n]
	sc.used = 0
}

// reset clears sc's references to a batch's records and strings, for the
// pool.
func (sc *batchScratch) reset() {
	clear(sc.buckets[:cap(sc.buckets)])
	clear(sc.docs[:cap(sc.docs)])
	clear(sc.webhooks)
	clear(sc.keys)
	sc.buckets, sc.docs = sc.buckets[:0], sc.docs[:0]
}

// hashSeed seeds the hashes of index's tables.
var hashSeed = maphash.MakeSeed()

// index sets b's N, First, Last, Failed, WebhookIDs, DocumentKeys and refs
// from its records. Distinct values are found with open-addressing tables
// of indexes (no allocation per record).
func (b *attemptBucket) index() {
	n := b.len()
	b.N = n
	b.First, b.Last, b.Failed = time.Time{}, time.Time{}, false
	b.WebhookIDs, b.DocumentKeys = nil, nil
	sc := b.sc
	if sc != nil && sc.used+n <= len(sc.webhooks) {
		// The bucket's part of its batch's scratch (see batchScratch).
		u := sc.used
		sc.used += n
		b.su = u
		b.refs = sc.refs[2*u : 2*(u+n) : 2*(u+n)]
		b.WebhookIDs = sc.webhooks[u : u : u+n]
		b.DocumentKeys = sc.keys[u : u : u+n]
	} else {
		sc, b.sc = nil, nil
		b.refs = make([]int32, 2*n)
	}
	if n == 0 {
		return
	}
	if sc == nil {
		b.WebhookIDs = make([]string, 0, n)
		b.DocumentKeys = make([]bson.Raw, 0, n)
	}
	size := 8
	for size < 2*n {
		size *= 2
	}
	mask := uint64(size - 1)
	var tables []int32 // index+1 into WebhookIDs, DocumentKeys; 0: free
	if sc != nil {
		sc.tables = slices.Grow(sc.tables[:0], 2*size)[:2*size]
		tables = sc.tables
		clear(tables)
	} else {
		tables = make([]int32, 2*size)
	}
	wt, dt := tables[:size], tables[size:]
	first := b.rec(0)
	b.First, b.Last = first.At, first.At
	prevW, prevD := int32(-1), int32(-1)
	for i := range n {
		r := b.rec(i)
		if r.At.Before(b.First) {
			b.First = r.At
		}
		if r.At.After(b.Last) {
			b.Last = r.At
		}
		b.Failed = b.Failed || r.Failed
		w := int32(-1)
		switch {
		case r.WebhookID == "":
		case prevW >= 0 && b.WebhookIDs[prevW] == r.WebhookID:
			w = prevW
		default:
			w = intern(wt, maphash.String(hashSeed, r.WebhookID)&mask, mask, &b.WebhookIDs, r.WebhookID, func(a, b string) bool { return a == b })
			prevW = w
		}
		d := int32(-1)
		switch {
		case len(r.DocumentKey) == 0:
		case prevD >= 0 && bytes.Equal(b.DocumentKeys[prevD], r.DocumentKey):
			d = prevD
		default:
			d = intern(dt, maphash.Bytes(hashSeed, r.DocumentKey)&mask, mask, &b.DocumentKeys, r.DocumentKey, func(a, b bson.Raw) bool { return bytes.Equal(a, b) })
			prevD = d
		}
		b.refs[2*i], b.refs[2*i+1] = w, d
	}
}

// recordSize estimates r's stored size.
func recordSize(r *AttemptRecord) int {
	return recordOverhead + len(r.WebhookID) + len(r.DocumentKey) + len(r.Kind) + len(r.Operation) + len(r.Reason) +
		len(r.Partition) + len(r.Error) + len(r.Response) + len(r.By)
}

// compareRecords orders records by (At, ID), oldest first.
func compareRecords(a, b AttemptRecord) int {
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// recordPos is a record's place in bucketsOf's order.
type recordPos struct {
	trigger int32 // the rank of the record's trigger among the batch's
	i       int32 // the record's index
	ms      int64 // At as stored (milliseconds)
}

// bucketsOf cuts records into buckets: per trigger (in the order triggers
// first appear), oldest first (by At as stored, in milliseconds, then ID),
// each bucket within maxBucketRecords, bucketSpan and maxBucketBytes. Every
// record must have its ID and At set. newID gives each bucket its _id. The
// buckets refer to records (which must not change until they are written)
// instead of copying them.
func bucketsOf(records []AttemptRecord, newID func(first *AttemptRecord) bson.ObjectID) []attemptBucket {
	return bucketsIn(nil, records, newID)
}

// bucketsIn is bucketsOf with its memory, and the buckets' indexes and
// encodings, taken from sc (nil: allocated).
func bucketsIn(sc *batchScratch, records []AttemptRecord, newID func(first *AttemptRecord) bson.ObjectID) []attemptBucket {
	if len(records) == 0 {
		return nil
	}
	var pos []recordPos
	if sc != nil {
		sc.grow(len(records))
		sc.pos = slices.Grow(sc.pos[:0], len(records))[:len(records)]
		pos = sc.pos
	} else {
		pos = make([]recordPos, len(records))
	}
	var triggers []string // distinct, in order of appearance
	last := int32(-1)     // the previous record's trigger rank
	var ranks map[string]int32
	for i := range records {
		t := records[i].Trigger
		switch {
		case last >= 0 && triggers[last] == t:
		case ranks != nil:
			r, ok := ranks[t]
			if !ok {
				r = int32(len(triggers))
				triggers = append(triggers, t)
				ranks[t] = r
			}
			last = r
		default:
			last = int32(slices.Index(triggers, t))
			if last < 0 {
				last = int32(len(triggers))
				triggers = append(triggers, t)
				if len(triggers) > 8 {
					ranks = make(map[string]int32, 2*len(triggers))
					for j, name := range triggers {
						ranks[name] = int32(j)
					}
				}
			}
		}
		pos[i] = recordPos{trigger: last, i: int32(i), ms: msOf(records[i].At)}
	}
	cmp := func(a, b recordPos) int {
		switch {
		case a.trigger != b.trigger:
			return int(a.trigger - b.trigger)
		case a.ms != b.ms:
			if a.ms < b.ms {
				return -1
			}
			return 1
		}
		if c := bytes.Compare(records[a.i].ID[:], records[b.i].ID[:]); c != 0 {
			return c
		}
		return int(a.i - b.i)
	}
	if !slices.IsSortedFunc(pos, cmp) {
		slices.SortFunc(pos, cmp)
	}
	var order []int32
	var out []attemptBucket
	if sc != nil {
		sc.order = slices.Grow(sc.order[:0], len(pos))[:len(pos)]
		order = sc.order
		out = sc.buckets[:0]
	} else {
		order = make([]int32, len(pos))
	}
	for i, p := range pos {
		order[i] = p.i
	}
	cut := func(start, end int) {
		o := order[start:end:end]
		out = append(out, attemptBucket{ID: newID(&records[o[0]]), Trigger: triggers[pos[start].trigger], Records: records, order: o,
			sc: sc, si: len(out)})
		out[len(out)-1].index()
	}
	start, size := 0, 0
	for i := range pos {
		sz := recordSize(&records[pos[i].i])
		if i > start && (pos[i].trigger != pos[start].trigger || i-start >= maxBucketRecords ||
			pos[i].ms-pos[start].ms > bucketSpan.Milliseconds() || size+sz > maxBucketBytes) {
			cut(start, i)
			start, size = i, 0
		}
		size += sz
	}
	cut(start, len(pos))
	if sc != nil {
		sc.buckets = out
		for len(sc.bufs) < len(out) {
			sc.bufs = append(sc.bufs, nil)
		}
	}
	return out
}

// InsertAttempts writes records: the records of each trigger in as few
// bucket documents as the bucket bounds allow (usually one per trigger),
// in one unordered batch. It gives each record without an ID a new one and
// each record without a time the current time (in records, so that they
// keep them), and returns how many records were written. A bucket's _id is
// its first record's ID: writing the same records again (a retry of a
// write whose reply was lost) makes the same buckets, and a bucket stored
// already is refused as a duplicate and counts as written, not stored
// twice.
func (s *Store) InsertAttempts(ctx context.Context, records []AttemptRecord) (int, error) {
	if len(records) == 0 {
		return 0, nil
	}
	now := time.Now()
	assignIDs(records, now)
	sc, _ := batchScratchPool.Get().(*batchScratch)
	if sc == nil {
		sc = new(batchScratch)
	}
	defer func() {
		sc.reset()
		batchScratchPool.Put(sc)
	}()
	buckets := bucketsIn(sc, records, func(first *AttemptRecord) bson.ObjectID { return first.ID })
	return s.insertBuckets(ctx, buckets, len(records))
}

// batchScratchPool holds InsertAttempts' batchScratch between batches.
var batchScratchPool sync.Pool

// assignIDs gives each record without an ID a new one and each record
// without a time now. The IDs are the driver's (bson.NewObjectID: unique in
// the process, increasing) with now as their time, read once for the batch
// instead of once per record (a clock read is a noticeable share of a
// record's cost on some machines).
func assignIDs(records []AttemptRecord, now time.Time) {
	for i := range records {
		if records[i].ID.IsZero() {
			records[i].ID = bson.NewObjectIDFromTimestamp(now)
		}
		if records[i].At.IsZero() {
			records[i].At = now
		}
	}
}

// insertBuckets writes buckets (of total records in all) and returns how
// many records were written; a bucket refused because it exists already
// (same _id) counts as written.
func (s *Store) insertBuckets(ctx context.Context, buckets []attemptBucket, total int) (int, error) {
	var docs []any
	if len(buckets) > 0 && buckets[0].sc != nil {
		sc := buckets[0].sc
		sc.docs = slices.Grow(sc.docs[:0], len(buckets))[:len(buckets)]
		docs = sc.docs
	} else {
		docs = make([]any, len(buckets))
	}
	for i := range buckets {
		docs[i] = &buckets[i]
	}
	_, err := s.attempts().InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return total, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return 0, fmt.Errorf("write %d history records: %w", total, err)
	}
	n, dups := total, 0
	for _, we := range bwe.WriteErrors {
		if we.Index >= 0 && we.Index < len(buckets) {
			if mongo.IsDuplicateKeyError(we) {
				dups++
				continue
			}
			n -= buckets[we.Index].N
		}
	}
	if dups == len(bwe.WriteErrors) {
		return n, nil
	}
	return n, fmt.Errorf("write %d history records: %w", total, err)
}

// recordFilter is the part of an AttemptFilter checked on each record.
type recordFilter struct {
	f         AttemptFilter
	cursor    bool
	cAt       time.Time
	cID       bson.ObjectID
	sinceSet  bool
	keyFilter bool
	key       bson.D // the filter's document key, decoded
	partition string // "p<i>of<N>" when the filter names one partition
	// webhookHash and keyHash are the key summary hashes of the filter's
	// webhook-id and document key (summaryWebhookHash, summaryKeyHash).
	webhookHash, keyHash uint64
}

// newRecordFilter prepares f (validated by ValidateAttemptFilter); a
// Trigger naming one partition ("NAME/p<i>of<N>") selects NAME's buckets
// and, in them, that partition's records.
func newRecordFilter(f AttemptFilter) recordFilter {
	if name, i, n, ok := triggers.ParsePartitionKey(f.Trigger); ok && n > 1 {
		_, part, _ := strings.Cut(triggers.PartitionKey(name, i, n), "/")
		f.Trigger = name
		return newRecordFilterOf(f, part)
	}
	return newRecordFilterOf(f, "")
}

func newRecordFilterOf(f AttemptFilter, partition string) recordFilter {
	rf := recordFilter{f: f, sinceSet: !f.Since.IsZero(), keyFilter: len(f.DocumentKey) > 0, partition: partition}
	if rf.keyFilter {
		_ = bson.Unmarshal(f.DocumentKey, &rf.key) // validated by ValidateAttemptFilter
		rf.keyHash = summaryKeyHash(f.DocumentKey)
	}
	if f.WebhookID != "" {
		rf.webhookHash = summaryWebhookHash(f.WebhookID)
	}
	if f.After != "" {
		rf.cAt, rf.cID, _ = parseCursor(f.After)
		rf.cursor = true
	}
	return rf
}

// match reports whether r (its Trigger set) is selected.
func (rf *recordFilter) match(r *AttemptRecord) bool {
	f := &rf.f
	switch {
	case f.Trigger != "" && r.Trigger != f.Trigger,
		rf.partition != "" && r.Partition != rf.partition,
		f.WebhookID != "" && r.WebhookID != f.WebhookID,
		rf.keyFilter && !rf.sameKey(r.DocumentKey),
		rf.sinceSet && r.At.Before(f.Since),
		f.Failed && !r.Failed:
		return false
	}
	if rf.cursor {
		ms := r.At.UnixMilli()
		c := rf.cAt.UnixMilli()
		if ms > c || ms == c && bytes.Compare(r.ID[:], rf.cID[:]) >= 0 {
			return false
		}
	}
	return true
}

// sameKey reports whether key equals the filter's document key as MongoDB
// compares documents (the buckets were selected that way): the same field
// names in the same order with equal values, numbers equal by value across
// types.
func (rf *recordFilter) sameKey(key bson.Raw) bool {
	if bytes.Equal(key, rf.f.DocumentKey) {
		return true
	}
	var d bson.D
	if len(key) == 0 || bson.Unmarshal(key, &d) != nil {
		return false
	}
	return mql.Equal(d, rf.key)
}

// byKeys reports whether rf selects records by webhook-id or document key:
// buckets are then chosen by their key summaries (mayHold) before their
// records are read.
func (rf *recordFilter) byKeys() bool { return rf.f.WebhookID != "" || rf.keyFilter }

// mayHold reports whether b (read without its records) may hold a record
// of rf's webhook-id and document key: by its key summary, or, for a
// bucket of format 0 or 1, by its top-level arrays. False only when it
// holds none.
func (rf *recordFilter) mayHold(b *attemptBucket) bool {
	if b.hasSummary {
		return (rf.f.WebhookID == "" || summaryMayHold(b.summary, rf.webhookHash)) &&
			(!rf.keyFilter || summaryMayHold(b.summary, rf.keyHash))
	}
	if rf.f.WebhookID != "" && !slices.Contains(b.WebhookIDs, rf.f.WebhookID) {
		return false
	}
	return !rf.keyFilter || slices.ContainsFunc(b.DocumentKeys, func(k bson.Raw) bool { return rf.sameKey(k) })
}

// bucketFilter selects the buckets that may hold records matching rf by
// their indexed fields (trigger, last) and the unindexed first and failed;
// a webhook-id or document key is looked up in the buckets' key summaries
// (see eachBucket).
func bucketFilter(rf recordFilter) bson.D {
	f := rf.f
	filter := bson.D{}
	if f.Trigger != "" {
		filter = append(filter, bson.E{Key: "trigger", Value: f.Trigger})
	}
	last := bson.D{}
	if rf.sinceSet {
		last = append(last, bson.E{Key: "$gte", Value: f.Since})
	}
	if rf.cursor {
		// A record before the cursor is in a bucket that starts at or
		// before it and (by bucketSpan) ends at most bucketSpan after it.
		last = append(last, bson.E{Key: "$lte", Value: rf.cAt.Add(bucketSpan)})
		filter = append(filter, bson.E{Key: "first", Value: bson.D{{Key: "$lte", Value: rf.cAt}}})
	}
	if len(last) > 0 {
		filter = append(filter, bson.E{Key: "last", Value: last})
	}
	if f.Failed {
		filter = append(filter, bson.E{Key: "failed", Value: true})
	}
	return filter
}

// summaryFields are the fields eachBucket reads to choose buckets by key:
// the key summary, or the top-level arrays of a bucket of format 0 or 1.
var summaryFields = bson.D{{Key: "_id", Value: 1}, {Key: "keys", Value: 1}, {Key: "webhookIds", Value: 1}, {Key: "documentKeys", Value: 1}}

// fetchBatch is how many buckets chosen by their key summaries eachBucket
// reads at once.
const fetchBatch = 16

// eachBucket calls fn with every bucket, records decoded, that may hold a
// record matching rf, newest first (by last, then _id), until fn returns
// false. Without a webhook-id or document key in rf it reads the buckets
// bucketFilter selects; with one, it reads those buckets' key summaries
// first (a projection) and then, fetchBatch at a time, the buckets whose
// summaries may hold the value. A bucket deleted in between is skipped.
func (s *Store) eachBucket(ctx context.Context, rf recordFilter, fn func(b *attemptBucket) bool) error {
	filter := bucketFilter(rf)
	if !rf.byKeys() {
		cur, err := s.attempts().Find(ctx, filter, options.Find().SetSort(newestFirst).SetBatchSize(fetchBatch))
		if err != nil {
			return err
		}
		defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
		for cur.Next(ctx) {
			var b attemptBucket
			if err := cur.Decode(&b); err != nil {
				return fmt.Errorf("read a bucket: %w", err)
			}
			if !fn(&b) {
				return nil
			}
		}
		return cur.Err()
	}
	cur, err := s.attempts().Find(ctx, filter, options.Find().SetSort(newestFirst).SetProjection(summaryFields).SetBatchSize(1000))
	if err != nil {
		return err
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	ids := make(bson.A, 0, fetchBatch)
	// fetch reads the buckets of ids and calls fn; false: fn said stop.
	fetch := func() (bool, error) {
		defer func() { ids = ids[:0] }()
		bc, err := s.attempts().Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
			options.Find().SetSort(newestFirst).SetBatchSize(fetchBatch))
		if err != nil {
			return false, err
		}
		defer func() { _ = bc.Close(context.WithoutCancel(ctx)) }()
		for bc.Next(ctx) {
			var b attemptBucket
			if err := bc.Decode(&b); err != nil {
				return false, fmt.Errorf("read a bucket: %w", err)
			}
			if !fn(&b) {
				return false, nil
			}
		}
		return true, bc.Err()
	}
	for cur.Next(ctx) {
		var b attemptBucket
		if err := cur.Decode(&b); err != nil {
			return fmt.Errorf("read a bucket's key summary: %w", err)
		}
		if !rf.mayHold(&b) {
			continue
		}
		if ids = append(ids, b.ID); len(ids) == fetchBatch {
			if more, err := fetch(); !more || err != nil {
				return err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return err
	}
	if len(ids) > 0 {
		_, err := fetch()
		return err
	}
	return nil
}

// newestFirst is the buckets' order for listings: by their newest record.
var newestFirst = bson.D{{Key: "last", Value: -1}, {Key: "_id", Value: -1}}

// ListAttempts returns one page of the records matching f, newest first
// (by At, then ID), and the cursor of the next page ("" when this is the
// last one). It reads the matching buckets by their newest record, newest
// first, and merges their records: a record is placed once no bucket still
// unread can hold a newer one.
func (s *Store) ListAttempts(ctx context.Context, f AttemptFilter) (records []AttemptRecord, next string, err error) {
	if err := ValidateAttemptFilter(f); err != nil {
		return nil, "", fmt.Errorf("list history: %w", err)
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultHistoryPage
	}
	rf := newRecordFilter(f)
	newer := func(a, b AttemptRecord) int { return compareRecords(b, a) }
	var pending []AttemptRecord // matching records not yet placed, newest first
	// place moves the pending records newer than frontier (all of them
	// when all is set) to records, up to limit+1.
	place := func(frontier time.Time, all bool) {
		slices.SortFunc(pending, newer)
		i := 0
		for i < len(pending) && len(records) <= limit && (all || pending[i].At.After(frontier)) {
			records = append(records, pending[i])
			i++
		}
		pending = slices.Delete(pending, 0, i)
	}
	err = s.eachBucket(ctx, rf, func(b *attemptBucket) bool {
		place(b.Last, false)
		if len(records) > limit {
			return false
		}
		for i := range b.Records {
			r := &b.Records[i]
			r.Trigger = b.Trigger
			if rf.match(r) {
				pending = append(pending, *r)
			}
		}
		return true
	})
	if err != nil {
		return nil, "", fmt.Errorf("list history: %w", err)
	}
	place(time.Time{}, true)
	if len(records) > limit {
		records = records[:limit]
		next = records[limit-1].Cursor()
	}
	return records, next, nil
}

// CountAttempts returns how many records match f (Limit and After are
// ignored). It reads every bucket that may hold one.
func (s *Store) CountAttempts(ctx context.Context, f AttemptFilter) (int64, error) {
	f.Limit, f.After = 0, ""
	if err := ValidateAttemptFilter(f); err != nil {
		return 0, fmt.Errorf("count history: %w", err)
	}
	rf := newRecordFilter(f)
	var n int64
	err := s.eachBucket(ctx, rf, func(b *attemptBucket) bool {
		for i := range b.Records {
			b.Records[i].Trigger = b.Trigger
			if rf.match(&b.Records[i]) {
				n++
			}
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("count history: %w", err)
	}
	return n, nil
}

// TrimAttempts enforces the history's bounds: it deletes the records older
// than retention (before now-retention; the TTL index deletes whole buckets
// on MongoDB's own schedule, about once a minute) and, when more than
// maxRecords remain, the oldest ones beyond maxRecords (by bucket, newest
// bucket first, then by record time within the bucket at the edge). It
// returns how many records it deleted (counted before deleting: a
// concurrent trim by another member can make it an overcount).
//
// While the buckets are too few to hold more than maxRecords records
// (estimatedDocumentCount × the most records of a bucket), the cap costs one
// cheap command; above that, one pass over the buckets' sizes, newest first,
// finds the edge.
func (s *Store) TrimAttempts(ctx context.Context, now time.Time, retention time.Duration, maxRecords int) (int64, error) {
	var deleted int64
	if retention > 0 {
		n, err := s.trimBefore(ctx, now.Add(-retention))
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("trim history older than %s: %w", retention, err)
		}
	}
	if maxRecords <= 0 {
		return deleted, nil
	}
	n, err := s.trimToCap(ctx, maxRecords)
	deleted += n
	if err != nil {
		return deleted, fmt.Errorf("trim history to %d records: %w", maxRecords, err)
	}
	return deleted, nil
}

// trimBefore deletes the records older than cutoff: the buckets whose
// newest record is, and the older records of buckets that straddle it.
func (s *Store) trimBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	old := bson.D{{Key: "last", Value: bson.D{{Key: "$lt", Value: cutoff}}}}
	n, err := s.deleteBuckets(ctx, old)
	if err != nil {
		return n, err
	}
	// The buckets left that hold an older record start before cutoff and
	// (by bucketSpan) end at most bucketSpan after it: a range of the
	// index on last instead of a scan of every bucket.
	straddling := bson.D{
		{Key: "last", Value: bson.D{{Key: "$gte", Value: cutoff}, {Key: "$lte", Value: cutoff.Add(bucketSpan)}}},
		{Key: "first", Value: bson.D{{Key: "$lt", Value: cutoff}}},
	}
	cur, err := s.attempts().Find(ctx, straddling)
	if err != nil {
		return n, err
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	for cur.Next(ctx) {
		var b attemptBucket
		if err := cur.Decode(&b); err != nil {
			return n, fmt.Errorf("read a bucket: %w", err)
		}
		keep := slices.DeleteFunc(slices.Clone(b.Records), func(r AttemptRecord) bool { return r.At.Before(cutoff) })
		m, err := s.rewriteBucket(ctx, b, keep)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, cur.Err()
}

// trimToCap deletes the oldest records beyond maxRecords.
func (s *Store) trimToCap(ctx context.Context, maxRecords int) (int64, error) {
	nb, err := s.attempts().EstimatedDocumentCount(ctx)
	if err != nil {
		return 0, fmt.Errorf("count buckets: %w", err)
	}
	if nb*maxBucketRecords <= int64(maxRecords) {
		return 0, nil
	}
	cur, err := s.attempts().Find(ctx, bson.D{}, options.Find().SetSort(newestFirst).
		SetProjection(bson.D{{Key: "n", Value: 1}, {Key: "last", Value: 1}}).SetBatchSize(1000))
	if err != nil {
		return 0, err
	}
	var edge attemptBucket
	sum, found := 0, false
	for cur.Next(ctx) {
		if err := cur.Decode(&edge); err != nil {
			_ = cur.Close(context.WithoutCancel(ctx))
			return 0, fmt.Errorf("read a bucket: %w", err)
		}
		if sum+edge.N > maxRecords {
			found = true
			break
		}
		sum += edge.N
	}
	err = cur.Err()
	_ = cur.Close(context.WithoutCancel(ctx))
	if err != nil || !found {
		return 0, err
	}
	n, err := s.deleteBuckets(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "last", Value: bson.D{{Key: "$lt", Value: edge.Last}}}},
		bson.D{{Key: "last", Value: edge.Last}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: edge.ID}}}},
	}}})
	if err != nil {
		return n, err
	}
	var b attemptBucket
	err = s.attempts().FindOne(ctx, bson.D{{Key: "_id", Value: edge.ID}}).Decode(&b)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return n, nil // trimmed meanwhile
	}
	if err != nil {
		return n, err
	}
	keep := maxRecords - sum
	recs := slices.Clone(b.Records)
	slices.SortFunc(recs, compareRecords)
	m, err := s.rewriteBucket(ctx, b, recs[max(len(recs)-keep, 0):])
	return n + m, err
}

// deleteBuckets deletes the buckets matching filter and returns how many
// records they held.
func (s *Store) deleteBuckets(ctx context.Context, filter bson.D) (int64, error) {
	cur, err := s.attempts().Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: filter}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "n", Value: bson.D{{Key: "$sum", Value: "$n"}}}}}},
	})
	if err != nil {
		return 0, fmt.Errorf("count the records to delete: %w", err)
	}
	var sums []struct {
		N int64 `bson:"n"`
	}
	if err := cur.All(ctx, &sums); err != nil {
		return 0, fmt.Errorf("count the records to delete: %w", err)
	}
	if len(sums) == 0 || sums[0].N == 0 {
		return 0, nil
	}
	if _, err := s.attempts().DeleteMany(ctx, filter); err != nil {
		return 0, fmt.Errorf("delete buckets: %w", err)
	}
	return sums[0].N, nil
}

// rewriteBucket replaces b by a bucket of keep (a subset of its records),
// or deletes it when keep is empty, unless another trim changed it first;
// it returns how many records were removed.
func (s *Store) rewriteBucket(ctx context.Context, b attemptBucket, keep []AttemptRecord) (int64, error) {
	removed := int64(b.N - len(keep))
	if removed == 0 {
		return 0, nil
	}
	same := bson.D{{Key: "_id", Value: b.ID}, {Key: "n", Value: b.N}}
	if len(keep) == 0 {
		res, err := s.attempts().DeleteOne(ctx, same)
		if err != nil {
			return 0, fmt.Errorf("delete a bucket: %w", err)
		}
		return removed * res.DeletedCount, nil
	}
	nb := newBucket(b.ID, b.Trigger, keep, nil)
	res, err := s.attempts().ReplaceOne(ctx, same, &nb)
	if err != nil {
		return 0, fmt.Errorf("rewrite a bucket: %w", err)
	}
	return removed * res.ModifiedCount, nil
}

// attemptIndexes returns the attempts collection's indexes, the TTL index
// (first) expiring buckets after retention.
func attemptIndexes(retention time.Duration) []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "last", Value: 1}}, Options: options.Index().SetName(AttemptsTTLIndex).SetExpireAfterSeconds(ttlSeconds(retention))},
		{Keys: bson.D{{Key: "trigger", Value: 1}, {Key: "last", Value: -1}}, Options: options.Index().SetName(AttemptsTriggerIndex)},
	}
}

// migrateLegacyAttempts converts the attempts collection from the layout
// with one document per record (documents without records) into buckets,
// then drops that layout's indexes; it does nothing when none of them
// exists (indexNames are the collection's). Each bucket's _id is derived
// from its first record's (legacyBucketID), so that two members converting
// the same records at once write each bucket once.
func (s *Store) migrateLegacyAttempts(ctx context.Context, indexNames []string) error {
	coll := s.attempts()
	var legacyIndexes []string
	for _, name := range legacyAttemptIndexes {
		if slices.Contains(indexNames, name) {
			legacyIndexes = append(legacyIndexes, name)
		}
	}
	if len(legacyIndexes) == 0 {
		// Converted (or never in the old layout): the old indexes are
		// dropped only once every record is converted, so no scan for
		// old records is needed at every start.
		return nil
	}
	legacy := bson.D{{Key: "records", Value: bson.D{{Key: "$exists", Value: false}}}}
	for {
		cur, err := coll.Find(ctx, legacy, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(maxBucketRecords))
		if err != nil {
			return fmt.Errorf("read old history records: %w", err)
		}
		var recs []AttemptRecord
		if err := cur.All(ctx, &recs); err != nil {
			return fmt.Errorf("read old history records: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		ids := make(bson.A, len(recs))
		for i := range recs {
			ids[i] = recs[i].ID
		}
		buckets := bucketsOf(recs, func(first *AttemptRecord) bson.ObjectID { return legacyBucketID(first.ID) })
		if _, err := s.insertBuckets(ctx, buckets, len(recs)); err != nil {
			return fmt.Errorf("convert old history records: %w", err)
		}
		if _, err := coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "records", Value: bson.D{{Key: "$exists", Value: false}}}}); err != nil {
			return fmt.Errorf("delete converted history records: %w", err)
		}
	}
	for _, name := range legacyIndexes {
		if err := coll.Indexes().DropOne(ctx, name); err != nil && !isNotFound(err) {
			return fmt.Errorf("drop the old history index %s: %w", name, err)
		}
	}
	return nil
}

// legacyBucketID derives a converted bucket's _id from its first record's
// ObjectID by flipping the top bit of its process-random part: it differs
// from every id of the records being converted (which share the
// collection until they are deleted) and is the same for every converter.
func legacyBucketID(first bson.ObjectID) bson.ObjectID {
	first[4] ^= 0x80
	return first
}

// isNotFound reports MongoDB's IndexNotFound (27) or NamespaceNotFound (26).
func isNotFound(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && (ce.Code == 26 || ce.Code == 27)
}

// intern returns the index of k in *vals, appending it when absent: table
// is an open-addressing table (size mask+1, linear probing from h) of
// index+1 into *vals, 0 for a free slot.
func intern[K any](table []int32, h, mask uint64, vals *[]K, k K, eq func(a, b K) bool) int32 {
	for ; ; h = (h + 1) & mask {
		if table[h] == 0 {
			*vals = append(*vals, k)
			table[h] = int32(len(*vals))
			return table[h] - 1
		}
		if eq((*vals)[table[h]-1], k) {
			return table[h] - 1
		}
	}
}
