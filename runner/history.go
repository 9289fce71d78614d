package runner

import (
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
)

// SetHistory makes w the delivery history's writer from now on (nil turns
// the history off) and returns the writer it replaces (nil when there was
// none), for the caller to close: once SetHistory returns, no record is
// handed to the old writer any more, so closing it flushes everything it
// was given. Every running trigger's dispatcher, Skip, Resume from a
// position and the observers of HistoryObserver follow at their next
// attempt or record; nothing is restarted. Options.History is the writer
// before the first call.
func (r *Runner) SetHistory(w *store.HistoryWriter) (old *store.HistoryWriter) {
	r.histMu.Lock()
	defer r.histMu.Unlock()
	old, r.hist = r.hist, w
	r.histOn.Store(w != nil)
	return old
}

// HistoryOn reports whether a history writer is in use.
func (r *Runner) HistoryOn() bool { return r.histOn.Load() }

// recordHistory hands rec to the writer in use, if any, without waiting
// (HistoryWriter.Record).
func (r *Runner) recordHistory(rec store.AttemptRecord) {
	r.histMu.RLock()
	defer r.histMu.RUnlock()
	if r.hist != nil {
		r.hist.Record(rec)
	}
}

// HistoryObserver returns a dispatcher observer recording every attempt of
// trigger (partition "" when not partitioned) as a record of kind asked
// for by by (see store.HistoryWriter.Observer) into the writer in use at
// that attempt: none while the history is off, the new one after
// SetHistory. It never waits. The trigger dispatchers use it, and so do
// dead-letter replays through the admin API.
func (r *Runner) HistoryObserver(trigger, partition, kind, by string) func(dispatcher.Attempt) {
	return func(a dispatcher.Attempt) {
		r.histMu.RLock()
		defer r.histMu.RUnlock()
		if r.hist != nil {
			r.hist.RecordAttempt(&a, trigger, partition, kind, by)
		}
	}
}
