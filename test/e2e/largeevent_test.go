package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// TestLargeEventKilledMidDelivery: an update whose event is 18 MiB (a
// 9 MiB field, with updateLookup, in fullDocument and updateDescription)
// comes in two fragments ($changeStreamSplitLargeEvent), which the runner
// reassembles and delivers whole and signed. SIGKILL while that delivery
// is in flight leaves the checkpoint before the event (never at one of its
// fragments): the next process reads both fragments again and delivers the
// event whole under the same webhook-id, then the insert after it.
func TestLargeEventKilledMidDelivery(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var hang atomic.Bool
	hang.Store(true)
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, r *http.Request) int {
		if op, _ := lookup(d.Event, "operationType").(string); op == "update" && hang.Load() {
			<-r.Context().Done() // until the runner is killed (or cancels it, having lost its lease)
			return 0
		}
		return http.StatusNoContent
	})
	// A short lease: the next process takes the trigger over soon after
	// the kill. A long webhook timeout: the receiver decodes the 18 MiB
	// body before it counts the request in flight, which takes longer
	// than the defaults' 2s under the race detector.
	cfg := writeFile(t, t.TempDir(), "big.yaml", "cluster: { lease_ttl: 1s }\n"+baseConfig(srv.URI(), rc.URL())+fmt.Sprintf(`
  - name: big
    database: e2e
    collection: big
    operations: [insert, update]
    full_document: updateLookup
    webhook: { url: %q, secret: %s, timeout: 2m }
`, rc.URL(), testSecret))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	coll := client.Database("e2e").Collection("big")
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the insert of 1", func(ds []delivery) bool { return len(ds) == 1 })
	big := strings.Repeat("x", 9<<20)
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: big}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	rc.waitInflight(t, 1)
	r.kill()

	st := store.New(client, "chstate")
	cp, ok, err := st.LoadCheckpoint(ctx, "big")
	if err != nil || !ok {
		t.Fatalf("checkpoint after the kill: %v, %v", ok, err)
	}
	hang.Store(false)
	r = startRunner(t, runArgs(cfg)...)
	got := rc.waitFor(t, "the update delivered again, then the insert of 2", func(ds []delivery) bool {
		return len(ds) >= 4 && ds[len(ds)-1].Status == http.StatusNoContent && lookup(ds[len(ds)-1].Event, "operationType") == "insert"
	})
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	// The insert of 1, the update cut by the kill, the update delivered
	// again by the next process, the insert of 2. Under load the first
	// process may also lose its lease (lease_ttl 1s) before the kill and
	// deliver the update again after taking the lease back: every
	// delivery of the update then carries the same webhook-id.
	if len(got) < 4 {
		t.Fatalf("%d deliveries (%s), want the insert of 1, the update at least twice and the insert of 2", len(got), summary(got))
	}
	updates, next := got[1:len(got)-1], got[len(got)-1]
	cut, again := updates[0], updates[len(updates)-1]
	for _, d := range updates {
		if lookup(d.Event, "operationType") != "update" || d.ID != cut.ID {
			t.Fatalf("deliveries %s: want the insert of 1, the update (one webhook-id) at least twice and the insert of 2", summary(got))
		}
	}
	if cut.Status == http.StatusNoContent {
		t.Errorf("the update's first delivery was answered (%d), want it cut by the kill", cut.Status)
	}
	if again.Status != http.StatusNoContent {
		t.Errorf("after the restart the update's last delivery has status %d, want %d", again.Status, http.StatusNoContent)
	}
	if tokenData(t, cp.Token) == cut.Token() {
		t.Errorf("the checkpoint after the kill is the update's token: it moved past an event not delivered")
	}
	for i, d := range updates {
		full, _ := lookup(d.Event, "fullDocument").(bson.D)
		desc, _ := lookup(d.Event, "updateDescription").(bson.D)
		upd, _ := lookup(desc, "updatedFields").(bson.D)
		if s, _ := lookup(full, "big").(string); s != big {
			t.Errorf("delivery %d of the update: fullDocument.big has %d bytes, want %d", i+1, len(s), len(big))
		}
		if s, _ := lookup(upd, "big").(string); s != big {
			t.Errorf("delivery %d of the update: updateDescription.updatedFields.big has %d bytes, want %d", i+1, len(s), len(big))
		}
		if lookup(d.Event, "splitEvent") != nil {
			t.Errorf("delivery %d of the update has splitEvent", i+1)
		}
		if len(d.Body) <= 16<<20 {
			t.Errorf("delivery %d of the update has a %d-byte body, want more than 16 MiB", i+1, len(d.Body))
		}
	}
	if again.SigErr != nil {
		t.Errorf("signature of the redelivered update: %v", again.SigErr)
	}
	if key, _ := lookup(next.Event, "documentKey").(bson.D); lookup(key, "_id") != int32(2) || next.SigErr != nil {
		t.Errorf("last delivery %v (signature %v), want the insert of 2", key, next.SigErr)
	}
}
