package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// lostHistory reports how s failed permanently when its position was
// lost (history lost, or its checkpoint's resume token not found: see
// positionLoss), and returns the way out its status names: running it
// again from the same position fails the same way at once, so a resume
// from the checkpoint cannot help (only a resume from a position, a reload
// that changes the trigger, or, when no changehook runs it, `checkpoints
// reset`). ok is false when s did not fail so. s.mu must be held.
func (s *slot) lostHistory() (wayOut string, lost positionLoss, ok bool) {
	if !s.failedNow() || s.err.Load() != nil {
		return "", positionKept, false // not failed, or failed before a watcher started
	}
	w := s.last.Load()
	if w == nil {
		return "", positionKept, false
	}
	w.mu.Lock()
	st, lost := w.status, w.lost
	w.mu.Unlock()
	if st.State != StateFailed || st.Retrying || lost == positionKept {
		return "", positionKept, false
	}
	return st.WayOut, lost, true
}

// checkpointResumable reports whether the change stream of unit t resumes
// from its stored checkpoint now — it was moved since the unit failed with
// history lost (by a process that did not lift the failure here) — by
// opening the stream there and reading once, as openAt does for a time.
// It is false when there is no checkpoint (the unit starts at its
// start_at) and when the stream fails for any reason: the unit then stays
// as its status says.
func (r *Runner) checkpointResumable(ctx context.Context, t *triggers.Trigger) bool {
	cp, found, err := r.store.LoadCheckpoint(ctx, t.Key())
	if err != nil || !found {
		return false
	}
	return resumable(ctx, r.client, t, cp.Token)
}

// resumable reports whether t's change stream opens after token and reads
// once without an error.
func resumable(ctx context.Context, client *mongo.Client, t *triggers.Trigger, token bson.Raw) bool {
	opts := t.ChangeStreamOptions().SetResumeAfter(token).SetBatchSize(0).SetMaxAwaitTime(historyCheckAwait)
	cs, err := t.Watch(ctx, client, opts)
	if err != nil {
		return false
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	return readOnce(ctx, cs) == nil
}

// lostHistoryRefusal is the result of a resume from the checkpoint of unit
// key, which failed with its position lost (see lostHistory) and whose
// status names wayOut.
func lostHistoryRefusal(key string, lost positionLoss, wayOut string) error {
	return fmt.Errorf("refused: %s failed with %s: resuming from the checkpoint "+
		"would fail the same way at once, so it stays failed; the way out: %s", key, lost, wayOut)
}

// lostRedeliverRefusal is the result of a redeliver of unit key, which
// failed with its position lost (see lostHistory) and whose status names
// wayOut: the redeliver would keep that checkpoint when it is before since
// (kept), or move it back to since, and either way the unit would stay
// failed without delivering anything.
func lostRedeliverRefusal(key string, lost positionLoss, since time.Time, kept bool, wayOut string) error {
	what := "a redeliver keeps a checkpoint before " + timeText(since)
	if !kept {
		what = "a redeliver does not lift the failure"
	}
	return fmt.Errorf("refused: %s failed with %s: %s, so the trigger would stay failed "+
		"and deliver nothing; nothing was changed. The way out: %s (`changehook resume %s --from %s` delivers every change since then, the range before it skipped)",
		key, lost, what, wayOut, key, timeText(since))
}
