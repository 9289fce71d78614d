package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ErrTriggerRunning is returned (wrapped) by Repartition when a cluster
// member runs, or may start, the trigger.
var ErrTriggerRunning = errors.New("the trigger is running")

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
}

// Repartition rewrites the checkpoints of trigger for n partitions (1 to
// triggers.MaxPartitions): every new partition's checkpoint becomes the
// oldest of the trigger's checkpoints under any partitioning, so no change
// is skipped; then the other checkpoints, and the free lease documents of
// their keys, are removed. The changes between the oldest and the newest
// old checkpoint were delivered by the partitions that were ahead and are
// delivered again after the restart (same webhook-id); nothing else is.
// Running it again (after a crash in the middle) gives the same result.
//
// It refuses (ErrTriggerRunning) while a live cluster member lists the
// trigger in its configuration or anyone holds an unexpired lease of one
// of its keys, because a running member would keep moving the checkpoints
// it holds; force skips that check (then a member still running the old
// partitions can write old keys again, which the new partitions ignore: at
// worst more duplicates). A `changehook dev` process takes no leases: stop
// it first.
func Repartition(ctx context.Context, st *store.Store, trigger string, n int, force bool) (Repartitioned, error) {
	res := Repartitioned{Trigger: trigger, Partitions: n}
	if n < 1 || n > triggers.MaxPartitions {
		return res, fmt.Errorf("repartition %s: partitions must be between 1 and %d, got %d", trigger, triggers.MaxPartitions, n)
	}
	if !force {
		if err := notRunning(ctx, st, trigger); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
	}
	old, err := st.TriggerCheckpoints(ctx, trigger)
	if err != nil {
		return res, fmt.Errorf("repartition %s: %w", trigger, err)
	}
	res.Old = old
	for i := range n {
		res.Keys = append(res.Keys, triggers.PartitionKey(trigger, i, n))
	}
	if len(old) == 0 {
		return res, nil
	}
	for i, cp := range old {
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
		if err := st.SaveCheckpoint(ctx, cp); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
	}
	for _, cp := range old {
		if slices.Contains(res.Keys, cp.Trigger) {
			continue
		}
		if err := st.DeleteCheckpoint(ctx, cp.Trigger); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
		if err := st.DeleteFreeLease(ctx, cp.Trigger); err != nil {
			return res, fmt.Errorf("repartition %s: %w", trigger, err)
		}
	}
	return res, nil
}

// notRunning fails when a live member lists trigger or an unexpired lease
// of one of its keys is held.
func notRunning(ctx context.Context, st *store.Store, trigger string) error {
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
		return fmt.Errorf("%w on cluster members %s: stop them (or remove the trigger from their configuration) first, or use --force", ErrTriggerRunning, strings.Join(ids, ", "))
	}
	leases, err := st.ListLeases(ctx)
	if err != nil {
		return err
	}
	for _, l := range leases {
		if name, _, _, ok := triggers.ParsePartitionKey(l.Key); ok && name == trigger && l.Owner != "" && l.RemainingMS > 0 {
			return fmt.Errorf("%w: %s holds the lease %s for %dms more: stop it first, or use --force", ErrTriggerRunning, l.Owner, l.Key, l.RemainingMS)
		}
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
