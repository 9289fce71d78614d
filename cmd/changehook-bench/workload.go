package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// writeBatch is how many documents one insertMany carries when a backlog is
// written.
const writeBatch = 1000

// benchDoc is document seq of a benchmark collection: about 200 bytes, a
// few field types, the sequence number in _id and in seq.
func benchDoc(seq int) bson.D {
	return bson.D{
		{Key: "_id", Value: int64(seq)},
		{Key: "seq", Value: int64(seq)},
		{Key: "sku", Value: "SKU-" + strconv.Itoa(100000+seq)},
		{Key: "name", Value: "benchmark item"},
		{Key: "qty", Value: int32(seq % 100)},
		{Key: "price", Value: float64(seq%1000) / 10},
		{Key: "tags", Value: bson.A{"bench", "changehook"}},
		{Key: "updatedAt", Value: bson.DateTime(1_700_000_000_000 + int64(seq))},
	}
}

// backlog writes a backlog of n documents into collection coll of the
// benchmark database (writeBacklog) and returns where a change stream that
// reads it starts: backlogStart's start_at time and operation time, taken
// before the writes.
func (b *bench) backlog(ctx context.Context, coll string, n int) (startAt string, op bson.Timestamp, err error) {
	startAt, op = backlogStart()
	err = writeBacklog(ctx, b.client.Database(benchDB).Collection(coll), n)
	return startAt, op, err
}

// writeBacklog inserts documents [0, n) into coll in batches, as fast as
// the server takes them.
func writeBacklog(ctx context.Context, coll *mongo.Collection, n int) error {
	docs := make([]any, 0, writeBatch)
	for seq := range n {
		docs = append(docs, benchDoc(seq))
		if len(docs) == writeBatch || seq == n-1 {
			if _, err := coll.InsertMany(ctx, docs); err != nil {
				return fmt.Errorf("write backlog: %w", err)
			}
			docs = docs[:0]
		}
	}
	return nil
}

// writeSteady inserts documents [0, n) one insertOne at a time at rate per
// second (paced against the schedule, so a late write is followed by the
// next without waiting) and returns each write's acknowledgement offset.
func writeSteady(ctx context.Context, coll *mongo.Collection, n, rate int, c *clock) ([]time.Duration, error) {
	acks := make([]time.Duration, n)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for seq := range n {
		if wait := time.Until(start.Add(time.Duration(seq) * interval)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return nil, fmt.Errorf("write at a steady rate: %w", ctx.Err())
			}
		}
		if _, err := coll.InsertOne(ctx, benchDoc(seq)); err != nil {
			return nil, fmt.Errorf("write at a steady rate: %w", err)
		}
		acks[seq] = c.now()
	}
	return acks, nil
}

// latencies returns receipt−ack for every seq that both was acknowledged
// and arrived, sorted. A receipt that the receiver recorded before the
// writer saw its acknowledgement (the server notifies streams before the
// reply reaches the writer) counts as 0.
func latencies(acks, receipts []time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(acks))
	for i, a := range acks {
		if i >= len(receipts) || receipts[i] < 0 {
			continue
		}
		out = append(out, max(receipts[i]-a, 0))
	}
	slices.Sort(out)
	return out
}

// percentile returns the p-th percentile (0 < p ≤ 100, nearest rank) of
// sorted values, or 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// triggerSpec is what one benchmark runner configuration varies.
type triggerSpec struct {
	Mode        string // strict | per_document | none
	Concurrency int
	Database    string
	Collection  string
	URL         string
	StartAt     string  // "now" or an RFC 3339 time
	CAFile      string  // webhook.tls.ca_file ("": none)
	RateLimit   float64 // webhook.rate_limit.per_second, burst 1 (0: none)
	History     string  // the history section as YAML flow ("" leaves it out: enabled by default)
	Batch       int     // batch.max_events (0: unbatched)
}

// writeRunnerConfig writes a triggers.yaml for one trigger and returns its
// path. The webhook is signed (Standard Webhooks) as in production. Each
// collection gets its own state database (stateDB_collection): every run
// of the benchmark watches a collection of its own, and a checkpoint left
// by the run before (the same trigger name, another collection) must not
// be resumed from — its token is not in this collection's stream.
func writeRunnerConfig(dir, uri, stateDB string, t triggerSpec) (string, error) {
	stateDB += "_" + t.Collection
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("write runner config: %w", err)
	}
	extra := ""
	if t.CAFile != "" {
		extra += fmt.Sprintf("      tls: { ca_file: %q }\n", t.CAFile)
	}
	if t.RateLimit > 0 {
		extra += fmt.Sprintf("      rate_limit: { per_second: %g, burst: 1 }\n", t.RateLimit)
	}
	if t.Batch > 0 {
		extra += fmt.Sprintf("    batch: { max_events: %d }\n", t.Batch)
	}
	cfg := fmt.Sprintf(`mongodb:
  uri: %q
state:
  database: %q
log:
  level: warn
%striggers:
  - name: bench
    database: %q
    collection: %q
    operations: [insert]
    ordering: %s
    concurrency: %d
    start_at: %q
    webhook:
      url: %q
      secret: %q
      timeout: 10s
%s    retry: { max_attempts: 5, initial_backoff: 100ms, max_backoff: 2s }
`, uri, stateDB, historySection(t.History), t.Database, t.Collection, t.Mode, t.Concurrency, t.StartAt, t.URL,
		"whsec_"+base64.StdEncoding.EncodeToString(key), extra)
	path := filepath.Join(dir, "bench-"+t.Collection+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("write runner config: %w", err)
	}
	return path, nil
}

// historySection is the configuration's history line for h ("" when h is
// empty).
func historySection(h string) string {
	if h == "" {
		return ""
	}
	return "history: " + h + "\n"
}

// backlogStart returns a start_at time (whole seconds, RFC 3339) not after
// any write that follows, and the matching operation time. The oplog must
// already hold an entry older than it (see bench.seedOplog): a start point
// older than the oldest entry is history lost, as on MongoDB.
func backlogStart() (string, bson.Timestamp) {
	t := time.Now().Truncate(time.Second).UTC()
	return t.Format(time.RFC3339), bson.Timestamp{T: uint32(t.Unix())}
}
