package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestResetFenced: checkpoints reset is refused while a member holds the
// trigger's lease, and once it wrote, a member whose lease lapsed cannot
// overwrite the reset; the next member reads it.
func TestResetFenced(t *testing.T) {
	_, client := devdbtest.Start(t)
	st := store.New(client, "state")
	ctx := t.Context()
	cp := func(n int32) store.Checkpoint {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: n}})
		return store.Checkpoint{Trigger: "orders", Token: tok, ClusterTime: bson.Timestamp{T: uint32(n), I: 1}}
	}
	// Member m1 runs the trigger and checkpoints.
	l1, err := st.AcquireLease(ctx, "orders", "m1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f1 := store.Fence{Owner: "m1", Epoch: l1.Epoch}
	if _, _, err := st.ClaimCheckpoint(ctx, "orders", f1); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveFencedCheckpoint(ctx, cp(10), f1); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	err = resetFenced(ctx, st, []store.Checkpoint{cp(100)}, time.Minute, &warn)
	if err == nil || !strings.Contains(err.Error(), "trigger orders is running on cluster member m1") ||
		!strings.Contains(err.Error(), "changehook resume orders --from now|TIME") {
		t.Fatalf("reset while m1 holds the lease: %v; want refused naming m1 and the way out", err)
	}
	if got, _, _ := st.LoadCheckpoint(ctx, "orders"); got.ClusterTime.T != 10 {
		t.Fatalf("refused reset moved the checkpoint to %v", got.ClusterTime)
	}

	// m1's lease lapses (it is paused, say); the reset goes through.
	if err := st.ReleaseLease(ctx, "orders", f1); err != nil {
		t.Fatal(err)
	}
	if err := resetFenced(ctx, st, []store.Checkpoint{cp(100)}, time.Minute, &warn); err != nil {
		t.Fatalf("reset with the lease free: %v", err)
	}
	if warn.Len() > 0 {
		t.Errorf("warnings: %s", warn.String())
	}
	// m1 wakes up and tries to save its old position: fenced.
	if err := st.SaveFencedCheckpoint(ctx, cp(11), f1); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale member's checkpoint after the reset: %v, want ErrLeaseLost", err)
	}
	// The lease is free again, and the next member starts from the reset.
	l2, err := st.AcquireLease(ctx, "orders", "m2", time.Hour)
	if err != nil {
		t.Fatalf("lease after the reset: %v (reset must release it)", err)
	}
	got, ok, err := st.ClaimCheckpoint(ctx, "orders", store.Fence{Owner: "m2", Epoch: l2.Epoch})
	if err != nil || !ok || got.ClusterTime.T != 100 {
		t.Fatalf("next member's checkpoint = %v, %v, %v; want the reset position", got.ClusterTime, ok, err)
	}
}

// TestResetFencedPartitions: a partitioned trigger's partitions are reset
// together or not at all.
func TestResetFencedPartitions(t *testing.T) {
	_, client := devdbtest.Start(t)
	st := store.New(client, "state")
	ctx := t.Context()
	cp := func(key string, n int32) store.Checkpoint {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: n}})
		return store.Checkpoint{Trigger: key, Token: tok, ClusterTime: bson.Timestamp{T: uint32(n), I: 1}}
	}
	p0, p1 := "orders/p0of2", "orders/p1of2"
	l1, err := st.AcquireLease(ctx, p1, "m1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	err = resetFenced(ctx, st, []store.Checkpoint{cp(p0, 100), cp(p1, 100)}, time.Minute, &warn)
	if err == nil || !strings.Contains(err.Error(), "trigger orders/p1of2 is running on cluster member m1") ||
		!strings.Contains(err.Error(), "nothing was reset") || !strings.Contains(err.Error(), "changehook resume orders --from") {
		t.Fatalf("reset with one partition held: %v", err)
	}
	if _, ok, _ := st.LoadCheckpoint(ctx, p0); ok {
		t.Error("partition 0 was reset although partition 1 was refused")
	}
	if _, err := st.AcquireLease(ctx, p0, "m2", time.Hour); err != nil {
		t.Errorf("partition 0's lease not released after the refusal: %v", err)
	}
	if err := st.ReleaseLease(ctx, p1, store.Fence{Owner: "m1", Epoch: l1.Epoch}); err != nil {
		t.Fatal(err)
	}
}

// TestRepartitionCommandUnderLeases: `checkpoints repartition` rewrites
// only while it can hold the lease of every old and new partition: a lease
// held on an old or on a new key, or (without --force) a live member
// listing the trigger, refuses it naming the holder, with nothing changed;
// then it moves every new partition to the oldest old checkpoint, removes
// the old keys' checkpoints and leases, and a writer of a new key's older
// epoch can no longer move its checkpoint.
func TestRepartitionCommandUnderLeases(t *testing.T) {
	srv, client := devdbtest.Start(t)
	st := store.New(client, "chstate")
	ctx := t.Context()
	cfg := writeConfig(t, fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: chstate }
cluster: { lease_ttl: 3s }
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    partitions: 2
    webhook: { url: "http://127.0.0.1:1/orders" }
`, srv.URI()))
	tokens := map[string]string{"orders/p0of4": "82000000B0", "orders/p1of4": "82000000A0", "orders/p2of4": "82000000C0", "orders/p3of4": "82000000D0"}
	for key, data := range tokens {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: data}})
		if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: key, Token: tok}); err != nil {
			t.Fatal(err)
		}
	}
	// An old partition paused on its own: its control document goes with
	// it, and the command says so.
	if _, err := st.RequestControl(ctx, "orders/p3of4", "maintenance", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	repartition := func(extra ...string) (int, string, string) {
		return run(t, nil, "", append([]string{"checkpoints", "repartition", "-c", cfg, "--trigger", "orders", "--partitions", "2"}, extra...)...)
	}
	unchanged := func(when string) {
		t.Helper()
		cps, err := st.TriggerCheckpoints(ctx, "orders")
		if err != nil || len(cps) != 4 {
			t.Fatalf("%s: checkpoints %+v, %v; want the 4 old ones untouched", when, cps, err)
		}
		for _, cp := range cps {
			if got := cp.Token.Lookup("_data").StringValue(); got != tokens[cp.Trigger] {
				t.Errorf("%s: %s moved to %s", when, cp.Trigger, got)
			}
		}
		ls, err := st.ListLeases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if strings.HasPrefix(l.Owner, "checkpoints-repartition@") {
				t.Errorf("%s: lease %s still held by the refused repartition", when, l.Key)
			}
		}
	}

	// A member holds an old partition.
	l1, err := st.AcquireLease(ctx, "orders/p2of4", "m1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The holder may run the partition or hold it failed (as after a
	// reload that changed partitions): the refusal says it holds the
	// lease, not that it runs the trigger.
	heldBy := func(owner, key string) *regexp.Regexp {
		return regexp.MustCompile("^changehook checkpoints repartition: repartition orders: the trigger is in use: " +
			regexp.QuoteMeta(owner+" holds the lease of "+key) + ` \(it expires in [0-9hms.]+ unless renewed\); ` +
			regexp.QuoteMeta("a changehook keeps the lease of a partition it has, running or failed, until it stops; "+
				"nothing was changed. Stop every changehook that has the trigger in its configuration, the holder included, then repartition again") + "\n$")
	}
	code, _, errOut := repartition()
	if want := heldBy("m1", "orders/p2of4"); code == 0 || !want.MatchString(errOut) {
		t.Fatalf("repartition while m1 holds an old partition: exit %d, stderr %q; want it to match %q", code, errOut, want)
	}
	unchanged("refused for an old partition's lease")
	if err := st.ReleaseLease(ctx, "orders/p2of4", store.Fence{Owner: "m1", Epoch: l1.Epoch}); err != nil {
		t.Fatal(err)
	}

	// A member already runs a new partition.
	l3, err := st.AcquireLease(ctx, "orders/p1of2", "m3", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = repartition()
	if want := heldBy("m3", "orders/p1of2"); code == 0 || !want.MatchString(errOut) {
		t.Fatalf("repartition while m3 holds a new partition: exit %d, stderr %q; want it to match %q", code, errOut, want)
	}
	unchanged("refused for a new partition's lease")
	f3 := store.Fence{Owner: "m3", Epoch: l3.Epoch}
	if err := st.ReleaseLease(ctx, "orders/p1of2", f3); err != nil {
		t.Fatal(err)
	}

	// A live member lists the trigger: refused unless --force.
	if err := st.Heartbeat(ctx, store.Member{ID: "m4", Triggers: map[string]string{"orders": "h"}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = repartition()
	if want := "changehook checkpoints repartition: repartition orders: the trigger is in use: live cluster members list it in their configuration " +
		"(they run it, stand by for it, or hold it failed): m4; stop them (or remove the trigger from their configuration) first, or use --force\n"; code == 0 || errOut != want {
		t.Fatalf("repartition while m4 lists the trigger: exit %d, stderr %q, want %q", code, errOut, want)
	}
	unchanged("refused for a live member")
	code, out, errOut := repartition("--force")
	if code != 0 || !strings.Contains(out, "-> 2 partition(s) (orders/p0of2, orders/p1of2)") ||
		!strings.Contains(out, "oldest old checkpoint, orders/p1of4") || !strings.Contains(out, "delivered again") {
		t.Fatalf("repartition --force: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if want := "Removed the control documents of the old partitions (orders/p3of4).\n" +
		"orders/p3of4 was paused: a pause of an old partition does not carry over; `changehook pause orders` holds every partition.\n"; !strings.Contains(out, want) {
		t.Errorf("repartition --force output lacks %q:\n%s", want, out)
	}
	if _, found, err := st.LoadControl(ctx, "orders/p3of4"); err != nil || found {
		t.Errorf("orders/p3of4's control document after the repartition: found %v, %v; want it removed", found, err)
	}
	cps, err := st.TriggerCheckpoints(ctx, "orders")
	if err != nil || len(cps) != 2 || cps[0].Trigger != "orders/p0of2" || cps[1].Trigger != "orders/p1of2" {
		t.Fatalf("checkpoints after repartition: %+v, %v", cps, err)
	}
	for _, cp := range cps {
		if got := cp.Token.Lookup("_data").StringValue(); got != "82000000A0" {
			t.Errorf("%s continues from %s, want the oldest old checkpoint 82000000A0", cp.Trigger, got)
		}
	}
	ls, err := st.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	epochs := map[string]int64{}
	for _, l := range ls {
		if strings.HasPrefix(l.Key, "orders/") {
			epochs[l.Key] = l.Epoch
			if l.Owner != "" {
				t.Errorf("lease %s held by %q after the repartition, want released", l.Key, l.Owner)
			}
		}
	}
	if len(epochs) != 2 || epochs["orders/p0of2"] < 1 || epochs["orders/p1of2"] <= l3.Epoch {
		t.Errorf("leases after repartition %v: want only the new keys, each taken while rewriting (p1of2 past m3's epoch %d)", epochs, l3.Epoch)
	}
	// m3's older epoch is fenced out of the new checkpoint.
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82000000FF"}})
	if err := st.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders/p1of2", Token: tok}, f3); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("m3 writing orders/p1of2 with its old epoch after the repartition: %v, want ErrLeaseLost", err)
	}
}

// TestCheckpointsListPosition: checkpoints list places every checkpoint:
// by its recorded cluster time, else (an idle checkpoint, a reset, resume
// --from now: cluster time 0) by the time its resume token opens with;
// "unknown" only when the token does not say either.
func TestCheckpointsListPosition(t *testing.T) {
	srv, client := devdbtest.Start(t)
	st := store.New(client, "state")
	ctx := t.Context()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	token := func(data string) bson.Raw {
		tok, err := bson.Marshal(bson.D{{Key: "_data", Value: data}})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokenAt := token(fmt.Sprintf("82%08X%08X2B0229296E04", at.Unix(), 2))
	for _, cp := range []store.Checkpoint{
		{Trigger: "recorded", Token: tokenAt, ClusterTime: bson.Timestamp{T: uint32(at.Unix()), I: 2}},
		{Trigger: "idle", Token: tokenAt},
		{Trigger: "opaque", Token: token("not-a-keystring")},
	} {
		cp.UpdatedAt = at
		if err := st.SaveCheckpoint(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeConfig(t, fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: state }
triggers:
  - { name: recorded, database: shop, webhook: { url: "http://127.0.0.1:1/r" } }
  - { name: idle, database: shop, webhook: { url: "http://127.0.0.1:1/i" } }
  - { name: opaque, database: shop, webhook: { url: "http://127.0.0.1:1/o" } }
`, srv.URI()))
	code, out, errOut := run(t, nil, "", "checkpoints", "list", "-c", cfg)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	rows := map[string]string{}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 1 {
			rows[f[0]] = strings.TrimSpace(strings.TrimPrefix(line, f[0]))
		}
	}
	for name, want := range map[string]string{
		"recorded": fmt.Sprintf("2026-03-04T05:06:07Z (%d.2)", at.Unix()),
		"idle":     "2026-03-04T05:06:07Z (resume token)",
		"opaque":   "unknown",
	} {
		if !strings.HasPrefix(rows[name], want+" ") {
			t.Errorf("%s: row %q, want its position %q\n%s", name, rows[name], want, out)
		}
	}
}

// TestCheckpointsRefusedWhileDevRunsTheTrigger: a running `changehook dev`
// takes no lease, keeps its own position and would overwrite a reset or a
// repartition, so both are refused, naming it (its pid) and the way out,
// with nothing written, while it runs the trigger: reached through its
// record (no -c) or through -c and a MONGODB_URI naming its devdb. A
// trigger the dev does not run (disabled there) and another deployment are
// reset as before.
func TestCheckpointsRefusedWhileDevRunsTheTrigger(t *testing.T) {
	cfg := writeConfig(t, `
mongodb: { uri: "${MONGODB_URI}" }
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    webhook: { url: "http://127.0.0.1:1/orders" }
  - name: off
    enabled: false
    database: shop
    collection: off
    webhook: { url: "http://127.0.0.1:1/off" }
`)
	rtDir := t.TempDir()
	startDevIn(t, rtDir, nil, nil, running, "-c", cfg, "--addr", "127.0.0.1:0", "--admin-addr", "off", "--log-level", "info")
	rt, ok := readDevRuntime(Env{RuntimeDir: rtDir})
	if !ok {
		t.Fatal("the running dev is not recorded")
	}
	client, err := connect(t.Context(), rt.URI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	st := store.New(client, triggers.DefaultStateDatabase)
	other, _ := devdbtest.Start(t)
	t.Chdir(t.TempDir()) // no triggers.yaml: without -c, the dev's configuration

	devAsLocalhost := strings.Replace(rt.URI, "127.0.0.1", "localhost", 1)
	dev := fmt.Sprintf("on the 'changehook dev' (pid %d)", rt.PID)
	devRuns := fmt.Sprintf("the 'changehook dev' (pid %d) runs it and takes no lease", rt.PID)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string // on stderr when refused, on stdout when not
		ok   bool
	}{
		{name: "reset through the dev's record", args: []string{"checkpoints", "reset", "--trigger", "orders"},
			want: []string{"trigger orders is running " + dev, "nothing was reset", "`changehook resume orders --from now|TIME`",
				"`changehook redeliver orders --since TIME`", "stop that dev first"}},
		{name: "reset with -c and MONGODB_URI naming the dev's devdb", env: map[string]string{"MONGODB_URI": devAsLocalhost},
			args: []string{"checkpoints", "reset", "-c", cfg, "--trigger", "orders", "--to", "now"},
			want: []string{"trigger orders is running " + dev, "nothing was reset"}},
		{name: "repartition --force through the dev's record", args: []string{"checkpoints", "repartition", "--trigger", "orders", "--partitions", "2", "--force"},
			want: []string{"repartition orders: the trigger is in use: " + devRuns, "--force does not override this", "nothing was changed"}},
		{name: "reset of a trigger the dev does not run", args: []string{"checkpoints", "reset", "--trigger", "off"},
			want: []string{"checkpoint of off reset"}, ok: true},
		{name: "reset on another deployment", env: map[string]string{"MONGODB_URI": other.URI()},
			args: []string{"checkpoints", "reset", "-c", cfg, "--trigger", "orders"},
			want: []string{"checkpoint of orders reset"}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runWith(t, rtDir, tc.env, tc.args...)
			got := errOut
			if tc.ok {
				got = out
				if code != ExitOK {
					t.Fatalf("exit %d, want %d\n%s%s", code, ExitOK, out, errOut)
				}
			} else if code != ExitFailure {
				t.Fatalf("exit %d, want %d (refused)\n%s%s", code, ExitFailure, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s%s", w, out, errOut)
				}
			}
		})
	}
	// The refused commands wrote nothing: reset and repartition take the
	// lease of every key they write, and the dev takes none.
	ls, err := st.ListLeases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.Key == "orders" || strings.HasPrefix(l.Key, "orders/") {
			t.Errorf("lease %s (owner %q, epoch %d) on the dev's devdb: a refused command wrote", l.Key, l.Owner, l.Epoch)
		}
	}
	cps, err := st.TriggerCheckpoints(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range cps {
		if cp.Trigger != "orders" {
			t.Errorf("checkpoint %s on the dev's devdb: the refused repartition wrote", cp.Trigger)
		}
	}
}

// TestSameDevdb: a URI reaches a dev's devdb when it is the dev's URI or
// names a loopback address on its port.
func TestSameDevdb(t *testing.T) {
	const dev = "mongodb://127.0.0.1:38221/?directConnection=true"
	for _, tc := range []struct {
		uri  string
		want bool
	}{
		{dev, true},
		{"mongodb://localhost:38221/", true},
		{"mongodb://user:pass@127.0.0.1:38221/shop?directConnection=true", true},
		{"mongodb://[::1]:38221", true},
		{"mongodb://127.0.0.1:38222/?directConnection=true", false},
		{"mongodb://127.0.0.1/", false},
		{"mongodb://db.example.com:38221/", false},
		{"mongodb://127.0.0.1:38221,127.0.0.1:38222/?replicaSet=rs0", false},
		{"mongodb+srv://localhost:38221/", false},
	} {
		if got := sameDevdb(tc.uri, dev); got != tc.want {
			t.Errorf("sameDevdb(%q) = %v, want %v", triggers.RedactURI(tc.uri), got, tc.want)
		}
	}
}
