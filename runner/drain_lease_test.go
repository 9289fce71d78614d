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

// drainLease is a runner.Lease held throughout. A renewed one is renewed
// all the time: its local deadline is always ahead by ahead (a cluster
// ownership the Manager renews until it is released, during a handoff or
// a SIGTERM drain). One that is not renewed keeps the deadline it had when
// the test stopped renewing it (stop), and is no longer valid past it.
// Each read of Deadline is reported on reads with the time it was made.
type drainLease struct {
	key     string
	fence   store.Fence
	renewed bool
	ahead   time.Duration
	reads   chan time.Time

	mu       sync.Mutex
	deadline time.Time // zero: renewed so far
	lost     error     // the first error Lost was given
}

func (l *drainLease) Key() string        { return l.key }
func (l *drainLease) Fence() store.Fence { return l.fence }

func (l *drainLease) Deadline() time.Time {
	now := time.Now()
	select {
	case l.reads <- now:
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deadline.IsZero() {
		return now.Add(l.ahead)
	}
	return l.deadline
}

// Lost records err: the runner found the lease lost at the checkpoint,
// which no drain of this test's may see.
func (l *drainLease) Lost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
	}
}

func (l *drainLease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline.IsZero() || time.Now().Before(l.deadline)
}

// stop ends the renewals (unless the lease is renewed throughout) and
// returns the deadline the lease has from now on, or, renewed, has now.
func (l *drainLease) stop() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := time.Now().Add(l.ahead)
	if !l.renewed {
		l.deadline = d
	}
	return d
}

// TestStopDrainFollowsTheLeaseDeadline: a trigger stopped under a cluster
// lease (a handoff, or SIGTERM) drains its in-flight deliveries within the
// grace period (5 s here), never past the lease's local deadline. A lease
// that goes on being renewed meanwhile (the Manager renews it until it is
// released) lets the drain go on past the deadline it had when the stop
// began: the delivery answered after that deadline finishes and the final
// checkpoint is after it. A lease that is not renewed cuts the drain at
// its deadline, well before the grace period ends, and the delivery is
// left unfinished. The drain used to be cut at the deadline of the stop's
// start in both cases, so a renewed lease left its delivery unfinished
// (to be delivered again by the successor).
func TestStopDrainFollowsTheLeaseDeadline(t *testing.T) {
	t.Parallel()
	const ahead = 500 * time.Millisecond
	for _, tc := range []struct {
		name    string
		renewed bool
	}{
		{"renewed while draining", true},
		{"not renewed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			const grace = 5 * time.Second
			r, st, _ := startClusteredRunner(t, client, recv, "strict", grace)
			waitFor(t, "runner ready", r.Ready)
			coll := client.Database("shop").Collection("orders")
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			l := &drainLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, renewed: tc.renewed, ahead: ahead,
				reads: make(chan time.Time, 64)}
			if err := r.StartLeased("orders", l); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "stream open", func() bool { return r.Status()[0].StreamOpen })
			release := recv.holdRequests()
			t.Cleanup(release)
			insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
			<-recv.arrived // the delivery is in flight

			began := time.Now()
			first := l.stop() // the deadline as the stop begins
			stopped := make(chan error, 1)
			go func() { stopped <- r.Stop(ctx, "orders") }()
			var stopErr error
		drain:
			for {
				select {
				case at := <-l.reads:
					if tc.renewed && !at.Before(first) {
						// The drain read the deadline again once the one
						// of the stop's start had passed: the endpoint
						// answers now, past that deadline.
						release()
					}
				case stopErr = <-stopped:
					break drain
				}
			}
			took := time.Since(began)
			if stopErr != nil {
				t.Fatal(stopErr)
			}
			l.mu.Lock()
			lost := l.lost
			l.mu.Unlock()
			if lost != nil {
				t.Errorf("the runner told the lease it was lost at the checkpoint: %v", lost)
			}
			if !tc.renewed && took >= grace {
				t.Errorf("the stop took %v: the drain was not cut at the lease deadline (%v ahead)", took, ahead)
			}
			cp, ok, err := st.LoadCheckpoint(ctx, "orders")
			if err != nil {
				t.Fatal(err)
			}
			var after []int32
			if ok {
				after = eventsAfter(t, coll, cp.Token)
			}
			switch delivered := ok && len(after) == 0; {
			case tc.renewed && !delivered:
				t.Errorf("the drain was cut: final checkpoint found=%v leaves %v to be delivered again", ok, after)
			case !tc.renewed && delivered:
				t.Errorf("the delivery still in flight at the lease deadline was checkpointed")
			}
		})
	}
}
