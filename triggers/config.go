// Package triggers loads and validates triggers.yaml and compiles each
// trigger into its change stream (namespace, pipeline, options). Package
// runner runs the watch loops.
//
// Configuration errors are collected while walking the YAML tree and
// reported together as a *ValidationError whose lines read
// FILE:LINE:COL: message, sorted by position.
package triggers

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Built-in defaults, applied under the file's defaults section.
const (
	// DefaultMongoURI is mongodb.uri when the file has no mongodb section.
	DefaultMongoURI = "mongodb://127.0.0.1:27017/?directConnection=true"
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
	// DefaultMaxAttempts is retry.max_attempts when omitted.
	DefaultMaxAttempts = 8
	// DefaultInitialBackoff is retry.initial_backoff when omitted.
	DefaultInitialBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff is retry.max_backoff when omitted.
	DefaultMaxBackoff = time.Minute
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
}

// Cluster defaults (the cluster section's zero values).
const (
	// DefaultLeaseTTL is cluster.lease_ttl when omitted.
	DefaultLeaseTTL = 10 * time.Second
	// MinLeaseTTL is the smallest accepted cluster.lease_ttl: below it a
	// loaded machine or a slow state database would drop leases.
	MinLeaseTTL = time.Second
)

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
	// less than LeaseTTL/2 (default LeaseTTL/3).
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

// AdminConfig is the admin section.
type AdminConfig struct {
	// Addr is the host:port of /healthz, /readyz, /metrics and /api.
	Addr string `json:"addr"`
	// Token authorises the admin API's mutating calls (Authorization:
	// Bearer TOKEN). Empty: they are allowed only when Addr is a loopback
	// address.
	Token Secret `json:"token,omitzero"`
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
	Time time.Time
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
	// Enabled false keeps the trigger in the file without running it.
	Enabled bool
	// Webhook is the endpoint.
	Webhook Webhook
	// Retry bounds the attempts per event.
	Retry RetryPolicy
	// DeadLetter true gives up on an event after Retry and stores it as a
	// dead letter; false retries forever (the trigger blocks).
	DeadLetter bool
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

// expandedOperation reports whether op is only reported with
// showExpandedEvents.
func expandedOperation(op string) bool {
	switch op {
	case "create", "createIndexes", "dropIndexes", "modify",
		"shardCollection", "reshardCollection", "refineCollectionShardKey":
		return true
	}
	return false
}
