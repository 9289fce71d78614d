package runner_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/runner"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// bodyReceiver is an httptest endpoint that decodes each delivered
// event, of a single event's body or of a batch's array, onto the
// returned channel.
func bodyReceiver(t *testing.T) (*httptest.Server, chan bson.Raw) {
	t.Helper()
	got := make(chan bson.Raw, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if len(body) > 0 && body[0] == '[' {
			var doc struct{ Events []bson.Raw }
			if err := bson.UnmarshalExtJSON([]byte(`{"events":`+string(body)+`}`), false, &doc); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			for _, ev := range doc.Events {
				got <- ev
			}
		} else {
			var doc bson.D
			if err := bson.UnmarshalExtJSON(body, false, &doc); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			raw, _ := bson.Marshal(doc)
			got <- raw
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// TestLargeEventBatchedHeldBetweenFragments: a batched trigger (which
// reads ahead) holds the first fragment of a split event while the
// getMore of the second is blocked (a fail point), with checkpoints due
// every 10ms meanwhile. Every checkpoint saved stays before the event,
// never at the fragment; stopped and started again, the trigger delivers
// the event whole.
func TestLargeEventBatchedHeldBetweenFragments(t *testing.T) {
	t.Parallel()
	hs, got := bodyReceiver(t)
	admin, st, r := startBigOnFaultDB(t, strings.Replace(largeYAML, `webhook: { url: "${HOOK_URL}" }`,
		`webhook: { url: "${HOOK_URL}" }
    batch: { max_events: 10, max_wait: 20ms }`, 1), hs.URL,
		runner.Options{IdleCheckpointInterval: 10 * time.Millisecond, CheckpointInterval: 10 * time.Millisecond})
	coll := admin.Database("shop").Collection("big")
	recv := &receiver{got: got}
	big := largeUpdateStopped(t, r, recv, coll)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	startBlockedAtSecondFragment(t, admin, r, recv)
	// Checkpoints are saved while the fragment is held (every 10ms):
	// each must be before the event, where a stream with the stage
	// starts with its first fragment.
	waitFor(t, "checkpoint of 2", func() bool {
		cp, found, err := st.LoadCheckpoint(ctx, "big")
		if err != nil || !found {
			return false
		}
		cs, err := admin.Database("shop").Collection("big").Watch(ctx, mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}},
			options.ChangeStream().SetFullDocument(options.UpdateLookup).SetResumeAfter(cp.Token))
		if err != nil {
			t.Fatalf("watch from checkpoint: %v", err)
		}
		defer cs.Close(ctx)
		if !cs.Next(ctx) {
			t.Fatalf("next: %v", cs.Err())
		}
		n, _ := cs.Current.Lookup("splitEvent", "fragment").Int32OK()
		op, _ := cs.Current.Lookup("operationType").StringValueOK()
		if op == "update" && n != 1 {
			t.Fatalf("checkpoint within the event: next is fragment %d", n)
		}
		return op == "update" && n == 1
	})
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	configureFailPoint(t, admin, "failCommand", "off", nil)
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	ev := waitRecv(t, got, "update")
	if s, _ := ev.Lookup("fullDocument", "big").StringValueOK(); s != big {
		t.Errorf("fullDocument.big has %d bytes", len(s))
	}
}

// TestLargeEventResumedBetweenFragments: the getMore of a split event's
// second fragment fails with an error the driver resumes on by itself
// (CursorNotFound, or InterruptedAtShutdown with the
// ResumableChangeStreamError label). The driver resumes after the first
// fragment's token; the trigger, reading ahead or not, goes on with the
// second fragment and delivers the event whole, then the changes after it.
func TestLargeEventResumedBetweenFragments(t *testing.T) {
	for _, batched := range []bool{false, true} {
		for _, code := range []int32{43, 91} {
			t.Run(fmt.Sprintf("batched=%v/code=%d", batched, code), func(t *testing.T) {
				t.Parallel()
				hs, got := bodyReceiver(t)
				extra := ""
				if batched {
					extra = "\n    batch: { max_events: 10, max_wait: 20ms }"
				}
				admin, _, r := startBigOnFaultDB(t, strings.Replace(largeYAML, `webhook: { url: "${HOOK_URL}" }`,
					`webhook: { url: "${HOOK_URL}" }`+extra, 1), hs.URL, runner.Options{})
				coll := admin.Database("shop").Collection("big")
				insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
				waitRecv(t, got, "1")
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				if err := r.Stop(ctx, "big"); err != nil {
					t.Fatal(err)
				}
				insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
				big := strings.Repeat("x", 9<<20)
				if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: big}}}}); err != nil {
					t.Fatal(err)
				}
				data := bson.D{{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "appName", Value: faultApp},
					{Key: "errorCode", Value: code}, {Key: "errorLabels", Value: bson.A{"ResumableChangeStreamError"}}}
				configureFailPoint(t, admin, "failCommand", bson.D{{Key: "times", Value: 1}}, data)
				if err := r.Start("big"); err != nil {
					t.Fatal(err)
				}
				if id := docID(waitRecv(t, got, "2")); id != 2 {
					t.Fatalf("got %d want 2", id)
				}
				ev := waitRecv(t, got, "update")
				if s, _ := ev.Lookup("fullDocument", "big").StringValueOK(); s != big {
					t.Errorf("fullDocument.big has %d bytes", len(s))
				}
				insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
				if id := docID(waitRecv(t, got, "3")); id != 3 {
					t.Fatalf("got %d want 3", id)
				}
				if n := configureFailPoint(t, admin, "failCommand", "off", nil); n < 1 {
					t.Errorf("fail point fired %d times", n)
				}
			})
		}
	}
}
