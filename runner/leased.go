package runner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
)

// StateStandby: the runner is clustered (Options.Clustered) and this
// instance does not hold the trigger's lease; another member runs it, or
// this one waits to acquire it.
const StateStandby State = "standby"

// Lease is the cluster lease a trigger runs under (*cluster.Ownership
// implements it).
type Lease interface {
	// Key is the lease's checkpoint key.
	Key() string
	// Fence is the owner and epoch every checkpoint write carries.
	Fence() store.Fence
	// Deadline is the local instant, on the runner's clock, after which
	// nothing may be delivered or checkpointed under the lease (zero:
	// already lost). It may come nearer than the clock alone says: a
	// cluster lease's deadline also passes by the wall clock, which keeps
	// counting while the host is suspended.
	Deadline() time.Time
	// Valid reports whether a delivery may start or a checkpoint be written
	// now. It is what bounds the lease: every delivery attempt, dead letter
	// and checkpoint asks it just before it starts, so a timer derived from
	// Deadline that runs late (its clock stopped while the host was
	// suspended) delays only a stop, never lets any of them start.
	Valid() bool
	// Lost tells the lease's holder that the state database refused a
	// checkpoint claim or save under the lease (err wraps
	// store.ErrLeaseLost): a higher epoch than the lease's is at the
	// checkpoint — a newer holder's, or, after the state database lost its
	// documents, a superseded holder's written while the lease's epoch was
	// numbered anew; or, there being no checkpoint, the lease document
	// names another holder — so no checkpoint of the unit can be written under
	// this lease any more, though its renewals may go on succeeding. The
	// holder is to fence the lease (Valid false from then on), stop the
	// unit and acquire the lease again, at an epoch above the checkpoint's
	// (store.AcquireLease), without a tight loop when that is refused
	// again. It must not block.
	Lost(err error)
}

// ErrFenced is returned (wrapped) by deliveries, dead letters and
// checkpoints attempted after the trigger's lease was lost or its local
// deadline passed.
var ErrFenced = errors.New("cluster lease no longer held; refusing to deliver or checkpoint")

// StartLeased starts the trigger name (like Start) under lease l: until
// the next StartLeased, the trigger's checkpoint is read and written only
// as l's epoch (a newer owner fences it out: store.ClaimCheckpoint,
// store.SaveFencedCheckpoint); no delivery attempt, dead letter or
// checkpoint starts once l.Valid() is false; and the shutdown grace period
// of a stop never extends beyond l's deadline. The lease holder calls Stop
// when the lease is handed off or lost, and releases the lease after Stop
// returned (the final checkpoint is then saved).
func (r *Runner) StartLeased(name string, l Lease) error {
	s, err := r.slot(name)
	if err != nil {
		return fmt.Errorf("start trigger under lease: %w", err)
	}
	s.mu.Lock()
	if s.pause != nil && s.pause.By == PauseByPayloadErrors && !(s.pauseLeased && s.pauseLease == l.Fence()) {
		// The payload-error pause is this member's own (not in the
		// controls) and belongs to the lease it was set under (none: it
		// came with the unit from a reload's repartitioning), which
		// another member may have followed with a fixed payload; under
		// this lease the unit meets its payload again, and pauses again
		// if it still fails. It starts only once the controls were read
		// again, so that a pause an operator recorded meanwhile (shown
		// here under the payload-error one) holds it.
		r.log.Info("payload-error pause of an earlier lease dropped: the unit's payload is tried again under the new lease",
			"trigger", s.t.Key(), "paused_since", timeText(s.pause.Since))
		s.pause, s.pauseDoc, s.unread = nil, "", r.opts.Controls
	}
	s.lease = l
	s.want = true
	r.reconcile(s)
	s.mu.Unlock()
	// Control requests pending for the unit are now this member's to apply.
	r.pokeControls()
	return nil
}

// leased returns the extra dispatcher options, the dead-letter sink, the
// checkpoint store and the watcher deadline for a start of s under its
// lease (the plain store and no options without a lease); s.mu must be
// held.
func (r *Runner) leased(s *slot) (dopts []dispatcher.Option, sink dispatcher.DeadLetterSink, cps CheckpointStore, deadline func() time.Time) {
	if s.lease == nil {
		return nil, r.store, r.store, nil
	}
	l := s.lease
	// The gate wraps the transport the dispatcher sends through: its own
	// (network guard, webhook.tls), which it closes when it stops, or the
	// caller's (Options.HTTPClient's, which startLocked passed;
	// http.DefaultTransport when its Transport is nil), which stays the
	// caller's. Never a transport built here: the dispatcher would take it
	// for the caller's and leave its connections open, one pool per start.
	gate := dispatcher.WithTransportWrapper(func(next http.RoundTripper) http.RoundTripper { return newGateTransport(next, l) })
	return []dispatcher.Option{gate}, gatedSink{r.store, l}, fencedCheckpoints{r.store, l}, l.Deadline
}

// fencedCheckpoints reads and writes a trigger's checkpoint as its lease's
// epoch.
type fencedCheckpoints struct {
	st *store.Store
	l  Lease
}

// LoadCheckpoint claims the checkpoint for the lease's epoch and reads it.
// A claim refused for a higher epoch at the checkpoint tells the lease
// (Lease.Lost).
func (f fencedCheckpoints) LoadCheckpoint(ctx context.Context, _ string) (store.Checkpoint, bool, error) {
	if !f.l.Valid() {
		return store.Checkpoint{}, false, fmt.Errorf("load checkpoint of %q: %w", f.l.Key(), ErrFenced)
	}
	cp, found, err := f.st.ClaimCheckpoint(ctx, f.l.Key(), f.l.Fence())
	if errors.Is(err, store.ErrLeaseLost) {
		f.l.Lost(err)
	}
	return cp, found, err
}

// SaveCheckpoint writes cp under the lease's key and epoch, unless the
// lease's local deadline passed. A save refused for a higher epoch at the
// checkpoint tells the lease (Lease.Lost).
func (f fencedCheckpoints) SaveCheckpoint(ctx context.Context, cp store.Checkpoint) error {
	if !f.l.Valid() {
		return fmt.Errorf("save checkpoint of %q: %w", f.l.Key(), ErrFenced)
	}
	cp.Trigger = f.l.Key()
	err := f.st.SaveFencedCheckpoint(ctx, cp, f.l.Fence())
	if errors.Is(err, store.ErrLeaseLost) {
		f.l.Lost(err)
	}
	return err
}

// CheckpointRemoved reports whether the lease's checkpoint was removed by
// a holder of its lease, only its fence left (reading needs no fence).
func (f fencedCheckpoints) CheckpointRemoved(ctx context.Context, key string) (bool, error) {
	return f.st.CheckpointRemoved(ctx, key)
}

// TriggerCheckpoints lists the trigger's checkpoints under every
// partitioning (reading needs no fence).
func (f fencedCheckpoints) TriggerCheckpoints(ctx context.Context, trigger string) ([]store.Checkpoint, error) {
	return f.st.TriggerCheckpoints(ctx, trigger)
}

// gatedSink refuses dead letters once the lease is no longer valid: the
// dispatcher then keeps the event undone, so it is neither checkpointed nor
// dead-lettered by a member that lost the trigger.
type gatedSink struct {
	st *store.Store
	l  Lease
}

// PutDeadLetter stores dl while the lease is valid; once it is not, the
// error wraps ErrFenced (reason dispatcher.DeadLetterFailLeaseLost).
func (g gatedSink) PutDeadLetter(ctx context.Context, dl dispatcher.DeadLetter) error {
	if !g.l.Valid() {
		return fmt.Errorf("put dead letter: %w", &dispatcher.DeadLetterStoreError{Reason: dispatcher.DeadLetterFailLeaseLost, Err: ErrFenced})
	}
	return g.st.PutDeadLetter(ctx, dl)
}

// gateTransport is an http.RoundTripper that starts a request only while
// the lease is valid.
type gateTransport struct {
	next    http.RoundTripper
	l       Lease
	checkFn func() error            // check, bound once
	last    atomic.Pointer[gateCtx] // the request context last derived with checkFn
}

// gateCtx is a request's context and the one gateTransport derived from
// it with the send check.
type gateCtx struct{ parent, ctx context.Context }

// newGateTransport returns the gate of l in front of next.
func newGateTransport(next http.RoundTripper, l Lease) *gateTransport {
	g := &gateTransport{next: next, l: l}
	g.checkFn = g.check
	return g
}

// RoundTrip sends req through the wrapped transport while the lease is
// valid; otherwise it fails without sending anything.
func (g *gateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.check(); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	// Checked again right before the request is written (http and https
	// without a proxy): a process frozen between here and the write must
	// not send it after its lease passed to another member.
	return g.next.RoundTrip(req.WithContext(g.sendCheckCtx(req.Context())))
}

// sendCheckCtx returns parent with the send check (dispatcher.WithSendCheck),
// derived once for the context the dispatcher's requests share rather
// than once per request.
func (g *gateTransport) sendCheckCtx(parent context.Context) context.Context {
	if c := g.last.Load(); c != nil && c.parent == parent {
		return c.ctx
	}
	if _, ok := parent.Deadline(); ok {
		// A context of its own per request (webhook.timeout through
		// net/http): not worth keeping.
		return dispatcher.WithSendCheck(parent, g.checkFn)
	}
	c := &gateCtx{parent: parent, ctx: dispatcher.WithSendCheck(parent, g.checkFn)}
	g.last.Store(c)
	return c.ctx
}

// check fails with errFencedSend once the lease is no longer valid
// (Lease.Valid: its local deadline passed, or it was lost).
func (g *gateTransport) check() error {
	if !g.l.Valid() {
		return errFencedSend
	}
	return nil
}

// errFencedSend is the gate's refusal to send. It matches ErrFenced, and
// dispatcher.ErrWithheld so that the dispatcher counts it as no attempt:
// nothing reached the endpoint, and the event stays undone for the member
// that holds the lease now.
var errFencedSend error = fencedSendError{}

type fencedSendError struct{}

func (fencedSendError) Error() string { return "deliver: " + ErrFenced.Error() }

func (fencedSendError) Is(target error) bool {
	return target == ErrFenced || target == dispatcher.ErrWithheld //nolint:errorlint // identity of the sentinels is what Is compares.
}

// CloseIdleConnections closes the wrapped transport's idle connections.
func (g *gateTransport) CloseIdleConnections() {
	if c, ok := g.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
