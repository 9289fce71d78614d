package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
)

// TestDlqUnknownIDs: an ID given to dlq replay or purge that names no
// dead letter (a typo, or one replayed already) is named as not found,
// never counted as a dead letter left or deleted, and makes the command
// exit 1 after doing the rest, as dlq show of it does (a purge's dry run
// exits 0, as every dry run that worked); when no given ID names a dead
// letter the command says so and does nothing.
func TestDlqUnknownIDs(t *testing.T) {
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // not retried: the dead letter stays
	}))
	defer ep.Close()
	_, st, cfg := devdbConfig(t, `
history: { enabled: false }
triggers:
  - name: files
    database: shop
    collection: files
    webhook: { url: "`+ep.URL+`" }
`)
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82AA01"}})
	ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1767225600, I: 1}},
		{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: 1}}},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "files"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: 1}}}})
	known := dispatcher.DeadLetter{Trigger: "files", WebhookID: dispatcher.WebhookID("files", tok), Event: ev, Token: tok,
		Attempts: 1, LastStatus: 500, LastReason: dispatcher.ReasonServerError}
	const nf = "  not found: no such dead letter (see 'changehook dlq list')\n"
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // the whole stdout, or with suffix its end
		tail bool
	}{
		{"replay of an unknown ID", []string{"replay", "msg_nope"}, ExitFailure,
			"msg_nope" + nf + "the given ID is no dead letter: nothing replayed\n", false},
		{"replay of two unknown IDs", []string{"replay", "msg_nope", "msg_nope2"}, ExitFailure,
			"msg_nope" + nf + "msg_nope2" + nf + "none of the 2 given IDs is a dead letter: nothing replayed\n", false},
		{"replay of a known and an unknown ID", []string{"replay", known.WebhookID, "msg_nope"}, ExitFailure,
			"msg_nope" + nf + "replayed 0 of 1; 1 left in the dead letters; 1 ID not found\n", true},
		{"purge of an unknown ID", []string{"purge", "msg_nope", "--yes"}, ExitFailure,
			"msg_nope" + nf + "the given ID is no dead letter: nothing deleted\n", false},
		{"purge of an unknown ID twice", []string{"purge", "msg_nope", "msg_nope", "--yes"}, ExitFailure,
			"msg_nope" + nf + "the given ID is no dead letter: nothing deleted\n", false},
		{"dry-run purge of an unknown ID", []string{"purge", "msg_nope"}, ExitOK,
			"msg_nope" + nf + "the given ID is no dead letter: nothing would be deleted\n", false},
		{"dry-run purge of a known and an unknown ID", []string{"purge", known.WebhookID, "msg_nope"}, ExitOK,
			"msg_nope" + nf + "would delete 1 dead letter of the given IDs; 1 ID not found; nothing deleted. Run again with --yes to delete them.\n", false},
		{"purge of a known and an unknown ID", []string{"purge", known.WebhookID, "msg_nope", "--yes"}, ExitFailure,
			"msg_nope" + nf + "deleted 1 dead letter of the given IDs; 1 ID not found\n", false},
		{"purge of a known ID", []string{"purge", known.WebhookID, "--yes"}, ExitOK,
			"deleted 1 dead letter of the given IDs\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.PutDeadLetter(t.Context(), known); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"dlq", tc.args[0], "-c", cfg}, tc.args[1:]...)
			code, out, errOut := run(t, nil, "", args...)
			if code != tc.code || !tc.tail && out != tc.out || tc.tail && !strings.HasSuffix(out, tc.out) {
				t.Errorf("%s: exit %d\n%s%s\nwant exit %d and stdout (ending with %v):\n%s", strings.Join(args, " "), code, out, errOut, tc.code, tc.tail, tc.out)
			}
		})
	}
	// dlq show of an unknown ID exits 1 too.
	if code, out, errOut := run(t, nil, "", "dlq", "show", "-c", cfg, "msg_nope"); code != ExitFailure {
		t.Errorf("dlq show msg_nope: exit %d\n%s%s, want %d", code, out, errOut, ExitFailure)
	}
}
