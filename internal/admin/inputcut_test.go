package admin

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestLongInputIsCut: an error or a console page that names what the client
// sent (an id, a cursor, a query value, a path) quotes at most its start,
// however long it was, so that no answer grows with the request.
func TestLongInputIsCut(t *testing.T) {
	cfg := &triggers.Config{Triggers: []*triggers.Trigger{{Name: "orders", Partitions: 1}}}
	s := startServer(t, Options{Store: emptyStore{}, History: emptyHistory{}, Config: func() *triggers.Config { return cfg }})
	long := strings.Repeat("x", 100000)
	nested := strings.Repeat(`{"a":`, 50000) + "1" + strings.Repeat("}", 50000)
	for _, tc := range []struct {
		name, method, path string
		want               int
	}{
		{"dead letter id", "GET", "/api/deadletters/" + long, 404},
		{"dead letter after id", "GET", "/api/deadletters?after=" + long, 400},
		{"dead letter cursor", "GET", "/api/deadletters?after=dlc_" + long, 400},
		{"dead letters of an unknown trigger", "GET", "/api/deadletters?trigger=" + long, 404},
		{"history cursor", "GET", "/api/history?after=" + long, 400},
		{"history document key", "GET", "/api/history?document_key=" + url.QueryEscape(nested), 400},
		{"history since", "GET", "/api/history?since=" + long, 400},
		{"history partition key", "GET", "/api/history?trigger=a/" + long, 400},
		{"history of an unknown trigger", "GET", "/api/history?trigger=" + long, 404},
		{"console trigger", "GET", "/triggers/" + long, 404},
		{"console dead letter", "GET", "/deadletters/" + long, 404},
		{"console page", "GET", "/nope/" + long, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.URL()+tc.path, nil)
			code, body := send(t, req)
			if code != tc.want {
				t.Errorf("%d, want %d: %.300s", code, tc.want, body)
			}
			if len(body) > 4000 || !strings.Contains(body, " bytes)") {
				t.Errorf("answer of %d bytes to a request of %d, want the input cut and marked: %.300s", len(body), len(tc.path), body)
			}
		})
	}
}

// send does req and returns the status and the body.
func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %.100s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// emptyStore is a state database without checkpoints or dead letters.
type emptyStore struct{}

func (emptyStore) LoadCheckpoint(context.Context, string) (store.Checkpoint, bool, error) {
	return store.Checkpoint{}, false, nil
}

func (emptyStore) ListDeadLetters(context.Context, store.DeadLetterFilter) ([]store.StoredDeadLetter, error) {
	return nil, nil
}

func (emptyStore) GetDeadLetter(context.Context, string) (store.StoredDeadLetter, bool, error) {
	return store.StoredDeadLetter{}, false, nil
}

// emptyHistory is a delivery history without records.
type emptyHistory struct{}

func (emptyHistory) ListAttempts(context.Context, store.AttemptFilter) ([]store.AttemptRecord, string, error) {
	return nil, "", nil
}
