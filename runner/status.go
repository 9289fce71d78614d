package runner

import "time"

// State is a trigger's lifecycle state.
type State string

// Trigger states.
const (
	// StateStarting: loading the checkpoint and opening the stream.
	StateStarting State = "starting"
	// StateRunning: the change stream is open and being read.
	StateRunning State = "running"
	// StateFailed: the stream could not be opened or ended with an error.
	// With Retrying the watch loop tries again after a backoff; otherwise
	// (history lost, invalidated, a pipeline the server rejects) it stays
	// failed until the configuration or checkpoint is fixed and changehook
	// restarted.
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
	// StreamOpen reports whether the change stream is open.
	StreamOpen bool `json:"stream_open"`
	// Retrying is true in StateFailed when the watch loop will try again.
	Retrying bool `json:"retrying,omitempty"`
	// Paused is set in StatePaused.
	Paused *PauseInfo `json:"paused,omitempty"`
	// LastError is the reason of the last failure ("" if none).
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// EventsReceived counts events handed to the dispatcher since start.
	EventsReceived uint64 `json:"events_received"`
	// LastEventTime is the clusterTime of the newest event received.
	LastEventTime time.Time `json:"last_event_time,omitzero"`
	// CheckpointTime is when the checkpoint was last saved.
	CheckpointTime time.Time `json:"checkpoint_time,omitzero"`
	// CheckpointLag is the age of the oldest received event not yet covered
	// by the saved checkpoint (0: caught up).
	CheckpointLag time.Duration `json:"checkpoint_lag_ns"`
	// Deliveries counts finished deliveries by outcome (delivered,
	// dead_lettered, failed). Filled in by Runner.Status (never nil there);
	// a Watcher's own Status leaves it nil.
	Deliveries map[string]uint64 `json:"deliveries"`
	// Attempts counts delivery attempts by result ("ok" or a failure
	// reason). Filled in by Runner.Status, like Deliveries.
	Attempts map[string]uint64 `json:"attempts"`
	// DeadLetters counts the dead letters stored since start.
	DeadLetters uint64 `json:"dead_letters"`
	// InFlight is the number of deliveries being attempted now.
	InFlight int64 `json:"in_flight"`
}
