package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/admin/console"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// DeadLetterOps replays and purges dead letters for the admin API; the CLI
// wires one on deadletter.Replayer and deadletter.Purge.
type DeadLetterOps interface {
	// Replay replays the selected dead letters until done or ctx ends.
	Replay(ctx context.Context, sel deadletter.Selection) (deadletter.Summary, error)
	// Purge deletes the selected dead letters until done or ctx ends and
	// returns how many it deleted.
	Purge(ctx context.Context, sel deadletter.Selection) (int64, error)
}

// DeadLetterCounter recounts the triggers' current dead letters (the
// changehook_dead_letters gauge and /api/triggers' dead_letters_current);
// *runner.Runner implements it. The replay and purge calls use it before
// they answer, so that the same request cycle sees the new count.
type DeadLetterCounter interface {
	// RecountDeadLetters reads the counts of the named triggers (every
	// trigger when none is named) now and returns once they show.
	RecountDeadLetters(ctx context.Context, triggers ...string) error
}

// recountWait bounds the recount after a replay or purge; it gets its own
// time, since the call may have used its whole budget.
const recountWait = 5 * time.Second

// deadLetterTimes splits a replay or purge call's time for the server's
// write timeout writeTimeout (from the end of the request's headers): the
// work and the recount after it together end when a control call's wait
// would (controlWait), so the answer is written before the write
// deadline; the recount gets a fifth at most (the default 30 s: 20 s of
// work and 5 s of recount). A call whose work did not finish answers done:
// false and is called again to continue.
func deadLetterTimes(writeTimeout time.Duration) (work, recount time.Duration) {
	total := controlWait(writeTimeout)
	recount = min(recountWait, total/5)
	return total - recount, recount
}

// Dead-letter API bounds.
const (
	// deadLetterPageDefault and deadLetterPageMax bound ?limit=.
	deadLetterPageDefault = 100
	deadLetterPageMax     = 1000
)

// DeadLetterJSON is a dead letter in the API. Event (GET by id only) and
// DocumentKey are relaxed Extended JSON.
type DeadLetterJSON struct {
	ID             string          `json:"id"`
	Trigger        string          `json:"trigger"`
	OperationType  string          `json:"operation_type,omitempty"`
	DocumentKey    json.RawMessage `json:"document_key,omitempty"`
	Attempts       int             `json:"attempts"`
	LastStatus     int             `json:"last_status,omitempty"`
	LastReason     string          `json:"last_reason,omitempty"`
	LastError      string          `json:"last_error,omitempty"`
	FirstAttemptAt time.Time       `json:"first_attempt_at"`
	DeadLetteredAt time.Time       `json:"dead_lettered_at"`
	LastResponse   string          `json:"last_response,omitempty"`
	Event          json.RawMessage `json:"event,omitempty"`
	// Trimmed says what was left out to store it ("response" or "event",
	// see dispatcher.DeadLetter.Trimmed), absent when nothing was;
	// EventSize is the size of an event not kept, in bytes; Note explains
	// both, and for "event" why it cannot be replayed and what to do.
	Trimmed   string `json:"trimmed,omitempty"`
	EventSize int    `json:"event_size,omitempty"`
	Note      string `json:"note,omitempty"`
	// SkippedBy says who dead-lettered the event with a skip ("cli",
	// "api"; see dispatcher.DeadLetter.SkippedBy), absent for the
	// dispatcher's own dead letters.
	SkippedBy string `json:"skipped_by,omitempty"`
}

// DeadLetterPage is the body of GET /api/deadletters.
type DeadLetterPage struct {
	// DeadLetters are ordered by trigger, then oldest first.
	DeadLetters []DeadLetterJSON `json:"dead_letters"`
	// Next is the ?after= of the next page ("" on the last page).
	Next string `json:"next,omitempty"`
}

// DeadLetterReplayResult is the body of a replay call.
type DeadLetterReplayResult struct {
	// Replayed were delivered and deleted; Failed were not delivered and
	// stay dead-lettered.
	Replayed int `json:"replayed"`
	Failed   int `json:"failed"`
	// Reasons say why the Failed ones failed: per reason a count, the
	// first ids, the attempts made (none: the dead letters are unchanged)
	// and how many dead letters record them (deadletter.Summary.Reasons;
	// bounded, and never quoting a webhook's URL or an endpoint's answer).
	Reasons []deadletter.Reason `json:"reasons,omitempty"`
	// Next, when the call stopped before the end (done false), is where
	// the next call continues: send it as "after" with the same trigger
	// or all, so that it goes past the dead letters this one handled,
	// those that failed included.
	Next string `json:"next,omitempty"`
	DeadLetterCallEnd
}

// DeadLetterPurgeResult is the body of a purge call.
type DeadLetterPurgeResult struct {
	Deleted int64 `json:"deleted"`
	DeadLetterCallEnd
}

// DeadLetterCallEnd says how a replay or purge call ended.
type DeadLetterCallEnd struct {
	// Done is false when the call stopped after its time budget (or the
	// state database failed: see Error); call again to continue.
	Done  bool   `json:"done"`
	Error string `json:"error,omitempty"`
}

// end records how the call ended: err is its error (nil: done).
func (e *DeadLetterCallEnd) end(err error) {
	e.Done = err == nil
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		e.Error = err.Error()
	}
}

func extJSON(raw bson.Raw) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	b, err := bson.MarshalExtJSON(raw, false, false)
	if err != nil {
		return nil
	}
	return b
}

func deadLetterJSON(dl store.StoredDeadLetter, full bool) DeadLetterJSON {
	out := DeadLetterJSON{ID: dl.ID, Trigger: dl.Trigger, Attempts: dl.Attempts, LastStatus: dl.LastStatus,
		LastReason: dl.LastReason, LastError: dl.LastError, FirstAttemptAt: dl.FirstAttemptAt, DeadLetteredAt: dl.DeadLetteredAt,
		Trimmed: dl.Trimmed, EventSize: dl.EventSize, Note: dl.TrimmedNote(), SkippedBy: dl.SkippedBy}
	if len(dl.Event) > 0 {
		out.OperationType, _ = dl.Event.Lookup("operationType").StringValueOK()
		if key, ok := dl.Event.Lookup("documentKey").DocumentOK(); ok {
			out.DocumentKey = extJSON(key)
		}
	}
	if full {
		out.LastResponse = dl.LastResponse
		out.Event = extJSON(dl.Event)
	}
	return out
}

// deadLetterRoutes registers GET /api/deadletters, GET
// /api/deadletters/{id} (with st) and POST /api/deadletters/replay|purge
// (with ops, authorised as the control calls). A trigger that is neither
// in config's configuration nor named by a dead letter in st is answered
// 404 by the listing and by a replay or purge of {"trigger": NAME}.
func deadLetterRoutes(mux *http.ServeMux, st console.Store, ops DeadLetterOps, counter DeadLetterCounter, config func() *triggers.Config,
	auth authorizer, log *slog.Logger, writeTimeout time.Duration) {
	work, recount := deadLetterTimes(writeTimeout)
	// knownTrigger is recordedTriggerAnswered for the dead letters of
	// name; without st the records cannot be asked, so any name is taken.
	knownTrigger := func(ctx context.Context, w http.ResponseWriter, name string) bool {
		if st == nil {
			return true
		}
		return recordedTriggerAnswered(w, config, name, "dead letters", false, func() (bool, error) {
			dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: name, Limit: 1, Summary: true})
			return len(dls) > 0, err
		})
	}
	if st != nil {
		mux.HandleFunc("GET /api/deadletters", func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			f := store.DeadLetterFilter{Trigger: q.Get("trigger"), Limit: deadLetterPageDefault, Summary: true}
			if s := q.Get("limit"); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 || n > deadLetterPageMax {
					writeError(w, http.StatusBadRequest, "limit must be a number from 1 to 1000")
					return
				}
				f.Limit = n
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			if !knownTrigger(ctx, w, f.Trigger) {
				return
			}
			if after := q.Get("after"); after != "" {
				if store.IsDeadLetterCursor(after) {
					c, err := store.ParseDeadLetterCursor(after)
					if err != nil {
						writeError(w, http.StatusBadRequest, "after: "+err.Error())
						return
					}
					f.After = c
				} else {
					dl, ok, err := st.GetDeadLetter(ctx, after)
					if err != nil {
						writeError(w, http.StatusServiceUnavailable, err.Error())
						return
					}
					if !ok {
						writeError(w, http.StatusBadRequest, "after: no dead letter "+textcut.Quote(after)+"; give the next value of the previous page")
						return
					}
					f.After = dl.Cursor()
				}
			}
			limit := f.Limit
			f.Limit++
			dls, err := st.ListDeadLetters(ctx, f)
			if err != nil {
				writeError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
			page := DeadLetterPage{DeadLetters: []DeadLetterJSON{}}
			if len(dls) > limit {
				dls = dls[:limit]
				page.Next = dls[limit-1].Cursor().String()
			}
			for _, dl := range dls {
				page.DeadLetters = append(page.DeadLetters, deadLetterJSON(dl, false))
			}
			writeJSON(w, http.StatusOK, page)
		})
		mux.HandleFunc("GET /api/deadletters/{id}", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			dl, ok, err := st.GetDeadLetter(ctx, r.PathValue("id"))
			switch {
			case err != nil:
				writeError(w, http.StatusServiceUnavailable, err.Error())
			case !ok:
				writeError(w, http.StatusNotFound, "no dead letter "+textcut.Quote(r.PathValue("id"))+" (replayed or purged?)")
			default:
				writeJSON(w, http.StatusOK, deadLetterJSON(dl, true))
			}
		})
	}
	if ops == nil {
		return
	}
	handle := func(action string, run func(ctx context.Context, sel deadletter.Selection) (interface{ end(error) }, error)) {
		mux.HandleFunc("POST /api/deadletters/"+action, func(w http.ResponseWriter, r *http.Request) {
			if !auth.allow(w, r) {
				return
			}
			data, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody+1))
			if err != nil {
				writeError(w, http.StatusBadRequest, "read body: "+err.Error())
				return
			}
			if len(data) > maxControlBody {
				writeError(w, http.StatusRequestEntityTooLarge, "body larger than 64 KiB")
				return
			}
			var sel deadletter.Selection
			if err := decodeJSONBody(data, &sel, `{"trigger": NAME}, {"ids": [ID, ...]} or {"all": true}`); err != nil {
				writeError(w, http.StatusBadRequest, action+": "+err.Error())
				return
			}
			if err := sel.Validate(); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			if sel.After != "" && action != "replay" {
				writeError(w, http.StatusBadRequest, "after continues a replay; a purge takes none")
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), work)
			defer cancel()
			if !knownTrigger(ctx, w, sel.Trigger) {
				return
			}
			res, err := run(ctx, sel)
			if counter != nil {
				// Whatever was deleted — all of it, or part before an
				// error or the time budget — shows in the counts before
				// the answer.
				var names []string
				if sel.Trigger != "" {
					names = []string{sel.Trigger}
				}
				cctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), recount)
				if cerr := counter.RecountDeadLetters(cctx, names...); cerr != nil {
					log.Warn("dead letters: cannot recount after "+action+"; the gauges catch up at the next periodic count", "error", cerr)
				}
				cancel()
			}
			res.end(err)
			writeJSON(w, http.StatusOK, res)
		})
	}
	handle("replay", func(ctx context.Context, sel deadletter.Selection) (interface{ end(error) }, error) {
		sum, err := ops.Replay(ctx, sel)
		return &DeadLetterReplayResult{Replayed: sum.Replayed, Failed: sum.Failed, Reasons: sum.Reasons, Next: sum.Next}, err
	})
	handle("purge", func(ctx context.Context, sel deadletter.Selection) (interface{ end(error) }, error) {
		n, err := ops.Purge(ctx, sel)
		return &DeadLetterPurgeResult{Deleted: n}, err
	})
}
