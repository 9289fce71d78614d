package deadletter_test

import (
	"testing"

	"github.com/changehook/changehook/internal/connendpoint"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/triggers"
)

// TestReplayOfAnIDGivenTwice: a replay of ids naming one dead letter twice
// (the admin API's {"ids": [ID, ID]}, the CLI's `dlq replay ID ID`)
// replays it once and counts nothing failed.
func TestReplayOfAnIDGivenTwice(t *testing.T) {
	ctx, st := newStateStore(t)
	ep := connendpoint.Start(t)
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{{Name: "orders", Webhook: triggers.Webhook{URL: ep.URL}}}}
	id := putDeadLetter(t, ctx, st, "orders", 1)
	sum, err := newReplayer(st, cfg).Replay(ctx, deadletter.Selection{IDs: []string{id, id}}, nil)
	if err != nil || sum.Replayed != 1 || sum.Failed != 0 {
		t.Errorf("replay of ids [%s %s] = %+v, %v; want 1 replayed, 0 failed (as `dlq replay ID ID` answers)", id, id, sum, err)
	}
}
