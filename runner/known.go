package runner

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/changehook/changehook/store"
)

// knownCheckpoints is the checkpoint store of one unit's watcher that
// remembers, in the unit's slot, the position last saved or loaded: the
// slot outlives its watchers (pauses, stops, controls, reloads, leases
// lost and regained), so when the checkpoint vanished from the state
// database in between (its collection dropped, the document deleted), the
// next watcher writes that position again instead of starting at
// start_at, which would skip every change since it, such as the ones
// written during a pause. A checkpoint its lease holder removed (`checkpoints
// repartition` removes the old partitioning's, leaving their fences) did
// not vanish: it is not written again, so a member still configured with
// the old partitioning finds the new one's checkpoints and fails, instead
// of running the old partitioning beside the new one.
type knownCheckpoints struct {
	CheckpointStore
	s   *slot
	log *slog.Logger
	now func() time.Time
}

// LoadCheckpoint loads the checkpoint and remembers it. When there is none
// but the slot knows a position, it saves that position again (logging a
// warning that names it) and returns it, unless the wrapped store reports
// the checkpoint removed (removedReporter: it then returns none); a failed
// save or read is returned as the load's error, so the watcher retries it.
func (k knownCheckpoints) LoadCheckpoint(ctx context.Context, key string) (store.Checkpoint, bool, error) {
	cp, found, err := k.CheckpointStore.LoadCheckpoint(ctx, key)
	if err != nil {
		return cp, found, err
	}
	if found {
		k.remember(cp)
		return cp, true, nil
	}
	known := k.s.known.Load()
	if known == nil {
		return cp, false, nil
	}
	if rr, ok := k.CheckpointStore.(removedReporter); ok {
		removed, err := rr.CheckpointRemoved(ctx, key)
		if err != nil {
			return store.Checkpoint{}, false, fmt.Errorf("load checkpoint: %w", err)
		}
		if removed {
			k.log.Warn("the checkpoint was removed by its lease holder (checkpoints repartition), only its fence left: not saving again the position this process last saved or loaded",
				"position", knownPosition(*known), "saved_at", known.UpdatedAt)
			return cp, false, nil
		}
	}
	again := *known
	again.Trigger, again.UpdatedAt, again.Control = key, k.now(), ""
	if err := k.CheckpointStore.SaveCheckpoint(ctx, again); err != nil {
		return store.Checkpoint{}, false, fmt.Errorf("save again the checkpoint that vanished: %w", err)
	}
	k.log.Warn("the checkpoint vanished from the state database (its document or collection deleted); saved again the position this process last saved or loaded, instead of starting at start_at",
		"position", knownPosition(again), "saved_at", known.UpdatedAt)
	return again, true, nil
}

// removedReporter is implemented by checkpoint stores that tell a
// checkpoint its lease holder removed, only its fence left, from one that
// is absent (*store.Store, fencedCheckpoints).
type removedReporter interface {
	// CheckpointRemoved reports whether key's checkpoint was removed so
	// (store.Store.CheckpointRemoved).
	CheckpointRemoved(ctx context.Context, key string) (bool, error)
}

// SaveCheckpoint saves cp and, once it is written, remembers it.
func (k knownCheckpoints) SaveCheckpoint(ctx context.Context, cp store.Checkpoint) error {
	if err := k.CheckpointStore.SaveCheckpoint(ctx, cp); err != nil {
		return err
	}
	k.remember(cp)
	return nil
}

// TriggerCheckpoints lists the trigger's checkpoints under every
// partitioning when the wrapped store can (none otherwise).
func (k knownCheckpoints) TriggerCheckpoints(ctx context.Context, trigger string) ([]store.Checkpoint, error) {
	if l, ok := k.CheckpointStore.(TriggerCheckpointLister); ok {
		return l.TriggerCheckpoints(ctx, trigger)
	}
	return nil, nil
}

// remember records cp (a copy: the token may lie in a buffer that is
// reused) as the slot's known position.
func (k knownCheckpoints) remember(cp store.Checkpoint) {
	cp.Token = bytes.Clone(cp.Token)
	k.s.known.Store(&cp)
}

// knownPosition describes cp's position for the log: its cluster time, or
// the one its resume token opens with.
func knownPosition(cp store.Checkpoint) string {
	if !cp.ClusterTime.IsZero() {
		return fmt.Sprintf("cluster time %d.%d (%s)", cp.ClusterTime.T, cp.ClusterTime.I,
			time.Unix(int64(cp.ClusterTime.T), 0).UTC().Format(time.RFC3339))
	}
	if at, ok := TokenTime(cp.Token); ok {
		return at.UTC().Format(time.RFC3339) + " (resume token)"
	}
	return "a resume token of unknown time"
}
