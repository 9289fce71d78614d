package runner

import (
	"slices"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/triggers"
)

// State is a trigger's lifecycle state.
type State string

// Trigger states.
const (
	// StateStarting: loading the checkpoint and opening the stream, or
	// (Options.Controls) waiting for the trigger's runtime controls to be
	// read, which LastError then says cannot be read yet.
	StateStarting State = "starting"
	// StateRunning: the change stream is open and being read.
	StateRunning State = "running"
	// StateWaiting: the trigger has no checkpoint and its start_at is
	// after the server's current time (a planned start):
	// TriggerStatus.StartsAt says until when. Nothing is read and no
	// checkpoint is written until then, so changing start_at meanwhile
	// (a reload) still applies; the changes before start_at are not
	// delivered, as start_at says. It does not make the runner unready.
	StateWaiting State = "waiting"
	// StateRetrying: something transient is failing and is being retried:
	// the change stream could not be opened or broke (network trouble, an
	// election) and is reopened after a backoff, or the head-of-line
	// delivery's last attempt failed and another one is scheduled
	// (TriggerStatus.HeadOfLine says when), or its checkpoint saves fail
	// (TriggerStatus.CheckpointFailure: its deliveries go on, but a restart
	// would deliver again every event since the last save). Since is when
	// the failures started; LastError is the newest one. Nothing is lost
	// meanwhile.
	StateRetrying State = "retrying"
	// StateFailed: the trigger cannot go on without an operator: the
	// change stream ended permanently (history lost, invalidated, a
	// pipeline the server rejects, a dispatcher that cannot start), or —
	// in a trigger without dead letters — the endpoint rejects the
	// head-of-line event permanently (it is retried anyway and blocks the
	// trigger). LastError says why and WayOut what to do.
	StateFailed State = "failed"
	// StatePaused: held by Runner.Pause; TriggerStatus.Paused says who,
	// why and since when. The checkpoint stays at the watermark.
	StatePaused State = "paused"
	// StateStopped: the runner shut down, or the trigger was stopped
	// (Runner.Stop, or not started under Options.StartStopped).
	StateStopped State = "stopped"
	// StateDisabled: enabled is false in the configuration.
	StateDisabled State = "disabled"
)

// TriggerStatus is a snapshot of one trigger's state and counters, for
// /api/triggers and logs. It never contains secrets.
type TriggerStatus struct {
	// Name is the trigger name.
	Name string `json:"name"`
	// Namespace is "db.coll", "db" or "" (whole deployment).
	Namespace string `json:"namespace"`
	// State is the lifecycle state.
	State State `json:"state"`
	// Since is when State was entered.
	Since time.Time `json:"since"`
	// StartsAt is, in StateWaiting, the trigger's start_at: when it starts
	// reading (by the server's clock).
	StartsAt time.Time `json:"starts_at,omitzero"`
	// StreamOpen reports whether the change stream is open.
	StreamOpen bool `json:"stream_open"`
	// Retrying is true in StateRetrying.
	Retrying bool `json:"retrying,omitempty"`
	// Paused is set in StatePaused.
	Paused *PauseInfo `json:"paused,omitempty"`
	// LastError is the reason of the last failure ("" if none). A
	// failure of the trigger's stream stays here after the stream is
	// open again; one that lasts while the stream is open (the head-of-line
	// delivery failing, an open circuit, a dead letter or checkpoint that
	// cannot be stored) shows only while it lasts.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// WayOut says, in StateFailed, what gets the trigger going again; in
	// StateRetrying while a dead letter cannot be stored
	// (HeadOfLine.DeadLetter), what gets it past the event, and while its
	// checkpoint saves fail (CheckpointFailure), what lets them succeed,
	// and while its circuit is open, what it waits for; in StatePaused
	// by PauseByPayloadErrors, what delivers the held event
	// (PayloadErrorsWayOut).
	WayOut string `json:"way_out,omitempty"`
	// HeadOfLine describes the oldest event not yet delivered or
	// dead-lettered, the one holding the checkpoint (nil when none is
	// held).
	HeadOfLine *HeadOfLine `json:"head_of_line,omitempty"`
	// EventsReceived counts events handed to the dispatcher since start
	// (in Runner.Status: since the process started, across every watcher of
	// the trigger — reloads that change it, pauses, controls, leases
	// regained — until a reload removes it).
	EventsReceived uint64 `json:"events_received"`
	// LastEventTime is the clusterTime of the newest event received.
	LastEventTime time.Time `json:"last_event_time,omitzero"`
	// CheckpointTime is when the checkpoint was last saved.
	CheckpointTime time.Time `json:"checkpoint_time,omitzero"`
	// CheckpointFailure, when set, says that the checkpoint saves of the
	// running trigger fail (it is then StateRetrying, with a WayOut): its
	// deliveries go on, but the checkpoint stays at CheckpointTime. Nil
	// once a save succeeds again.
	CheckpointFailure *CheckpointFailure `json:"checkpoint_failure,omitempty"`
	// CheckpointLag is the age of the oldest received event not yet covered
	// by the saved checkpoint (0: caught up). In Runner.Status it is 0 once
	// the trigger stopped running here (stopped, standby); a paused or
	// failed trigger keeps the value it had when its watcher stopped.
	CheckpointLag time.Duration `json:"checkpoint_lag_ns"`
	// Deliveries counts finished deliveries by outcome (delivered,
	// dead_lettered, failed). Filled in by Runner.Status (never nil there);
	// a Watcher's own Status leaves it nil.
	Deliveries map[string]uint64 `json:"deliveries"`
	// Attempts counts delivery attempts by result ("ok" or a failure
	// reason). Filled in by Runner.Status, like Deliveries.
	Attempts map[string]uint64 `json:"attempts"`
	// DeadLetters counts the dead letters this process stored since start.
	DeadLetters uint64 `json:"dead_letters"`
	// DeadLettersCurrent is the number of the trigger's dead letters in the
	// state database now (replayed and purged ones are gone), as last read
	// (see Options.DeadLetterRefresh); -1 when it could not be read yet.
	DeadLettersCurrent int64 `json:"dead_letters_current"`
	// InFlight is the number of deliveries being attempted now.
	InFlight int64 `json:"in_flight"`
	// BatchSplits counts the batch requests the endpoint refused as too
	// large (413) and that were sent again as two, since start (absent
	// while 0): batch.max_bytes is then above the endpoint's body limit.
	// Filled in by Runner.Status, like Deliveries.
	BatchSplits uint64 `json:"batch_splits,omitempty"`
	// Circuit is the endpoint circuit breaker's state (nil when the
	// trigger's circuit section cannot open it, or no dispatcher of it
	// runs here: stopped, standby, disabled, paused, or failed once its
	// watcher ended; it runs again with a closed circuit). A partitioned
	// trigger shows the most open of its partitions' that run here.
	Circuit *dispatcher.CircuitStatus `json:"circuit,omitempty"`
	// LeaseWait, for a clustered trigger this member does not run —
	// StateStandby (another member runs it) or StateStarting while this
	// member waits for its lease — says who runs it or holds its lease
	// and until when (Options.LeaseWait); nil otherwise.
	LeaseWait *LeaseWait `json:"lease_wait,omitempty"`
	// Partitions is each partition's own state, in partition order, for a
	// partitioned trigger (partitions > 1); absent otherwise. The fields
	// above then sum the partitions: see combinePartitions.
	Partitions []PartitionStatus `json:"partitions,omitempty"`
	// Waits says how long the watch loop waited, and for what (a
	// partitioned trigger: its partitions' summed, and those a reload
	// that changed its partitions replaced). In Runner.Status it is
	// never nil: a trigger disabled by a reload keeps its figures, which
	// stand still until it is enabled again (they are counters).
	Waits *Waits `json:"waits,omitempty"`
}

// replacedTotals is what the partitions of a trigger that a reload
// replaced counted: its events_received and wait totals continue with them.
type replacedTotals struct {
	received         uint64
	stream, delivery time.Duration
}

// Waits is how long a unit's watch loop waited since the unit was created
// in this process, across its watchers (a reload or restart keeps the
// figures). The rest of the time it was busy reading and submitting, or
// not running. Stream growing about as fast as time while events lag says
// the database's replies limit the trigger; Delivery growing says its
// deliveries do.
type Waits struct {
	// Stream is the time it waited for the change stream: for a change to
	// happen, or for the server to return the changes it asked for.
	Stream time.Duration `json:"stream_ns"`
	// Delivery is the time it held an event and waited for the dispatcher
	// to take it: the trigger's in-flight limits (concurrency,
	// max_inflight_bytes, limits.max_inflight_bytes) were reached, or a
	// per_document event without a document key waited for the events
	// before it and for its own delivery — backpressure from the webhook.
	Delivery time.Duration `json:"delivery_ns"`
	// DeliverySince is, while it waits for the dispatcher, since when.
	DeliverySince time.Time `json:"delivery_since,omitzero"`
}

// watchWaits are a unit's wait clocks (see Waits), shared by its watchers
// and their dispatchers.
type watchWaits struct {
	stream, delivery dispatcher.WaitClock
}

// status returns the waits up to now.
func (w *watchWaits) status(now time.Time) *Waits {
	return &Waits{Stream: w.stream.Total(now), Delivery: w.delivery.Total(now), DeliverySince: w.delivery.Since()}
}

// addWaits adds b to a (nil: nothing); the earlier DeliverySince wins.
func addWaits(a, b *Waits) *Waits {
	if b == nil {
		return a
	}
	if a == nil {
		a = &Waits{}
	}
	a.Stream += b.Stream
	a.Delivery += b.Delivery
	if !b.DeliverySince.IsZero() && (a.DeliverySince.IsZero() || b.DeliverySince.Before(a.DeliverySince)) {
		a.DeliverySince = b.DeliverySince
	}
	return a
}

// LeaseWait says why a clustered unit does not run on this member, as of
// this member's last cluster round.
type LeaseWait struct {
	// Member is the member that runs the unit or holds its lease (""
	// when not known).
	Member string `json:"member,omitempty"`
	// Until is when that member's lease lapses unless it is renewed, by
	// this member's clock, as of this member's last read of the leases —
	// for a StateStandby unit too, the lease of the member that runs it
	// (zero: not known, as while the member meant to run a standby unit
	// does not hold its lease yet, or no lease is involved).
	Until time.Time `json:"until,omitzero"`
	// Reason says it in a sentence, for people.
	Reason string `json:"reason"`
}

// PartitionStatus is one partition of a partitioned trigger as this
// process sees it (a partition another cluster member runs is standby here).
type PartitionStatus struct {
	// Partition is the partition's index, from 0.
	Partition int `json:"partition"`
	// Key is its checkpoint and lease key, "NAME/p<i>of<N>".
	Key string `json:"key"`
	// State is its lifecycle state.
	State State `json:"state"`
	// Since is when State was entered.
	Since time.Time `json:"since,omitzero"`
	// StreamOpen reports whether its change stream is open here.
	StreamOpen bool `json:"stream_open"`
	// LastError is its last failure ("" if none).
	LastError string `json:"last_error,omitempty"`
	// WayOut says, in StateFailed, what gets it going again.
	WayOut string `json:"way_out,omitempty"`
	// LeaseWait says who runs it or holds its lease when it does not run
	// here (see TriggerStatus.LeaseWait).
	LeaseWait *LeaseWait `json:"lease_wait,omitempty"`
	// HeadOfLine is its oldest event not yet delivered or dead-lettered.
	HeadOfLine *HeadOfLine `json:"head_of_line,omitempty"`
	// Circuit is its endpoint circuit (each partition has its own).
	Circuit *dispatcher.CircuitStatus `json:"circuit,omitempty"`
	// EventsReceived counts the events it read since start (in
	// Runner.Status: since the partition was created, across its watchers).
	EventsReceived uint64 `json:"events_received"`
	// LastEventTime is the clusterTime of the newest event it read.
	LastEventTime time.Time `json:"last_event_time,omitzero"`
	// CheckpointTime is when its checkpoint was last saved here.
	CheckpointTime time.Time `json:"checkpoint_time,omitzero"`
	// CheckpointFailure is set while its checkpoint saves fail.
	CheckpointFailure *CheckpointFailure `json:"checkpoint_failure,omitempty"`
	// CheckpointLag is its checkpoint lag.
	CheckpointLag time.Duration `json:"checkpoint_lag_ns"`
	// Waits is how long its watch loop waited (see TriggerStatus.Waits).
	Waits *Waits `json:"waits,omitempty"`
}

// statePriority orders states for a partitioned trigger's overall state:
// the first state in this list that any partition is in wins, so a failed
// partition shows the trigger failed, and a trigger some of whose
// partitions run here shows running.
var statePriority = []State{StateFailed, StateRetrying, StatePaused, StateRunning, StateWaiting, StateStarting, StateStandby, StateStopped, StateDisabled}

// combinePartitions folds the partitions' statuses (as from Watcher.Status,
// in partition order) into the trigger's: State by statePriority, with
// Since, Paused, WayOut, StartsAt and LeaseWait from the partition longest
// in that state (the earliest Since; the first one on a tie or when none
// says since when), so that a partition retrying for an hour is not hidden
// by another that started retrying a second ago;
// LastError the newest; HeadOfLine the oldest event held;
// StreamOpen when every partition that is running or starting here has its
// stream open (and at least one does); EventsReceived summed;
// LastEventTime the newest; CheckpointTime the oldest (the trigger as a
// whole is checkpointed up to there); CheckpointFailure the one failing
// longest; CheckpointLag the largest.
// Partitions lists each one.
func combinePartitions(parts []TriggerStatus, n int) TriggerStatus {
	out := TriggerStatus{Name: parts[0].Name, Namespace: parts[0].Namespace, State: parts[len(parts)-1].State}
	best := len(statePriority)
	anyOpen, allOpen := false, true
	for i, p := range parts {
		k := slices.Index(statePriority, p.State)
		longer := k == best && !p.Since.IsZero() && (out.Since.IsZero() || p.Since.Before(out.Since))
		if k >= 0 && (k < best || longer) {
			best = k
			out.State, out.Since, out.Retrying, out.Paused, out.WayOut, out.StartsAt, out.LeaseWait = p.State, p.Since, p.Retrying, p.Paused, p.WayOut, p.StartsAt, p.LeaseWait
		}
		if p.Circuit != nil && (out.Circuit == nil || circuitRank(p.Circuit.State) > circuitRank(out.Circuit.State)) {
			out.Circuit = p.Circuit
		}
		if p.HeadOfLine != nil && (out.HeadOfLine == nil || p.HeadOfLine.EventAge > out.HeadOfLine.EventAge) {
			out.HeadOfLine = p.HeadOfLine
		}
		if p.LastError != "" && (out.LastError == "" || p.LastErrorAt.After(out.LastErrorAt)) {
			out.LastError, out.LastErrorAt = p.LastError, p.LastErrorAt
		}
		if p.State == StateRunning || p.State == StateStarting {
			allOpen = allOpen && p.StreamOpen
		}
		anyOpen = anyOpen || p.StreamOpen
		out.EventsReceived += p.EventsReceived
		if p.LastEventTime.After(out.LastEventTime) {
			out.LastEventTime = p.LastEventTime
		}
		if !p.CheckpointTime.IsZero() && (out.CheckpointTime.IsZero() || p.CheckpointTime.Before(out.CheckpointTime)) {
			out.CheckpointTime = p.CheckpointTime
		}
		if f := p.CheckpointFailure; f != nil && (out.CheckpointFailure == nil || f.Since.Before(out.CheckpointFailure.Since)) {
			out.CheckpointFailure = f
		}
		out.CheckpointLag = max(out.CheckpointLag, p.CheckpointLag)
		if p.Waits != nil {
			out.Waits = addWaits(out.Waits, p.Waits)
		}
		out.Partitions = append(out.Partitions, PartitionStatus{
			Partition: i, Key: triggers.PartitionKey(p.Name, i, n), State: p.State, Since: p.Since,
			StreamOpen: p.StreamOpen, LastError: p.LastError, WayOut: p.WayOut, LeaseWait: p.LeaseWait, HeadOfLine: p.HeadOfLine, Circuit: p.Circuit, EventsReceived: p.EventsReceived,
			LastEventTime: p.LastEventTime, CheckpointTime: p.CheckpointTime, CheckpointFailure: p.CheckpointFailure, CheckpointLag: p.CheckpointLag,
			Waits: p.Waits,
		})
	}
	out.StreamOpen = anyOpen && allOpen
	return out
}

// HeadOfLine is the oldest event a trigger holds that is not yet delivered
// or dead-lettered: under strict ordering every later event waits for it,
// and the checkpoint cannot pass it in any ordering.
type HeadOfLine struct {
	// WebhookID is the webhook-id its requests carry (look it up with
	// `changehook history --webhook-id`).
	WebhookID string `json:"webhook_id"`
	// Part, while the endpoint's refusal of a batch as too large (413) has
	// it sent in parts, is the part being sent: Attempts and the Last*
	// fields describe its requests (nil otherwise).
	Part *HeadOfLinePart `json:"part,omitempty"`
	// EventAge is how long ago changehook read the event.
	EventAge time.Duration `json:"event_age_ns"`
	// Attempts is the number of attempts made (0: not yet tried).
	Attempts int `json:"attempts"`
	// LastStatus is the HTTP status of the last attempt (0: none, or no
	// response).
	LastStatus int `json:"last_status,omitempty"`
	// LastReason is the last attempt's failure reason ("" after a success
	// or before the first attempt).
	LastReason string `json:"last_reason,omitempty"`
	// LastError is the last attempt's error.
	LastError string `json:"last_error,omitempty"`
	// NextAttemptAt is when the next attempt is due (zero when none is
	// scheduled, as while it waits for the circuit's probe).
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	// WaitsForProbe is, while the trigger's circuit is open and another
	// delivery is its probe, the webhook-id of that delivery
	// (Circuit.Probe, whose attempts and next try Circuit shows): this
	// event makes no attempt until a probe succeeds and closes the
	// circuit. "" otherwise; when this event is the probe, Attempts and
	// NextAttemptAt are the probe's.
	WaitsForProbe string `json:"waits_for_probe,omitempty"`
	// Permanent reports that the last failure is permanent by the retry
	// policy (a trigger without dead letters retries it anyway).
	Permanent bool `json:"permanent,omitempty"`
	// DeadLetter, when set, says the event was given up on but its dead
	// letter cannot be stored (the trigger is then retrying): the event
	// holds the checkpoint until it is stored.
	DeadLetter *DeadLetterFailure `json:"dead_letter_failure,omitempty"`
}

// HeadOfLinePart is the part of a batch being sent in parts.
type HeadOfLinePart struct {
	// WebhookID is the webhook-id of the part's requests.
	WebhookID string `json:"webhook_id"`
	// FirstEvent is the part's first event's place in the batch, from 1.
	FirstEvent int `json:"first_event"`
	// Events is how many events the part carries.
	Events int `json:"events"`
}

// DeadLetterFailure is a dead letter that could not be stored yet.
type DeadLetterFailure struct {
	// WebhookID is the dead letter's (the event's own webhook-id; for a
	// batch, one of its events').
	WebhookID string `json:"webhook_id"`
	// Error is the state database's last error.
	Error string `json:"error"`
	// Reason is its class: too_large, unavailable, unauthorized,
	// lease_lost or other (dispatcher.DeadLetterFailReasons).
	Reason string `json:"reason"`
	// Since is when storing it first failed.
	Since time.Time `json:"since"`
	// Tries is how many tries failed.
	Tries int `json:"tries"`
	// NextTryAt is when it is tried again.
	NextTryAt time.Time `json:"next_try_at,omitzero"`
}
