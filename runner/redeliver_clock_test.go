package runner_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// helloCounter counts the hello commands a client sends (the driver's
// own monitoring of the servers is not among its commands).
type helloCounter struct {
	mu sync.Mutex
	on bool
	n  int
}

func (c *helloCounter) started(_ context.Context, e *event.CommandStartedEvent) {
	if e.CommandName != "hello" {
		return
	}
	c.mu.Lock()
	if c.on {
		c.n++
	}
	c.mu.Unlock()
}

func (c *helloCounter) count(on bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = on
	return c.n
}

// TestRedeliverAsksTheServersTimeOnce: a redeliver compares its time with
// the server's clock once, before it stops the trigger. Asking again
// while moving the checkpoint could get an earlier answer (another member
// of the replica set after a failover, its clock behind) and refuse, with
// the trigger already stopped, a time that was accepted.
func TestRedeliverAsksTheServersTimeOnce(t *testing.T) {
	t.Parallel()
	srv, _ := devdbtest.StartWith(t, devdb.Options{})
	hellos := &helloCounter{}
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetMonitor(&event.CommandMonitor{Started: hellos.started}))
	recv := newReceiver(t)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "running", func() bool { return statusOf(t, r, "orders").StreamOpen })
	coll := client.Database("shop").Collection("orders")
	since := insertIDsBefore(t, client, coll, 1, 3)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(4)}})
	receiveThrough(t, recv, 4)

	hellos.count(true)
	if err := r.Redeliver(t.Context(), "orders", since); err != nil {
		t.Fatal(err)
	}
	if n := hellos.count(false); n != 1 {
		t.Errorf("the redeliver asked the server's time %d times, want once", n)
	}
	if got := receiveThrough(t, recv, 4); len(got) != 1 || got[0] != 4 {
		t.Errorf("redelivered %v, want [4]", got)
	}
}
