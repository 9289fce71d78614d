package cluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
)

// plainStore hides every optional method of the store it wraps: the
// Manager then reads what it needs through Store alone.
type plainStore struct{ Store }

// TestOverviewLeavesOutOtherTriggersLeases: Overview returns the leases of
// the configured triggers (under the configuration SetTriggers gave last)
// and the leases held unexpired, and only counts the others (removed
// triggers, expired holders); a store without the narrower reads gives the
// same overview from every lease. Status keeps listing every lease.
func TestOverviewLeavesOutOtherTriggersLeases(t *testing.T) {
	st := newTestStore(t)
	ctx := t.Context()
	const ttl = time.Hour
	free := func(key string) {
		t.Helper()
		l, err := st.AcquireLease(ctx, key, "gone", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.ReleaseLease(ctx, key, store.Fence{Owner: l.Owner, Epoch: l.Epoch}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		free(fmt.Sprintf("removed%d", i))
	}
	free("orders")
	if _, err := st.AcquireLease(ctx, "audit", "node-b", ttl); err != nil {
		t.Fatal(err)
	}
	keys := func(ls []store.Lease) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Key)
		}
		return out
	}
	for _, s := range []Store{st, plainStore{st}} {
		m, err := New(s, testConfig(t, "orders", "users"), Options{InstanceID: "node-a"})
		if err != nil {
			t.Fatal(err)
		}
		ov, err := m.Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := keys(ov.Leases), []string{"audit", "orders"}; !slices.Equal(got, want) || ov.OtherLeases != 5 {
			t.Errorf("%T: overview leases %v and %d others, want %v and 5", s, got, ov.OtherLeases, want)
		}
		if ov.InstanceID != "node-a" {
			t.Errorf("%T: overview of instance %q, want node-a", s, ov.InstanceID)
		}
		// A reload that adds removed0 back shows its lease again.
		m.SetTriggers(testConfig(t, "orders", "removed0"))
		ov, err = m.Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := keys(ov.Leases), []string{"audit", "orders", "removed0"}; !slices.Equal(got, want) || ov.OtherLeases != 4 {
			t.Errorf("%T: after a reload: overview leases %v and %d others, want %v and 4", s, got, ov.OtherLeases, want)
		}
		full, err := m.Status(ctx)
		if err != nil || len(full.Leases) != 7 {
			t.Errorf("%T: status lists %d leases (%v), want all 7", s, len(full.Leases), err)
		}
	}
}
