package triggers

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Pipeline returns the aggregation stages that follow $changeStream:
//
//	{$match: {"ns.db": {$ne: <state database>}}}   (deployment-wide triggers only)
//	{$match: {$or: [{operationType: "invalidate"},
//	                {$and: [{operationType: {$in: [<operations>]}}, <match>]}]}}
//	{$match: <partition i of N>}     (a partition of a partitioned trigger: see Partition)
//	{$project: <project>}            (only when project is set)
//
// The first stage is the loop guard: a trigger watching the whole
// deployment never sees the state database (StateDatabase), so
// changehook's own checkpoint and dead-letter writes cannot trigger
// deliveries that cause more writes. The server applies it, so those events
// never cross the network. (A database or collection trigger cannot name the
// state database: Parse rejects it.) The user's match is a conjunction with
// the operation filter, so a match on operationType still narrows it; an
// invalidate always passes so that the watch loop sees the end of the
// stream. The result is freshly built on each call.
func (t *Trigger) Pipeline() bson.A {
	ops := make(bson.A, len(t.Operations))
	for i, op := range t.Operations {
		ops[i] = op
	}
	var cond any = bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: ops}}}}
	if len(t.Match) > 0 {
		cond = bson.D{{Key: "$and", Value: bson.A{cond, slices.Clone(t.Match)}}}
	}
	var p bson.A
	if t.Database == "" && t.StateDatabase != "" {
		p = append(p, bson.D{{Key: "$match", Value: bson.D{{Key: "ns.db", Value: bson.D{{Key: "$ne", Value: t.StateDatabase}}}}}})
	}
	p = append(p, bson.D{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "operationType", Value: "invalidate"}},
		cond,
	}}}}})
	if i, ok := t.PartitionIndex(); ok {
		p = append(p, partitionStage(i, t.Partitions))
	}
	if len(t.Project) > 0 {
		p = append(p, bson.D{{Key: "$project", Value: slices.Clone(t.Project)}})
	}
	return p
}

// ChangeStreamOptions returns the change stream options the trigger's
// configuration implies: fullDocument (unless default),
// fullDocumentBeforeChange (unless off) and showExpandedEvents when an
// operation type needs it (create, createIndexes, modify, ...). Where the
// stream starts (resumeAfter, startAtOperationTime) is the watch loop's
// business and is not set here.
func (t *Trigger) ChangeStreamOptions() *options.ChangeStreamOptionsBuilder {
	o := options.ChangeStream()
	if t.FullDocument != "" && t.FullDocument != options.Default {
		o.SetFullDocument(t.FullDocument)
	}
	if t.FullDocumentBeforeChange != "" && t.FullDocumentBeforeChange != options.Off {
		o.SetFullDocumentBeforeChange(t.FullDocumentBeforeChange)
	}
	if slices.ContainsFunc(t.Operations, ExpandedOperation) {
		o.SetShowExpandedEvents(true)
	}
	return o
}

// Namespace describes what the trigger watches: "db.coll" for a collection,
// "db" for a database and "" for the whole deployment.
func (t *Trigger) Namespace() string {
	switch {
	case t.Database == "":
		return ""
	case t.Collection == "":
		return t.Database
	}
	return t.Database + "." + t.Collection
}

// Watch opens the trigger's change stream on client: Collection.Watch,
// Database.Watch or Client.Watch depending on the namespace, with Pipeline
// and the given options (which the caller builds from ChangeStreamOptions).
func (t *Trigger) Watch(ctx context.Context, client *mongo.Client, opts *options.ChangeStreamOptionsBuilder) (*mongo.ChangeStream, error) {
	cs, err := t.WatchWith(ctx, client, opts)
	if err != nil {
		return nil, fmt.Errorf("open change stream for trigger %s: %w", t.Name, err)
	}
	return cs, nil
}

// WatchWith is Watch with the stages extra after the trigger's pipeline
// (stages a reader adds of its own, such as
// $changeStreamSplitLargeEvent, which must come last); its error is the
// driver's, not wrapped, for the caller to say what it opened.
func (t *Trigger) WatchWith(ctx context.Context, client *mongo.Client, opts *options.ChangeStreamOptionsBuilder, extra ...bson.D) (*mongo.ChangeStream, error) {
	p := t.Pipeline()
	for _, st := range extra {
		p = append(p, st)
	}
	switch {
	case t.Database == "":
		return client.Watch(ctx, p, opts)
	case t.Collection == "":
		return client.Database(t.Database).Watch(ctx, p, opts)
	default:
		return client.Database(t.Database).Collection(t.Collection).Watch(ctx, p, opts)
	}
}

// PartitionKey returns the checkpoint and lease key of partition i of n of
// trigger name: the name itself when n is 1, else "NAME/p<i>of<n>".
func PartitionKey(name string, i, n int) string {
	if n <= 1 {
		return name
	}
	return fmt.Sprintf("%s/p%dof%d", name, i, n)
}

// partitionKeyRE matches a partition's key: NAME/p<i>of<n>.
var partitionKeyRE = regexp.MustCompile(`^([a-z0-9_-]+)/p(0|[1-9][0-9]*)of([1-9][0-9]*)$`)

// ParsePartitionKey splits a key made by PartitionKey into the trigger
// name, the partition and the number of partitions (0 and 1 for a plain
// trigger name). ok is false for a key with a slash that PartitionKey
// cannot have made.
func ParsePartitionKey(key string) (name string, i, n int, ok bool) {
	if !strings.Contains(key, "/") {
		return key, 0, 1, true
	}
	m := partitionKeyRE.FindStringSubmatch(key)
	if m == nil {
		return "", 0, 0, false
	}
	i, erri := strconv.Atoi(m[2])
	n, errn := strconv.Atoi(m[3])
	if erri != nil || errn != nil || n < 2 || i >= n {
		return "", 0, 0, false
	}
	return m[1], i, n, true
}

// Partition returns the part of t that partition i (0 ≤ i < Partitions)
// reads: a copy whose Pipeline keeps only that partition's events and
// whose Key is PartitionKey(Name, i, Partitions). Its Name stays the
// trigger's name, so webhook ids, dead letters and metrics stay the
// trigger's whatever partition delivers an event. For an unpartitioned
// trigger Partition(0) is a copy of t.
func (t *Trigger) Partition(i int) *Trigger {
	c := *t
	if t.Partitions > 1 {
		c.unit = i + 1
	}
	return &c
}

// Units returns the parts of t that run separately: t.Partition(i) for
// each partition, or just t when it is not partitioned.
func (t *Trigger) Units() []*Trigger {
	if t.Partitions <= 1 {
		return []*Trigger{t}
	}
	out := make([]*Trigger, t.Partitions)
	for i := range out {
		out[i] = t.Partition(i)
	}
	return out
}

// PartitionIndex returns the partition this value reads; ok is false for a
// trigger as configured (every event) and for an unpartitioned one.
func (t *Trigger) PartitionIndex() (i int, ok bool) {
	if t.unit == 0 || t.Partitions <= 1 {
		return 0, false
	}
	return t.unit - 1, true
}

// Key is the checkpoint and lease key of this value: PartitionKey of its
// partition, or Name for a trigger as configured.
func (t *Trigger) Key() string {
	if i, ok := t.PartitionIndex(); ok {
		return PartitionKey(t.Name, i, t.Partitions)
	}
	return t.Name
}

// PartitionOf returns the partition of t that delivers an event with
// documentKey (nil: an event without one, which partition 0 delivers), as
// the partition's pipeline selects it (partitionStage): the hashed-index
// key of documentKey._id (null when missing) modulo Partitions. ok is false
// for a trigger that is not partitioned. documentKey must be a valid BSON
// document (as a change event's is) or nil.
func (t *Trigger) PartitionOf(documentKey bson.Raw) (i int, ok bool) {
	if t.Partitions <= 1 {
		return 0, false
	}
	if documentKey == nil {
		return 0, true
	}
	var id any // missing _id: null, as $ifNull makes it
	if v, err := documentKey.LookupErr("_id"); err == nil {
		if err := v.Unmarshal(&id); err != nil {
			id = nil
		}
	}
	h := mql.HashedIndexKey(id) % int64(t.Partitions)
	if h < 0 {
		h = -h
	}
	return int(h), true
}

// PartitionName returns the name of partition i of t in history records
// and statuses: "p<i>of<Partitions>" ("" when t is not partitioned).
func (t *Trigger) PartitionName(i int) string {
	if t.Partitions <= 1 {
		return ""
	}
	_, part, _ := strings.Cut(PartitionKey(t.Name, i, t.Partitions), "/")
	return part
}

// partitionStage is the $match stage that keeps partition i of n:
//
//	{$match: {$or: [
//	    {operationType: "invalidate"},
//	    {$and: [{documentKey: {$exists: true}},
//	            {$expr: {$eq: [{$abs: {$mod: [{$toHashedIndexKey: {$ifNull: ["$documentKey._id", null]}}, n]}}, i]}}]},
//	    {documentKey: {$exists: false}}]}}       (partition 0 only)
//
// A document's partition depends only on its _id, which (unlike the whole
// documentKey, which also holds the shard key on a sharded collection)
// never changes. $mod before $abs: $abs of the smallest long fails on the
// server. Events without a documentKey (drop, rename, dropDatabase and the
// DDL events) go to partition 0 only, so they are delivered once; an
// invalidate passes everywhere, because it ends every partition's stream.
func partitionStage(i, n int) bson.D {
	hash := bson.D{{Key: "$toHashedIndexKey", Value: bson.D{{Key: "$ifNull", Value: bson.A{"$documentKey._id", nil}}}}}
	part := bson.D{{Key: "$abs", Value: bson.D{{Key: "$mod", Value: bson.A{hash, int64(n)}}}}}
	or := bson.A{
		bson.D{{Key: "operationType", Value: "invalidate"}},
		bson.D{{Key: "$and", Value: bson.A{
			bson.D{{Key: "documentKey", Value: bson.D{{Key: "$exists", Value: true}}}},
			bson.D{{Key: "$expr", Value: bson.D{{Key: "$eq", Value: bson.A{part, int64(i)}}}}},
		}}},
	}
	if i == 0 {
		or = append(or, bson.D{{Key: "documentKey", Value: bson.D{{Key: "$exists", Value: false}}}})
	}
	return bson.D{{Key: "$match", Value: bson.D{{Key: "$or", Value: or}}}}
}
