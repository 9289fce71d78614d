package store_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestLeaseLifecycle(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	const ttl = time.Hour

	a, err := s.AcquireLease(ctx, "orders", "a", ttl)
	if err != nil {
		t.Fatalf("acquire free lease: %v", err)
	}
	if a.Owner != "a" || a.Epoch != 1 || !a.ExpiresAt.After(a.AcquiredAt) {
		t.Fatalf("acquired lease = %+v, want owner a, epoch 1, expiry after acquisition", a)
	}
	if d := a.ExpiresAt.Sub(a.AcquiredAt); d != ttl {
		t.Errorf("expiry - acquisition = %s, want %s (both from the server's clock)", d, ttl)
	}
	fa := store.Fence{Owner: "a", Epoch: a.Epoch}

	steps := []struct {
		name string
		run  func() error
		want error
	}{
		{"held lease refuses b", func() error { _, err := s.AcquireLease(ctx, "orders", "b", ttl); return err }, store.ErrLeaseHeld},
		{"held lease refuses its owner", func() error { _, err := s.AcquireLease(ctx, "orders", "a", ttl); return err }, store.ErrLeaseHeld},
		{"owner renews", func() error { _, err := s.RenewLease(ctx, "orders", fa, ttl); return err }, nil},
		{"wrong epoch cannot renew", func() error {
			_, err := s.RenewLease(ctx, "orders", store.Fence{Owner: "a", Epoch: 7}, ttl)
			return err
		}, store.ErrLeaseLost},
		{"other owner cannot renew", func() error {
			_, err := s.RenewLease(ctx, "orders", store.Fence{Owner: "b", Epoch: 1}, ttl)
			return err
		}, store.ErrLeaseLost},
		{"other owner's release is ignored", func() error { return s.ReleaseLease(ctx, "orders", store.Fence{Owner: "b", Epoch: 1}) }, nil},
		{"still held after that", func() error { _, err := s.AcquireLease(ctx, "orders", "b", ttl); return err }, store.ErrLeaseHeld},
		{"owner releases", func() error { return s.ReleaseLease(ctx, "orders", fa) }, nil},
		{"released lease cannot be renewed", func() error { _, err := s.RenewLease(ctx, "orders", fa, ttl); return err }, store.ErrLeaseLost},
	}
	for _, st := range steps {
		if err := st.run(); !errors.Is(err, st.want) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
		}
	}
	b, err := s.AcquireLease(ctx, "orders", "b", ttl)
	if err != nil || b.Owner != "b" || b.Epoch != 2 {
		t.Fatalf("acquire released lease = %+v, %v; want owner b epoch 2", b, err)
	}

	// An expired lease is free: expire it by the server's clock.
	if _, err := client.Database("changehook_state").Collection(store.LeasesCollection).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: "orders"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: time.Unix(0, 0)}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RenewLease(ctx, "orders", store.Fence{Owner: "b", Epoch: 2}, ttl); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("renew expired lease: err = %v, want ErrLeaseLost", err)
	}
	c, err := s.AcquireLease(ctx, "orders", "c", ttl)
	if err != nil || c.Epoch != 3 {
		t.Fatalf("take over expired lease = %+v, %v; want epoch 3", c, err)
	}
	ls, err := s.ListLeases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Owner != "c" || ls[0].RemainingMS <= 0 || ls[0].RemainingMS > ttl.Milliseconds() {
		t.Fatalf("ListLeases = %+v, %v", ls, err)
	}
}

func TestFencedCheckpoints(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	tok1, tok2, tok3 := token(t, "01"), token(t, "02"), token(t, "03")
	old, cur := store.Fence{Owner: "a", Epoch: 1}, store.Fence{Owner: "b", Epoch: 2}

	if _, ok, err := s.ClaimCheckpoint(ctx, "orders", old); err != nil || ok {
		t.Fatalf("claim missing checkpoint = ok %v, err %v; want none, nil", ok, err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: tok1}, old); err != nil {
		t.Fatalf("save with epoch 1: %v", err)
	}
	cp, ok, err := s.ClaimCheckpoint(ctx, "orders", cur)
	if err != nil || !ok || string(cp.Token) != string(tok1) {
		t.Fatalf("claim with epoch 2 = %v %v %v; want tok1", cp, ok, err)
	}
	// The old owner is fenced out from the claim on, before b wrote anything.
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: tok3}, old); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale save: err = %v, want ErrLeaseLost", err)
	}
	if _, _, err := s.ClaimCheckpoint(ctx, "orders", old); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale claim: err = %v, want ErrLeaseLost", err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: tok2}, cur); err != nil {
		t.Fatalf("save with epoch 2: %v", err)
	}
	cp, _, err = s.LoadCheckpoint(ctx, "orders")
	if err != nil || string(cp.Token) != string(tok2) {
		t.Fatalf("checkpoint = %v, %v; want tok2", cp, err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders"}, cur); err == nil {
		t.Fatal("save without token succeeded")
	}
	// An unfenced save by the holder (a runtime control: skip, resume
	// --from) moves the checkpoint but keeps the fence: the old owner is
	// still refused afterwards.
	if err := s.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: tok1}); err != nil {
		t.Fatalf("unfenced save: %v", err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: tok3}, old); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale save after an unfenced save: err = %v, want ErrLeaseLost", err)
	}
	cp, _, err = s.LoadCheckpoint(ctx, "orders")
	if err != nil || string(cp.Token) != string(tok1) {
		t.Fatalf("checkpoint = %v, %v; want tok1 (the unfenced save)", cp, err)
	}
}

func TestMembers(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, id := range []string{"b", "a"} {
		m := store.Member{ID: id, Host: "h", PID: 42, Version: "v1", ConfigHash: "c1",
			Triggers: map[string]string{"$odd name": "h1"}, Started: started}
		if err := s.Heartbeat(ctx, m, time.Hour); err != nil {
			t.Fatalf("heartbeat %s: %v", id, err)
		}
	}
	if err := s.Heartbeat(ctx, store.Member{}, time.Hour); err == nil {
		t.Fatal("heartbeat without id succeeded")
	}
	live, err := s.LiveMembers(ctx)
	if err != nil || len(live) != 2 || live[0].ID != "a" || live[1].Triggers["$odd name"] != "h1" {
		t.Fatalf("LiveMembers = %+v, %v", live, err)
	}
	if rem := live[0].RemainingMS; rem <= 0 || rem > time.Hour.Milliseconds() {
		t.Errorf("remainingMs = %d, want in (0, 1h]", rem)
	}
	if d := live[0].ExpiresAt.Sub(live[0].Heartbeat); d != time.Hour {
		t.Errorf("expiresAt - heartbeat = %s, want 1h", d)
	}
	// Expire b by the server's clock: it is no longer live, then pruned.
	if _, err := client.Database("changehook_state").Collection(store.MembersCollection).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: time.Unix(0, 0)}}}}); err != nil {
		t.Fatal(err)
	}
	if live, err = s.LiveMembers(ctx); err != nil || len(live) != 1 || live[0].ID != "a" {
		t.Fatalf("LiveMembers after expiry = %+v, %v", live, err)
	}
	if err := s.PruneMembers(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if all, err := s.ListMembers(ctx); err != nil || len(all) != 1 {
		t.Fatalf("ListMembers after prune = %+v, %v", all, err)
	}
	if err := s.RemoveMember(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.ListMembers(ctx); len(all) != 0 {
		t.Fatalf("members after remove = %+v", all)
	}
}

// TestListCurrentLeases: ListCurrentLeases returns the leases of the keys
// asked for, held or not, and the other keys' leases held unexpired, not
// the other keys' free or expired ones, which CountOtherLeases counts (up
// to its limit).
func TestListCurrentLeases(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	const ttl = time.Hour
	acquire := func(key, owner string) store.Lease {
		t.Helper()
		l, err := s.AcquireLease(ctx, key, owner, ttl)
		if err != nil {
			t.Fatalf("acquire %s: %v", key, err)
		}
		return l
	}
	release := func(key string) {
		t.Helper()
		l := acquire(key, "gone")
		if err := s.ReleaseLease(ctx, key, store.Fence{Owner: l.Owner, Epoch: l.Epoch}); err != nil {
			t.Fatal(err)
		}
	}
	acquire("orders/p0of2", "a") // configured, held
	release("orders/p1of2")      // configured, free
	acquire("audit", "b")        // not configured, held by another member
	release("removed1")          // not configured, free
	release("orders/p0of3")      // an old partitioning, free
	acquire("crashed", "dead")   // not configured, held but expired:
	if _, err := client.Database("changehook_state").Collection(store.LeasesCollection).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: "crashed"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: time.Unix(0, 0)}}}}); err != nil {
		t.Fatal(err)
	}
	keys := []string{"orders/p0of2", "orders/p1of2", "users"}
	ls, err := s.ListCurrentLeases(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.Key+"="+l.Owner)
		if l.RemainingMS == 0 {
			t.Errorf("%s: RemainingMS not set", l.Key)
		}
	}
	if want := []string{"audit=b", "orders/p0of2=a", "orders/p1of2="}; !slices.Equal(got, want) {
		t.Errorf("ListCurrentLeases = %v, want %v", got, want)
	}
	for _, c := range []struct {
		limit, want int64
	}{{0, 3}, {10, 3}, {2, 2}} {
		if n, err := s.CountOtherLeases(ctx, keys, c.limit); err != nil || n != c.want {
			t.Errorf("CountOtherLeases(limit %d) = %d, %v; want %d (removed1, orders/p0of3, crashed)", c.limit, n, err, c.want)
		}
	}
	if ls, err := s.ListCurrentLeases(ctx, nil); err != nil || len(ls) != 2 || ls[0].Key != "audit" || ls[1].Key != "orders/p0of2" {
		t.Errorf("no keys: %+v, %v; want only the held leases, of audit and orders/p0of2", ls, err)
	}
	if all, err := s.ListLeases(ctx); err != nil || len(all) != 6 {
		t.Errorf("ListLeases: %d leases, %v; want all 6", len(all), err)
	}
}

// TestAcquireLeaseStartsAboveTheCheckpointsEpoch: a lease document created
// anew (its collection dropped) starts above the epoch the checkpoint
// carries, so its holder can claim the checkpoint and the stale holder
// cannot; a lease document whose epoch fell behind the checkpoint's grows
// past it too.
func TestAcquireLeaseStartsAboveTheCheckpointsEpoch(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	leases := client.Database("changehook_state").Collection(store.LeasesCollection)
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82AA"}})
	cp := store.Checkpoint{Trigger: "orders", Token: tok}
	stale := store.Fence{Owner: "a", Epoch: 4}
	if err := s.SaveFencedCheckpoint(ctx, cp, stale); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		reset func() error
		want  int64
	}{
		{"leases dropped", func() error { return leases.Drop(ctx) }, 5},
		{"lease epoch behind the checkpoint's", func() error {
			_, err := leases.UpdateOne(ctx, bson.D{{Key: "_id", Value: "orders"}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "epoch", Value: int64(1)}, {Key: "owner", Value: ""}}}})
			return err
		}, 6},
	} {
		if err := tc.reset(); err != nil {
			t.Fatal(err)
		}
		l, err := s.AcquireLease(ctx, "orders", "b", time.Hour)
		if err != nil || l.Epoch != tc.want {
			t.Fatalf("%s: acquired %+v, %v; want epoch %d", tc.name, l, err, tc.want)
		}
		fresh := store.Fence{Owner: "b", Epoch: l.Epoch}
		if _, _, err := s.ClaimCheckpoint(ctx, "orders", fresh); err != nil {
			t.Fatalf("%s: the new holder's claim: %v", tc.name, err)
		}
		if err := s.SaveFencedCheckpoint(ctx, cp, stale); !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("%s: the stale holder's save: %v, want ErrLeaseLost", tc.name, err)
		}
		stale = fresh
	}
}

// TestDeletedCheckpointStaysFenced: a checkpoint the holder of a newer
// epoch removed (as `checkpoints repartition` removes the old
// partitioning's) cannot be written again by a writer with an older epoch
// — a superseded owner's save still in flight — though neither the
// checkpoint nor, afterwards, the lease document is there any more. The
// readers do not see what it leaves, the next acquisition's epoch is above
// it, and the holder of that epoch, or a new key's first holder, saves as
// usual.
func TestDeletedCheckpointStaysFenced(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	tok1, tok2, tok3 := token(t, "01"), token(t, "02"), token(t, "03")
	save := func(key string, tok bson.Raw, f store.Fence) func() error {
		return func() error { return s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: key, Token: tok}, f) }
	}
	acquire := func(key, owner string) store.Fence {
		t.Helper()
		l, err := s.AcquireLease(ctx, key, owner, time.Hour)
		if err != nil {
			t.Fatalf("acquire %s for %s: %v", key, owner, err)
		}
		return store.Fence{Owner: owner, Epoch: l.Epoch}
	}
	// a runs orders and saves; its lease lapses, and the repartition (r)
	// takes the lease, claims the checkpoint and removes it, then the
	// lease document.
	stale := acquire("orders", "a")
	if err := save("orders", tok1, stale)(); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLease(ctx, "orders", stale); err != nil {
		t.Fatal(err)
	}
	rep := acquire("orders", "r")
	if _, _, err := s.ClaimCheckpoint(ctx, "orders", rep); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFencedCheckpoint(ctx, "orders", rep); err != nil {
		t.Fatalf("delete with epoch %d: %v", rep.Epoch, err)
	}
	// The fence's token is no resume token: a release that predates fences
	// (it decodes every token as a document) fails to load it, rather than
	// taking it for a checkpoint without position and starting at start_at.
	var previous struct {
		Token bson.Raw `bson:"token"`
	}
	err := client.Database("changehook_state").Collection(store.CheckpointsCollection).FindOne(ctx, bson.D{{Key: "_id", Value: "orders"}}).Decode(&previous)
	if err == nil {
		t.Fatalf("the fence decodes as a checkpoint of the previous form (token %v)", previous.Token)
	}
	if err := s.ReleaseLease(ctx, "orders", rep); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFreeLease(ctx, "orders"); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name string
		run  func() error
		want error
	}{
		{"the superseded owner's save", save("orders", tok3, stale), store.ErrLeaseLost},
		{"the superseded owner's claim", func() error { _, _, err := s.ClaimCheckpoint(ctx, "orders", stale); return err }, store.ErrLeaseLost},
		{"the superseded owner's delete", func() error { return s.DeleteFencedCheckpoint(ctx, "orders", stale) }, store.ErrLeaseLost},
		{"a new key's first save", save("users", tok1, acquire("users", "a")), nil},
	}
	for _, st := range steps {
		if err := st.run(); !errors.Is(err, st.want) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.want)
		}
	}
	if cp, ok, err := s.LoadCheckpoint(ctx, "orders"); err != nil || ok {
		t.Fatalf("removed checkpoint = %+v, %v, %v; want none", cp, ok, err)
	}
	if cps, err := s.TriggerCheckpoints(ctx, "orders"); err != nil || len(cps) != 0 {
		t.Fatalf("trigger checkpoints = %+v, %v; want none", cps, err)
	}
	all, err := s.ListCheckpoints(ctx)
	if err != nil || len(all) != 1 || all[0].Trigger != "users" {
		t.Fatalf("checkpoints = %+v, %v; want users' only", all, err)
	}

	// The key used again: its next holder's epoch is above the removal's,
	// even with the lease document gone; it finds no checkpoint and saves.
	next := acquire("orders", "b")
	if next.Epoch <= rep.Epoch {
		t.Fatalf("epoch after the removal = %d, want above %d", next.Epoch, rep.Epoch)
	}
	if _, ok, err := s.ClaimCheckpoint(ctx, "orders", next); err != nil || ok {
		t.Fatalf("claim after the removal = ok %v, err %v; want none, nil", ok, err)
	}
	if err := save("orders", tok2, next)(); err != nil {
		t.Fatalf("save with epoch %d: %v", next.Epoch, err)
	}
	if cp, ok, err := s.LoadCheckpoint(ctx, "orders"); err != nil || !ok || string(cp.Token) != string(tok2) {
		t.Fatalf("checkpoint = %+v, %v, %v; want tok2", cp, ok, err)
	}
	if err := save("orders", tok3, stale)(); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("the superseded owner's save after that: err = %v, want ErrLeaseLost", err)
	}
}

// TestFencedSaveCreatesOnlyUnderItsLease: a fenced save creates a missing
// checkpoint only while the key's lease document, if any, names the
// saver's owner and epoch. After the state database lost its documents a
// new holder's lease starts again at epoch 1; a superseded holder still
// saving with its old, higher epoch must not create the checkpoint with
// it, or every later save of the new holder is refused as stale.
func TestFencedSaveCreatesOnlyUnderItsLease(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	leases := client.Database("changehook_state").Collection(store.LeasesCollection)
	saver := store.Fence{Owner: "a", Epoch: 5}
	for _, tc := range []struct {
		name  string
		lease bson.D // the key's lease document; nil: none
		want  error
	}{
		{"no lease document", nil, nil},
		{"lease names the saver", bson.D{{Key: "owner", Value: "a"}, {Key: "epoch", Value: int64(5)}}, nil},
		{"another owner at a lower epoch (state database lost)", bson.D{{Key: "owner", Value: "b"}, {Key: "epoch", Value: int64(1)}}, store.ErrLeaseLost},
		{"another owner at a higher epoch", bson.D{{Key: "owner", Value: "b"}, {Key: "epoch", Value: int64(6)}}, store.ErrLeaseLost},
		{"the saver at another epoch", bson.D{{Key: "owner", Value: "a"}, {Key: "epoch", Value: int64(6)}}, store.ErrLeaseLost},
		{"released", bson.D{{Key: "owner", Value: ""}, {Key: "epoch", Value: int64(5)}}, store.ErrLeaseLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "orders-" + tc.name
			if tc.lease != nil {
				if _, err := leases.InsertOne(ctx, append(bson.D{{Key: "_id", Value: key}}, tc.lease...)); err != nil {
					t.Fatal(err)
				}
			}
			err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: key, Token: token(t, "05")}, saver)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("save = %v, want %v", err, tc.want)
			}
			_, ok, lerr := s.LoadCheckpoint(ctx, key)
			if lerr != nil || ok != (tc.want == nil) {
				t.Fatalf("checkpoint after the save: found %v, %v; want found %v", ok, lerr, tc.want == nil)
			}
		})
	}

	// The new holder of the lost state database's first case saves as
	// usual; the superseded holder is refused from then on.
	if _, err := leases.InsertOne(ctx, bson.D{{Key: "_id", Value: "lost"}, {Key: "owner", Value: "b"}, {Key: "epoch", Value: int64(1)}}); err != nil {
		t.Fatal(err)
	}
	holder := store.Fence{Owner: "b", Epoch: 1}
	if _, _, err := s.ClaimCheckpoint(ctx, "lost", holder); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "lost", Token: token(t, "06")}, saver); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("superseded holder's save: %v, want ErrLeaseLost", err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "lost", Token: token(t, "07")}, holder); err != nil {
		t.Fatalf("new holder's first save: %v", err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "lost", Token: token(t, "08")}, holder); err != nil {
		t.Fatalf("new holder's next save: %v", err)
	}
	if cp, _, err := s.LoadCheckpoint(ctx, "lost"); err != nil || string(cp.Token) != string(token(t, "08")) {
		t.Fatalf("checkpoint = %v, %v; want the new holder's last save", cp, err)
	}
}

// TestCheckpointRemoved tells a checkpoint its lease holder removed (only
// its fence left) from one that is absent or present.
func TestCheckpointRemoved(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	f := store.Fence{Owner: "r", Epoch: 3}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "kept", Token: token(t, "01")}, f); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "removed", Token: token(t, "01")}, f); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFencedCheckpoint(ctx, "removed", f); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "deleted", Token: token(t, "01")}, f); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Database("changehook_state").Collection(store.CheckpointsCollection).DeleteOne(ctx, bson.D{{Key: "_id", Value: "deleted"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"kept", false},
		{"removed", true},
		{"deleted", false},
		{"never saved", false},
	} {
		if got, err := s.CheckpointRemoved(ctx, tc.key); err != nil || got != tc.want {
			t.Errorf("CheckpointRemoved(%q) = %v, %v; want %v", tc.key, got, err, tc.want)
		}
	}
}

// TestDefinitionHashKey: the first call creates the key and every call,
// however many run at once on a fresh state database, returns that one.
func TestDefinitionHashKey(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = s.DefinitionHashKey(ctx) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if len(keys[i]) != store.DefinitionHashKeySize || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("call %d returned key %x, call 0 %x: want one key of %d bytes", i, keys[i], keys[0], store.DefinitionHashKeySize)
		}
	}
	again, err := s.DefinitionHashKey(ctx)
	if err != nil || !bytes.Equal(again, keys[0]) {
		t.Fatalf("a later call returned %x, %v; want the key created first", again, err)
	}
}

// TestDefinitionHashKeyReadOnly: a user that may read the state database
// but not insert into it (one running `cluster status`; here every insert
// fails Unauthorized) reads the key a member created; only when there is
// none yet does it fail, saying it could not create one.
func TestDefinitionHashKeyReadOnly(t *testing.T) {
	tests := []struct {
		name    string
		created bool // a member created the key before inserts were refused
		wantErr string
	}{
		{name: "key present", created: true},
		{name: "no key yet", wantErr: "create definition hash key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
			s := store.New(client, "changehook_state")
			ctx := context.Background()
			var created []byte
			if tc.created {
				var err error
				if created, err = s.DefinitionHashKey(ctx); err != nil {
					t.Fatal(err)
				}
			}
			refuseInserts := bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "alwaysOn"},
				{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"insert"}}, {Key: "errorCode", Value: 13}}}}
			if err := client.Database("admin").RunCommand(ctx, refuseInserts).Err(); err != nil {
				t.Fatal(err)
			}
			key, err := s.DefinitionHashKey(ctx)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DefinitionHashKey = %x, %v; want an error containing %q", key, err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(key, created) {
				t.Fatalf("DefinitionHashKey without the insert privilege = %x, %v; want the key created before, %x", key, err, created)
			}
		})
	}
}
