package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/mql"
	chrunner "github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// partsN is the partitioned trigger's number of partitions in these tests.
const partsN = 4

// partitionOfID is the partition of the document with _id id among n, as
// the server-side filter computes it.
func partitionOfID(id int32, n int) int {
	h := mql.HashedIndexKey(id) % int64(n)
	if h < 0 {
		h = -h
	}
	return int(h)
}

// splitMembers returns two instance ids that rendezvous hashing gives two
// of the trigger's four partitions each, and which partitions each owns.
func splitMembers(t *testing.T, trigger string) (ids [2]string, owner map[string]string) {
	t.Helper()
	for k := range 1000 {
		ids = [2]string{fmt.Sprintf("ctl-a-%d", k), fmt.Sprintf("ctl-b-%d", k)}
		owner = map[string]string{}
		n := 0
		for i := range partsN {
			key := triggers.PartitionKey(trigger, i, partsN)
			owner[key] = cluster.PreferredMember(ids[:], key)
			if owner[key] == ids[0] {
				n++
			}
		}
		if n == partsN/2 {
			return ids, owner
		}
	}
	t.Fatal("no pair of instance ids splits the partitions evenly")
	return ids, nil
}

// apiCluster is the part of GET /api/cluster these tests read.
type apiCluster struct {
	InstanceID string `json:"instance_id"`
	Members    []struct {
		ID string `json:"id"`
	} `json:"members"`
	Leases []struct {
		Key         string `json:"key"`
		Owner       string `json:"owner"`
		RemainingMS int64  `json:"remaining_ms"`
	} `json:"leases"`
}

// heldLeases returns the unexpired leases of /api/cluster's body: key → owner.
func heldLeases(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var c apiCluster
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("/api/cluster: %v: %s", err, body)
	}
	out := map[string]string{}
	for _, l := range c.Leases {
		if l.Owner != "" && l.RemainingMS > 0 {
			out[l.Key] = l.Owner
		}
	}
	return out
}

// TestControlsOnPartitionsSpreadOverMembers: two runner processes share a
// per_document trigger of four partitions, two partitions each. Pause,
// redeliver --since and resume --from now reach the owner of each
// partition, which applies them to its partition; the command reports
// done once all four have (the control document names both members).
// Redeliver re-sends exactly the changes since the time, with the same
// webhook-ids; resume --from now skips exactly what was written during the
// pause, each partition's skipped range is in the history, and nothing
// else is lost. When a member dies, a redeliver asked before its
// partitions were taken over is applied to them by their new owner.
// /api/triggers, /api/cluster and `changehook cluster status` show which
// member runs which partition.
func TestControlsOnPartitionsSpreadOverMembers(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	ids, owner := splitMembers(t, "parts")
	dir := t.TempDir()
	var cfgs [2]string
	for i, id := range ids {
		cfgs[i] = writeFile(t, dir, id+".yaml", strings.Replace(baseConfig(srv.URI(), rc.URL()), "state: { database: chstate }",
			fmt.Sprintf("state: { database: chstate }\ncluster: { instance_id: %s, lease_ttl: 2s }", id), 1)+fmt.Sprintf(`
  - name: parts
    database: shop
    collection: orders
    ordering: per_document
    partitions: %d
`, partsN))
	}
	members := [2]*runner{startRunner(t, runArgs(cfgs[0])...), startRunner(t, runArgs(cfgs[1])...)}
	// Wait until every partition's lease is held by its preferred member
	// and both members run what they hold.
	members[0].waitAdmin("/api/cluster", func(code int, b []byte) bool {
		if code != http.StatusOK {
			return false
		}
		held := heldLeases(t, b)
		for key, want := range owner {
			if held[key] != want {
				return false
			}
		}
		return true
	})
	for _, m := range members {
		m.waitReady()
	}
	t.Logf("partition owners: %v", owner)
	// Each member's /api/triggers shows the partitions it runs as running
	// and the others as standby.
	for i, m := range members {
		var resp struct {
			Triggers []struct {
				Name       string `json:"name"`
				State      string `json:"state"`
				Partitions []struct {
					Key   string `json:"key"`
					State string `json:"state"`
				} `json:"partitions"`
			} `json:"triggers"`
		}
		_, body := m.get("/api/triggers")
		if err := json.Unmarshal(body, &resp); err != nil || len(resp.Triggers) != 1 || len(resp.Triggers[0].Partitions) != partsN {
			t.Fatalf("member %s /api/triggers: %v: %s", ids[i], err, body)
		}
		if tr := resp.Triggers[0]; tr.State != "running" {
			t.Errorf("member %s shows parts %s, want running (it runs two partitions)", ids[i], tr.State)
		}
		for _, p := range resp.Triggers[0].Partitions {
			want := "standby"
			if owner[p.Key] == ids[i] {
				want = "running"
			}
			if p.State != want {
				t.Errorf("member %s shows %s %s, want %s", ids[i], p.Key, p.State, want)
			}
		}
	}
	// `changehook cluster status` shows both members and each partition's
	// owner.
	code, out, errOut := runCLI(t, "cluster", "status", "-c", cfgs[0])
	if code != 0 || !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[1]) {
		t.Fatalf("cluster status: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	for key, want := range owner {
		found := false
		for line := range strings.SplitSeq(out, "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
				found = true
				if f[1] != want {
					t.Errorf("cluster status shows %s owned by %s, want %s:\n%s", key, f[1], want, out)
				}
			}
		}
		if !found {
			t.Errorf("cluster status has no row for %s:\n%s", key, out)
		}
	}

	coll := client.Database("shop").Collection("orders")
	// Each range below has documents in every partition.
	for _, r := range [][2]int32{{1, 20}, {21, 40}, {41, 60}, {61, 80}} {
		seen := map[int]bool{}
		for id := r[0]; id <= r[1]; id++ {
			seen[partitionOfID(id, partsN)] = true
		}
		if len(seen) != partsN {
			t.Fatalf("ids %d..%d cover partitions %v only; pick other ids", r[0], r[1], seen)
		}
	}
	deliveredAll := func(from, to int32, times int) func([]delivery) bool {
		return func(ds []delivery) bool {
			n := map[int32]int{}
			for _, id := range docIDs(ds) {
				n[id]++
			}
			for id := from; id <= to; id++ {
				if n[id] < times {
					return false
				}
			}
			return true
		}
	}
	count := func(ds []delivery) map[int32]int {
		n := map[int32]int{}
		for _, id := range docIDs(ds) {
			n[id]++
		}
		return n
	}

	// 1. Redeliver: 1..20 before the time, 21..40 after it.
	insertIDs(t, coll, 1, 20)
	rc.waitFor(t, "ids 1..20", deliveredAll(1, 20, 1))
	// Positions have one-second resolution: the range starts at the next
	// whole second, after id 20.
	since := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(since))
	insertIDs(t, coll, 21, 40)
	first := rc.waitFor(t, "ids 21..40", deliveredAll(21, 40, 1))
	firstIDs := map[int32]string{}
	for i, d := range first {
		firstIDs[docIDs(first[i : i+1])[0]] = d.ID
	}
	code, out, errOut = runCLI(t, "redeliver", "-c", cfgs[0], "parts", "--since", since.Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "redelivering every change since") || !strings.Contains(out, fmt.Sprintf("all %d partitions", partsN)) {
		t.Fatalf("redeliver: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	checkAppliedBy(t, client, "parts", owner)
	all := rc.waitFor(t, "ids 21..40 again", deliveredAll(21, 40, 2))
	n := count(all)
	for id := int32(1); id <= 20; id++ {
		if n[id] != 1 {
			t.Errorf("id %d (before --since) delivered %d times, want 1", id, n[id])
		}
	}
	for _, d := range all {
		id := docIDs([]delivery{d})[0]
		if id > 20 && d.ID != firstIDs[id] {
			t.Errorf("id %d delivered with webhook-id %s, first with %s: redelivery must keep it", id, d.ID, firstIDs[id])
		}
	}
	for id := int32(21); id <= 40; id++ {
		if n[id] != 2 {
			t.Errorf("id %d (after --since) delivered %d times, want 2", id, n[id])
		}
	}

	// 2. A resume of the running trigger changes nothing, on any
	// partition, and says so; each partition's owner answers for it.
	code, out, errOut = runCLI(t, "resume", "-c", cfgs[1], "parts")
	if want := fmt.Sprintf("parts: not paused or failed (state running), so nothing changed (all %d partitions)\n", partsN); code != 0 || out != want {
		t.Fatalf("resume of the running trigger: code %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, want)
	}
	checkAppliedBy(t, client, "parts", owner)

	// 3. Pause on both members, write 41..60, resume --from now.
	code, out, errOut = runCLI(t, "pause", "-c", cfgs[1], "parts", "--reason", "spread test")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("paused (all %d partitions)", partsN)) {
		t.Fatalf("pause: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	checkAppliedBy(t, client, "parts", owner)
	before := time.Now()
	insertIDs(t, coll, 41, 60)
	after := time.Now()
	code, out, errOut = runCLI(t, "resume", "-c", cfgs[1], "parts", "--from", "now")
	if code != 0 || !strings.Contains(out, "checkpoint moved from") ||
		strings.Count(out, "checkpoint moved from") != partsN && !strings.Contains(out, fmt.Sprintf("all %d partitions", partsN)) {
		t.Fatalf("resume --from now: code %d, stdout %q, stderr %q (want each partition's skipped range)", code, out, errOut)
	}
	checkAppliedBy(t, client, "parts", owner)
	insertIDs(t, coll, 61, 80)
	all = rc.waitFor(t, "ids 61..80", deliveredAll(61, 80, 1))
	n = count(all)
	for id := int32(41); id <= 60; id++ {
		if n[id] != 0 {
			t.Errorf("id %d written during the pause was delivered %d times after resume --from now, want 0 (skipped)", id, n[id])
		}
	}
	for id := int32(61); id <= 80; id++ {
		if n[id] != 1 {
			t.Errorf("id %d written after the resume delivered %d times, want 1", id, n[id])
		}
	}
	// Each partition's skipped range is in the history and covers the
	// writes made while paused.
	st := store.New(client, "chstate")
	skipped := map[string]store.AttemptRecord{}
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(50 * time.Millisecond) // the history writer flushes in the background
	defer tick.Stop()
	for len(skipped) < partsN {
		recs, _, err := st.ListAttempts(context.Background(), store.AttemptFilter{Trigger: "parts", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Kind == store.KindSkipped {
				skipped[r.Partition] = r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("history has skipped ranges for %d partitions, want %d: %v", len(skipped), partsN, skipped)
		}
		if len(skipped) < partsN {
			<-tick.C
		}
	}
	for p, r := range skipped {
		if r.SkippedFrom.After(before) || r.SkippedTo.Before(after.Truncate(time.Second)) || !strings.Contains(r.Reason, "resumed from now") {
			t.Errorf("partition %s: skipped %v … %v (%s), want a range covering the writes made from %v to %v", p, r.SkippedFrom, r.SkippedTo, r.Reason, before, after)
		}
	}
	for i, m := range members {
		if text := m.logText(); strings.Contains(text, "control request failed") {
			t.Errorf("member %s logged a failed control request:\n%s", ids[i], text)
		}
	}

	// 4. The owner of two partitions dies; a redeliver asked right away is
	// applied to its partitions by the member that takes them over, before
	// that member reads them.
	since2 := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(since2))
	insertIDs(t, coll, 81, 100)
	rc.waitFor(t, "ids 81..100", deliveredAll(81, 100, 1))
	// Every partition's checkpoint passes since2 first: one still before
	// it would be kept rather than moved forward (see
	// TestRedeliverAfterAFrozenHolderKeepsItsCheckpoint), delivering more
	// than the changes since then.
	checkpointsFrom(t, client, owner, since2)
	members[1].kill()
	code, out, errOut = runCLI(t, "redeliver", "-c", cfgs[0], "parts", "--since", since2.Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("all %d partitions", partsN)) {
		t.Fatalf("redeliver after %s died: code %d, stdout %q, stderr %q", ids[1], code, out, errOut)
	}
	survivor := map[string]string{}
	for key := range owner {
		survivor[key] = ids[0]
	}
	checkAppliedBy(t, client, "parts", survivor)
	all = rc.waitFor(t, "ids 81..100 again", deliveredAll(81, 100, 2))
	n = count(all)
	for id := int32(61); id <= 80; id++ {
		if n[id] != 1 {
			t.Errorf("id %d (before the second --since) delivered %d times, want 1", id, n[id])
		}
	}
}

// checkpointsFrom waits until the checkpoint of every unit of owner is at
// or after the time from.
func checkpointsFrom(t *testing.T, client *mongo.Client, owner map[string]string, from time.Time) {
	t.Helper()
	st := store.New(client, "chstate")
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for key := range owner {
		for {
			cp, ok, err := st.LoadCheckpoint(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if at, known := chrunner.TokenTime(cp.Token); ok && known && !at.Before(from) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the checkpoint of %s did not reach %s", key, from.Format(time.RFC3339))
			}
			<-tick.C
		}
	}
}

// checkAppliedBy checks that trigger's newest control request was applied
// to each partition, and recorded, by that partition's owner.
func checkAppliedBy(t *testing.T, client *mongo.Client, trigger string, owner map[string]string) {
	t.Helper()
	c, ok, err := store.New(client, "chstate").LoadControl(context.Background(), trigger)
	if err != nil || !ok || c.Pending() {
		t.Fatalf("control of %s: found %v, pending %v, error %v", trigger, ok, c.Pending(), err)
	}
	done := c.UnitsDone()
	var keys []string
	for key, want := range owner {
		keys = append(keys, key)
		if u, ok := done[key]; !ok || u.By != want || u.Error != "" {
			t.Errorf("%s %s: partition %s result %+v, want applied by its owner %s", c.Request.Kind, trigger, key, u, want)
		}
	}
	if len(done) != len(owner) {
		t.Errorf("%s %s: %d unit results, want one per partition (%v)", c.Request.Kind, trigger, len(done), keys)
	}
}
