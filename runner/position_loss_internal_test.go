package runner

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestPositionLossIsMarkedWhereTheFailureIsClassified: the failures that
// a resume from the checkpoint would meet again at once — history lost and
// a checkpoint's resume token not found in the stream — are marked as such
// by classifyLoss, not recognised by their status text; a unit failed so is
// what lostHistory reports, and a resume from its checkpoint is refused
// with the loss and the way out.
func TestPositionLossIsMarkedWhereTheFailureIsClassified(t *testing.T) {
	const notFound = `cannot resume stream; the resume token was not found. {_data: "8200"}`
	for _, tc := range []struct {
		name    string
		err     error
		want    positionLoss
		refusal string
	}{
		{name: "history lost", err: mongo.CommandError{Code: 286, Name: "ChangeStreamHistoryLost"}, want: positionHistoryLost,
			refusal: "refused: orders failed with history lost (its checkpoint is no longer in the oplog): resuming from the checkpoint would fail the same way at once, so it stays failed; the way out: "},
		{name: "invalid resume token", err: mongo.CommandError{Code: 260, Name: "InvalidResumeToken"}, want: positionHistoryLost,
			refusal: "refused: orders failed with history lost (its checkpoint is no longer in the oplog): resuming from the checkpoint would fail the same way at once, so it stays failed; the way out: "},
		{name: "resume token not found", err: mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError", Message: notFound}, want: positionNotFound,
			refusal: "refused: orders failed with its checkpoint's resume token not found in the change stream (the checkpoint does not belong to this collection or deployment): " +
				"resuming from the checkpoint would fail the same way at once, so it stays failed; the way out: "},
		{name: "other fatal error", err: mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError", Message: "_id changed"}, want: positionKept},
		{name: "invalidated", err: errInvalidated, want: positionKept},
		{name: "not a server error", err: errors.New("server selection timeout"), want: positionKept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trig := &triggers.Trigger{Name: "orders"}
			w := NewWatcher(trig, nil, nil, nil, WatcherOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			reason, wayOut, retry, lost := w.classifyLoss(tc.err, false)
			if lost != tc.want {
				t.Fatalf("classifyLoss(%v) loss = %d, want %d", tc.err, lost, tc.want)
			}
			// As Run records it.
			w.lost = lost
			w.setFailed(reason, wayOut, retry)
			s := &slot{t: trig, failed: !retry}
			s.last.Store(w)
			s.mu.Lock()
			gotWay, gotLoss, ok := s.lostHistory()
			s.mu.Unlock()
			if ok != (tc.want != positionKept) || gotLoss != tc.want {
				t.Fatalf("lostHistory = %v, %d; want %v, %d", ok, gotLoss, tc.want != positionKept, tc.want)
			}
			if !ok {
				return
			}
			if gotWay != wayOut {
				t.Errorf("lostHistory way out = %q, want the status's %q", gotWay, wayOut)
			}
			if got, want := lostHistoryRefusal("orders", gotLoss, gotWay).Error(), tc.refusal+wayOut; got != want {
				t.Errorf("refusal = %q\nwant %q", got, want)
			}
		})
	}
}
