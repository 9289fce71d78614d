package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestClusterRollbackToFewerPartitionsLosesNothing: a member runs trigger
// parts with 4 partitions and is SIGKILLed; changes are written while no
// member runs it; a member with the older configuration, where parts has 2
// partitions, starts (a rollback). It takes no partition before the killed
// member's leases of the other partitioning expire (two partitionings'
// units have different leases, so these alone would not keep them apart),
// and then, finding checkpoints only under the 4 partitions, refuses to
// start rather than skip the changes since them, naming the mismatch and
// the way out. After that way out (stop it, `checkpoints repartition`,
// start it again) every change is delivered.
func TestClusterRollbackToFewerPartitionsLosesNothing(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	dir := t.TempDir()
	config := func(id string, partitions int) string {
		return writeFile(t, dir, id+".yaml", strings.Replace(baseConfig(srv.URI(), rc.URL()), "state: { database: chstate }",
			fmt.Sprintf("state: { database: chstate }\ncluster: { instance_id: %s, lease_ttl: 2s }", id), 1)+fmt.Sprintf(`
  - name: parts
    database: shop
    collection: orders
    ordering: per_document
    partitions: %d
`, partitions))
	}
	newer, older := config("rb-new", 4), config("rb-old", 2)
	coll := client.Database("shop").Collection("orders")
	delivered := func(from, to int32) func([]delivery) bool {
		return func(ds []delivery) bool {
			n := map[int32]bool{}
			for _, id := range docIDs(ds) {
				n[id] = true
			}
			for id := from; id <= to; id++ {
				if !n[id] {
					return false
				}
			}
			return true
		}
	}

	m4 := startRunner(t, runArgs(newer)...)
	m4.waitReady()
	insertIDs(t, coll, 1, 40)
	rc.waitFor(t, "ids 1..40", delivered(1, 40))
	// Its checkpoints are past them (saved within the checkpoint interval).
	m4.waitAdmin("/api/triggers", func(code int, b []byte) bool {
		var resp struct {
			Triggers []struct {
				Partitions []struct {
					CheckpointLagNS int64  `json:"checkpoint_lag_ns"`
					CheckpointTime  string `json:"checkpoint_time"`
				} `json:"partitions"`
			} `json:"triggers"`
		}
		if code != http.StatusOK || json.Unmarshal(b, &resp) != nil || len(resp.Triggers) != 1 || len(resp.Triggers[0].Partitions) != 4 {
			return false
		}
		for _, p := range resp.Triggers[0].Partitions {
			if p.CheckpointTime == "" || p.CheckpointLagNS != 0 {
				return false
			}
		}
		return true
	})
	m4.kill()
	insertIDs(t, coll, 41, 60) // while no member runs parts

	m2 := startRunner(t, runArgs(older)...)
	var st struct {
		Triggers []struct {
			State      string `json:"state"`
			LastError  string `json:"last_error"`
			WayOut     string `json:"way_out"`
			Partitions []struct {
				State string `json:"state"`
			} `json:"partitions"`
		} `json:"triggers"`
	}
	// Both partitions failed, each once it held its lease: the trigger
	// shows failed as soon as the first one does.
	m2.waitAdmin("/api/triggers", func(code int, b []byte) bool {
		if code != http.StatusOK || json.Unmarshal(b, &st) != nil || len(st.Triggers) != 1 || st.Triggers[0].State != "failed" || len(st.Triggers[0].Partitions) != 2 {
			return false
		}
		for _, p := range st.Triggers[0].Partitions {
			if p.State != "failed" {
				return false
			}
		}
		return true
	})
	if tr := st.Triggers[0]; !strings.Contains(tr.LastError, "parts/p0of4") || !strings.Contains(tr.WayOut, "checkpoints repartition --trigger parts --partitions 2") {
		t.Errorf("the rolled-back member's parts: last error %q, way out %q; want the 4 partitions' checkpoints and the way out named", tr.LastError, tr.WayOut)
	}
	// Its partitions were taken only once the killed member's leases of
	// the other partitioning had expired (both by the state database's
	// clock), and wrote no checkpoint.
	ctx := context.Background()
	type leaseDoc struct {
		Key        string    `bson:"_id"`
		Owner      string    `bson:"owner"`
		ExpiresAt  time.Time `bson:"expiresAt"`
		AcquiredAt time.Time `bson:"acquiredAt"`
	}
	cur, err := client.Database("chstate").Collection("leases").Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []leaseDoc
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	leases := map[string]leaseDoc{}
	for _, l := range docs {
		leases[l.Key] = l
	}
	for i := range 2 {
		l2, ok := leases[fmt.Sprintf("parts/p%dof2", i)]
		if !ok || l2.Owner != "rb-old" {
			t.Errorf("parts/p%dof2's lease %+v, want held by rb-old", i, l2)
			continue
		}
		for j := range 4 {
			if l4 := leases[fmt.Sprintf("parts/p%dof4", j)]; l4.Owner == "rb-new" && l2.AcquiredAt.Before(l4.ExpiresAt) {
				t.Errorf("parts/p%dof2 acquired at %v, before the killed member's lease of parts/p%dof4 expired at %v", i, l2.AcquiredAt, j, l4.ExpiresAt)
			}
		}
	}
	if n, err := client.Database("chstate").Collection("checkpoints").CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"parts/p0of2", "parts/p1of2"}}}}}); err != nil || n != 0 {
		t.Errorf("%d checkpoints of the 2 partitions (%v); want none written", n, err)
	}

	// The way out.
	if code := m2.stop(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		code, out, errOut := runCLI(t, "checkpoints", "repartition", "-c", older, "--trigger", "parts", "--partitions", "2")
		if code == 0 {
			break
		}
		// The killed member stays listed until its heartbeat expires.
		if !strings.Contains(errOut, "rb-new") || time.Now().After(deadline) {
			t.Fatalf("checkpoints repartition: code %d, stdout %q, stderr %q", code, out, errOut)
		}
		time.Sleep(200 * time.Millisecond) // the heartbeat expires by the state database's clock
	}
	m2 = startRunner(t, runArgs(older)...)
	m2.waitReady()
	rc.waitFor(t, "ids 1..60, those written while nothing ran included", delivered(1, 60))
}
