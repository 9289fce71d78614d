package runner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// fencingLease is a runner.Lease renewed all the time (its deadline is
// always ahead by ahead, as a cluster.Ownership the Manager renews while
// the unit drains) until fence is called: from then on, like a fenced
// cluster.Ownership (a renewal refused as lost, or Lost), Deadline is the
// zero time and Valid is false. Each Deadline read is counted on reads.
type fencingLease struct {
	ahead time.Duration
	reads chan struct{}

	mu     sync.Mutex
	fenced bool
}

func (l *fencingLease) Key() string        { return "orders" }
func (l *fencingLease) Fence() store.Fence { return store.Fence{Owner: "a", Epoch: 1} }
func (l *fencingLease) Lost(error)         { l.fence() }

func (l *fencingLease) fence() {
	l.mu.Lock()
	l.fenced = true
	l.mu.Unlock()
}

func (l *fencingLease) Deadline() time.Time {
	select {
	case l.reads <- struct{}{}:
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fenced {
		return time.Time{}
	}
	return time.Now().Add(l.ahead)
}

func (l *fencingLease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.fenced
}

// TestDrainCutWhenLeaseFencedMidDrain: a unit drains under a
// renewed lease (a handoff or SIGTERM); while the drain waits for an
// in-flight delivery the lease is fenced (its renewal is refused as lost:
// another member holds it, or the state database lost it; or Lost).
// Deadline then returns the zero time ("already past"), and the drain must
// be cut at once: the lease may already be another member's. It used to
// be cut only when the deadline it read before the fence came (ahead =
// 20 s here).
func TestDrainCutWhenLeaseFencedMidDrain(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	const grace = 60 * time.Second
	const ahead = 20 * time.Second
	r, _, _ := startClusteredRunner(t, client, recv, "strict", grace)
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	ctx, cancel := context.WithTimeout(t.Context(), 2*grace)
	defer cancel()

	l := &fencingLease{ahead: ahead, reads: make(chan struct{}, 64)}
	if err := r.StartLeased("orders", l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream open", func() bool { return r.Status()[0].StreamOpen })
	release := recv.holdRequests()
	t.Cleanup(release)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	<-recv.arrived // the delivery is in flight

	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop(ctx, "orders") }()
	// The drain reads the deadline twice before it waits for it (the
	// check before its goroutine, then the goroutine's first read).
	<-l.reads
	<-l.reads
	fencedAt := time.Now()
	l.fence()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("stop returned %v after the fence", time.Since(fencedAt))
	case <-time.After(5 * time.Second): // far more than a cut takes; far less than ahead
		release()
		err := <-stopped
		t.Fatalf("the drain went on %v after its lease was fenced (Deadline zero, Valid false), until released (stop: %v): "+
			"it re-reads the deadline only when the one read before the fence (%v ahead) comes", time.Since(fencedAt), err, ahead)
	}
}
