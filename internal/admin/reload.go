package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/changehook/changehook/runner"
)

// Reloader re-reads and applies the configuration file (the cli's reloader
// implements it): on a rejected file the running configuration stays and
// the error lists the problems.
type Reloader interface {
	// Reload reloads the configuration; why names the caller in the logs.
	// It must return within a bounded time of its own (the cli's bound is
	// two minutes), which may be longer than admin.write_timeout: POST
	// /api/reload waits for it, then has the write timeout to answer.
	Reload(ctx context.Context, why string) (runner.ReloadResult, error)
}

// ReloadProblems is implemented by a rejected reload's error: the
// configuration's problems as FILE:LINE:COL: message.
type ReloadProblems interface {
	error
	// ProblemList returns the problems.
	ProblemList() []string
}

// ReloadResponse is the body of POST /api/reload: what the reload did, or
// why it was rejected (then the running configuration stays).
type ReloadResponse struct {
	// Result is "success" or "failure".
	Result string `json:"result"`
	// ReloadResult is what the reload did (its lists are never null): set
	// on success, and on a failure while applying the configuration (what
	// it set out to do, none of which took effect); nil, so absent, when
	// the file was rejected.
	*runner.ReloadResult
	// Error says why the reload failed.
	Error string `json:"error,omitempty"`
	// Problems are the configuration's problems (FILE:LINE:COL: message).
	Problems []string `json:"problems,omitempty"`
}

// reloadRoute serves POST /api/reload: 200 with what changed, 422 with the
// problems when the file is rejected, 500 when applying it failed;
// authorised like the other mutating calls. Unlike the other calls, its
// work is not cut to fit writeTimeout (a reload cut short changes
// nothing, and stopping a changed trigger may rightly wait for its
// deliveries longer than that): the write timeout starts again once the
// reload is done, so its answer reaches the client.
func reloadRoute(mux *http.ServeMux, rl Reloader, auth authorizer, writeTimeout time.Duration) {
	mux.HandleFunc("POST /api/reload", func(w http.ResponseWriter, r *http.Request) {
		if !auth.allow(w, r) {
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Time{}) // Reload is bounded (see Reloader)
		res, err := rl.Reload(r.Context(), "POST /api/reload")
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, l := range []*[]string{&res.Added, &res.Removed, &res.Changed, &res.Unchanged} {
			if *l == nil {
				*l = []string{}
			}
		}
		if err == nil {
			writeJSON(w, http.StatusOK, ReloadResponse{Result: "success", ReloadResult: &res})
			return
		}
		resp := ReloadResponse{Result: "failure", Error: err.Error()}
		var rp ReloadProblems
		if errors.As(err, &rp) {
			resp.Problems = rp.ProblemList()
			writeJSON(w, http.StatusUnprocessableEntity, resp)
			return
		}
		resp.ReloadResult = &res
		writeJSON(w, http.StatusInternalServerError, resp)
	})
}
