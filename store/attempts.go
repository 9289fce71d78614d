package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// AttemptsCollection holds the delivery history: one record per delivery
// attempt (and per range of changes a resume skipped), expired by a TTL
// index on "at" and capped by the HistoryWriter.
const AttemptsCollection = "attempts"

// Kinds of history records.
const (
	// KindDelivery is an attempt made by the trigger's dispatcher.
	KindDelivery = "delivery"
	// KindReplay is an attempt made by a dead-letter replay.
	KindReplay = "replay"
	// KindSkipped records changes that were never delivered on purpose: a
	// resume from now or from a time (SkippedFrom..SkippedTo).
	KindSkipped = "skipped"
)

// History bounds.
const (
	// MaxResponseSnippet bounds AttemptRecord.Response (bytes).
	MaxResponseSnippet = 1 << 10
	// MaxRecordError bounds AttemptRecord.Error (bytes).
	MaxRecordError = 1 << 10
	// MaxRecordDocumentKey bounds AttemptRecord.DocumentKey (bytes): a
	// larger documentKey is not recorded (DocumentKeyOmitted).
	MaxRecordDocumentKey = 1 << 10
	// MaxHistoryPage bounds AttemptFilter.Limit.
	MaxHistoryPage = 1000
	// DefaultHistoryPage is the page size when AttemptFilter.Limit is 0.
	DefaultHistoryPage = 100
)

// Index names of the attempts collection.
const (
	// AttemptsTTLIndex is the TTL index on {at: 1}: MongoDB deletes a
	// record history.retention after its attempt. It also serves listing
	// every trigger's records newest first and trimming the oldest.
	AttemptsTTLIndex = "at_1_ttl"
	// AttemptsTriggerIndex serves one trigger's records newest first.
	AttemptsTriggerIndex = "trigger_1_at_-1__id_-1"
	// AttemptsWebhookIDIndex serves the records of one webhook-id.
	AttemptsWebhookIDIndex = "webhookId_1_at_-1"
	// AttemptsDocumentKeyIndex serves the records of one document.
	AttemptsDocumentKeyIndex = "documentKey_1_at_-1"
)

// AttemptRecord is one record of the delivery history. Nothing in it is a
// secret: errors are redacted by the dispatcher, and the response snippet is
// what the endpoint answered.
type AttemptRecord struct {
	// ID is the record's key, set when it is written.
	ID bson.ObjectID `bson:"_id,omitempty"`
	// Kind is one of the Kind* constants.
	Kind string `bson:"kind"`
	// Trigger is the trigger's name.
	Trigger string `bson:"trigger"`
	// Partition is the partition's key ("p0of4"), "" for a trigger that
	// is not partitioned.
	Partition string `bson:"partition,omitempty"`
	// WebhookID is the webhook-id the request carried.
	WebhookID string `bson:"webhookId,omitempty"`
	// DocumentKey is the event's documentKey (nil: none, or omitted).
	DocumentKey bson.Raw `bson:"documentKey,omitempty"`
	// DocumentKeyOmitted reports a documentKey larger than
	// MaxRecordDocumentKey, not recorded.
	DocumentKeyOmitted bool `bson:"documentKeyOmitted,omitempty"`
	// Operation is the event's operationType.
	Operation string `bson:"operation,omitempty"`
	// Attempt is the attempt's number within its delivery, from 1.
	Attempt int `bson:"attempt,omitempty"`
	// Failed reports a failed attempt (anything but a success or a
	// retry.drop_on status).
	Failed bool `bson:"failed"`
	// Status is the HTTP status (0: no response).
	Status int `bson:"status,omitempty"`
	// Reason is the failure reason ("" on success; "dropped" for a
	// retry.drop_on status).
	Reason string `bson:"reason,omitempty"`
	// Error is the failure, redacted, at most MaxRecordError bytes.
	Error string `bson:"error,omitempty"`
	// LatencyMS is the attempt's latency in milliseconds.
	LatencyMS float64 `bson:"latencyMs"`
	// Response is the start of the response body, at most
	// MaxResponseSnippet bytes.
	Response string `bson:"response,omitempty"`
	// StartedAt is when the attempt started.
	StartedAt time.Time `bson:"startedAt,omitzero"`
	// At is when the attempt ended (or the skip happened); the TTL index
	// expires the record from it.
	At time.Time `bson:"at"`
	// SkippedFrom and SkippedTo are a KindSkipped record's range of
	// skipped changes.
	SkippedFrom time.Time `bson:"skippedFrom,omitzero"`
	SkippedTo   time.Time `bson:"skippedTo,omitzero"`
	// By says who asked for a replay or a skip ("cli", "api", …).
	By string `bson:"by,omitempty"`
}

// Truncate bounds the record's text fields and document key (see
// MaxResponseSnippet, MaxRecordError, MaxRecordDocumentKey), copying the
// document key so that the record holds no reference to an event's bytes.
func (r *AttemptRecord) Truncate() {
	r.Response = truncateUTF8(r.Response, MaxResponseSnippet)
	r.Error = truncateUTF8(r.Error, MaxRecordError)
	switch {
	case len(r.DocumentKey) > MaxRecordDocumentKey:
		r.DocumentKey, r.DocumentKeyOmitted = nil, true
	case len(r.DocumentKey) > 0:
		r.DocumentKey = append(bson.Raw(nil), r.DocumentKey...)
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8
// sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut > n-4 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (s *Store) attempts() *mongo.Collection {
	return s.checkpoints.Database().Collection(AttemptsCollection)
}

// AttemptsCollection returns the attempts collection (for tests and tools).
func (s *Store) AttemptsCollection() *mongo.Collection { return s.attempts() }

// InsertAttempts writes records in one unordered batch, giving each record
// without an ID a new one. It returns how many were written.
func (s *Store) InsertAttempts(ctx context.Context, records []AttemptRecord) (int, error) {
	if len(records) == 0 {
		return 0, nil
	}
	docs := make([]any, len(records))
	for i := range records {
		if records[i].ID.IsZero() {
			records[i].ID = bson.NewObjectID()
		}
		docs[i] = &records[i]
	}
	res, err := s.attempts().InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	n := 0
	if res != nil {
		n = len(res.InsertedIDs)
	}
	if err != nil {
		var bwe mongo.BulkWriteException
		if errors.As(err, &bwe) {
			n = len(records) - len(bwe.WriteErrors)
		}
		return n, fmt.Errorf("write %d history records: %w", len(records), err)
	}
	return n, nil
}

// AttemptFilter selects history records. Records are returned newest first
// (by At, then ID).
type AttemptFilter struct {
	// Trigger keeps one trigger's records ("" = every trigger).
	Trigger string
	// WebhookID keeps one webhook-id's records.
	WebhookID string
	// DocumentKey keeps the records of one document (equality on the whole
	// documentKey, field order included, as MongoDB compares documents).
	DocumentKey bson.Raw
	// Since keeps records at or after it.
	Since time.Time
	// Failed keeps failed attempts only.
	Failed bool
	// Limit is the page size (0: DefaultHistoryPage; at most
	// MaxHistoryPage).
	Limit int
	// After continues a listing after the record its cursor names (the
	// Next of the previous page).
	After string
}

// Cursor returns the position of r in the history order, for
// AttemptFilter.After.
func (r AttemptRecord) Cursor() string {
	return strconv.FormatInt(r.At.UnixMilli(), 10) + "_" + r.ID.Hex()
}

// parseCursor reads a Cursor.
func parseCursor(c string) (time.Time, bson.ObjectID, error) {
	ms, id, ok := strings.Cut(c, "_")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return time.Time{}, bson.ObjectID{}, fmt.Errorf("cursor %q is not one this server returned", c)
	}
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return time.Time{}, bson.ObjectID{}, fmt.Errorf("cursor %q is not one this server returned", c)
	}
	return time.UnixMilli(n).UTC(), oid, nil
}

// ValidateAttemptFilter checks f's limit and cursor (the admin API and the
// CLI report these as bad input).
func ValidateAttemptFilter(f AttemptFilter) error {
	if f.Limit < 0 || f.Limit > MaxHistoryPage {
		return fmt.Errorf("limit must be between 1 and %d, got %d", MaxHistoryPage, f.Limit)
	}
	if f.After != "" {
		if _, _, err := parseCursor(f.After); err != nil {
			return err
		}
	}
	if len(f.DocumentKey) > 0 {
		if err := f.DocumentKey.Validate(); err != nil {
			return fmt.Errorf("document key is not a document: %w", err)
		}
	}
	return nil
}

// ListAttempts returns one page of the records matching f, newest first,
// and the cursor of the next page ("" when this is the last one).
func (s *Store) ListAttempts(ctx context.Context, f AttemptFilter) (records []AttemptRecord, next string, err error) {
	if err := ValidateAttemptFilter(f); err != nil {
		return nil, "", fmt.Errorf("list history: %w", err)
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultHistoryPage
	}
	and := bson.A{}
	if f.Trigger != "" {
		and = append(and, bson.D{{Key: "trigger", Value: f.Trigger}})
	}
	if f.WebhookID != "" {
		and = append(and, bson.D{{Key: "webhookId", Value: f.WebhookID}})
	}
	if len(f.DocumentKey) > 0 {
		and = append(and, bson.D{{Key: "documentKey", Value: f.DocumentKey}})
	}
	if !f.Since.IsZero() {
		and = append(and, bson.D{{Key: "at", Value: bson.D{{Key: "$gte", Value: f.Since}}}})
	}
	if f.Failed {
		and = append(and, bson.D{{Key: "failed", Value: true}})
	}
	if f.After != "" {
		at, id, _ := parseCursor(f.After)
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: at}}}},
			bson.D{{Key: "at", Value: at}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: id}}}},
		}}})
	}
	filter := bson.D{}
	switch len(and) {
	case 0:
	case 1:
		filter = and[0].(bson.D)
	default:
		filter = bson.D{{Key: "$and", Value: and}}
	}
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit) + 1)
	cur, err := s.attempts().Find(ctx, filter, opts)
	if err != nil {
		return nil, "", fmt.Errorf("list history: %w", err)
	}
	if err := cur.All(ctx, &records); err != nil {
		return nil, "", fmt.Errorf("list history: %w", err)
	}
	if len(records) > limit {
		records = records[:limit]
		next = records[limit-1].Cursor()
	}
	return records, next, nil
}

// TrimAttempts enforces the history's bounds: it deletes the records older
// than retention (before now-retention; the TTL index does the same on
// MongoDB's own schedule, about once a minute) and, when more than
// maxRecords remain, the oldest ones beyond maxRecords. It returns how many
// it deleted. The count comes from the collection's metadata
// (estimatedDocumentCount), so the cap costs one cheap command while the
// history is below it; above it, one indexed query finds the newest record
// to delete and one delete removes it and everything older.
func (s *Store) TrimAttempts(ctx context.Context, now time.Time, retention time.Duration, maxRecords int) (int64, error) {
	var deleted int64
	if retention > 0 {
		res, err := s.attempts().DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: now.Add(-retention)}}}})
		if err != nil {
			return 0, fmt.Errorf("trim history older than %s: %w", retention, err)
		}
		deleted += res.DeletedCount
	}
	if maxRecords <= 0 {
		return deleted, nil
	}
	n, err := s.attempts().EstimatedDocumentCount(ctx)
	if err != nil {
		return deleted, fmt.Errorf("trim history: count records: %w", err)
	}
	if n <= int64(maxRecords) {
		return deleted, nil
	}
	var edge AttemptRecord
	err = s.attempts().FindOne(ctx, bson.D{}, options.FindOne().
		SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}}).
		SetSkip(int64(maxRecords)).
		SetProjection(bson.D{{Key: "at", Value: 1}})).Decode(&edge)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return deleted, nil // the estimate ran ahead of deletions
	}
	if err != nil {
		return deleted, fmt.Errorf("trim history to %d records: %w", maxRecords, err)
	}
	res, err := s.attempts().DeleteMany(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: edge.At}}}},
		bson.D{{Key: "at", Value: edge.At}, {Key: "_id", Value: bson.D{{Key: "$lte", Value: edge.ID}}}},
	}}})
	if err != nil {
		return deleted, fmt.Errorf("trim history to %d records: %w", maxRecords, err)
	}
	return deleted + res.DeletedCount, nil
}

// SetHistoryRetention sets the history.retention the attempts collection's
// TTL index applies (default triggers.DefaultHistoryRetention); call it
// before EnsureIndexes.
func (s *Store) SetHistoryRetention(d time.Duration) { s.historyRetention = d }

// retention is the attempts TTL index's retention.
func (s *Store) retention() time.Duration {
	if s.historyRetention <= 0 {
		return triggers.DefaultHistoryRetention
	}
	return s.historyRetention
}

// retimeAttemptsTTL changes the attempts collection's TTL index when it
// exists with another expireAfterSeconds (history.retention changed): with
// collMod, or by dropping and creating it again where collMod cannot change
// it (devdb). EnsureIndexes then finds it as it wants it.
func (s *Store) retimeAttemptsTTL(ctx context.Context) error {
	coll := s.attempts()
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		return fmt.Errorf("list the indexes of %s.%s: %w", coll.Database().Name(), AttemptsCollection, err)
	}
	for _, sp := range specs {
		if sp.Name == AttemptsTTLIndex && (sp.ExpireAfterSeconds == nil || *sp.ExpireAfterSeconds != ttlSeconds(s.retention())) {
			if err := s.retimeTTL(ctx, attemptIndexes(s.retention())[0], s.retention()); err != nil {
				return fmt.Errorf("index %s on %s.%s: %w", AttemptsTTLIndex, coll.Database().Name(), AttemptsCollection, err)
			}
		}
	}
	return nil
}

// ttlSeconds is the TTL index's expireAfterSeconds for retention.
func ttlSeconds(retention time.Duration) int32 { return int32(max(retention/time.Second, 1)) }

// retimeTTL gives the existing TTL index m's expireAfterSeconds.
func (s *Store) retimeTTL(ctx context.Context, m mongo.IndexModel, retention time.Duration) error {
	coll := s.attempts()
	err := coll.Database().RunCommand(ctx, bson.D{{Key: "collMod", Value: AttemptsCollection},
		{Key: "index", Value: bson.D{{Key: "name", Value: AttemptsTTLIndex}, {Key: "expireAfterSeconds", Value: ttlSeconds(retention)}}}}).Err()
	if err == nil {
		return nil
	}
	if err := coll.Indexes().DropOne(ctx, AttemptsTTLIndex); err != nil {
		return fmt.Errorf("change the retention: drop the old TTL index: %w", err)
	}
	if _, err := coll.Indexes().CreateOne(ctx, m); err != nil {
		return fmt.Errorf("change the retention: %w", err)
	}
	return nil
}

// attemptIndexes returns the attempts collection's indexes, the TTL index
// (first) expiring records after retention.
func attemptIndexes(retention time.Duration) []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "at", Value: 1}}, Options: options.Index().SetName(AttemptsTTLIndex).SetExpireAfterSeconds(ttlSeconds(retention))},
		{Keys: bson.D{{Key: "trigger", Value: 1}, {Key: "at", Value: -1}, {Key: "_id", Value: -1}}, Options: options.Index().SetName(AttemptsTriggerIndex)},
		{Keys: bson.D{{Key: "webhookId", Value: 1}, {Key: "at", Value: -1}}, Options: options.Index().SetName(AttemptsWebhookIDIndex)},
		{Keys: bson.D{{Key: "documentKey", Value: 1}, {Key: "at", Value: -1}}, Options: options.Index().SetName(AttemptsDocumentKeyIndex)},
	}
}

// attemptJSON is the JSON form of an AttemptRecord (snake_case, the
// document key as relaxed Extended JSON, zero fields left out).
type attemptJSON struct {
	ID                 string          `json:"id"`
	Cursor             string          `json:"cursor"`
	Kind               string          `json:"kind"`
	Trigger            string          `json:"trigger"`
	Partition          string          `json:"partition,omitempty"`
	WebhookID          string          `json:"webhook_id,omitempty"`
	DocumentKey        json.RawMessage `json:"document_key,omitempty"`
	DocumentKeyOmitted bool            `json:"document_key_omitted,omitempty"`
	Operation          string          `json:"operation,omitempty"`
	Attempt            int             `json:"attempt,omitempty"`
	Failed             bool            `json:"failed"`
	Status             int             `json:"status,omitempty"`
	Reason             string          `json:"reason,omitempty"`
	Error              string          `json:"error,omitempty"`
	LatencyMS          float64         `json:"latency_ms"`
	Response           string          `json:"response,omitempty"`
	StartedAt          *time.Time      `json:"started_at,omitempty"`
	At                 time.Time       `json:"at"`
	SkippedFrom        *time.Time      `json:"skipped_from,omitempty"`
	SkippedTo          *time.Time      `json:"skipped_to,omitempty"`
	By                 string          `json:"by,omitempty"`
}

// MarshalJSON writes the record as the admin API and `changehook history
// --json` show it.
func (r AttemptRecord) MarshalJSON() ([]byte, error) {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	j := attemptJSON{
		ID: r.ID.Hex(), Cursor: r.Cursor(), Kind: r.Kind, Trigger: r.Trigger, Partition: r.Partition, WebhookID: r.WebhookID,
		DocumentKeyOmitted: r.DocumentKeyOmitted, Operation: r.Operation, Attempt: r.Attempt, Failed: r.Failed,
		Status: r.Status, Reason: r.Reason, Error: r.Error, LatencyMS: r.LatencyMS, Response: r.Response,
		StartedAt: opt(r.StartedAt), At: r.At.UTC(), SkippedFrom: opt(r.SkippedFrom), SkippedTo: opt(r.SkippedTo), By: r.By,
	}
	if len(r.DocumentKey) > 0 {
		if b, err := bson.MarshalExtJSON(r.DocumentKey, false, false); err == nil {
			j.DocumentKey = b
		}
	}
	return json.Marshal(j)
}

// ParseDocumentKey reads a documentKey given as (relaxed or canonical)
// Extended JSON, such as {"_id": {"$oid": "..."}} or {"_id": 42}.
func ParseDocumentKey(s string) (bson.Raw, error) {
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		return nil, fmt.Errorf("document key %q is not an Extended JSON document such as {\"_id\": 42}: %w", s, err)
	}
	b, err := bson.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("document key %q: %w", s, err)
	}
	return b, nil
}

// ParseSince reads a history start: an RFC 3339 time, or a duration (such
// as 90m or 24h) meaning that long before now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since %q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration such as 90m or 24h", s)
}
