package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// AttemptsCollection holds the delivery history: one record per delivery
// attempt (and per range of changes a resume skipped). Records are stored in
// bucket documents, one per trigger per writer batch (see InsertAttempts),
// so that a batch of attempts costs one document, one oplog entry and a few
// index keys instead of one of each per attempt. Buckets expire by a TTL
// index on their newest record's time and the HistoryWriter caps the number
// of records. Read it with ListAttempts and CountAttempts, never directly.
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

// Index names of the attempts collection (bucket documents).
const (
	// AttemptsTTLIndex is the TTL index on the buckets' {last: 1} (the
	// time of a bucket's newest record): MongoDB deletes a bucket
	// history.retention after its newest attempt (the writer's trims
	// remove older records of a bucket sooner). It also serves listing
	// every trigger's records newest first and trimming the oldest.
	AttemptsTTLIndex = "last_1_ttl"
	// AttemptsTriggerIndex serves one trigger's buckets newest first.
	AttemptsTriggerIndex = "trigger_1_last_-1"
)

// legacyAttemptIndexes are the indexes of the layout with one document per
// record; EnsureIndexes drops them (see migrateLegacyAttempts).
var legacyAttemptIndexes = []string{"at_1_ttl", "trigger_1_at_-1__id_-1", "webhookId_1_at_-1", "documentKey_1_at_-1"}

// bucketArrayIndexes are the multikey indexes of the buckets' top-level
// webhookIds and documentKeys arrays, which buckets written by earlier
// versions have (formats 0 and 1); lookups now read the buckets' key
// summaries (or those arrays) instead, so EnsureIndexes drops them.
var bucketArrayIndexes = []string{"webhookIds_1", "documentKeys_1"}

// AttemptRecord is one record of the delivery history. Nothing in it is a
// secret: errors are redacted by the dispatcher, and the response snippet is
// what the endpoint answered.
type AttemptRecord struct {
	// ID is the record's key, set when it is written (unique, and
	// increasing in the order records are given to InsertAttempts).
	ID bson.ObjectID `bson:"_id,omitempty"`
	// Kind is one of the Kind* constants.
	Kind string `bson:"kind"`
	// Trigger is the trigger's name (stored once per bucket).
	Trigger string `bson:"trigger,omitempty"`
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
	// Events is how many events a batched request carried (0: a request
	// of one event); DocumentKey and Operation are then the first event's
	// and WebhookID is the batch's.
	Events int `bson:"events,omitempty"`
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
	r.truncateText()
	switch {
	case len(r.DocumentKey) > MaxRecordDocumentKey:
		r.DocumentKey, r.DocumentKeyOmitted = nil, true
	case len(r.DocumentKey) > 0:
		r.DocumentKey = append(bson.Raw(nil), r.DocumentKey...)
	}
}

// EventsNote is what the history's readers (changehook history, the
// console) show after a batched request's document key: " (first of N
// events)", " (a batch of 1 event)", or "" for a request of one event.
func (r AttemptRecord) EventsNote() string {
	switch {
	case r.Events == 1:
		return " (a batch of 1 event)"
	case r.Events > 1:
		return fmt.Sprintf(" (first of %d events)", r.Events)
	}
	return ""
}

// truncateText bounds the record's text fields (see Truncate).
func (r *AttemptRecord) truncateText() {
	r.Response = textcut.UTF8(r.Response, MaxResponseSnippet)
	r.Error = textcut.UTF8(r.Error, MaxRecordError)
}

func (s *Store) attempts() *mongo.Collection {
	return s.checkpoints.Database().Collection(AttemptsCollection)
}

// AttemptsCollection returns the attempts collection (for tests and tools).
func (s *Store) AttemptsCollection() *mongo.Collection { return s.attempts() }

// AttemptFilter selects history records. Records are returned newest first
// (by At, then ID).
type AttemptFilter struct {
	// Trigger keeps one trigger's records ("" = every trigger), or one
	// partition's records of a partitioned trigger when it is the
	// partition's key, "NAME/p<i>of<N>" (triggers.PartitionKey).
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
		return time.Time{}, bson.ObjectID{}, fmt.Errorf("cursor %s is not one this server returned", textcut.Quote(c))
	}
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return time.Time{}, bson.ObjectID{}, fmt.Errorf("cursor %s is not one this server returned", textcut.Quote(c))
	}
	return time.UnixMilli(n).UTC(), oid, nil
}

// ValidateAttemptFilter checks f's limit and cursor (the admin API and the
// CLI report these as bad input).
func ValidateAttemptFilter(f AttemptFilter) error {
	if _, _, _, ok := triggers.ParsePartitionKey(f.Trigger); !ok {
		return fmt.Errorf("trigger %s is neither a trigger's name nor one partition's key (NAME/p<i>of<N>)", textcut.Quote(f.Trigger))
	}
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

// prepareAttempts converts a history stored one document per record
// (migrateLegacyAttempts), drops the indexes of the buckets' top-level
// arrays (bucketArrayIndexes) and changes the attempts collection's TTL index
// when it exists with another expireAfterSeconds (history.retention
// changed): with collMod, or by dropping and creating it again where collMod
// cannot change it (devdb). EnsureIndexes then finds it as it wants it.
func (s *Store) prepareAttempts(ctx context.Context) error {
	coll := s.attempts()
	specs, err := coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		return fmt.Errorf("list the indexes of %s.%s: %w", coll.Database().Name(), AttemptsCollection, err)
	}
	var names []string
	for _, sp := range specs {
		names = append(names, sp.Name)
	}
	if err := s.migrateLegacyAttempts(ctx, names); err != nil {
		return fmt.Errorf("%s.%s: %w", coll.Database().Name(), AttemptsCollection, err)
	}
	for _, name := range bucketArrayIndexes {
		if slices.Contains(names, name) {
			if err := coll.Indexes().DropOne(ctx, name); err != nil && !isNotFound(err) {
				return fmt.Errorf("drop the index %s of %s.%s (no longer used): %w", name, coll.Database().Name(), AttemptsCollection, err)
			}
		}
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
	Events             int             `json:"events,omitempty"`
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
		DocumentKeyOmitted: r.DocumentKeyOmitted, Operation: r.Operation, Events: r.Events, Attempt: r.Attempt, Failed: r.Failed,
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
		return nil, fmt.Errorf("document key %s is not an Extended JSON document such as {\"_id\": 42}: %w", textcut.Quote(s), err)
	}
	b, err := bson.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("document key %s: %w", textcut.Quote(s), err)
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
	return time.Time{}, fmt.Errorf("since %s is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration such as 90m or 24h", textcut.Quote(s))
}
