// Package triggers loads and validates triggers.yaml and compiles each
// trigger into its change stream (namespace, pipeline, options). Package
// runner runs the watch loops.
//
// Configuration errors are collected while walking the YAML tree and
// reported together as a *ValidationError whose lines read
// FILE:LINE:COL: message, sorted by position.
package triggers

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Built-in defaults, applied under the file's defaults section.
const (
	// DefaultMongoURI is mongodb.uri when the file omits it and the
	// environment variable MongoURIEnv is unset or empty.
	DefaultMongoURI = "mongodb://127.0.0.1:27017/?directConnection=true"
	// MongoURIEnv names the environment variable whose value is
	// mongodb.uri when the file omits it (DefaultMongoURI when it is unset
	// or empty).
	MongoURIEnv = "MONGODB_URI"
	// DefaultStateDatabase is state.database when omitted.
	DefaultStateDatabase = "changehook"
	// DefaultAdminAddr is admin.addr when omitted.
	DefaultAdminAddr = "127.0.0.1:9470"
	// DefaultConcurrency is a trigger's concurrency when omitted.
	DefaultConcurrency = 16
	// MaxConcurrency bounds a trigger's concurrency (goroutines per trigger).
	MaxConcurrency = 1024
	// DefaultTimeout is webhook.timeout when omitted.
	DefaultTimeout = 10 * time.Second
	// MaxTimeout is the largest webhook.timeout accepted. An endpoint that
	// accepts the connection and never answers holds the attempt that
	// long, and with it a strict trigger (or one document's deliveries) and
	// the checkpoint; a longer wait is no longer a webhook's answer.
	MaxTimeout = time.Hour
	// DefaultMaxAttempts is retry.max_attempts when omitted.
	DefaultMaxAttempts = 8
	// DefaultInitialBackoff is retry.initial_backoff when omitted.
	DefaultInitialBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff is retry.max_backoff when omitted.
	DefaultMaxBackoff = time.Minute
	// DefaultAdminReadHeaderTimeout bounds reading one request's headers on
	// the admin server (not configurable: slow headers are an attack).
	DefaultAdminReadHeaderTimeout = 5 * time.Second
	// DefaultAdminReadTimeout is admin.read_timeout when omitted.
	DefaultAdminReadTimeout = 10 * time.Second
	// DefaultAdminWriteTimeout is admin.write_timeout when omitted.
	DefaultAdminWriteTimeout = 30 * time.Second
	// DefaultAdminIdleTimeout is admin.idle_timeout when omitted.
	DefaultAdminIdleTimeout = 60 * time.Second
	// DefaultAdminMaxConnections is admin.max_connections when omitted.
	DefaultAdminMaxConnections = 64
	// DefaultRetryingUnreadyAfter is admin.retrying_unready_after when
	// omitted.
	DefaultRetryingUnreadyAfter = 5 * time.Minute
	// MaxAdminMaxConnections bounds admin.max_connections.
	MaxAdminMaxConnections = 65536
	// MinAdminTokenLength is the admin.token length (in characters) below
	// which the configuration has a warning (Config.Warnings) that it is
	// easy to guess.
	MinAdminTokenLength = 16
	// DefaultCheckpointIdleInterval is checkpoint.idle_interval when
	// omitted: how often a trigger that delivered nothing saves the
	// position its stream moved to.
	DefaultCheckpointIdleInterval = 30 * time.Second
	// MinCheckpointIdleInterval is the smallest checkpoint.idle_interval
	// accepted. The interval also bounds each change-stream wait for new
	// changes (maxAwaitTimeMS), so a tiny one would turn every idle
	// trigger into a busy loop of getMores and checkpoint writes, each
	// write moving every other stream's position.
	MinCheckpointIdleInterval = time.Second
	// DefaultMaxInflightBytes is a trigger's max_inflight_bytes when
	// omitted.
	DefaultMaxInflightBytes int64 = 64 << 20
	// DefaultProcessMaxInflightBytes is limits.max_inflight_bytes when
	// omitted.
	DefaultProcessMaxInflightBytes int64 = 256 << 20
	// MinInflightBytes is the smallest max_inflight_bytes accepted.
	MinInflightBytes int64 = 1 << 10
	// MaxInflightBytes is the largest max_inflight_bytes accepted (1 TiB).
	MaxInflightBytes int64 = 1 << 40
	// MaxPartitions bounds a trigger's partitions. Every partition is a
	// change stream of its own, and the server reads the whole oplog once
	// per stream (the partition filter only spares the network), so the
	// server's oplog reading grows linearly with the partitions; each is
	// also a lease, a checkpoint and a dispatcher with concurrency workers.
	// 64 partitions spread one trigger over 64 processes, far beyond what
	// one trigger's event rate needs.
	MaxPartitions = 64
	// MaxDuration bounds every duration field (10 years; some have a
	// smaller bound): far beyond any sensible setting, and far enough from
	// time.Duration's limit (about 292 years) that the deadlines and
	// doubling backoffs computed from a duration cannot overflow.
	MaxDuration = 87600 * time.Hour
	// DefaultHistoryRetention is history.retention when omitted (7 days).
	DefaultHistoryRetention = 168 * time.Hour
	// MinHistoryRetention is the smallest history.retention accepted.
	MinHistoryRetention = time.Minute
	// MaxHistoryRetention is the largest history.retention accepted (10
	// years; a TTL index's expireAfterSeconds is a 32-bit number).
	MaxHistoryRetention = 87600 * time.Hour
	// DefaultHistoryMaxRecords is history.max_records when omitted.
	DefaultHistoryMaxRecords = 1_000_000
	// MinHistoryMaxRecords and MaxHistoryMaxRecords bound
	// history.max_records.
	MinHistoryMaxRecords = 100
	// MaxHistoryMaxRecords is the largest history.max_records accepted.
	MaxHistoryMaxRecords = 1_000_000_000
)

// DefaultOperations returns the operation types a trigger watches when its
// operations field is omitted: insert, update, replace and delete.
func DefaultOperations() []string { return []string{"insert", "update", "replace", "delete"} }

// Config is a parsed and validated triggers.yaml. Every field holds its
// effective value: defaults section and built-in defaults applied, ${ENV}
// interpolated. Printing it, marshalling it to JSON or logging it never
// shows a secret: the MongoDB password and the webhook URLs are redacted,
// header values and signing keys are Secrets.
type Config struct {
	// Path is the file the configuration was read from.
	Path string `json:"path"`
	// MongoDB is the cluster the triggers watch.
	MongoDB MongoDBConfig `json:"mongodb"`
	// State is where checkpoints and dead letters live.
	State StateConfig `json:"state"`
	// Admin is the admin HTTP server.
	Admin AdminConfig `json:"admin"`
	// Log configures log/slog.
	Log LogConfig `json:"log"`
	// Cluster configures running several instances on one state database.
	Cluster ClusterConfig `json:"cluster"`
	// Checkpoint configures how often checkpoints are saved.
	Checkpoint CheckpointConfig `json:"checkpoint"`
	// Limits are the process-wide resource bounds.
	Limits LimitsConfig `json:"limits"`
	// History configures the delivery history (<state.database>.attempts).
	History HistoryConfig `json:"history"`
	// Defaults holds the value a trigger gets for each field it omits (the
	// defaults section over the built-in defaults). Its Name is empty.
	Defaults *Trigger `json:"-"`
	// Network limits the addresses webhook requests connect to.
	Network NetworkPolicy `json:"network"`
	// Endpoints are rate limits shared by the triggers whose webhook URL
	// starts with their URLPrefix.
	Endpoints []*Endpoint `json:"endpoints,omitempty"`
	// Triggers are the triggers in file order.
	Triggers []*Trigger `json:"triggers"`
	// Warnings are settings of the file that are accepted but very likely
	// not what was meant, each at the position of the node it is about,
	// sorted as ValidationError's problems are: about the file (an
	// endpoint no enabled trigger uses, a short admin.token) and, with
	// Problem.Trigger set, about one trigger, disabled ones included (a
	// payload string that looks like a template placeholder, a batch sent
	// to a chat webhook, a match condition that can never hold as written,
	// a retry class whose codes another list takes), also when the trigger
	// gets the setting from the defaults section. validate prints them all;
	// run and dev log them, but not those of a disabled trigger. They never
	// contain a secret. Nil when there is none.
	Warnings []Problem `json:"-"`
}

// Cluster defaults (the cluster section's zero values).
const (
	// DefaultLeaseTTL is cluster.lease_ttl when omitted.
	DefaultLeaseTTL = 10 * time.Second
	// MinLeaseTTL is the smallest accepted cluster.lease_ttl: below it a
	// loaded machine or a slow state database would drop leases.
	MinLeaseTTL = time.Second
	// MinRenewEvery is the smallest accepted cluster.renew_every. The
	// period also bounds each round's writes to the state database, so a
	// tiny one would both fail every renewal and loop on the state
	// database without pause.
	MinRenewEvery = 100 * time.Millisecond
)

// MaxRenewEvery is the largest accepted cluster.renew_every for a lease
// TTL of leaseTTL: 35% of it. An owner fences itself leaseTTL − leaseTTL/5
// after sending its last successful renewal, and renewal rounds start
// renew_every apart (a round, its renewal included, takes at most
// renew_every): after one lost renewal, failed at once or timed out, the
// next is sent 2 × renew_every after the last that succeeded, which leaves
// at least leaseTTL/10 for its round trip. So one lost renewal never costs
// the lease.
func MaxRenewEvery(leaseTTL time.Duration) time.Duration {
	return leaseTTL * 7 / 20
}

// ClusterConfig is the cluster section: how instances sharing one state
// database split the triggers between them (see the cluster package).
type ClusterConfig struct {
	// InstanceID names this instance in <state>.members and as lease owner;
	// "" means a generated hostname-pid-random id, new at every start.
	InstanceID string `json:"instance_id"`
	// LeaseTTL is how long a lease and a membership heartbeat stay valid,
	// measured by the state database's clock (default DefaultLeaseTTL).
	LeaseTTL time.Duration `json:"lease_ttl"`
	// RenewEvery is how often leases and the heartbeat are renewed; always
	// at most MaxRenewEvery(LeaseTTL) (default LeaseTTL/3).
	RenewEvery time.Duration `json:"renew_every"`
}

// MongoDBConfig is the mongodb section.
type MongoDBConfig struct {
	// URI is the connection string. It may hold credentials: show it only
	// through RedactURI (or the MongoDBConfig, which prints it that way).
	URI string
}

// StateConfig is the state section.
type StateConfig struct {
	// Database is the database holding the checkpoints and deadletters
	// collections.
	Database string `json:"database"`
}

// ShortAdminToken reports whether token, a configured admin.token, has
// fewer than MinAdminTokenLength characters (a warning of Config.Warnings,
// not an error).
func ShortAdminToken(token string) bool {
	return token != "" && utf8.RuneCountInString(token) < MinAdminTokenLength
}

// AdminConfig is the admin section.
type AdminConfig struct {
	// Addr is the host:port of /healthz, /readyz, /metrics and /api.
	Addr string `json:"addr"`
	// Token, when set, is needed by every admin request but the probes,
	// /metrics and the console's static assets (Authorization: Bearer
	// TOKEN, or HTTP Basic credentials with TOKEN as the password). Empty:
	// reads are open and mutating calls are allowed only when Addr is a
	// loopback address.
	Token Secret `json:"token,omitzero"`
	// ReadTimeout bounds reading one whole request, body included.
	ReadTimeout time.Duration `json:"read_timeout"`
	// WriteTimeout bounds writing one response (from the end of the
	// request's headers).
	WriteTimeout time.Duration `json:"write_timeout"`
	// IdleTimeout closes a keep-alive connection idle this long.
	IdleTimeout time.Duration `json:"idle_timeout"`
	// MaxConnections caps the open connections; further ones wait in the
	// listen backlog until one closes. The admin server gives one client
	// address at most a share of them (see admin.Options.MaxConnections).
	MaxConnections int `json:"max_connections"`
	// RetryingUnreadyAfter is how long a trigger may be retrying (a
	// failing endpoint or change stream) before /readyz reports it.
	RetryingUnreadyAfter time.Duration `json:"retrying_unready_after"`
}

// CheckpointConfig is the checkpoint section.
type CheckpointConfig struct {
	// IdleInterval is how often a trigger saves a checkpoint that only
	// moves its position (no event delivered since the last save): the
	// stream's own resume token advancing past writes the trigger does
	// not deliver.
	IdleInterval time.Duration `json:"idle_interval"`
}

// LimitsConfig is the limits section: bounds over all triggers together.
type LimitsConfig struct {
	// MaxInflightBytes bounds the bytes of the events in flight (submitted,
	// not yet delivered or dead-lettered) over every trigger. One event
	// larger than the budget is still admitted when nothing else is in
	// flight.
	MaxInflightBytes int64 `json:"max_inflight_bytes"`
}

// HistoryConfig is the history section: the record of every delivery
// attempt kept in <state.database>.attempts.
type HistoryConfig struct {
	// Enabled records attempts (default true).
	Enabled bool `json:"enabled"`
	// Retention is how long a record is kept: the attempts collection's TTL
	// index expires records this long after their attempt (default
	// DefaultHistoryRetention, between MinHistoryRetention and
	// MaxHistoryRetention).
	Retention time.Duration `json:"retention"`
	// MaxRecords caps the records kept: the history writer deletes the
	// oldest ones beyond it (default DefaultHistoryMaxRecords).
	MaxRecords int `json:"max_records"`
}

// LogConfig is the log section.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `json:"level"`
	// Format is text or json.
	Format string `json:"format"`
}

// StartAt is where a trigger without a checkpoint starts reading.
type StartAt struct {
	// Now starts at the current end of the oplog.
	Now bool
	// Time starts at the first change at or after Time (when Now is false).
	// A Time in the future is a planned start: the runner waits until
	// then, reading nothing and writing no checkpoint (see After).
	Time time.Time
}

// After reports whether s is a time after now, compared to the second (the
// oplog's resolution): a planned start, before which a trigger without a
// checkpoint delivers nothing.
func (s StartAt) After(now time.Time) bool {
	return !s.Now && s.Time.Unix() > now.Unix()
}

// ErrOutsideTimestamps is OperationTime's error for a time that a MongoDB
// timestamp cannot hold.
var ErrOutsideTimestamps = errors.New("outside the times a MongoDB timestamp holds")

// The first and last seconds a MongoDB timestamp holds (OperationTime).
const (
	minTimestampText = "1970-01-01T00:00:00Z"
	maxTimestampText = "2106-02-07T06:28:15Z"
)

// OperationTime returns the MongoDB timestamp of t's second (seconds since
// 1970-01-01 UTC in 32 bits, increment 0), as a change stream's
// startAtOperationTime takes it. A time before 1970-01-01T00:00:00Z or
// after 2106-02-07T06:28:15Z is refused with an error wrapping
// ErrOutsideTimestamps that names the range; it is never wrapped around.
// Parse refuses such a start_at.
func OperationTime(t time.Time) (bson.Timestamp, error) {
	s := t.Unix()
	if s < 0 || s > math.MaxUint32 {
		return bson.Timestamp{}, fmt.Errorf("convert %s to an operation time: %w (%s to %s)",
			t.UTC().Format(time.RFC3339), ErrOutsideTimestamps, minTimestampText, maxTimestampText)
	}
	return bson.Timestamp{T: uint32(s)}, nil
}

// Trigger is one validated trigger.
type Trigger struct {
	// Name is unique in the file and matches [a-z0-9_-]+.
	Name string
	// Database is the watched database; "" watches the whole deployment.
	Database string
	// Collection is the watched collection; "" watches the whole database.
	Collection string
	// Operations are the operation types delivered, in file order.
	Operations []string
	// Match is the user's query on the change event (nil: none).
	Match bson.D
	// Project is the user's $project stage body (nil: none). It keeps _id.
	Project bson.D
	// FullDocument is default, updateLookup, whenAvailable or required.
	FullDocument options.FullDocument
	// FullDocumentBeforeChange is off, whenAvailable or required.
	FullDocumentBeforeChange options.FullDocument
	// StartAt applies only when the trigger has no checkpoint.
	StartAt StartAt
	// Ordering is the delivery order guarantee.
	Ordering Ordering
	// Concurrency is the number of deliveries in flight: as configured for
	// per_document and none, always 1 for strict (see
	// Ordering.Concurrency).
	Concurrency int
	// MaxInflightBytes bounds the bytes of this trigger's events in flight
	// (per partition); one event larger than it is still admitted alone.
	MaxInflightBytes int64
	// Partitions splits the trigger into this many change streams, 1 to
	// MaxPartitions (1: not partitioned). Partition i reads the events
	// whose documentKey._id hashes to i (hash mod Partitions, computed by
	// the server with $toHashedIndexKey), so a document's changes always
	// go through the same partition, in order; events without a
	// documentKey (drop, rename, dropDatabase, DDL events) go through
	// partition 0 only. Each partition has its own checkpoint and lease,
	// keyed PartitionKey(Name, i, Partitions); Concurrency and
	// MaxInflightBytes apply per partition. Never with Ordering Strict.
	Partitions int
	// unit is 1 + the partition this value reads, set by Partition on a
	// copy; 0 on the trigger as configured, which reads every event.
	unit int
	// Enabled false keeps the trigger in the file without running it.
	Enabled bool
	// Webhook is the endpoint.
	Webhook Webhook
	// Retry bounds the attempts per event.
	Retry RetryPolicy
	// DeadLetter true gives up on an event after Retry and stores it as a
	// dead letter; false retries forever (the trigger blocks).
	DeadLetter bool
	// PayloadErrors says when payload errors pause the trigger.
	PayloadErrors PayloadErrorPolicy
	// Circuit is the endpoint's circuit breaker.
	Circuit CircuitPolicy
	// Batch delivers several events per request (nil: one event per
	// request).
	Batch *BatchPolicy
	// Network is the configuration's network section (the same for every
	// trigger), so that a Sender built from the trigger alone applies it.
	Network NetworkPolicy
	// Pos is where the trigger is declared.
	Pos Pos
	// StateDatabase is the configuration's state.database, set by Parse.
	// Pipeline filters it out of a deployment-wide stream, so that a
	// trigger never sees changehook's own writes (checkpoints, dead
	// letters, ...) and cannot feed on them. Empty: no filter.
	StateDatabase string
}

// operationNames returns every operation type a trigger may choose.
func operationNames() []string {
	return []string{
		"insert", "update", "replace", "delete", "drop", "rename", "dropDatabase",
		"create", "createIndexes", "dropIndexes", "modify",
		"shardCollection", "reshardCollection", "refineCollectionShardKey",
	}
}

// ExpandedOperation reports whether op is an operation type a change
// stream reports only with showExpandedEvents (MongoDB 6.0 and later):
// a trigger choosing one opens its stream with that option.
func ExpandedOperation(op string) bool {
	switch op {
	case "create", "createIndexes", "dropIndexes", "modify",
		"shardCollection", "reshardCollection", "refineCollectionShardKey":
		return true
	}
	return false
}

// MarshalJSON writes the timeouts as Go duration strings ("30s"); every
// other field as its tag says.
func (a AdminConfig) MarshalJSON() ([]byte, error) {
	type plain AdminConfig // without the method; shallower fields below win
	return marshalJSON(struct {
		plain
		ReadTimeout  string `json:"read_timeout"`
		WriteTimeout string `json:"write_timeout"`
		IdleTimeout  string `json:"idle_timeout"`
		Retrying     string `json:"retrying_unready_after"`
	}{plain(a), a.ReadTimeout.String(), a.WriteTimeout.String(), a.IdleTimeout.String(), a.RetryingUnreadyAfter.String()})
}

// MarshalJSON writes the retention as a Go duration string ("168h0m0s").
func (h HistoryConfig) MarshalJSON() ([]byte, error) {
	type plain HistoryConfig // without the method; shallower fields below win
	return marshalJSON(struct {
		plain
		Retention string `json:"retention"`
	}{plain(h), h.Retention.String()})
}

// MarshalJSON writes the interval as a Go duration string ("30s").
func (c CheckpointConfig) MarshalJSON() ([]byte, error) {
	return marshalJSON(struct {
		IdleInterval string `json:"idle_interval"`
	}{c.IdleInterval.String()})
}
