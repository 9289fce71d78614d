package runner

import "github.com/changehook/changehook/dispatcher"

// EndpointLimiters exposes the endpoints' shared rate limiters to the
// external tests.
func (r *Runner) EndpointLimiters() *dispatcher.Limiters { return r.limits }
