package runner_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// checkpointAtDeadLetter is a dead-letter sink (the store) that records,
// when each dead letter is handed to it, the trigger's saved checkpoint
// and the event's cluster time.
type checkpointAtDeadLetter struct {
	st      *store.Store
	trigger string
	mu      sync.Mutex
	seen    []cpAtDL
}

type cpAtDL struct {
	webhookID  string
	event      bson.Timestamp
	checkpoint bson.Timestamp // zero: none saved
}

func (s *checkpointAtDeadLetter) PutDeadLetter(ctx context.Context, dl dispatcher.DeadLetter) error {
	rec := cpAtDL{webhookID: dl.WebhookID}
	if t, i, ok := dl.Event.Lookup("clusterTime").TimestampOK(); ok {
		rec.event = bson.Timestamp{T: t, I: i}
	}
	if cp, ok, err := s.st.LoadCheckpoint(ctx, s.trigger); err == nil && ok {
		rec.checkpoint = cp.ClusterTime
	}
	s.mu.Lock()
	s.seen = append(s.seen, rec)
	s.mu.Unlock()
	return s.st.PutDeadLetter(ctx, dl)
}

// eventEnvelope returns how many bytes an insert event of coll adds to
// the inserted document (its resume token, namespace, key and times),
// read from a change stream of its own.
func eventEnvelope(t *testing.T, coll *mongo.Collection) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cs.Close(ctx) }()
	doc := bson.D{{Key: "_id", Value: int32(0)}, {Key: "blob", Value: ""}}
	insert(t, coll, doc)
	if !cs.Next(ctx) {
		t.Fatalf("no event for the probe insert: %v", cs.Err())
	}
	raw, _ := bson.Marshal(doc)
	return len(cs.Current) - len(raw)
}

// blobDoc returns {_id: id, blob: "xxx…"} of exactly size bytes.
func blobDoc(id int32, size int) bson.D {
	doc := bson.D{{Key: "_id", Value: id}, {Key: "blob", Value: ""}}
	raw, _ := bson.Marshal(doc)
	doc[1].Value = strings.Repeat("x", size-len(raw))
	return doc
}

// TestNearLimitEventIsDeadLetteredTrimmed: events close to MongoDB's
// 16 MiB document limit that the endpoint refuses (a 413 with a 4 KiB
// error page, as a proxy's body limit answers) are dead-lettered although
// their dead letters, whole, would not fit in a document: one of 16 MiB
// less 3 KiB without its response, one a few bytes under 16 MiB with only
// its identity. The checkpoint passes neither before its dead letter is
// stored, and the small event after them (strict ordering: it waits for
// them) is delivered.
func TestNearLimitEventIsDeadLetteredTrimmed(t *testing.T) {
	client := startDB(t, devdb.Options{})
	coll := client.Database("shop").Collection("files")
	envelope := eventEnvelope(t, coll)

	var small atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 1<<20 { // nginx's default client_max_body_size
			small.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.Error(w, "<html><body><h1>413 Request Entity Too Large</h1>"+strings.Repeat("<!-- padding -->", 300)+"</body></html>", http.StatusRequestEntityTooLarge)
	}))
	defer srv.Close()
	cfg := parseTrigger(t, `
triggers:
  - name: big
    database: shop
    collection: files
    operations: [insert]
    webhook:
      url: ${HOOK_URL}
    retry: {max_attempts: 1, initial_backoff: 10ms, max_backoff: 50ms}
`, srv.URL)
	tr := cfg.Triggers[0]
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	st := store.New(client, stateDB)
	sink := &checkpointAtDeadLetter{st: st, trigger: "big"}
	disp, err := dispatcher.New(tr, sink, dispatcher.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	w := runner.NewWatcher(tr, client, st, disp, runner.WatcherOptions{Logger: logger, CheckpointInterval: 20 * time.Millisecond,
		ShutdownGrace: time.Second, InitialRetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "stream open", func() bool { return w.Status().StreamOpen })

	// 1: an event of 16 MiB less 3 KiB, whose dead letter fits without the
	// 4 KiB of response. 2: an event 64 bytes under 16 MiB, whose dead
	// letter does not fit even without its response. 3: a small one.
	insert(t, coll, blobDoc(1, 16<<20-3<<10-envelope), blobDoc(2, 16<<20-64-envelope), bson.D{{Key: "_id", Value: int32(3)}})

	deadline := time.After(waitTimeout)
	for small.Load() == 0 {
		select {
		case <-deadline:
			n, _ := st.CountDeadLettersMatching(context.Background(), store.DeadLetterFilter{Trigger: "big"})
			t.Fatalf("the small event after the large ones was not delivered: the trigger is wedged (%d dead letters; status %+v; log:\n%.2000s)",
				n, w.Status(), logs.String())
		case <-time.After(5 * time.Millisecond):
		}
	}

	// Each large event has its dead letter, trimmed as little as it needs.
	want := map[int32]string{1: dispatcher.TrimmedResponse, 2: dispatcher.TrimmedEvent}
	cur, err := client.Database(stateDB).Collection(store.DeadLettersCollection).Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("%d dead letters, want 2", len(docs))
	}
	for _, d := range docs {
		id, _ := d.Lookup("event", "documentKey", "_id").Int32OK()
		trimmed, _ := d.Lookup("trimmed").StringValueOK()
		resp, _ := d.Lookup("lastResponse").StringValueOK()
		_, hasDoc := d.Lookup("event", "fullDocument").DocumentOK()
		if trimmed != want[id] || resp != "" {
			t.Errorf("dead letter of document %d: trimmed %q with a response of %d bytes; want %q without", id, trimmed, len(resp), want[id])
		}
		if hasDoc != (id == 1) {
			t.Errorf("dead letter of document %d keeps its fullDocument: %v", id, hasDoc)
		}
		if size, _ := d.Lookup("eventSize").AsInt64OK(); id == 2 && size != int64(16<<20-64) {
			t.Errorf("dead letter of document 2: eventSize %d, want %d", size, 16<<20-64)
		}
	}

	// When each dead letter was handed over, the checkpoint had not passed
	// its event; now it has passed the small event too.
	sink.mu.Lock()
	seen := append([]cpAtDL(nil), sink.seen...)
	sink.mu.Unlock()
	var last bson.Timestamp
	for _, s := range seen {
		if !s.checkpoint.Before(s.event) {
			t.Errorf("dead letter %s: the checkpoint (%v) was already at or past its event (%v) before it was stored", s.webhookID, s.checkpoint, s.event)
		}
		if last.Before(s.event) {
			last = s.event
		}
	}
	waitFor(t, "the checkpoint past the dead-lettered events", func() bool {
		cp, ok, err := st.LoadCheckpoint(context.Background(), "big")
		return err == nil && ok && last.Before(cp.ClusterTime)
	})
}
