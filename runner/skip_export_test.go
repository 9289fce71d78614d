package runner

import (
	"context"
	"fmt"
)

// SkipAfterLooking is Skip with between called once the skip has looked
// at the trigger (stuckOn) and before it stops it, so that a test can
// change what happens in between.
func (r *Runner) SkipAfterLooking(ctx context.Context, name, by string, between func()) (string, error) {
	s, err := r.slot(name)
	if err != nil {
		return "", err
	}
	held, running, notStuck := r.stuckOn(s, "")
	between()
	sk, _, err := r.skipHeld(ctx, s, by, "", "", held, running, notStuck)
	if err != nil {
		return "", fmt.Errorf("skip event %s: %w", name, err)
	}
	return sk.webhookID, nil
}
