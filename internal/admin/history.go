package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// History reads the delivery history; *store.Store implements it.
type History interface {
	// ListAttempts returns one page of the records matching f, newest
	// first, and the next page's cursor ("" on the last page).
	ListAttempts(ctx context.Context, f store.AttemptFilter) ([]store.AttemptRecord, string, error)
}

// HistoryResponse is the body of GET /api/history.
type HistoryResponse struct {
	// Attempts are the records, newest first.
	Attempts []store.AttemptRecord `json:"attempts"`
	// Next is the cursor of the next page (pass it as after=), "" on the
	// last one.
	Next string `json:"next"`
}

// historyFilter reads GET /api/history's query:
// trigger (a name, or one partition's key NAME/p<i>of<N>), webhook_id, document_key (Extended JSON), since (RFC 3339 or a
// duration before now), failed (true/false), limit (1..1000, default 100)
// and after (a cursor).
func historyFilter(r *http.Request, now time.Time) (store.AttemptFilter, error) {
	q := r.URL.Query()
	f := store.AttemptFilter{Trigger: q.Get("trigger"), WebhookID: q.Get("webhook_id"), After: q.Get("after")}
	if s := q.Get("document_key"); s != "" {
		k, err := store.ParseDocumentKey(s)
		if err != nil {
			return f, err
		}
		f.DocumentKey = k
	}
	if s := q.Get("since"); s != "" {
		t, err := store.ParseSince(s, now)
		if err != nil {
			return f, err
		}
		f.Since = t
	}
	if s := q.Get("failed"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return f, errors.New("failed must be true or false")
		}
		f.Failed = b
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return f, errors.New("limit must be a number between 1 and 1000")
		}
		f.Limit = n
	}
	return f, store.ValidateAttemptFilter(f)
}

// HistoryHandler serves GET /api/history: one page of the delivery history
// as JSON (HistoryResponse); 400 with {"error"} for a bad query, 404 with
// {"error"} for a trigger that is neither in config's configuration (nil:
// not checked) nor named by any history record (RecordedTrigger), 503 when
// the state database cannot be read. It is read-only and shows no secrets
// (errors are redacted when recorded; response snippets are what endpoints
// answered).
func HistoryHandler(h History, config func() *triggers.Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := historyFilter(r, time.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if !recordedTriggerAnswered(w, config, f.Trigger, "history records", true, func() (bool, error) {
			recs, _, err := h.ListAttempts(ctx, store.AttemptFilter{Trigger: f.Trigger, Limit: 1})
			return len(recs) > 0, err
		}) {
			return
		}
		recs, next, err := h.ListAttempts(ctx, f)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		if recs == nil {
			recs = []store.AttemptRecord{}
		}
		writeJSON(w, http.StatusOK, HistoryResponse{Attempts: recs, Next: next})
	})
}
