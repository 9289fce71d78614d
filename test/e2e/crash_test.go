package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// crashConfig is the trigger of the crash test: every insert and update of
// e2e.items, per-document ordering, frequent checkpoints, batched when
// batch (a YAML flow mapping) is not "", trusting the CA in caFile when it
// is not "" (an https receiver). The incarnation header tells the receiver
// which process sent a request. Every incarnation runs under one
// instance_id, as a supervisor restarts a process: each takes the killed
// one's lease at once (it can prove that process dead) and delivers until
// its own kill. With a new id each start, the restarts would wait out the
// first one's lease and be killed before delivering anything.
func crashConfig(uri, url string, incarnation int, batch, caFile string) string {
	if batch != "" {
		batch = "\n    batch: " + batch
	}
	tls := ""
	if caFile != "" {
		tls = fmt.Sprintf("\n      tls: { ca_file: %q }", caFile)
	}
	return fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: chstate }
cluster: { instance_id: crash-test }
triggers:
  - name: crash
    database: e2e
    collection: items
    operations: [insert, update]
    start_at: now
    ordering: per_document
    concurrency: 8
    webhook:
      url: %q
      secret: %s
      timeout: 2s
      headers: { X-Incarnation: "%d" }%s
    retry: { max_attempts: 100, initial_backoff: 10ms, max_backoff: 100ms }%s
`, uri, url, testSecret, incarnation, tls, batch)
}

// TestCrashSafety kills the runner with SIGKILL at random (seeded, logged)
// moments while thousands of writes stream in, restarts it each time, and
// checks on the receiver side: every write delivered at least once, order
// per document within each process, and no event at or before the
// checkpoint saved before a kill delivered again after it.
func TestCrashSafety(t *testing.T) { crashSafety(t, "", false, 0) }

// TestCrashSafetyBatched is TestCrashSafety with batched delivery: a batch
// is acknowledged as a whole, so a kill mid-batch redelivers it whole, and
// still nothing at or before a saved checkpoint comes again.
func TestCrashSafetyBatched(t *testing.T) {
	crashSafety(t, "{ max_events: 20, max_wait: 20ms }", false, 0)
}

// TestCrashSafetyBatchedTooLarge is TestCrashSafetyBatched against an
// endpoint that refuses requests of more than 7 events as too large (413):
// kills land while refused batches are sent again in parts, and a batch
// whose first part was accepted is still redelivered whole after a kill,
// never skipped.
func TestCrashSafetyBatchedTooLarge(t *testing.T) {
	crashSafety(t, "{ max_events: 20, max_wait: 20ms }", false, 7)
}

// TestCrashSafetyHTTPS is TestCrashSafety with an https receiver: kills
// land in TLS handshakes and encrypted writes as well.
func TestCrashSafetyHTTPS(t *testing.T) { crashSafety(t, "", true, 0) }

// crashSafety runs the crash test on the trigger of crashConfig(batch),
// with an https receiver when https; when fits > 0 the receiver refuses
// requests of more events than that with 413, and only accepted events
// count as delivered.
func crashSafety(t *testing.T, batch string, https bool, fits int) {
	if testing.Short() {
		t.Skip("kills processes; skipped with -short")
	}
	docs, writes, kills := 20, 3000, 5
	if long() {
		docs, writes, kills = 50, 20000, 40
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHANGEHOOK_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("CHANGEHOOK_CRASH_SEED: %v", err)
		}
	}
	t.Logf("crash seed %d (rerun with CHANGEHOOK_CRASH_SEED=%d): %d documents, %d writes, %d kills", seed, seed, docs, writes, kills)
	rng := rand.New(rand.NewPCG(seed, seed))

	srv, client := devdbtest.StartWith(t, devdb.Options{Data: filepath.Join(t.TempDir(), "db")})
	dir := t.TempDir()
	rc, caFile := newReceiver(t), ""
	if https {
		rc, caFile = newTLSReceiver(t, dir)
	}
	if fits > 0 {
		rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
			if d.Events > fits {
				return http.StatusRequestEntityTooLarge
			}
			return http.StatusNoContent
		})
	}
	// accepted keeps the deliveries the receiver accepted.
	accepted := func(ds []delivery) []delivery {
		ok := ds[:0:0]
		for _, d := range ds {
			if d.Status < 300 {
				ok = append(ok, d)
			}
		}
		return ok
	}
	st := store.New(client, "chstate")
	coll := client.Database("e2e").Collection("items")

	start := func(inc int) *runner {
		cfg := writeFile(t, dir, fmt.Sprintf("triggers-%d.yaml", inc), crashConfig(srv.URI(), rc.URL(), inc, batch, caFile))
		r := startRunner(t, runArgs(cfg, "--checkpoint-every", "50", "--checkpoint-interval", "50ms")...)
		r.waitReady()
		return r
	}

	// The writer inserts docs documents (seq 0), then sets seq 1, 2, ...
	// round-robin, paced so that the writes span the kills.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := start(0)
	writeErr := make(chan error, 1)
	go func() { writeErr <- writeSeqs(ctx, coll, docs, writes) }()

	// checkpoints[k] is the checkpoint saved when incarnation k was killed.
	checkpoints := map[int]string{}
	for k := range kills {
		wait := time.Duration(150+rng.IntN(450)) * time.Millisecond
		select {
		case <-time.After(wait):
		case err := <-writeErr:
			writeErr <- err
		}
		r.kill()
		cp, ok, err := st.LoadCheckpoint(ctx, "crash")
		if err != nil {
			t.Fatalf("load checkpoint after kill %d: %v", k, err)
		}
		if ok {
			checkpoints[k] = tokenData(t, cp.Token)
		}
		t.Logf("kill %d after %s; checkpoint %s; %d deliveries so far", k, wait, checkpoints[k], len(rc.deliveries()))
		r = start(k + 1)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	final := kills

	// Every write must eventually be delivered.
	want := docs * (1 + (writes-docs)/docs)
	got := accepted(rc.waitFor(t, "every write delivered", func(ds []delivery) bool { return len(distinct(accepted(ds))) >= want }))
	if code := r.stop(); code != 0 {
		t.Errorf("runner exit code after SIGTERM = %d, want 0", code)
	}

	// The kills must land in delivery: most restarted incarnations that
	// were killed delivered something before their kill.
	perInc := map[string]int{}
	for _, d := range got {
		perInc[d.Header.Get("X-Incarnation")]++
	}
	delivering := 0
	for k := 1; k < kills; k++ {
		if perInc[strconv.Itoa(k)] > 0 {
			delivering++
		}
	}
	t.Logf("accepted deliveries per incarnation: %v", perInc)
	if 2*delivering < kills-1 {
		t.Errorf("%d of the %d restarted incarnations killed delivered anything: the kills did not land in delivery", delivering, kills-1)
	}

	seen := map[string]bool{}      // doc/seq delivered at least once
	lastSeq := map[[2]string]int{} // (incarnation, doc) → last seq
	firstTok := map[int]string{}   // incarnation → smallest token delivered
	duplicates := 0
	for _, d := range got {
		if d.SigErr != nil {
			t.Fatalf("delivery %s: %v", d.ID, d.SigErr)
		}
		inc := d.Header.Get("X-Incarnation")
		doc, seq := docSeq(t, d)
		key := fmt.Sprintf("%s/%d", doc, seq)
		if seen[key] {
			duplicates++
		}
		seen[key] = true
		pk := [2]string{inc, doc}
		if last, ok := lastSeq[pk]; ok && seq <= last {
			t.Errorf("incarnation %s, document %s: seq %d delivered after %d (per-document order broken)", inc, doc, seq, last)
		}
		lastSeq[pk] = seq
		n, _ := strconv.Atoi(inc)
		if tok := d.Token(); firstTok[n] == "" || tok < firstTok[n] {
			firstTok[n] = tok
		}
	}
	for doc := range docs {
		for seq := 0; seq < want/docs; seq++ {
			if !seen[fmt.Sprintf("d%03d/%d", doc, seq)] {
				t.Errorf("write d%03d seq %d was never delivered", doc, seq)
			}
		}
	}
	// Incarnation k+1 resumed after the checkpoint saved by incarnation k:
	// nothing at or before it may be delivered again.
	for k := 0; k < final; k++ {
		cp, ok := checkpoints[k]
		if !ok {
			continue
		}
		if tok := firstTok[k+1]; tok != "" && tok <= cp {
			t.Errorf("incarnation %d delivered token %s, at or before the checkpoint %s saved before its start", k+1, tok, cp)
		}
	}
	if batch != "" {
		batches, most := map[string]bool{}, 20
		if fits > 0 {
			most = fits
		}
		for _, d := range got {
			if d.Batch == "" || d.Events > most {
				t.Fatalf("accepted delivery %s not in a batch of at most %d events (batch %q of %d)", d.ID, most, d.Batch, d.Events)
			}
			batches[d.Batch] = true
		}
		t.Logf("%d batch requests", len(batches))
	}
	if fits > 0 {
		refused := 0
		for _, d := range rc.deliveries() {
			if d.Status == http.StatusRequestEntityTooLarge {
				refused++
			}
		}
		if refused == 0 {
			t.Fatal("no request was refused as too large: the test did not exercise splitting")
		}
		t.Logf("%d events in requests refused as too large", refused)
	}
	t.Logf("%d writes, %d deliveries, %d duplicates (redelivered after the last checkpoint before a kill)", want, len(got), duplicates)
}

// writeSeqs inserts docs documents with seq 0, then updates them round-robin
// with increasing seq until total writes, in batches of 10 every 10ms.
func writeSeqs(ctx context.Context, coll *mongo.Collection, docs, total int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < total; i++ {
		if i%10 == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
		doc, seq := fmt.Sprintf("d%03d", i%docs), i/docs
		var err error
		if seq == 0 {
			_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: doc}, {Key: "seq", Value: 0}})
		} else {
			_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: doc}}, bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: seq}}}})
		}
		if err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
	}
	return nil
}

// docSeq extracts the document id and seq of an insert or update event.
func docSeq(t *testing.T, d delivery) (string, int) {
	t.Helper()
	key, _ := lookup(d.Event, "documentKey").(bson.D)
	doc, _ := lookup(key, "_id").(string)
	var src bson.D
	switch lookup(d.Event, "operationType") {
	case "insert":
		src, _ = lookup(d.Event, "fullDocument").(bson.D)
	case "update":
		ud, _ := lookup(d.Event, "updateDescription").(bson.D)
		src, _ = lookup(ud, "updatedFields").(bson.D)
	}
	var seq int
	switch v := lookup(src, "seq").(type) {
	case int32:
		seq = int(v)
	case int64:
		seq = int(v)
	case float64:
		seq = int(v)
	default:
		t.Fatalf("delivery %s: no seq in %s", d.ID, d.Body)
	}
	return doc, seq
}

// distinct returns the distinct webhook-ids among ds.
func distinct(ds []delivery) map[string]bool {
	m := make(map[string]bool, len(ds))
	for _, d := range ds {
		m[d.ID] = true
	}
	return m
}

// tokenData returns the _data string of a resume token.
func tokenData(t *testing.T, tok bson.Raw) string {
	t.Helper()
	v, err := tok.LookupErr("_data")
	if err != nil {
		t.Fatalf("checkpoint token %s has no _data", tok)
	}
	s, _ := v.StringValueOK()
	return s
}
