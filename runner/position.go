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

// ErrFutureTime is returned (wrapped) by PositionAt for a time after the
// server's current time: a checkpoint there would skip every change
// written until then, none of them delivered or dead-lettered.
var ErrFutureTime = errors.New("time in the future")

// PositionAt opens t's change stream at time at (zero: now) with an empty
// first batch and returns its post-batch resume token as a checkpoint of t:
// a position before every change at or after at, so that resuming from it
// delivers exactly those changes. ClusterTime is at (zero for now: unknown)
// and UpdatedAt the current time. For a partition (triggers.Partition) the
// checkpoint is the partition's (Trigger is its key).
//
// A time after the server's current time (ServerTime, to the second: the
// oplog's resolution) is refused with an error wrapping ErrFutureTime that
// names the server's time; it is compared with the server's clock, which
// stamps the oplog, not with this machine's, which may differ from it.
func PositionAt(ctx context.Context, client *mongo.Client, t *triggers.Trigger, at time.Time) (store.Checkpoint, error) {
	if !at.IsZero() {
		if err := CheckNotFuture(ctx, client, at); err != nil {
			return store.Checkpoint{}, err
		}
	}
	return positionAt(ctx, client, t, at)
}

// positionAt is PositionAt for a time the caller has already compared with
// the server's clock (CheckNotFuture): asking the server's time again could
// get another answer — an earlier one, from another member of the replica
// set after a failover whose clock is behind — and refuse a time that was
// accepted, after the caller stopped the trigger to move it.
func positionAt(ctx context.Context, client *mongo.Client, t *triggers.Trigger, at time.Time) (store.Checkpoint, error) {
	var ts bson.Timestamp
	if !at.IsZero() {
		var err error
		if ts, err = triggers.OperationTime(at); err != nil {
			return store.Checkpoint{}, fmt.Errorf("position trigger %s: %w", t.Name, err)
		}
	}
	token, err := openAt(ctx, client, t, at)
	if err != nil {
		return store.Checkpoint{}, positionError(ctx, client, t, at, err)
	}
	now := time.Now()
	cp := store.Checkpoint{Trigger: t.Key(), Token: token, UpdatedAt: now}
	if !at.IsZero() {
		cp.ClusterTime = ts
	}
	return cp, nil
}

// errNoToken is openAt's error for a stream opened without a resume token.
var errNoToken = errors.New("the server returned no resume token")

// openAt opens t's change stream at time at (zero: now) with an empty first
// batch and returns its post-batch resume token; for a time, it also reads
// once, to learn whether the oplog still reaches it. It returns the
// server's errors as they are, and triggers.OperationTime's for a time
// that no timestamp holds.
func openAt(ctx context.Context, client *mongo.Client, t *triggers.Trigger, at time.Time) (bson.Raw, error) {
	opts := t.ChangeStreamOptions().SetBatchSize(0)
	if !at.IsZero() {
		ts, err := triggers.OperationTime(at)
		if err != nil {
			return nil, err
		}
		opts.SetStartAtOperationTime(&ts).SetMaxAwaitTime(historyCheckAwait)
	}
	cs, err := t.Watch(ctx, client, opts)
	if err != nil {
		return nil, err
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	token := append(bson.Raw(nil), cs.ResumeToken()...)
	if len(token) == 0 {
		return nil, errNoToken
	}
	if !at.IsZero() {
		// An event readOnce returns is not used: the position is the
		// token above. Only lost history fails it: reading the first
		// change may fail for reasons of its own (one too large to
		// return, BSONObjectTooLarge), which the trigger meets, and deals
		// with, when it reads from here.
		if err := readOnce(ctx, cs); err != nil && (historyLost(err) || ctx.Err() != nil) {
			return nil, err
		}
	}
	return token, nil
}

// readOnce reads change stream cs, opened with an empty first batch, once:
// MongoDB finds that its position is no longer in the oplog only while
// reading, and the empty first batch read nothing, so it sends a getMore
// of at most one event (the driver's first TryNext only takes the empty
// first batch, the second sends it). It returns the stream's error.
func readOnce(ctx context.Context, cs *mongo.ChangeStream) error {
	cs.SetBatchSize(1)
	for range 2 {
		if cs.TryNext(ctx) || cs.Err() != nil {
			break
		}
	}
	return cs.Err()
}

// CheckNotFuture returns nil when at is not after the deployment's current
// time (ServerTime), compared to the second (the oplog's resolution), and
// otherwise an error wrapping ErrFutureTime that names both times. It fails
// with the server's error when its time cannot be read.
func CheckNotFuture(ctx context.Context, client *mongo.Client, at time.Time) error {
	now, err := ServerTime(ctx, client)
	if err != nil {
		return err
	}
	if at.Unix() > now.Unix() {
		return fmt.Errorf("%w: %s is after the server's current time, %s: a position there would skip every change written until then; "+
			"pick a time in the past, or now", ErrFutureTime, positionText(at), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// ServerTime returns the deployment's current time as its server reports
// it in hello: localTime (the server's clock), or, from a server that
// reports none, the reply's operationTime (the cluster time of its latest
// operation). It does not read this machine's clock, which may differ from
// the server's.
func ServerTime(ctx context.Context, client *mongo.Client) (time.Time, error) {
	var hello struct {
		LocalTime     time.Time      `bson:"localTime"`
		OperationTime bson.Timestamp `bson:"operationTime"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return time.Time{}, fmt.Errorf("read the server's time (hello): %w", err)
	}
	switch {
	case !hello.LocalTime.IsZero():
		return hello.LocalTime.UTC(), nil
	case hello.OperationTime.T != 0:
		return time.Unix(int64(hello.OperationTime.T), 0).UTC(), nil
	}
	return time.Time{}, errors.New("read the server's time (hello): the reply has neither localTime nor operationTime")
}

// historyCheckAwait bounds the wait of PositionAt's one read (a getMore
// waits that long for a change when there is none).
const historyCheckAwait = 10 * time.Millisecond

// historyLost reports whether err is MongoDB's ChangeStreamHistoryLost.
func historyLost(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(codeChangeStreamHistoryLost)
}

// earliestWait bounds positionError's search for the earliest time the
// oplog still reaches (earliestStart).
const earliestWait = 10 * time.Second

// positionError is the error of PositionAt's change stream at at. For a
// time no longer in the oplog it names the earliest one still there
// (earliestStart), when it can find it.
func positionError(ctx context.Context, client *mongo.Client, t *triggers.Trigger, at time.Time, err error) error {
	if !at.IsZero() && historyLost(err) {
		if earliest, ok := earliestStart(ctx, client, t, at); ok {
			return fmt.Errorf("%s is older than the oldest change still in the oplog: the earliest time it still reaches is %s (pick it or a later time): %w",
				positionText(at), positionText(earliest), err)
		}
		return fmt.Errorf("%s is older than the oldest change still in the oplog: pick a later time: %w", positionText(at), err)
	}
	if errors.Is(err, errNoToken) {
		return fmt.Errorf("open the change stream of %s: %w", t.Name, err)
	}
	return fmt.Errorf("open the change stream of %s at %s: %w", t.Name, positionText(at), err)
}

// earliestStart finds, to the second, the earliest time after lost (a time
// the oplog no longer reaches) from which t's change stream starts: it
// bisects between lost and the server's current time, opening the stream
// at each probe as PositionAt does (about log2 of the seconds between them,
// 17 probes for a day). It needs no privilege beyond the trigger's own, and
// works through a mongos. ok is false when a probe fails otherwise, or the
// search takes longer than earliestWait. The oplog keeps rolling: the time
// found is the earliest at the search's end.
func earliestStart(ctx context.Context, client *mongo.Client, t *triggers.Trigger, lost time.Time) (time.Time, bool) {
	ctx, cancel := context.WithTimeout(ctx, earliestWait)
	defer cancel()
	now, err := ServerTime(ctx, client)
	if err != nil {
		return time.Time{}, false
	}
	// lo is lost; hi is the present second, which is not known to be in
	// reach until a probe says so: when the oldest change is of the
	// present second, only now is.
	lo, hi, reached := lost.Unix(), now.Unix(), false
	for lo < hi && !(reached && hi-lo == 1) {
		mid := lo + (hi-lo+1)/2
		_, err := openAt(ctx, client, t, time.Unix(mid, 0))
		switch {
		case err == nil:
			hi, reached = mid, true
		case historyLost(err):
			lo = mid
		default:
			return time.Time{}, false
		}
	}
	return time.Unix(hi, 0).UTC(), reached
}

func positionText(at time.Time) string {
	if at.IsZero() {
		return "now"
	}
	return at.UTC().Format(time.RFC3339)
}
