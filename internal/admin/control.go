package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// Controller applies runtime control requests; *runner.Runner implements it
// (through the state database, so the process running the trigger applies
// them).
type Controller interface {
	// RequestControl records req for the trigger and waits until it is
	// applied or ctx ends; it returns the result's message. When ctx ends
	// after the request was recorded its error is a *runner.PendingError
	// (answered 202: it applies later); one that could not be recorded
	// wraps runner.ErrNotRecorded (answered 503).
	RequestControl(ctx context.Context, name, reason string, req store.ControlRequest) (string, error)
}

// controlWaitMargin is how much of the write timeout a control call
// leaves for reading its body and writing its answer.
const controlWaitMargin = 5 * time.Second

// controlWait returns how long a control call waits for its request to be
// applied before answering 202 Accepted, for the server's write timeout
// writeTimeout (which runs from the end of the request's headers): the
// write timeout less controlWaitMargin, but at least half of it, so that
// the 202 is written before the write deadline whatever the write timeout
// (the default 30 s: 25 s; 4 s: 2 s). Waiting as long as the write timeout
// answered nothing: the client saw the connection closed.
func controlWait(writeTimeout time.Duration) time.Duration {
	return writeTimeout - min(controlWaitMargin, writeTimeout/2)
}

// maxControlBody bounds a control request's JSON body.
const maxControlBody = 64 << 10

// ControlResponse is the body of a successful control call.
type ControlResponse struct {
	// Trigger is the trigger name.
	Trigger string `json:"trigger"`
	// Applied is false when no running changehook applied the request
	// within the wait (it stays recorded and applies later).
	Applied bool `json:"applied"`
	// Message says what was done, or that nothing changed (a resume of
	// a trigger neither paused nor failed: "not paused or failed (state
	// running), so nothing changed").
	Message string `json:"message"`
}

// authorizer decides whether a mutating call may proceed.
type authorizer struct {
	token    *tokenAuth
	loopback bool
}

// allow reports whether r may mutate; when not, it writes the error:
// without a configured token, only a loopback listener takes such calls;
// with one, r must present it (the server's middleware already checked
// that: this keeps the routes safe on their own).
func (a authorizer) allow(w http.ResponseWriter, r *http.Request) bool {
	if a.token == nil || !a.token.isSet {
		if a.loopback {
			return true
		}
		writeError(w, http.StatusForbidden, "mutating calls need admin.token when the admin server listens beyond loopback")
		return false
	}
	if !a.token.ok(r) {
		a.token.deny(w, r)
		return false
	}
	return true
}

// isLoopback reports whether addr's host is a loopback address.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// The bodies of the control routes, one type per control: a field of
// another type (another control's) is unknown to it and refused.
type (
	// pauseBody is POST /api/triggers/{name}/pause's body.
	pauseBody struct {
		// Reason says why (shown in the status).
		Reason string `json:"reason"`
	}
	// resumeBody is POST /api/triggers/{name}/resume's body.
	resumeBody struct {
		// From is where to continue: "" (the checkpoint), "now" or an RFC
		// 3339 time.
		From string `json:"from"`
	}
	// skipBody is POST /api/triggers/{name}/skip's body.
	skipBody struct {
		// WebhookID is the event (or batch) the skip is meant for; ""
		// any.
		WebhookID string `json:"webhook_id"`
	}
	// redeliverBody is POST /api/triggers/{name}/redeliver's body.
	redeliverBody struct {
		// Since is the RFC 3339 time to redeliver from.
		Since string `json:"since"`
	}
)

// controlRoutes registers POST /api/triggers/{name}/pause|resume|skip|redeliver,
// each waiting at most wait for its request to be applied.
func controlRoutes(mux *http.ServeMux, c Controller, auth authorizer, wait time.Duration) {
	controlRoute(mux, c, auth, wait, store.RequestPause, func(b pauseBody) (store.ControlRequest, string, error) {
		return store.ControlRequest{Kind: store.RequestPause}, b.Reason, nil
	})
	controlRoute(mux, c, auth, wait, store.RequestResume, func(b resumeBody) (store.ControlRequest, string, error) {
		if _, err := runner.ParseResumeFrom(b.From); err != nil {
			return store.ControlRequest{}, "", errors.New(`from must be "", "now" or an RFC 3339 time`)
		}
		return store.ControlRequest{Kind: store.RequestResume, From: b.From}, "", nil
	})
	controlRoute(mux, c, auth, wait, store.RequestSkip, func(b skipBody) (store.ControlRequest, string, error) {
		return store.ControlRequest{Kind: store.RequestSkip, WebhookID: b.WebhookID}, "", nil
	})
	controlRoute(mux, c, auth, wait, store.RequestRedeliver, func(b redeliverBody) (store.ControlRequest, string, error) {
		at, err := time.Parse(time.RFC3339, b.Since)
		if err != nil {
			return store.ControlRequest{}, "", errors.New("since must be an RFC 3339 time such as 2025-01-31T12:00:00Z")
		}
		return store.ControlRequest{Kind: store.RequestRedeliver, Since: at}, "", nil
	})
}

// controlRoute registers POST /api/triggers/{name}/kind: once authorised,
// its body (empty, or a JSON object of at most 64 KiB) is decoded into a
// B, refusing any field B does not have with 400, and build turns it into
// the request and the pause reason, which c applies; a request recorded
// but not applied within wait is answered 202, one that could not even be
// recorded 503.
func controlRoute[B any](mux *http.ServeMux, c Controller, auth authorizer, wait time.Duration, kind string, build func(b B) (store.ControlRequest, string, error)) {
	mux.HandleFunc("POST /api/triggers/{name}/"+kind, func(w http.ResponseWriter, r *http.Request) {
		if !auth.allow(w, r) {
			return
		}
		var b B
		if status, err := decodeControlBody(r.Body, kind, &b); err != nil {
			writeError(w, status, err.Error())
			return
		}
		req, reason, err := build(b)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		req.By = "api"
		name := r.PathValue("name")
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		msg, err := c.RequestControl(ctx, name, reason, req)
		var pending *runner.PendingError
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, ControlResponse{Trigger: name, Applied: true, Message: msg})
		case errors.Is(err, runner.ErrUnknownTrigger):
			writeError(w, http.StatusNotFound, err.Error())
		case errors.As(err, &pending) && r.Context().Err() == nil:
			// Recorded: the process that runs the trigger applies it later.
			writeJSON(w, http.StatusAccepted, ControlResponse{Trigger: name, Message: err.Error()})
		case errors.Is(err, runner.ErrNotRecorded) || errors.Is(err, context.DeadlineExceeded):
			// Nothing recorded (the wait ran out before it was stored,
			// or while checking it): nothing will apply it.
			writeError(w, http.StatusServiceUnavailable, err.Error())
		default:
			writeError(w, http.StatusConflict, err.Error())
		}
	})
}

// decodeControlBody reads body, at most maxControlBody bytes, and decodes
// it into b, a pointer to control kind's body struct, refusing the fields
// the struct does not have and anything after the JSON value
// (decodeJSONBody); an empty body leaves b as it is. It returns
// the status to answer with and an error naming kind and the fields it
// takes, or a nil error.
func decodeControlBody(body io.Reader, kind string, b any) (int, error) {
	data, err := io.ReadAll(io.LimitReader(body, maxControlBody+1))
	if err != nil {
		return http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if len(data) > maxControlBody {
		return http.StatusRequestEntityTooLarge, errors.New("body larger than 64 KiB")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return http.StatusOK, nil
	}
	fields := jsonFields(reflect.TypeOf(b).Elem())
	for i, f := range fields {
		fields[i] = fmt.Sprintf("%q: …", f)
	}
	if err := decodeJSONBody(data, b, "{"+strings.Join(fields, ", ")+"}"); err != nil {
		return http.StatusBadRequest, fmt.Errorf("%s: %w", kind, err)
	}
	return http.StatusOK, nil
}

// jsonFields names the JSON fields of struct type t, for messages.
func jsonFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case !f.IsExported() || name == "-":
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	return names
}
