package runner

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestSameDefinition(t *testing.T) {
	parse := func(yaml string) *triggers.Trigger {
		t.Helper()
		env := func(string) (string, bool) { return "", false }
		cfg, err := triggers.Parse("t.yaml", []byte(yaml), env)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Triggers[0]
	}
	const base = `
triggers:
  - name: a
    database: shop
    collection: c
    match: { fullDocument.qty: { $lt: 20 } }
    webhook:
      url: http://127.0.0.1:9/hook
      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
      headers: { X-Key: one }
      payload: { q: "$fullDocument.qty" }
`
	a := parse(base)
	for _, tc := range []struct {
		name string
		yaml string
		same bool
	}{
		{"identical", base, true},
		{"moved down in the file", "\n\n\n" + base, true},
		{"secret changed", strings.Replace(base, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGU=", 1), false},
		{"header value changed", strings.Replace(base, "X-Key: one", "X-Key: two", 1), false},
		{"match changed", strings.Replace(base, "$lt: 20", "$lt: 21", 1), false},
		{"payload changed", strings.Replace(base, `"$fullDocument.qty"`, `"$fullDocument.sku"`, 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameDefinition(a, parse(tc.yaml)); got != tc.same {
				t.Errorf("SameDefinition = %v, want %v", got, tc.same)
			}
		})
	}
}

// TestSlotReadersDoNotHoldTheRunnersLock: Diff and Units, which read each
// slot's definition under its lock, do not hold r.mu while they wait for
// a slot's lock. reconcile holds a slot's lock and then takes r.mu to
// start a watcher (when the runtime controls are read, say), so a reader
// holding r.mu while it waits for that slot deadlocked with it, and with
// everything after it that takes r.mu: a reload (which calls Diff) during
// start-up hung the process.
func TestSlotReadersDoNotHoldTheRunnersLock(t *testing.T) {
	cfg, err := triggers.Parse("t.yaml", []byte(`
mongodb: { uri: "mongodb://127.0.0.1:1/?directConnection=true" }
triggers:
  - name: a
    database: shop
    collection: a
    webhook: { url: http://127.0.0.1:9/hook }
  - name: b
    database: shop
    collection: b
    ordering: none
    partitions: 2
    webhook: { url: http://127.0.0.1:9/hook }
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoDB.URI)) // no I/O until used
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	r, err := New(cfg, client, store.New(client, "chstate"), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		read func()
	}{
		{"Diff", func() { r.Diff(cfg) }},
		{"Units", func() { r.Units() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, key := range []string{"a", triggers.PartitionKey("b", 1, 2)} {
				s := r.slots[key]
				s.mu.Lock() // as reconcile holds it
				done := make(chan struct{})
				go func() {
					defer close(done)
					tc.read()
				}()
				waitBlockedIn(t, "runner.(*Runner)."+tc.name+"(")
				free := r.mu.TryLock() // what reconcile takes next
				if free {
					r.mu.Unlock()
				}
				s.mu.Unlock()
				<-done
				if !free {
					t.Fatalf("%s holds the runner's lock while it waits for slot %s's: it deadlocks with reconcile", tc.name, key)
				}
			}
		})
	}
}

// waitBlockedIn waits until a goroutine whose stack holds fn is blocked
// on a sync.Mutex.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(30 * time.Second) // a hang detector, not a speed check
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		for g := range strings.SplitSeq(stacks, "\n\n") {
			if strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, fn) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine blocked on a mutex in %s", fn)
		}
		runtime.Gosched()
	}
}
