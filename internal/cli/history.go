package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/changehook/changehook/internal/admin"
	"github.com/changehook/changehook/store"
)

func historyCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "history",
		"history [-c FILE] [--trigger NAME] [--document-key JSON] [--webhook-id ID] [--since T] [--failed] [--limit N] [--after CURSOR] [--json]",
		"changehook history --trigger orders --failed",
		"changehook history --trigger orders/p2of4",
		"changehook history --document-key '{\"_id\": {\"$oid\": \"65a1c0ffee0000000000abcd\"}}'",
		"changehook history --webhook-id msg_2f6yq3x4kq7m3v5bq6w4zq2x7a",
		"changehook history --since 1h --limit 500 --json")
	path := configFlag(fs)
	trigger := fs.String("trigger", "", "only this trigger's records (`NAME`, or NAME/p<i>of<N>: one partition's)")
	docKey := fs.String("document-key", "", "only the records of the document with this documentKey (Extended `JSON`)")
	webhookID := fs.String("webhook-id", "", "only the attempts of this webhook-id")
	since := fs.String("since", "", "only records at or after this RFC 3339 time, or this long ago (90m, 24h)")
	failed := fs.Bool("failed", false, "only failed attempts")
	limit := fs.Int("limit", 50, fmt.Sprintf("show at most `N` records (1..%d)", store.MaxHistoryPage))
	after := fs.String("after", "", "continue after this `cursor` (printed when more records exist)")
	asJSON := fs.Bool("json", false, "print one JSON object per record (as GET /api/history)")
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	f := store.AttemptFilter{Trigger: *trigger, WebhookID: *webhookID, Failed: *failed, Limit: *limit, After: *after}
	if *docKey != "" {
		k, err := store.ParseDocumentKey(*docKey)
		if err != nil {
			return usageError(env, fs, "--document-key: %v", err)
		}
		f.DocumentKey = k
	}
	if *since != "" {
		t, err := store.ParseSince(*since, time.Now())
		if err != nil {
			return usageError(env, fs, "--since: %v", err)
		}
		f.Since = t
	}
	if *limit < 1 {
		return usageError(env, fs, "--limit must be between 1 and %d", store.MaxHistoryPage)
	}
	if err := store.ValidateAttemptFilter(f); err != nil {
		return usageError(env, fs, "%v", err)
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "history", err)
	}
	defer sc.close(ctx)
	if *trigger != "" {
		_, ferr := findUnit(sc.cfg, *trigger)
		note, err := admin.RecordedTrigger(sc.cfg, sc.cfg.Path, *trigger, "history records", ferr == nil, func() (bool, error) {
			recs, _, err := sc.store.ListAttempts(ctx, store.AttemptFilter{Trigger: *trigger, Limit: 1})
			return len(recs) > 0, err
		})
		if code, done := reportRecordedTrigger(env, fs, "history", note, err); done {
			return code
		}
	}
	recs, next, err := sc.store.ListAttempts(ctx, f)
	if err != nil {
		return fail(env, "history", err)
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return fail(env, "history", err)
			}
		}
	} else if err := printHistory(env, recs); err != nil {
		return fail(env, "history", err)
	}
	if len(recs) == 0 && !*asJSON {
		fmt.Fprintln(env.Stdout, "no history records match")
		if !sc.cfg.History.Enabled {
			fmt.Fprintln(env.Stderr, "note: history.enabled is false in "+sc.cfg.Path+": attempts are not recorded")
		}
	}
	if next != "" {
		// --since as the time it meant: a duration would mean a later
		// time on the next page, and leave records out.
		var values map[string]string
		if *since != "" {
			values = map[string]string{"since": f.Since.UTC().Format(time.RFC3339Nano)}
		}
		fmt.Fprintf(env.Stderr, "more records: %s\n", nextPageCommand(fs, []string{"c", "config", "trigger", "document-key", "webhook-id",
			"since", "failed", "limit", "json"}, values, next))
	}
	return ExitOK
}

// printHistory prints records as a table, newest first.
func printHistory(env Env, recs []store.AttemptRecord) error {
	if len(recs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tTRIGGER\tKIND\tWEBHOOK-ID\tATTEMPT\tSTATUS\tRESULT\tLATENCY\tDOCUMENT KEY")
	for _, r := range recs {
		result := "ok"
		switch {
		case r.Kind == store.KindSkipped && !r.SkippedTo.IsZero():
			result = fmt.Sprintf("%s: checkpoint moved %s … %s, changes not delivered by then left undelivered (not dead-lettered)", r.Reason, fmtTime(r.SkippedFrom), fmtTime(r.SkippedTo))
		case r.Kind == store.KindSkipped:
			result = "skipped (dead-lettered)"
			if r.By != "" {
				result += " by " + r.By
			}
		case r.Failed:
			result = r.Reason
			if r.Error != "" {
				result = oneLine(r.Error, 80)
				if !strings.HasPrefix(r.Error, r.Reason) {
					result = r.Reason + ": " + result
				}
			}
		case r.Reason != "":
			result = r.Reason
		}
		key := "-"
		if len(r.DocumentKey) > 0 {
			key = extJSON(r.DocumentKey)
		} else if r.DocumentKeyOmitted {
			key = "(larger than 1 KiB)"
		}
		key += r.EventsNote()
		attempt, latency := "-", "-"
		if r.Attempt > 0 {
			attempt = fmt.Sprint(r.Attempt)
			latency = fmt.Sprintf("%.1fms", r.LatencyMS)
		}
		trigger := r.Trigger
		if r.Partition != "" {
			// One partition of a partitioned trigger: its key, as the
			// status and the controls name it.
			trigger += "/" + r.Partition
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(r.At), trigger, r.Kind, dash(r.WebhookID), attempt,
			statusText(r.Status), result, latency, key)
	}
	return tw.Flush()
}

// fmtTime shows a time in UTC with milliseconds ("-" when zero).
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
