package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
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
	// applied or ctx ends; it returns the result's message.
	RequestControl(ctx context.Context, name, reason string, req store.ControlRequest) (string, error)
}

// controlWait bounds how long a control call waits for the request to be
// applied before answering 202 Accepted.
const controlWait = 30 * time.Second

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
	token    string
	loopback bool
}

// allow reports whether r may mutate; when not, it writes the error.
func (a authorizer) allow(w http.ResponseWriter, r *http.Request) bool {
	if a.token == "" {
		if a.loopback {
			return true
		}
		writeError(w, http.StatusForbidden, "mutating calls need admin.token when the admin server listens beyond loopback")
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="changehook"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
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

// controlRoutes registers POST /api/triggers/{name}/pause|resume|skip|redeliver.
func controlRoutes(mux *http.ServeMux, c Controller, auth authorizer) {
	type body struct {
		Reason    string `json:"reason"`
		From      string `json:"from"`
		Since     string `json:"since"`
		WebhookID string `json:"webhook_id"`
	}
	// handle registers kind's route; fields are the body fields it takes
	// (a field of another control is refused, not ignored).
	handle := func(kind string, fields []string, build func(b body) (store.ControlRequest, string, error)) {
		mux.HandleFunc("POST /api/triggers/{name}/"+kind, func(w http.ResponseWriter, r *http.Request) {
			if !auth.allow(w, r) {
				return
			}
			var b body
			data, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody+1))
			if err != nil {
				writeError(w, http.StatusBadRequest, "read body: "+err.Error())
				return
			}
			if len(data) > maxControlBody {
				writeError(w, http.StatusRequestEntityTooLarge, "body larger than 64 KiB")
				return
			}
			if len(strings.TrimSpace(string(data))) > 0 {
				dec := json.NewDecoder(strings.NewReader(string(data)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&b); err != nil {
					writeError(w, http.StatusBadRequest, "body: "+err.Error())
					return
				}
				var given map[string]json.RawMessage
				_ = json.Unmarshal(data, &given) // decoded above: an object
				for f := range given {
					if !slices.ContainsFunc(fields, func(k string) bool { return strings.EqualFold(k, f) }) { // as json matches names
						writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %s takes no field %q (its fields: %s)", kind, f, strings.Join(fields, ", ")))
						return
					}
				}
			}
			req, reason, err := build(b)
			if err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			req.By = "api"
			name := r.PathValue("name")
			ctx, cancel := context.WithTimeout(r.Context(), controlWait)
			defer cancel()
			msg, err := c.RequestControl(ctx, name, reason, req)
			switch {
			case err == nil:
				writeJSON(w, http.StatusOK, ControlResponse{Trigger: name, Applied: true, Message: msg})
			case errors.Is(err, runner.ErrUnknownTrigger):
				writeError(w, http.StatusNotFound, err.Error())
			case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
				writeJSON(w, http.StatusAccepted, ControlResponse{Trigger: name, Message: err.Error()})
			default:
				writeError(w, http.StatusConflict, err.Error())
			}
		})
	}
	handle(store.RequestPause, []string{"reason"}, func(b body) (store.ControlRequest, string, error) {
		return store.ControlRequest{Kind: store.RequestPause}, b.Reason, nil
	})
	handle(store.RequestResume, []string{"from"}, func(b body) (store.ControlRequest, string, error) {
		if _, err := runner.ParseResumeFrom(b.From); err != nil {
			return store.ControlRequest{}, "", errors.New(`from must be "", "now" or an RFC 3339 time`)
		}
		return store.ControlRequest{Kind: store.RequestResume, From: b.From}, "", nil
	})
	handle(store.RequestSkip, []string{"webhook_id"}, func(b body) (store.ControlRequest, string, error) {
		return store.ControlRequest{Kind: store.RequestSkip, WebhookID: b.WebhookID}, "", nil
	})
	handle(store.RequestRedeliver, []string{"since"}, func(b body) (store.ControlRequest, string, error) {
		at, err := time.Parse(time.RFC3339, b.Since)
		if err != nil {
			return store.ControlRequest{}, "", errors.New("since must be an RFC 3339 time such as 2025-01-31T12:00:00Z")
		}
		return store.ControlRequest{Kind: store.RequestRedeliver, Since: at}, "", nil
	})
}
