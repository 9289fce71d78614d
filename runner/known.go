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
// written during a pause.
type knownCheckpoints struct {
	CheckpointStore
	s   *slot
	log *slog.Logger
	now func() time.Time
}

// LoadCheckpoint loads the checkpoint and remembers it. When there is none
// but the slot knows a position, it saves that position again (logging a
// warning that names it) and returns it; a failed save is returned as the
// load's error, so the watcher retries it.
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
	again := *known
	again.Trigger, again.UpdatedAt, again.Control = key, k.now(), ""
	if err := k.CheckpointStore.SaveCheckpoint(ctx, again); err != nil {
		return store.Checkpoint{}, false, fmt.Errorf("save again the checkpoint that vanished: %w", err)
	}
	k.log.Warn("the checkpoint vanished from the state database (its document or collection deleted); saved again the position this process last saved or loaded, instead of starting at start_at",
		"position", knownPosition(again), "saved_at", known.UpdatedAt)
	return again, true, nil
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
