package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// codeChangeStreamHistoryLost is MongoDB's ChangeStreamHistoryLost error code.
const codeChangeStreamHistoryLost = 286

// PositionAt opens t's change stream at time at (zero: now) with an empty
// first batch and returns its post-batch resume token as a checkpoint of t:
// a position before every change at or after at, so that resuming from it
// delivers exactly those changes. ClusterTime is at (zero for now: unknown)
// and UpdatedAt the current time. For a partition (triggers.Partition) the
// checkpoint is the partition's (Trigger is its key).
func PositionAt(ctx context.Context, client *mongo.Client, t *triggers.Trigger, at time.Time) (store.Checkpoint, error) {
	opts := t.ChangeStreamOptions().SetBatchSize(0)
	if !at.IsZero() {
		opts.SetStartAtOperationTime(&bson.Timestamp{T: uint32(at.Unix())})
	}
	cs, err := t.Watch(ctx, client, opts)
	if err != nil {
		var se mongo.ServerError
		if !at.IsZero() && errors.As(err, &se) && se.HasErrorCode(codeChangeStreamHistoryLost) {
			return store.Checkpoint{}, fmt.Errorf("%s is older than the oldest change still in the oplog: pick a later time, or now: %w", positionText(at), err)
		}
		return store.Checkpoint{}, fmt.Errorf("open the change stream of %s at %s: %w", t.Name, positionText(at), err)
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	token := cs.ResumeToken()
	if token == nil {
		return store.Checkpoint{}, fmt.Errorf("open the change stream of %s: the server returned no resume token", t.Name)
	}
	now := time.Now()
	cp := store.Checkpoint{Trigger: t.Key(), Token: append(bson.Raw(nil), token...), UpdatedAt: now}
	if !at.IsZero() {
		cp.ClusterTime = bson.Timestamp{T: uint32(at.Unix())}
	}
	return cp, nil
}

func positionText(at time.Time) string {
	if at.IsZero() {
		return "now"
	}
	return at.UTC().Format(time.RFC3339)
}
