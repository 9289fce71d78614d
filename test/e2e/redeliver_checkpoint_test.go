package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// insertIDsBefore inserts ids from..to into coll and returns the whole
// second after the last one's cluster time, once the server's clock has
// reached it (hello's localTime): `redeliver --since` that second (positions
// have one-second resolution) starts after every one of them and before
// every change written from then on.
func insertIDsBefore(t *testing.T, client *mongo.Client, coll *mongo.Collection, from, to int32) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	sctx := mongo.NewSessionContext(ctx, sess)
	for id := from; id <= to; id++ {
		if _, err := coll.InsertOne(sctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
	}
	last := sess.OperationTime()
	if last == nil {
		t.Fatal("the inserts returned no operationTime")
	}
	next := time.Unix(int64(last.T)+1, 0).UTC()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var hello struct {
			LocalTime time.Time `bson:"localTime"`
		}
		if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
			t.Fatalf("hello: %v", err)
		}
		if !hello.LocalTime.Before(next) {
			return next
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the server's clock did not reach %s", next.Format(time.RFC3339))
		}
	}
}

// deliveredOK counts the 2xx deliveries of each id.
func deliveredOK(ds []delivery) map[int32]int {
	n := map[int32]int{}
	for _, d := range ds {
		if d.Status/100 == 2 {
			for _, id := range docIDs([]delivery{d}) {
				n[id]++
			}
		}
	}
	return n
}

// deliveredID is a waitFor condition: id was delivered (2xx).
func deliveredID(id int32) func([]delivery) bool {
	return func(ds []delivery) bool { return deliveredOK(ds)[id] > 0 }
}

// checkKeptOnce checks that trigger's newest control request, a redeliver,
// was applied by one unit (by instance by, when not "") and that the
// trigger's checkpoint is marked with it, so that no later lease holder
// applies it again.
func checkKeptOnce(t *testing.T, client *mongo.Client, trigger, by string) {
	t.Helper()
	st := store.New(client, "chstate")
	ctx := context.Background()
	c, ok, err := st.LoadControl(ctx, trigger)
	if err != nil || !ok || c.Pending() || c.Applied == nil || c.Request.Kind != store.RequestRedeliver {
		t.Fatalf("control of %s: found %v, %+v, error %v; want an applied redeliver", trigger, ok, c, err)
	}
	if len(c.Units) != 1 || c.Units[0].Error != "" || by != "" && c.Units[0].By != by {
		t.Errorf("redeliver %s: unit results %+v, want one, by %q", trigger, c.Units, by)
	}
	cp, ok, err := st.LoadCheckpoint(ctx, trigger)
	if err != nil || !ok || cp.Control != c.Request.ID {
		t.Errorf("checkpoint of %s: found %v, control %q, error %v; want it marked with request %s", trigger, ok, cp.Control, err, c.Request.ID)
	}
}

// TestRedeliverSinceAfterAPausedCheckpointKeepsIt: a trigger is paused,
// ids 11..20 are written, then (after a time T) 21..30, and `redeliver
// --since T` is asked. The checkpoint (after 10) is before T: moving it to
// T would skip 11..20, which nobody delivered. It is kept and the command
// says so; the resume delivers 11..30, each once, and nothing before.
func TestRedeliverSinceAfterAPausedCheckpointKeepsIt(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "c.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: orders
    database: shop
    collection: orders
    ordering: strict
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	coll := client.Database("shop").Collection("orders")
	insertIDs(t, coll, 1, 10)
	rc.waitFor(t, "ids 1..10", deliveredID(10))
	if code, out, errOut := runCLI(t, "pause", "-c", cfg, "orders"); code != 0 {
		t.Fatalf("pause: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	since := insertIDsBefore(t, client, coll, 11, 20)
	insertIDs(t, coll, 21, 30)
	code, out, errOut := runCLI(t, "redeliver", "-c", cfg, "orders", "--since", since.Format(time.RFC3339))
	want := "orders: checkpoint is before " + since.Format(time.RFC3339) + "; delivering everything since the checkpoint ("
	if code != 0 {
		t.Fatalf("redeliver: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.HasPrefix(out, want) {
		t.Errorf("redeliver: stdout %q, want %q…", out, want)
	}
	checkKeptOnce(t, client, "orders", "")
	if code, out, errOut := runCLI(t, "resume", "-c", cfg, "orders"); code != 0 {
		t.Fatalf("resume: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	// A strict trigger delivers 31 after everything before it.
	insertIDs(t, coll, 31, 31)
	n := deliveredOK(rc.waitFor(t, "id 31", deliveredID(31)))
	wrong := map[int32]int{}
	for id := int32(1); id <= 31; id++ {
		if n[id] != 1 {
			wrong[id] = n[id]
		}
	}
	if len(wrong) > 0 {
		t.Errorf("deliveries per id %v, want each of 1..31 once (ids 11..20 were written during the pause, before --since %s)", wrong, since.Format(time.RFC3339))
	}
}

// TestRedeliverAfterAFrozenHolderKeepsItsCheckpoint: the holder of a
// strict trigger is frozen (SIGSTOP) with ids 11..20 not delivered, and
// `redeliver --since T`, T after 20, is asked while nobody runs the
// trigger. The member that takes the lease over applies it before reading
// anything: the frozen holder's checkpoint is before T, so it stays (moving
// it to T would skip 11..20) and the command says so; the successor
// delivers 11..30, and the request is applied once. Woken again, the
// former holder does not show the trigger running: its lease expired.
func TestRedeliverAfterAFrozenHolderKeepsItsCheckpoint(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	dir := t.TempDir()
	config := func(id string) string {
		return writeFile(t, dir, id+".yaml", strings.Replace(baseConfig(srv.URI(), rc.URL()), "state: { database: chstate }",
			fmt.Sprintf("state: { database: chstate }\ncluster: { instance_id: %s, lease_ttl: 2s }", id), 1)+`
  - name: orders
    database: shop
    collection: orders
    ordering: strict
`)
	}
	cfgA, cfgB := config("frozen-a"), config("successor-b")
	a := startRunner(t, runArgs(cfgA)...)
	a.waitAdmin("/api/cluster", func(code int, b []byte) bool { return code == 200 && heldLeases(t, b)["orders"] == "frozen-a" })
	a.waitReady()
	coll := client.Database("shop").Collection("orders")
	insertIDs(t, coll, 1, 10)
	rc.waitFor(t, "ids 1..10", deliveredID(10))
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := true
	defer func() {
		if frozen {
			_ = a.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	since := insertIDsBefore(t, client, coll, 11, 20)
	insertIDs(t, coll, 21, 30)

	// The request is recorded while nobody can apply it; then the
	// successor starts.
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI(t, "redeliver", "-c", cfgB, "orders", "--since", since.Format(time.RFC3339))
		done <- result{code, out, errOut}
	}()
	st := store.New(client, "chstate")
	deadline := time.Now().Add(waitTimeout)
	for {
		c, ok, err := st.LoadControl(context.Background(), "orders")
		if err != nil {
			t.Fatal(err)
		}
		if ok && c.Request != nil && c.Request.Kind == store.RequestRedeliver {
			if !c.Pending() || len(c.Units) > 0 {
				t.Fatalf("redeliver applied while the holder is frozen and no other member runs: %+v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the redeliver request was not recorded")
		}
		time.Sleep(10 * time.Millisecond) // polling the state database
	}
	startRunner(t, runArgs(cfgB)...)
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * waitTimeout):
		t.Fatal("redeliver did not return")
	}
	want := "orders: checkpoint is before " + since.Format(time.RFC3339) + "; delivering everything since the checkpoint ("
	if res.code != 0 {
		t.Fatalf("redeliver: code %d, stdout %q, stderr %q", res.code, res.out, res.errOut)
	}
	if !strings.HasPrefix(res.out, want) {
		t.Errorf("redeliver: stdout %q, want %q…", res.out, want)
	}
	checkKeptOnce(t, client, "orders", "successor-b")

	// Woken, the former holder (its lease long expired, the successor's
	// since) does not claim the trigger.
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	frozen = false
	_, body := a.get("/api/triggers")
	var resp struct {
		Triggers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"triggers"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Triggers) != 1 {
		t.Fatalf("/api/triggers of the woken member: %s (%v)", body, err)
	}
	if s := resp.Triggers[0].State; s == "running" || s == "retrying" {
		t.Errorf("the woken former holder shows orders %s; its lease expired and the successor runs it", s)
	}

	// A strict trigger delivers 31 after everything before it.
	insertIDs(t, coll, 31, 31)
	n := deliveredOK(rc.waitFor(t, "id 31", deliveredID(31)))
	var lost []int32
	for id := int32(11); id <= 31; id++ {
		if n[id] == 0 {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("ids %v never delivered (ids 11..20 were written after the holder froze, before --since %s)", lost, since.Format(time.RFC3339))
	}
}
