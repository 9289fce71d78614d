package runner

import "context"

// ReadControlsNow makes the controls goroutine read the configuration's
// control documents again, and returns once it has applied what it read
// (or ctx ends): the goroutine takes one poke at a time, so the third poke
// is taken only after the first one's reading was applied.
func (r *Runner) ReadControlsNow(ctx context.Context) error {
	for range 3 {
		select {
		case r.ctlPoke <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
