package runner

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
)

// Why a checkpoint save failed: the reason label of
// changehook_checkpoint_save_failures_total and
// TriggerStatus.CheckpointFailure.Reason (the values of the dead letters'
// dispatcher.DeadLetterFail* reasons).
const (
	// CheckpointFailUnavailable: the state database did not answer in
	// time or cannot be reached (network, no primary, an election, a
	// shutdown).
	CheckpointFailUnavailable = dispatcher.DeadLetterFailUnavailable
	// CheckpointFailUnauthorized: changehook's user may not write the
	// checkpoints (it needs readWrite on the state database).
	CheckpointFailUnauthorized = dispatcher.DeadLetterFailUnauthorized
	// CheckpointFailLeaseLost: this cluster member no longer holds the
	// unit's lease (a newer epoch fenced the save out).
	CheckpointFailLeaseLost = dispatcher.DeadLetterFailLeaseLost
	// CheckpointFailOther: anything else (a validator on the checkpoints
	// collection, disk full, …); the error says what.
	CheckpointFailOther = dispatcher.DeadLetterFailOther
)

// CheckpointFailReasons are the CheckpointFail* values, every value the
// reason label can take.
var CheckpointFailReasons = []string{CheckpointFailUnavailable, CheckpointFailUnauthorized, CheckpointFailLeaseLost, CheckpointFailOther}

// CheckpointFailure says that a running trigger's checkpoint saves fail
// since Since: its deliveries go on (nothing is lost), but the saved
// checkpoint stays where the last successful save put it
// (TriggerStatus.CheckpointTime), so a restart would deliver again every
// event since then, and the window grows while saves keep failing.
type CheckpointFailure struct {
	// Error is the state database's last error.
	Error string `json:"error"`
	// Reason is its class: unavailable, unauthorized, lease_lost or other
	// (CheckpointFailReasons).
	Reason string `json:"reason"`
	// Since is the first failed save after the last successful one,
	// also when the trigger was restarted in between (a pause and resume,
	// a reload) and loaded the checkpoint that save left.
	Since time.Time `json:"since"`
	// Tries is how many saves failed since then.
	Tries int `json:"tries"`
	// LastSavedAt is when the last successful save was written by this
	// process's watcher of the trigger, the current one or one before a
	// restart (zero: none yet; the checkpoint it loaded, if any, is older).
	LastSavedAt time.Time `json:"last_saved_at,omitzero"`

	// at is when the last save failed (the status's LastErrorAt while it
	// shows Error).
	at time.Time
}

// checkpointFailReason classifies a failed checkpoint save.
func checkpointFailReason(err error) string {
	if errors.Is(err, ErrFenced) {
		return CheckpointFailLeaseLost
	}
	r := store.WriteFailReason(err)
	switch r {
	case CheckpointFailUnavailable, CheckpointFailUnauthorized, CheckpointFailLeaseLost:
		return r
	}
	return CheckpointFailOther
}

// withCheckpointFailure shows a running trigger whose checkpoint saves
// fail (st.CheckpointFailure) as StateRetrying since the first failed save
// (or its own earlier retrying since), so that /readyz reports it after
// admin.retrying_unready_after, with a way out naming the cause. Its
// deliveries go on meanwhile; only the window a restart would deliver
// again grows. LastError is the failed save's while it is the newest
// failure (in any state but StateFailed, whose LastError says why it
// failed), and only while the saves fail: like a failing delivery, an open
// circuit or a dead letter that cannot be stored, it is gone once a save
// succeeds. A trigger in any other state is left alone otherwise.
func withCheckpointFailure(st TriggerStatus, key string) TriggerStatus {
	f := st.CheckpointFailure
	if f == nil {
		return st
	}
	if st.State != StateFailed && (st.State == StateRunning || st.LastError == "" || !f.at.Before(st.LastErrorAt)) {
		st.LastError, st.LastErrorAt = saveErrorText(f.Error), f.at
	}
	if st.State != StateRunning && st.State != StateRetrying {
		return st
	}
	if st.State == StateRunning {
		st.State, st.Since, st.Retrying = StateRetrying, f.Since, true
	} else if st.Since.IsZero() || f.Since.Before(st.Since) {
		st.Since = f.Since
	}
	if st.WayOut == "" {
		st.WayOut = checkpointWayOut(*f, key)
	}
	return st
}

// checkpointWayOut is the way out of unit key whose checkpoint saves fail
// with f.
func checkpointWayOut(f CheckpointFailure, key string) string {
	var fix string
	switch f.Reason {
	case CheckpointFailUnauthorized:
		fix = "Grant changehook's user readWrite on the state database (state.database; at least its checkpoints collection): " +
			"it may not write the checkpoints; the next save then succeeds by itself"
	case CheckpointFailUnavailable:
		fix = "Make the state database reachable: it does not answer (network, no primary, an election, a shutdown); " +
			"the next save then succeeds by itself"
	case CheckpointFailLeaseLost:
		fix = "This member lost the lease of " + key + " (a higher epoch than its own is at the checkpoint): it stops the unit " +
			"and, if it is still the one to run it, takes the lease again once its own lapses, at an epoch above the checkpoint's; " +
			"if it does not stop, run `changehook cluster status` to see who holds it"
	default:
		fix = "Make the state database take the write (no validator refusing it on the checkpoints collection, space); " +
			"the next save then succeeds by itself"
	}
	what := "deliveries continue and nothing is lost, but the checkpoint stays at the last successful save, so a restart delivers again every event since then"
	if f.Reason == CheckpointFailLeaseLost {
		what = "this member no longer delivers; nothing is lost, but the checkpoint stays at the last successful save, " +
			"so the member that runs the unit next delivers again every event since then"
	}
	return fmt.Sprintf("checkpoint saves of %s fail since %s (%s; %s): %s. %s",
		key, f.Since.UTC().Format(time.RFC3339), f.Reason, failedTries(f.Tries), what, fix)
}

// claimRefusedWayOut is the way out of unit key whose checkpoint a newer
// lease epoch claimed than the one this member loads it with.
func claimRefusedWayOut(key string) string {
	return "a higher lease epoch than this member's is at the checkpoint of " + key + " (another member took it over, " +
		"or a former holder saved it after the state database lost its documents): this member stops the unit and, " +
		"if it is still the one to run it, takes the lease again once its own lapses, at an epoch above the checkpoint's. " +
		"If it keeps retrying, run `changehook cluster status` to see the lease"
}

// saveErrorText is a failed checkpoint save's error as LastError shows it:
// prefixed "save checkpoint" once (the store's errors already are).
func saveErrorText(err string) string {
	if strings.HasPrefix(err, "save checkpoint") {
		return err
	}
	return "save checkpoint: " + err
}
