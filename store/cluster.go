package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Cluster collection names inside the state database.
const (
	// MembersCollection holds one document per running instance, keyed by
	// instance id, refreshed by its heartbeat.
	MembersCollection = "members"
	// LeasesCollection holds one lease per trigger (partition), keyed by the
	// checkpoint key.
	LeasesCollection = "leases"
	// ClusterCollection holds the cluster's own documents: the key of the
	// definition hashes members publish (see DefinitionHashKey).
	ClusterCollection = "cluster"
)

// definitionHashKeyID is the _id of the ClusterCollection document that
// holds the definition hash key.
const definitionHashKeyID = "definitionHashKey"

// DefinitionHashKeySize is the length in bytes of the definition hash key.
const DefinitionHashKeySize = 32

// ErrLeaseHeld is returned by AcquireLease when another instance holds a
// lease that has not expired.
var ErrLeaseHeld = errors.New("lease held by another instance")

// ErrLeaseLost is returned by RenewLease when the lease is no longer held by
// the caller with the caller's epoch (it expired, was released or was taken
// over), and by fenced checkpoint writes whose epoch is stale.
var ErrLeaseLost = errors.New("lease lost")

// Member is one running instance as registered in <state>.members.
type Member struct {
	// ID is the instance id (the document's _id).
	ID string `bson:"_id" json:"id"`
	// Host and PID say where the instance runs.
	Host string `bson:"host" json:"host"`
	PID  int    `bson:"pid" json:"pid"`
	// Version is the changehook version.
	Version string `bson:"version" json:"version"`
	// ConfigHash is a hash of the whole configuration's trigger definitions.
	ConfigHash string `bson:"configHash" json:"config_hash"`
	// Triggers maps each enabled trigger to the hash of its definition, so
	// members can tell which triggers differ between them.
	Triggers map[string]string `bson:"triggers" json:"triggers"`
	// Started is when the instance started (its own clock).
	Started time.Time `bson:"started" json:"started"`
	// Incarnation identifies the process on its kernel (boot id, pid
	// namespace, pid and process start time; "" where unknown). A restarted
	// instance with the same ID uses it to tell whether the previous
	// process is certainly dead (see the cluster package).
	Incarnation string `bson:"incarnation,omitempty" json:"incarnation,omitempty"`
	// Heartbeat and ExpiresAt are set by the state database's clock at each
	// heartbeat; the member counts as live while ExpiresAt is in the future.
	Heartbeat time.Time `bson:"heartbeat" json:"heartbeat"`
	ExpiresAt time.Time `bson:"expiresAt" json:"expires_at"`
	// RemainingMS is ExpiresAt minus the state database's time when the
	// member was read (negative: expired).
	RemainingMS int64 `bson:"remainingMs,omitempty" json:"remaining_ms"`
}

// Lease is the ownership of one trigger (partition) as stored in
// <state>.leases.
type Lease struct {
	// Key is the checkpoint key the lease guards (the document's _id).
	Key string `bson:"_id" json:"key"`
	// Owner is the holder's instance id; "" when released.
	Owner string `bson:"owner" json:"owner"`
	// Epoch grows by one at every acquisition; checkpoint writes carry it.
	Epoch int64 `bson:"epoch" json:"epoch"`
	// ExpiresAt is the state database's time at which the lease lapses.
	ExpiresAt time.Time `bson:"expiresAt" json:"expires_at"`
	// AcquiredAt is the state database's time of the acquisition.
	AcquiredAt time.Time `bson:"acquiredAt" json:"acquired_at"`
	// RemainingMS is ExpiresAt minus the state database's time when the
	// lease was read by ListLeases (negative: expired); 0 elsewhere.
	RemainingMS int64 `bson:"remainingMs,omitempty" json:"remaining_ms"`
}

// Fence identifies a lease holder for checkpoint writes: only the holder of
// the newest epoch of a key may move its checkpoint.
type Fence struct {
	// Owner is the holder's instance id.
	Owner string
	// Epoch is the lease epoch returned by AcquireLease.
	Epoch int64
}

func (s *Store) members() *mongo.Collection {
	return s.checkpoints.Database().Collection(MembersCollection)
}
func (s *Store) leases() *mongo.Collection {
	return s.checkpoints.Database().Collection(LeasesCollection)
}

// DefinitionHashKey returns the cluster's definition hash key: the key of
// the keyed hash of each trigger's definition that members publish
// (Member.Triggers), so that a definition's secrets (a webhook URL's
// query, a header value, a signing key) count in it without the hash
// letting anyone who reads it guess them offline. It reads the key first;
// only when there is none yet does it create one (DefinitionHashKeySize random
// bytes, inserted only if absent) and read again, so members starting
// together agree on one. The key is as secret as the definitions: never
// log or show it.
func (s *Store) DefinitionHashKey(ctx context.Context) ([]byte, error) {
	coll := s.checkpoints.Database().Collection(ClusterCollection)
	key, err := readDefinitionHashKey(ctx, coll)
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return key, err
	}
	key = make([]byte, DefinitionHashKeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms
	_, err = coll.InsertOne(ctx, bson.D{
		{Key: "_id", Value: definitionHashKeyID},
		{Key: "key", Value: bson.Binary{Data: key}},
	})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return nil, fmt.Errorf("create definition hash key: %w", err)
	}
	// Inserted, or another member's insert won: read the one stored.
	return readDefinitionHashKey(ctx, coll)
}

// ErrNoDefinitionHashKey is the error (wrapped) of ReadDefinitionHashKey
// when no member has created the definition hash key yet.
var ErrNoDefinitionHashKey = errors.New("no definition hash key: no member has created one")

// ReadDefinitionHashKey returns the cluster's definition hash key as
// DefinitionHashKey does, but only reads: when there is none it returns an
// error wrapping ErrNoDefinitionHashKey and creates nothing. It is for a
// process that is no member (`cluster status`), which must not create a
// key the running members do not hash with.
func (s *Store) ReadDefinitionHashKey(ctx context.Context) ([]byte, error) {
	key, err := readDefinitionHashKey(ctx, s.checkpoints.Database().Collection(ClusterCollection))
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("read definition hash key: %w", ErrNoDefinitionHashKey)
	}
	return key, err
}

// readDefinitionHashKey reads the definition hash key from coll; the error
// wraps mongo.ErrNoDocuments when there is none yet.
func readDefinitionHashKey(ctx context.Context, coll *mongo.Collection) ([]byte, error) {
	var doc struct {
		Key bson.Binary `bson:"key"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: definitionHashKeyID}}).Decode(&doc); err != nil {
		return nil, fmt.Errorf("read definition hash key: %w", err)
	}
	if len(doc.Key.Data) != DefinitionHashKeySize {
		return nil, fmt.Errorf("read definition hash key: %s.%s holds a key of %d bytes, want %d",
			ClusterCollection, definitionHashKeyID, len(doc.Key.Data), DefinitionHashKeySize)
	}
	return doc.Key.Data, nil
}

// expiresIn is the update-pipeline expression "server time + ttl".
func expiresIn(ttl time.Duration) bson.D {
	return bson.D{{Key: "$add", Value: bson.A{"$$NOW", ttl.Milliseconds()}}}
}

// Heartbeat registers m (or refreshes its registration): Heartbeat becomes
// the state database's current time and ExpiresAt that time plus ttl. The
// caller's Heartbeat and ExpiresAt are ignored.
func (s *Store) Heartbeat(ctx context.Context, m Member, ttl time.Duration) error {
	if m.ID == "" {
		return errors.New("heartbeat: empty instance id")
	}
	triggers := bson.D{}
	for name, h := range m.Triggers {
		triggers = append(triggers, bson.E{Key: name, Value: h})
	}
	set := bson.D{
		{Key: "host", Value: m.Host},
		{Key: "pid", Value: m.PID},
		{Key: "version", Value: m.Version},
		{Key: "configHash", Value: m.ConfigHash},
		// $literal: trigger names are user text and may start with "$".
		{Key: "triggers", Value: bson.D{{Key: "$literal", Value: triggers}}},
		{Key: "started", Value: m.Started},
		{Key: "incarnation", Value: m.Incarnation},
		{Key: "heartbeat", Value: "$$NOW"},
		{Key: "expiresAt", Value: expiresIn(ttl)},
	}
	_, err := s.members().UpdateOne(ctx, bson.D{{Key: "_id", Value: m.ID}},
		mongo.Pipeline{{{Key: "$set", Value: set}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("heartbeat of instance %q: %w", m.ID, err)
	}
	return nil
}

// LiveMembers returns the members whose registration has not expired by the
// state database's clock, ordered by id.
func (s *Store) LiveMembers(ctx context.Context) ([]Member, error) {
	return s.listMembers(ctx, bson.D{{Key: "$expr", Value: bson.D{{Key: "$gt", Value: bson.A{"$expiresAt", "$$NOW"}}}}})
}

// ListMembers returns every registered member, live or expired, ordered by
// id.
func (s *Store) ListMembers(ctx context.Context) ([]Member, error) {
	return s.listMembers(ctx, bson.D{})
}

// withRemaining is the aggregation stage adding remainingMs (expiresAt minus
// the state database's time).
var withRemaining = bson.D{{Key: "$addFields", Value: bson.D{{Key: "remainingMs", Value: bson.D{{Key: "$subtract", Value: bson.A{"$expiresAt", "$$NOW"}}}}}}}

func (s *Store) listMembers(ctx context.Context, filter bson.D) ([]Member, error) {
	cur, err := s.members().Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: filter}}, {{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}}, {{Key: "$limit", Value: 10000}}, withRemaining,
	})
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var out []Member
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return out, nil
}

// RemoveMember deletes the registration of id (at a clean shutdown).
func (s *Store) RemoveMember(ctx context.Context, id string) error {
	if _, err := s.members().DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("remove member %q: %w", id, err)
	}
	return nil
}

// WatchReleases reports, by calling notify, every lease release and every
// member registration removed (a member stopping or being pruned), as the
// state database's change stream delivers them, until ctx ends (nil) or the
// stream fails (its error). notify is also called once when the stream is
// open, for whatever was released before it was. A member that is told
// takes a released lease at once instead of at its next periodic round.
// notify must not block.
func (s *Store) WatchReleases(ctx context.Context, notify func()) error {
	pipeline := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{
			{Key: "ns.coll", Value: LeasesCollection},
			{Key: "operationType", Value: "update"},
			{Key: "updateDescription.updatedFields.owner", Value: ""},
		},
		bson.D{
			{Key: "ns.coll", Value: MembersCollection},
			{Key: "operationType", Value: "delete"},
		},
	}}}}}}
	cs, err := s.checkpoints.Database().Watch(ctx, pipeline)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch lease releases: %w", err)
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	notify()
	for cs.Next(ctx) {
		notify()
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := cs.Err(); err != nil {
		return fmt.Errorf("watch lease releases: %w", err)
	}
	return errors.New("watch lease releases: the change stream ended")
}

// PruneMembers deletes registrations that expired more than olderThan ago
// by the state database's clock, so crashed instances do not accumulate.
func (s *Store) PruneMembers(ctx context.Context, olderThan time.Duration) error {
	_, err := s.members().DeleteMany(ctx, bson.D{{Key: "$expr", Value: bson.D{{Key: "$lt", Value: bson.A{
		bson.D{{Key: "$add", Value: bson.A{"$expiresAt", olderThan.Milliseconds()}}}, "$$NOW"}}}}})
	if err != nil {
		return fmt.Errorf("prune members: %w", err)
	}
	return nil
}

// AcquireLease makes owner the holder of key's lease for ttl (by the state
// database's clock) when the lease is free: never taken, released, or
// expired. The new epoch is one above both the lease's previous epoch and
// the epoch key's checkpoint carries, so it grows at every acquisition and
// a lease document created anew (its collection dropped, or the document
// deleted alone) still starts above the checkpoint's fence instead of at
// 1, which ClaimCheckpoint would refuse as stale for good. It returns
// ErrLeaseHeld when someone holds an unexpired lease — including owner
// itself: a holder renews with RenewLease, and a new acquisition always
// fences out the previous one.
func (s *Store) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (Lease, error) {
	if key == "" || owner == "" {
		return Lease{}, errors.New("acquire lease: empty key or owner")
	}
	// Read before the acquisition: a checkpoint's epoch only grows by a
	// claim or save of a lease epoch, which the lease document then also
	// holds, so max(lease epoch, this) + 1 is above every fence written.
	cpEpoch, err := s.checkpointEpoch(ctx, key)
	if err != nil {
		return Lease{}, fmt.Errorf("acquire lease %q: %w", key, err)
	}
	free := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "$eq", Value: bson.A{bson.D{{Key: "$ifNull", Value: bson.A{"$owner", ""}}}, ""}}},
		bson.D{{Key: "$lte", Value: bson.A{"$expiresAt", "$$NOW"}}},
	}}}
	filter := bson.D{{Key: "_id", Value: key}, {Key: "$expr", Value: free}}
	update := mongo.Pipeline{{{Key: "$set", Value: bson.D{
		{Key: "owner", Value: owner},
		{Key: "epoch", Value: bson.D{{Key: "$add", Value: bson.A{
			bson.D{{Key: "$max", Value: bson.A{bson.D{{Key: "$ifNull", Value: bson.A{"$epoch", int64(0)}}}, cpEpoch}}}, int64(1)}}}},
		{Key: "acquiredAt", Value: "$$NOW"},
		{Key: "expiresAt", Value: expiresIn(ttl)},
	}}}}
	var l Lease
	err = s.leases().FindOneAndUpdate(ctx, filter, update,
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&l)
	switch {
	case mongo.IsDuplicateKeyError(err):
		// The lease exists and is not free: the upsert's insert collided.
		return Lease{}, ErrLeaseHeld
	case err != nil:
		return Lease{}, fmt.Errorf("acquire lease %q: %w", key, err)
	}
	return l, nil
}

// checkpointEpoch returns the lease epoch key's checkpoint was last
// claimed or saved with (0: no checkpoint, or one never fenced).
func (s *Store) checkpointEpoch(ctx context.Context, key string) (int64, error) {
	var doc struct {
		Epoch int64 `bson:"epoch"`
	}
	err := s.checkpoints.FindOne(ctx, bson.D{{Key: "_id", Value: key}},
		options.FindOne().SetProjection(bson.D{{Key: "epoch", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint epoch: %w", err)
	}
	return doc.Epoch, nil
}

// RenewLease extends key's lease to ttl from the state database's current
// time, provided f still holds it unexpired. It returns the renewed lease,
// or ErrLeaseLost.
func (s *Store) RenewLease(ctx context.Context, key string, f Fence, ttl time.Duration) (Lease, error) {
	filter := bson.D{
		{Key: "_id", Value: key}, {Key: "owner", Value: f.Owner}, {Key: "epoch", Value: f.Epoch},
		{Key: "$expr", Value: bson.D{{Key: "$gt", Value: bson.A{"$expiresAt", "$$NOW"}}}},
	}
	update := mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: expiresIn(ttl)}}}}}
	var l Lease
	err := s.leases().FindOneAndUpdate(ctx, filter, update, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&l)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return Lease{}, ErrLeaseLost
	case err != nil:
		return Lease{}, fmt.Errorf("renew lease %q: %w", key, err)
	}
	return l, nil
}

// LeaseRef names one held lease for RenewLeases: its key and the fence
// under which it is held.
type LeaseRef struct {
	Key   string
	Fence Fence
}

// RenewLeases extends every lease in refs to ttl from the state database's
// current time in one updateMany, each only while its fence still holds it
// unexpired (the RenewLease condition), and returns how many matched. When
// that is fewer than len(refs), some lease was lost or the call raced with
// its expiry: renew the leases one by one with RenewLease to learn which.
// An error leaves it unknown which leases were renewed.
func (s *Store) RenewLeases(ctx context.Context, refs []LeaseRef, ttl time.Duration) (int, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	held := make(bson.A, 0, len(refs))
	for _, r := range refs {
		held = append(held, bson.D{{Key: "_id", Value: r.Key}, {Key: "owner", Value: r.Fence.Owner}, {Key: "epoch", Value: r.Fence.Epoch}})
	}
	filter := bson.D{
		{Key: "$or", Value: held},
		{Key: "$expr", Value: bson.D{{Key: "$gt", Value: bson.A{"$expiresAt", "$$NOW"}}}},
	}
	update := mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: expiresIn(ttl)}}}}}
	res, err := s.leases().UpdateMany(ctx, filter, update)
	if err != nil {
		return 0, fmt.Errorf("renew %d leases: %w", len(refs), err)
	}
	return int(res.MatchedCount), nil
}

// ReleaseLease gives key's lease up when f still holds it, so a successor
// can acquire it at once; the epoch is kept (the next acquisition increments
// it). Releasing a lease f no longer holds is not an error.
func (s *Store) ReleaseLease(ctx context.Context, key string, f Fence) error {
	_, err := s.leases().UpdateOne(ctx,
		bson.D{{Key: "_id", Value: key}, {Key: "owner", Value: f.Owner}, {Key: "epoch", Value: f.Epoch}},
		mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "owner", Value: ""}, {Key: "expiresAt", Value: "$$NOW"}}}}})
	if err != nil {
		return fmt.Errorf("release lease %q: %w", key, err)
	}
	return nil
}

// ListLeases returns every lease document, ordered by key, with
// RemainingMS set.
func (s *Store) ListLeases(ctx context.Context) ([]Lease, error) {
	cur, err := s.leases().Aggregate(ctx, mongo.Pipeline{
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}}, {{Key: "$limit", Value: 100000}}, withRemaining,
	})
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	var out []Lease
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return out, nil
}

// leaseHeld is the $expr condition of a lease some instance holds
// unexpired by the state database's clock.
var leaseHeld = bson.D{{Key: "$and", Value: bson.A{
	bson.D{{Key: "$ne", Value: bson.A{bson.D{{Key: "$ifNull", Value: bson.A{"$owner", ""}}}, ""}}},
	bson.D{{Key: "$gt", Value: bson.A{"$expiresAt", "$$NOW"}}},
}}}

// ListCurrentLeases returns the lease documents of keys and every other
// lease an instance holds unexpired (by the state database's clock),
// ordered by key, with RemainingMS set. Unlike ListLeases it leaves out the
// free or expired leases of other keys (triggers removed from the
// configuration, old partitionings), which are kept for their epochs and
// so grow with every trigger ever run; what it returns is bounded by keys
// and the units live members run.
func (s *Store) ListCurrentLeases(ctx context.Context, keys []string) ([]Lease, error) {
	cur, err := s.leases().Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: nonNil(keys)}}}},
			bson.D{{Key: "$expr", Value: leaseHeld}},
		}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}}, {{Key: "$limit", Value: 100000}}, withRemaining,
	})
	if err != nil {
		return nil, fmt.Errorf("list current leases: %w", err)
	}
	var out []Lease
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("list current leases: %w", err)
	}
	return out, nil
}

// CountOtherLeases counts the lease documents ListCurrentLeases(keys)
// leaves out: those of other keys that no instance holds unexpired. It
// stops counting at limit (0: no limit), so a caller that shows the number
// bounds the state database's work too.
func (s *Store) CountOtherLeases(ctx context.Context, keys []string, limit int64) (int64, error) {
	filter := bson.D{
		{Key: "_id", Value: bson.D{{Key: "$nin", Value: nonNil(keys)}}},
		{Key: "$expr", Value: bson.D{{Key: "$not", Value: bson.A{leaseHeld}}}},
	}
	opts := options.Count()
	if limit > 0 {
		opts.SetLimit(limit)
	}
	n, err := s.leases().CountDocuments(ctx, filter, opts)
	if err != nil {
		return 0, fmt.Errorf("count other leases: %w", err)
	}
	return n, nil
}

// nonNil returns keys, or an empty slice for nil (which encodes as null,
// not as an empty array).
func nonNil(keys []string) []string {
	if keys == nil {
		return []string{}
	}
	return keys
}

// ClaimCheckpoint fences key's checkpoint for f right after f's lease was
// acquired: from then on a writer with an older epoch can no longer move
// it (see SaveFencedCheckpoint). It then returns the checkpoint like
// LoadCheckpoint. ErrLeaseLost means a newer epoch already claimed it, or
// removed it (DeleteFencedCheckpoint).
func (s *Store) ClaimCheckpoint(ctx context.Context, key string, f Fence) (cp Checkpoint, ok bool, err error) {
	res, err := s.checkpoints.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: key}, {Key: "$or", Value: bson.A{
			bson.D{{Key: "epoch", Value: bson.D{{Key: "$lte", Value: f.Epoch}}}},
			bson.D{{Key: "epoch", Value: bson.D{{Key: "$exists", Value: false}}}},
		}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: f.Owner}, {Key: "epoch", Value: f.Epoch}}}})
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("claim checkpoint of %q: %w", key, err)
	}
	if res.MatchedCount == 0 {
		// None, or one a newer epoch holds (a removed one's fence too).
		epoch, err := s.checkpointEpoch(ctx, key)
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("claim checkpoint of %q: %w", key, err)
		}
		if epoch > f.Epoch {
			return Checkpoint{}, false, fmt.Errorf("claim checkpoint of %q with epoch %d: %w", key, f.Epoch, ErrLeaseLost)
		}
	}
	return s.LoadCheckpoint(ctx, key)
}

// SaveFencedCheckpoint saves cp like SaveCheckpoint, but only while no
// newer epoch than f's has claimed, written or removed the checkpoint (see
// DeleteFencedCheckpoint); otherwise it returns an error wrapping
// ErrLeaseLost and leaves the checkpoint alone. It creates a checkpoint
// that does not exist (the first save of a new trigger or partition, or
// one whose document was deleted) only while key's lease document, if
// there is one, names f's owner and epoch: otherwise it returns an error
// wrapping ErrLeaseLost and creates nothing. A holder superseded while the
// state database lost its documents (restored from a backup, or started
// empty) would otherwise write its epoch, above the one the new holder's
// lease started again from, into the checkpoint, and lock that holder out
// of every later save.
func (s *Store) SaveFencedCheckpoint(ctx context.Context, cp Checkpoint, f Fence) error {
	if err := validCheckpoint(&cp); err != nil {
		return err
	}
	set := bson.D{
		{Key: "token", Value: cp.Token},
		{Key: "clusterTime", Value: cp.ClusterTime},
		{Key: "updatedAt", Value: cp.UpdatedAt},
		{Key: "owner", Value: f.Owner},
		{Key: "epoch", Value: f.Epoch},
	}
	if cp.Control != "" {
		set = append(set, bson.E{Key: "control", Value: cp.Control})
	}
	moved, err := s.moveFencedCheckpoint(ctx, cp.Trigger, f, set)
	if err != nil || moved {
		return err
	}
	// None, or one a newer epoch holds.
	epoch, err := s.checkpointEpoch(ctx, cp.Trigger)
	if err != nil {
		return fmt.Errorf("save checkpoint of %q: %w", cp.Trigger, err)
	}
	if epoch > f.Epoch {
		return fmt.Errorf("save checkpoint of %q with epoch %d: the checkpoint carries epoch %d: %w", cp.Trigger, f.Epoch, epoch, ErrLeaseLost)
	}
	var l Lease
	err = s.leases().FindOne(ctx, bson.D{{Key: "_id", Value: cp.Trigger}}).Decode(&l)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
	case err != nil:
		return fmt.Errorf("save checkpoint of %q: read its lease: %w", cp.Trigger, err)
	case l.Owner != f.Owner || l.Epoch != f.Epoch:
		return fmt.Errorf("save checkpoint of %q with epoch %d: no checkpoint to move, and the lease names %s at epoch %d: %w",
			cp.Trigger, f.Epoch, leaseOwnerText(l.Owner), l.Epoch, ErrLeaseLost)
	}
	_, err = s.checkpoints.InsertOne(ctx, append(bson.D{{Key: "_id", Value: cp.Trigger}}, set...))
	if !mongo.IsDuplicateKeyError(err) {
		if err != nil {
			return fmt.Errorf("save checkpoint of %q: %w", cp.Trigger, err)
		}
		return nil
	}
	// Created meanwhile: move it if its epoch allows.
	if moved, err = s.moveFencedCheckpoint(ctx, cp.Trigger, f, set); err != nil || moved {
		return err
	}
	return fmt.Errorf("save checkpoint of %q with epoch %d: a newer epoch created it: %w", cp.Trigger, f.Epoch, ErrLeaseLost)
}

// moveFencedCheckpoint sets set on key's checkpoint when one exists that
// no newer epoch than f's holds, and reports whether it did.
func (s *Store) moveFencedCheckpoint(ctx context.Context, key string, f Fence, set bson.D) (bool, error) {
	filter := bson.D{{Key: "_id", Value: key}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "epoch", Value: bson.D{{Key: "$lte", Value: f.Epoch}}}},
		bson.D{{Key: "epoch", Value: bson.D{{Key: "$exists", Value: false}}}},
	}}}
	res, err := s.checkpoints.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return false, fmt.Errorf("save checkpoint of %q: %w", key, err)
	}
	return res.MatchedCount > 0, nil
}

// leaseOwnerText names a lease's owner in an error ("no owner" when
// released).
func leaseOwnerText(owner string) string {
	if owner == "" {
		return "no owner"
	}
	return fmt.Sprintf("member %q", owner)
}

// CheckpointRemoved reports whether key's checkpoint was removed by the
// holder of its lease (DeleteFencedCheckpoint: `checkpoints repartition`
// removes the old partitioning's so) and only its fence is left, as
// opposed to absent: never saved, or deleted with its document or
// collection. LoadCheckpoint and ClaimCheckpoint report both as no
// checkpoint.
func (s *Store) CheckpointRemoved(ctx context.Context, key string) (bool, error) {
	n, err := s.checkpoints.CountDocuments(ctx, bson.D{{Key: "_id", Value: key}, {Key: "token", Value: removedToken}})
	if err != nil {
		return false, fmt.Errorf("read whether the checkpoint of %q was removed: %w", key, err)
	}
	return n > 0, nil
}

// DeleteFencedCheckpoint removes key's checkpoint as the holder of f's
// lease (which claimed it: ClaimCheckpoint), leaving its fence behind: a
// document with f's owner and epoch and no position (its token is the
// string removedToken, not a resume token, so that a release before fences
// existed fails to read it, loudly, instead of taking it for a checkpoint
// without position and starting the trigger at start_at). LoadCheckpoint,
// ListCheckpoints and TriggerCheckpoints do not return it, but a writer
// with an older epoch, such as a superseded owner whose save was still in
// flight, can no longer create the checkpoint again with its stale
// position (SaveFencedCheckpoint returns ErrLeaseLost), and AcquireLease
// still numbers the key's next epoch above it, even once the lease
// document is deleted too. A holder with f's epoch or a newer one saves the
// checkpoint again as usual. It returns an error wrapping ErrLeaseLost,
// and removes nothing, when a newer epoch than f's claimed the checkpoint.
func (s *Store) DeleteFencedCheckpoint(ctx context.Context, key string, f Fence) error {
	if key == "" {
		return errors.New("delete checkpoint: empty key")
	}
	filter := bson.D{{Key: "_id", Value: key}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "epoch", Value: bson.D{{Key: "$lte", Value: f.Epoch}}}},
		bson.D{{Key: "epoch", Value: bson.D{{Key: "$exists", Value: false}}}},
	}}}
	update := bson.D{
		{Key: "$set", Value: bson.D{{Key: "owner", Value: f.Owner}, {Key: "epoch", Value: f.Epoch}, {Key: "updatedAt", Value: time.Now()},
			{Key: "token", Value: removedToken}}},
		{Key: "$unset", Value: bson.D{{Key: "clusterTime", Value: ""}, {Key: "control", Value: ""}}},
	}
	_, err := s.checkpoints.UpdateOne(ctx, filter, update, options.UpdateOne().SetUpsert(true))
	if mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("delete checkpoint of %q with epoch %d: %w", key, f.Epoch, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("delete checkpoint of %q: %w", key, err)
	}
	return nil
}
