package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ErrTriggerRunning is returned (wrapped) by Repartition when a process
// holds the lease of one of the trigger's units (it may run it, or hold it
// failed), or a live cluster member lists the trigger and may start it.
var ErrTriggerRunning = errors.New("the trigger is in use")

// Repartitioned is what Repartition did.
type Repartitioned struct {
	// Trigger is the trigger's name.
	Trigger string
	// Partitions is the new number of partitions.
	Partitions int
	// Old are the checkpoints found (every partitioning), ordered by key;
	// those whose key is not a new key were removed.
	Old []store.Checkpoint
	// Start is the oldest of Old: every new partition continues after it.
	// Zero when there was no checkpoint (the partitions then start at
	// start_at, as a new trigger does).
	Start store.Checkpoint
	// Newest is the newest of Old: events between Start and Newest were
	// already delivered by some old partition and are delivered again.
	Newest store.Checkpoint
	// Keys are the new partitions' checkpoint keys, written with Start.
	Keys []string
	// DroppedControls are the control documents of the removed
	// partitions' keys (every partitioning but the new one), as they were
	// when Repartition deleted them, ordered by key: their pauses and
	// pending requests applied to partitions that no longer exist. The
	// trigger's own document (by name) stays.
	DroppedControls []store.Control
}

// RepartitionOptions tune Repartition.
type RepartitionOptions struct {
	// Force skips the refusal while live cluster members list the trigger
	// in their configuration. A lease held by anyone always refuses.
	Force bool
	// Owner names the holder of the leases while Repartition rewrites
	// (default "checkpoints-repartition@HOST-PID").
	Owner string
	// LeaseTTL is how long those leases are taken for (default
	// triggers.DefaultLeaseTTL); they are released when it is done.
	LeaseTTL time.Duration
}

// Repartition rewrites the checkpoints of trigger for n partitions (1 to
// triggers.MaxPartitions): every new partition's checkpoint becomes the
// oldest of the trigger's checkpoints under any partitioning, so no change
// is skipped; then the other checkpoints, the lease documents of their
// keys and the control documents of the partition keys other than the new
// ones (DroppedControls) are removed — the control documents after the
// checkpoints, so that a Repartition that fails before leaves the old
// partitions' pauses with their checkpoints. A removed checkpoint leaves
// its epoch fence (store.DeleteFencedCheckpoint), so that a former owner's
// save still in flight cannot bring it back.
// The changes between the oldest and the newest old
// checkpoint were delivered by the partitions that were ahead and are
// delivered again after the restart (same webhook-id); nothing else is.
// Running it again (after a crash in the middle) gives the same result.
//
// It rewrites as the holder of the lease of every old and new key (the
// keys of the trigger's checkpoints and lease documents, and the new
// partitions' keys), taken for opts.LeaseTTL and released at the end, like
// a cluster member would: while it holds them no member can start one of
// those partitions, and a member that held one before can no longer write
// its checkpoint (its epoch is older). It refuses (ErrTriggerRunning),
// changing nothing, while anyone holds an unexpired lease of one of those
// keys, naming the holder, and — unless opts.Force — while a live cluster
// member lists the trigger in its configuration (such a member would take
// the old partitions again and, finding their checkpoints gone, fail until
// its configuration says partitions: n). A `changehook dev` process takes
// no leases: stop it first.
func Repartition(ctx context.Context, st *store.Store, trigger string, n int, opts RepartitionOptions) (Repartitioned, error) {
	res := Repartitioned{Trigger: trigger, Partitions: n}
	if n < 1 || n > triggers.MaxPartitions {
		return res, fmt.Errorf("repartition %s: partitions must be between 1 and %d, got %d", trigger, triggers.MaxPartitions, n)
	}
	if !opts.Force {
		if err := notListed(ctx, st, trigger); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
	}
	if opts.Owner == "" {
		host, _ := os.Hostname()
		opts.Owner = fmt.Sprintf("checkpoints-repartition@%s-%d", host, os.Getpid())
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = triggers.DefaultLeaseTTL
	}
	for i := range n {
		res.Keys = append(res.Keys, triggers.PartitionKey(trigger, i, n))
	}
	held := map[string]store.Fence{}
	defer func() {
		for key, f := range held {
			_ = st.ReleaseLease(context.WithoutCancel(ctx), key, f)
		}
	}()
	// Take the leases of every key in use, until no checkpoint or lease of
	// the trigger appears that is not held (a member may have started a
	// partition meanwhile).
	var old []store.Checkpoint
	for round := 0; ; round++ {
		keys, cps, err := triggerKeys(ctx, st, trigger, res.Keys)
		if err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
		fresh := 0
		for _, key := range keys {
			if _, ok := held[key]; ok {
				continue
			}
			fresh++
			l, err := st.AcquireLease(ctx, key, opts.Owner, opts.LeaseTTL)
			if errors.Is(err, store.ErrLeaseHeld) {
				return res, fmt.Errorf("repartition %s: %w: %s; a changehook keeps the lease of a partition it has, running or failed, until it stops; "+
					"nothing was changed. Stop every changehook that has the trigger in its configuration, the holder included, then repartition again",
					trigger, ErrTriggerRunning, leaseHolder(ctx, st, key))
			}
			if err != nil {
				return res, fmt.Errorf("repartition %s: %w", trigger, err)
			}
			held[key] = store.Fence{Owner: l.Owner, Epoch: l.Epoch}
		}
		if fresh == 0 {
			old = cps
			break
		}
		if round == 5 {
			return res, fmt.Errorf("repartition %s: %w: its partitions keep changing while the leases are taken; nothing was changed", trigger, ErrTriggerRunning)
		}
	}
	// Claim each checkpoint for this epoch, fencing out its former writers,
	// and read it as claimed.
	res.Old = res.Old[:0]
	for _, cp := range old {
		claimed, ok, err := st.ClaimCheckpoint(ctx, cp.Trigger, held[cp.Trigger])
		if err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
		if ok {
			res.Old = append(res.Old, claimed)
		}
	}
	if len(res.Old) == 0 {
		return res, nil
	}
	for i, cp := range res.Old {
		a, err := TokenPosition(cp.Token)
		if err != nil {
			return res, fmt.Errorf("repartition %s: checkpoint %s: %w", trigger, cp.Trigger, err)
		}
		if i == 0 {
			res.Start, res.Newest = cp, cp
			continue
		}
		if s, _ := TokenPosition(res.Start.Token); a < s {
			res.Start = cp
		}
		if s, _ := TokenPosition(res.Newest.Token); a > s {
			res.Newest = cp
		}
	}
	now := time.Now()
	for _, key := range res.Keys {
		cp := store.Checkpoint{Trigger: key, Token: res.Start.Token, ClusterTime: res.Start.ClusterTime, UpdatedAt: now}
		if err := st.SaveFencedCheckpoint(ctx, cp, held[key]); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
	}
	for _, cp := range res.Old {
		if slices.Contains(res.Keys, cp.Trigger) {
			continue
		}
		if err := st.DeleteFencedCheckpoint(ctx, cp.Trigger, held[cp.Trigger]); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
	}
	// The old partitions' control documents: no member runs those keys (it
	// would hold their leases, which Repartition holds), and one that takes
	// them later fails for want of their checkpoints. Left, a pause or a
	// pending skip of one would apply again to the partition of that key
	// should the trigger ever be repartitioned back.
	ctls, err := st.PartitionControls(ctx, trigger)
	if err != nil {
		return res, fmt.Errorf("repartition %s: %w", trigger, err)
	}
	for _, c := range ctls {
		if slices.Contains(res.Keys, c.Trigger) {
			continue
		}
		if err := st.DeleteControl(ctx, c.Trigger); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
		res.DroppedControls = append(res.DroppedControls, c)
	}
	// The old keys' leases go with their checkpoints; the new keys' are
	// released (their epochs stay, so the next holder fences this one out).
	for key, f := range held {
		if slices.Contains(res.Keys, key) {
			continue
		}
		if err := st.ReleaseLease(ctx, key, f); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
		delete(held, key)
		if err := st.DeleteFreeLease(ctx, key); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
	}
	return res, nil
}

// triggerKeys returns the keys Repartition must hold for trigger: those of
// its checkpoints (returned too) and lease documents under any
// partitioning, and the new keys, sorted.
func triggerKeys(ctx context.Context, st *store.Store, trigger string, newKeys []string) ([]string, []store.Checkpoint, error) {
	cps, err := st.TriggerCheckpoints(ctx, trigger)
	if err != nil {
		return nil, nil, err
	}
	leases, err := st.ListLeases(ctx)
	if err != nil {
		return nil, nil, err
	}
	keys := slices.Clone(newKeys)
	for _, cp := range cps {
		keys = append(keys, cp.Trigger)
	}
	for _, l := range leases {
		if name, _, _, ok := triggers.ParsePartitionKey(l.Key); ok && name == trigger {
			keys = append(keys, l.Key)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), cps, nil
}

// leaseHolder says who holds key's lease, for a refusal.
func leaseHolder(ctx context.Context, st *store.Store, key string) string {
	if ls, err := st.ListLeases(ctx); err == nil {
		for _, l := range ls {
			if l.Key == key && l.Owner != "" {
				return fmt.Sprintf("%s holds the lease of %s (it expires in %s unless renewed)", l.Owner, key, time.Duration(l.RemainingMS)*time.Millisecond)
			}
		}
	}
	return "another process holds the lease of " + key
}

// notListed fails when a live cluster member lists trigger in its
// configuration.
func notListed(ctx context.Context, st *store.Store, trigger string) error {
	live, err := st.LiveMembers(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for _, m := range live {
		if _, ok := m.Triggers[trigger]; ok {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) > 0 {
		return fmt.Errorf("%w: live cluster members list it in their configuration (they run it, stand by for it, or hold it failed): %s; "+
			"stop them (or remove the trigger from their configuration) first, or use --force", ErrTriggerRunning, strings.Join(ids, ", "))
	}
	return nil
}

// TokenPosition returns a resume token's position as a comparable string:
// its _data, upper-cased. MongoDB's tokens (and devdb's) are KeyStrings that
// open with the cluster time and sort in stream order byte by byte, and
// _data is their hex form, so two tokens of one deployment compare as the
// stream orders them.
func TokenPosition(token bson.Raw) (string, error) {
	data, ok := token.Lookup("_data").StringValueOK()
	if !ok || data == "" {
		return "", errors.New("resume token without _data")
	}
	return strings.ToUpper(data), nil
}

// tokenClusterTime returns the cluster time a resume token opens with,
// seconds and increment, as TokenTime reads it; ok is false for a token of
// another form.
func tokenClusterTime(token bson.Raw) (ts bson.Timestamp, ok bool) {
	p, err := TokenPosition(token)
	if err != nil || len(p) < 18 || p[:2] != "82" {
		return bson.Timestamp{}, false
	}
	secs, err := strconv.ParseUint(p[2:10], 16, 32)
	if err != nil {
		return bson.Timestamp{}, false
	}
	inc, err := strconv.ParseUint(p[10:18], 16, 32)
	if err != nil {
		return bson.Timestamp{}, false
	}
	return bson.Timestamp{T: uint32(secs), I: uint32(inc)}, true
}

// justBefore returns the last cluster time before ts (zero for zero).
func justBefore(ts bson.Timestamp) bson.Timestamp {
	switch {
	case ts.I > 0:
		return bson.Timestamp{T: ts.T, I: ts.I - 1}
	case ts.T > 0:
		return bson.Timestamp{T: ts.T - 1, I: math.MaxUint32}
	}
	return ts
}

// TokenTime returns the cluster time a resume token opens with (seconds
// since the epoch, as MongoDB's and devdb's tokens encode it: a 0x82
// marker, then the timestamp's seconds big-endian); ok is false for a
// token of another form.
func TokenTime(token bson.Raw) (time.Time, bool) {
	p, err := TokenPosition(token)
	if err != nil || len(p) < 10 || p[:2] != "82" {
		return time.Time{}, false
	}
	secs, err := strconv.ParseUint(p[2:10], 16, 32)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0).UTC(), true
}
