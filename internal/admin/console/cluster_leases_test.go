package console

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestClusterRemovedTriggersLeasesSummarised: the lease documents of
// triggers no longer in the configuration stay in the state database
// (their epochs fence a trigger added back), but the overview, read from
// a cluster.Manager, neither lists them nor reads them: it names the
// configured triggers' leases no live member holds, the leases each live
// member holds (another configuration's trigger too), and says how many
// others there are. It listed every removed trigger's lease, a line that
// grew with every reload.
func TestClusterRemovedTriggersLeasesSummarised(t *testing.T) {
	_, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := store.New(client, "chstate")
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	const ttl = 10 * time.Minute
	free := func(key string) {
		t.Helper()
		l, err := st.AcquireLease(ctx, key, "node-gone", ttl)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.ReleaseLease(ctx, key, store.Fence{Owner: l.Owner, Epoch: l.Epoch}); err != nil {
			t.Fatal(err)
		}
	}
	const removed = 30
	for i := range removed {
		free(fmt.Sprintf("removed%02d", i))
	}
	free("orders/p1of2") // configured, free
	free("orders/p0of3") // an old partitioning
	for _, key := range []string{"orders/p0of2", "audit"} {
		if _, err := st.AcquireLease(ctx, key, "node-b", ttl); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Heartbeat(ctx, store.Member{ID: "node-b", Host: "host-b", PID: 22, Version: "test", Started: time.Now()}, ttl); err != nil {
		t.Fatal(err)
	}
	cfg, err := triggers.Parse("t.yaml", []byte(`
triggers:
  - { name: orders, database: shop, collection: orders, ordering: per_document, partitions: 2, webhook: { url: "http://127.0.0.1:9/hook" } }
  - { name: users, database: shop, collection: users, webhook: { url: "http://127.0.0.1:9/hook" } }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cluster.New(st, cfg, cluster.Options{InstanceID: "node-a", LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Runner: &fakeRunner{sts: []runner.TriggerStatus{{Name: "orders", State: runner.StateStandby}}}, Cluster: m})
	if err != nil {
		t.Fatal(err)
	}
	_, body := get(t, c, "/")
	for _, want := range []string{
		`<tr data-member="node-b">`, `<a href="/triggers/orders">orders/p0of2</a>`, `<a href="/triggers/audit">audit</a>`,
		"Not held by a live member: orders/p1of2.",
		fmt.Sprintf("%d leases of triggers not in this configuration", removed+1),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "removed0") || strings.Contains(body, "orders/p0of3") {
		t.Errorf("overview lists leases of triggers not in the configuration:\n%s", body)
	}
	if all, err := st.ListLeases(ctx); err != nil || len(all) != removed+4 {
		t.Errorf("%d lease documents (%v), want all %d kept", len(all), err, removed+4)
	}
}
