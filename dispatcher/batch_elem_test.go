package dispatcher

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestBatcherDoesNotKeepALargeElement: the batcher reuses the buffer it
// encodes each event's element into, but not one a large event grew: an
// idle trigger that once delivered a 4 MiB event held a buffer that large
// until it stopped, outside every bound on what a trigger holds.
func TestBatcherDoesNotKeepALargeElement(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:  triggers.Webhook{URL: rc.srv.URL},
		Ordering: triggers.Strict,
		Batch:    &triggers.BatchPolicy{MaxEvents: 10, MaxWait: time.Millisecond},
	}, nil)
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: "8200000001"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "fullDocument", Value: bson.D{{Key: "big", Value: strings.Repeat("x", 4<<20)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Submit(context.Background(), Event{Raw: raw, Token: tok}); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, d, 10*time.Second) // the batcher has stopped: its state is as the idle trigger's
	if _, ok := d.Watermark(); !ok {
		t.Fatal("the event was not delivered")
	}
	if n := cap(d.batcher.pendingElem); n > maxKeptElem {
		t.Errorf("the batcher keeps a buffer of %d bytes after a large event, want at most %d", n, maxKeptElem)
	}
}
