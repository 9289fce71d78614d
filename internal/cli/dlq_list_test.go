package cli

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// followPages runs args, then the command each page prints after more on
// stderr, as it is, until a page prints none; it returns column col of
// every page's rows (past its header) and each page's stderr.
func followPages(t *testing.T, rtDir string, env map[string]string, more string, col int, args []string) (ids, stderrs []string) {
	t.Helper()
	for page := 0; ; page++ {
		if page == 20 {
			t.Fatalf("still more after 20 pages: %v", args)
		}
		code, out, errOut := runWith(t, rtDir, env, args...)
		if code != ExitOK {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		stderrs = append(stderrs, errOut)
		for i, line := range slices.Collect(strings.Lines(out)) {
			if f := strings.Fields(line); i > 0 && len(f) > col {
				ids = append(ids, f[col])
			}
		}
		_, next, ok := strings.Cut(errOut, more)
		if !ok {
			return ids, stderrs
		}
		next, _, _ = strings.Cut(next, "\n")
		f := strings.Fields(next) // the test's paths and values need no quoting
		if len(f) == 0 || f[0] != "changehook" {
			t.Fatalf("%v: the next page's command %q is not a changehook command line", args, next)
		}
		args = f[1:]
	}
}

// TestDlqListPages: `dlq list` counts what it shows (a page is not the
// total: "N dead letters shown; more: …"), and the command it prints for
// the next page, pasted as it is elsewhere (no ./triggers.yaml, no dev),
// repeats -c, --trigger and --limit, so that following it lists every
// dead letter of the selection once, in order, a page of --limit at a
// time; never the MongoDB URI.
func TestDlqListPages(t *testing.T) {
	srv, client := devdbtest.Start(t)
	st := store.New(client, triggers.DefaultStateDatabase)
	ctx := t.Context()
	for i := range 8 {
		trigger := "orders"
		if i%3 == 0 {
			trigger = "users"
		}
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(i)}}}})
		if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: trigger, WebhookID: dispatcher.WebhookID(trigger, tok),
			Event: ev, Token: tok, Attempts: 1, LastStatus: 500, LastReason: dispatcher.ReasonServerError}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(trigger string) []string {
		dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: trigger})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, dl := range dls {
			ids = append(ids, dl.ID)
		}
		return ids
	}
	cfg := writeConfig(t, `
mongodb: { uri: "${MONGODB_URI}" }
triggers:
  - { name: orders, database: shop, collection: orders, webhook: { url: "http://127.0.0.1:1/o" } }
  - { name: users, database: shop, collection: users, webhook: { url: "http://127.0.0.1:1/u" } }
`)
	env := map[string]string{"MONGODB_URI": srv.URI()}
	rtDir := t.TempDir() // no dev running
	t.Chdir(t.TempDir()) // no triggers.yaml
	for _, tc := range []struct {
		name    string
		args    []string
		trigger string
		// first is the first page's summary; next the start of its command
		// for the next page ("" when there is none); last the last page's
		// summary.
		first, next, last string
		pages             int
	}{
		{name: "a page of 2", args: []string{"dlq", "list", "-c", cfg, "--limit", "2"},
			first: "2 dead letters shown; more: ", next: "changehook dlq list -c " + cfg + " --limit 2 --after dlc_",
			last: "2 dead letters shown, the last ones\n", pages: 4},
		{name: "a page of 1 of a trigger, with --config", args: []string{"dlq", "list", "--limit", "1", "--config", cfg, "--trigger", "orders"}, trigger: "orders",
			first: "1 dead letter shown; more: ", next: "changehook dlq list -c " + cfg + " --trigger orders --limit 1 --after dlc_",
			last: "1 dead letter shown, the last ones\n", pages: 5},
		{name: "every dead letter of a trigger", args: []string{"dlq", "list", "-c", cfg, "--trigger", "users"}, trigger: "users",
			first: "3 dead letters\n", last: "3 dead letters\n", pages: 1},
		{name: "all, read in batches", args: []string{"dlq", "list", "-c", cfg, "--limit", "0"},
			first: "8 dead letters\n", last: "8 dead letters\n", pages: 1},
		{name: "exactly one page", args: []string{"dlq", "list", "-c", cfg, "--limit", "8"},
			first: "8 dead letters\n", last: "8 dead letters\n", pages: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, stderrs := followPages(t, rtDir, env, "; more: ", 0, tc.args)
			if want := stored(tc.trigger); !slices.Equal(ids, want) {
				t.Errorf("listed, page after page:\n%v\nwant every dead letter once, in order:\n%v", ids, want)
			}
			if len(stderrs) != tc.pages {
				t.Errorf("%d pages, want %d:\n%s", len(stderrs), tc.pages, strings.Join(stderrs, ""))
			}
			if !strings.HasPrefix(stderrs[0], tc.first+tc.next) {
				t.Errorf("first page's stderr %q, want it to start %q", stderrs[0], tc.first+tc.next)
			}
			if got := stderrs[len(stderrs)-1]; got != tc.last {
				t.Errorf("last page's stderr %q, want %q", got, tc.last)
			}
			for _, s := range stderrs {
				if strings.Contains(s, "mongodb://") {
					t.Errorf("stderr shows the MongoDB URI: %q", s)
				}
			}
		})
	}
	if code, out, errOut := runWith(t, rtDir, env, "dlq", "list", "-c", cfg, "--after", stored("")[7]); code != ExitOK || out != "no more dead letters\n" {
		t.Errorf("dlq list after the last one: exit %d\n%s%s", code, out, errOut)
	}
}

// TestHistoryPages: the command `history` prints for the next page
// repeats the flags that chose the records, with --since as the time it
// meant (a duration would mean a later one on the next page), so that
// following it lists every record once, newest first.
func TestHistoryPages(t *testing.T) {
	srv, client := devdbtest.Start(t)
	st := store.New(client, triggers.DefaultStateDatabase)
	ctx := t.Context()
	now := time.Now().UTC()
	var recs []store.AttemptRecord
	for i := range 5 {
		recs = append(recs, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "orders", WebhookID: fmt.Sprint("msg_", i), Attempt: 1,
			Status: 500, Failed: true, Reason: "server_error", At: now.Add(time.Duration(i-10) * time.Minute)})
	}
	recs = append(recs, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "orders", WebhookID: "msg_old", Attempt: 1,
		Status: 500, Failed: true, Reason: "server_error", At: now.Add(-2 * time.Hour)})
	if _, err := st.InsertAttempts(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf(`
mongodb: { uri: %q }
triggers:
  - { name: orders, database: shop, collection: orders, webhook: { url: "http://127.0.0.1:1/o" } }
`, srv.URI()))
	t.Chdir(t.TempDir())
	ids, stderrs := followPages(t, t.TempDir(), nil, "more records: ", 3,
		[]string{"history", "--since", "1h", "--failed", "--limit", "2", "-c", cfg, "--trigger", "orders"})
	if want := []string{"msg_4", "msg_3", "msg_2", "msg_1", "msg_0"}; !slices.Equal(ids, want) || len(stderrs) != 3 {
		t.Errorf("listed over %d pages: %v, want %v over 3\n%s", len(stderrs), ids, want, strings.Join(stderrs, ""))
	}
	hint := regexp.MustCompile(`^more records: changehook history -c ` + regexp.QuoteMeta(cfg) +
		` --trigger orders --since (\S+) --failed --limit 2 --after \S+\n$`)
	m := hint.FindStringSubmatch(stderrs[0])
	if m == nil {
		t.Fatalf("first page's stderr %q, want it to match %s", stderrs[0], hint)
	}
	since, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil || since.Before(now.Add(-time.Hour-time.Minute)) || since.After(time.Now().Add(-time.Hour)) {
		t.Errorf("--since %s (%v) on the next page, want the time 1h meant, about %s", m[1], err, now.Add(-time.Hour).Format(time.RFC3339))
	}
}

// TestNextPageCommand: the next page's command repeats only the flags
// kept that were set (-c first, whichever spelling was used), quotes what
// a shell would split or expand, and writes booleans bare.
func TestNextPageCommand(t *testing.T) {
	fs := flag.NewFlagSet("changehook history", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFlag(fs)
	fs.String("trigger", "", "")
	fs.String("document-key", "", "")
	fs.String("secret", "", "")
	fs.Bool("failed", false, "")
	fs.Bool("json", false, "")
	fs.Int("limit", 50, "")
	if err := fs.Parse([]string{"--limit", "3", "--secret", "hunter2", "--json=false", "--failed", "--document-key", `{"_id": "it's"}`,
		"--config", "my dir/prod.yaml"}); err != nil {
		t.Fatal(err)
	}
	got := nextPageCommand(fs, []string{"c", "config", "trigger", "document-key", "failed", "json", "limit"}, map[string]string{"limit": "4"}, "c_1")
	want := `changehook history -c 'my dir/prod.yaml' --document-key '{"_id": "it'\''s"}' --failed --limit 4 --after c_1`
	if got != want {
		t.Errorf("nextPageCommand =\n%s\nwant\n%s", got, want)
	}
}
