package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// insertKinds inserts documents from..to with _id i and the field kind.
func insertKinds(t *testing.T, coll *mongo.Collection, from, to int32, kind string) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: i}, {Key: "kind", Value: kind}}); err != nil {
			t.Fatal(err)
		}
	}
}

// firstAccepted returns, per document _id, the index among ds of its first
// delivery the receiver answered with 2xx.
func firstAccepted(ds []delivery) map[int32]int {
	first := map[int32]int{}
	for i, d := range ds {
		if d.Status/100 != 2 {
			continue
		}
		for _, id := range docIDs([]delivery{d}) {
			if _, ok := first[id]; !ok {
				first[id] = i
			}
		}
	}
	return first
}

// accepted reports whether the receiver answered 2xx to a delivery of
// every _id from..to.
func accepted(from, to int32) func([]delivery) bool {
	return func(ds []delivery) bool {
		first := firstAccepted(ds)
		for id := from; id <= to; id++ {
			if _, ok := first[id]; !ok {
				return false
			}
		}
		return true
	}
}

// TestClusterReloadDriftedHolderDoesNotRunNewDefinition: three members
// run the strict trigger t (every insert, no dead letters) with the same
// definition D1. Its lease holder is stuck at event 6, which the endpoint
// refuses, with 6..15 (kind y) and 16 (kind x) behind it. Then the holder
// alone reloads D2, D1 plus a match on kind x: it is now in the minority,
// so it must not run t, neither with D2 (which would deliver 16 and move
// the checkpoint past 6..15, which it filters out) nor with D1; it hands
// the lease to a member running D1, which delivers 6..16 in order from the
// checkpoint D1 left.
//
// The holder's next lease renewal is held up 800 ms in the state database
// (a failCommand fail point on findAndModify, which in this cluster only
// the holder's renewals send; with lease_ttl 3s the lease stays valid), so
// that a holder that did start D2 under the lease would have ample time
// to deliver 16 before its next round noticed the drift; what is checked
// does not depend on that time.
func TestClusterReloadDriftedHolderDoesNotRunNewDefinition(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	rc := newReceiver(t)
	const d1 = `
  - name: t
    database: shop
    collection: orders
    ordering: strict
    dead_letter: false
`
	d2 := strings.Replace(d1, "dead_letter: false", "dead_letter: false\n    match: { fullDocument.kind: x }", 1)
	ids := []string{"drift-a", "drift-b", "drift-c"}
	h := slices.Index(ids, cluster.PreferredMember(ids, "t")) // the holder once all three are up
	dir := t.TempDir()
	config := func(id, triggersYAML string) string {
		return strings.Replace(baseConfig(srv.URI(), rc.URL()), "state: { database: chstate }",
			fmt.Sprintf("state: { database: chstate }\ncluster: { instance_id: %s, lease_ttl: 3s }", id), 1) + triggersYAML
	}
	var members []*runner
	for _, id := range ids {
		members = append(members, startRunner(t, runArgs(writeFile(t, dir, id+".yaml", config(id, d1)), "--grace", "200ms")...))
	}
	holderIs := func(want func(owner string) bool) {
		members[0].waitAdmin("/api/cluster", func(code int, b []byte) bool {
			owner, ok := heldLeases(t, b)["t"]
			return code == http.StatusOK && ok && want(owner)
		})
	}
	holderIs(func(owner string) bool { return owner == ids[h] })
	for _, m := range members {
		m.waitReady() // the holder's stream is open (start_at: now)
	}

	blocked := true
	rc.setRespond(func(n int, d delivery, w http.ResponseWriter, r *http.Request) int {
		rc.mu.Lock()
		b := blocked
		rc.mu.Unlock()
		if got := docIDs([]delivery{d}); b && len(got) == 1 && got[0] == 6 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	coll := client.Database("shop").Collection("orders")
	insertKinds(t, coll, 1, 5, "x")
	rc.waitFor(t, "ids 1..5", accepted(1, 5))
	insertKinds(t, coll, 6, 15, "y")
	insertKinds(t, coll, 16, 16, "x")
	rc.waitFor(t, "a refused attempt at 6", func(ds []delivery) bool {
		for _, d := range ds {
			if got := docIDs([]delivery{d}); len(got) == 1 && got[0] == 6 && d.Status/100 != 2 {
				return true
			}
		}
		return false
	})

	configureFailPoint(t, client, "failCommand", bson.D{{Key: "times", Value: 1}}, bson.D{
		{Key: "failCommands", Value: bson.A{"findAndModify"}},
		{Key: "blockConnection", Value: true}, {Key: "blockTimeMS", Value: 800}})
	writeFile(t, dir, ids[h]+".yaml", config(ids[h], d2))
	if code, body := members[h].post("/api/reload", ""); code != http.StatusOK {
		t.Fatalf("reload on the holder %s: %d %s", ids[h], code, body)
	}
	// The holder stopped D1 (reloads wait for that): from now on only the
	// member that takes t over sends 6, and it is accepted.
	rc.mu.Lock()
	blocked = false
	rc.mu.Unlock()
	holderIs(func(owner string) bool { return owner != ids[h] })
	members[h].waitAdmin("/api/cluster", func(code int, b []byte) bool {
		var c struct {
			Drift []string `json:"drift"`
		}
		return code == http.StatusOK && json.Unmarshal(b, &c) == nil && slices.Equal(c.Drift, []string{"t"})
	})

	// A barrier: strict, so 17 comes after everything before it that the
	// new holder delivers.
	insertKinds(t, coll, 17, 17, "y")
	ds := rc.waitFor(t, "id 17 from the new holder", accepted(17, 17))
	first := firstAccepted(ds)
	var lost []int32
	for id := int32(6); id <= 16; id++ {
		if _, ok := first[id]; !ok {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("ids %v (matched by the majority's definition) were never delivered: the drifted holder %s moved the checkpoint past them (%s)",
			lost, ids[h], summary(ds))
	}
	if i16, ok := first[16]; ok {
		for id := int32(6); id <= 15; id++ {
			if i, ok := first[id]; ok && i > i16 {
				t.Errorf("16 was delivered before %d: the drifted holder %s ran its new definition (%s)", id, ids[h], summary(ds))
				break
			}
		}
	}
}

// configureFailPoint runs configureFailPoint on client's admin database.
func configureFailPoint(t *testing.T, client *mongo.Client, name string, mode any, data bson.D) {
	t.Helper()
	cmd := bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: mode}}
	if data != nil {
		cmd = append(cmd, bson.E{Key: "data", Value: data})
	}
	if err := client.Database("admin").RunCommand(context.Background(), cmd).Err(); err != nil {
		t.Fatalf("configureFailPoint %s: %v", name, err)
	}
}
