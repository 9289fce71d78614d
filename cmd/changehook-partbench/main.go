// Command changehook-partbench measures partitioned triggers: for each
// NxM in -runs it starts devdb and a webhook receiver in this process and M
// `changehook run` processes (-bin) sharing one configuration whose trigger
// has N partitions (per_document, concurrency 16), waits until the N
// leases are held by min(M, N) members, inserts -n documents (InsertMany,
// 500 per batch) and waits for every webhook-id. It prints events/s from
// the first write to the last receipt, the runner processes' CPU seconds
// (from /proc, summed over the M processes) per event, this process's CPU
// (devdb, receiver, writer) and the duplicates seen.
//
//	go build -o /tmp/changehook ./cmd/changehook
//	go run ./cmd/changehook-partbench -bin /tmp/changehook -n 20000 -runs 1x1,4x1,4x2,8x2
//
// Results are in BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/proccpu"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// cpuOf returns the user+system CPU seconds of process pid (0 when it
// cannot be read).
func cpuOf(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

// selfCPU returns this process's user+system CPU seconds.
func selfCPU() float64 { return proccpu.Self().Seconds() }

func main() {
	n := flag.Int("n", 5000, "events")
	runs := flag.String("runs", "1x1,4x1,4x2", "NxM")
	bin := flag.String("bin", "", "changehook binary")
	flag.Parse()
	for _, r := range strings.Split(*runs, ",") {
		var np, m int
		fmt.Sscanf(r, "%dx%d", &np, &m)
		if err := one(*bin, np, m, *n); err != nil {
			fmt.Println(r, "error:", err)
		}
	}
}

// one runs the benchmark for np partitions over m processes.
func one(bin string, np, m, n int) error {
	ctx := context.Background()
	srv, err := devdb.Start(ctx, devdb.Options{})
	if err != nil {
		return err
	}
	defer srv.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		return err
	}
	defer client.Disconnect(ctx)
	var mu sync.Mutex
	seen := map[string]bool{}
	var first, last time.Time
	dups := 0
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		last = now
		if seen[id] {
			dups++
		}
		seen[id] = true
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer rec.Close()
	dir, _ := os.MkdirTemp("", "pbench")
	defer os.RemoveAll(dir)
	ordering := "per_document"
	cfg := fmt.Sprintf(`mongodb: { uri: %q }
state: { database: chstate }
cluster: { lease_ttl: 3s }
triggers:
  - name: orders
    database: shop
    collection: orders
    operations: [insert]
    ordering: %s
    concurrency: 16
    partitions: %d
    webhook: { url: %q }
`, srv.URI(), ordering, np, rec.URL)
	path := filepath.Join(dir, "t.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	var procs []*exec.Cmd
	for range m {
		c := exec.Command(bin, "run", "-c", path, "--admin-addr", "127.0.0.1:0", "--log-level", "warn")
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Start(); err != nil {
			return err
		}
		procs = append(procs, c)
	}
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	leases := client.Database("chstate").Collection("leases")
	want := min(m, np)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cur, err := leases.Find(ctx, bson.D{{Key: "owner", Value: bson.D{{Key: "$ne", Value: ""}}}})
		if err == nil {
			var ls []bson.M
			cur.All(ctx, &ls)
			owners := map[any]bool{}
			for _, l := range ls {
				owners[l["owner"]] = true
			}
			if len(ls) == np && len(owners) == want {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leases did not settle")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // streams open after the lease
	cpu0 := 0.0
	for _, p := range procs {
		cpu0 += cpuOf(p.Process.Pid)
	}
	self0 := selfCPU()
	coll := client.Database("shop").Collection("orders")
	start := time.Now()
	for i := 0; i < n; i += 500 {
		docs := make([]any, 0, 500)
		for j := i; j < min(n, i+500); j++ {
			docs = append(docs, bson.D{{Key: "_id", Value: int32(j)}, {Key: "sku", Value: "x"}, {Key: "qty", Value: int32(j % 100)}})
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			return err
		}
	}
	wrote := time.Since(start)
	deadline = time.Now().Add(5 * time.Minute)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d delivered", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu1 := 0.0
	for _, p := range procs {
		cpu1 += cpuOf(p.Process.Pid)
	}
	self1 := selfCPU()
	mu.Lock()
	dur := last.Sub(start)
	d := dups
	mu.Unlock()
	la, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("%dx%d: %d events, write %.2fs, write→last receipt %.2fs = %.0f ev/s; runner CPU %.2fs = %.0f µs/event; bench process (devdb+receiver+writer) CPU %.2fs; dups %d; loadavg %s",
		np, m, n, wrote.Seconds(), dur.Seconds(), float64(n)/dur.Seconds(), cpu1-cpu0, (cpu1-cpu0)/float64(n)*1e6, self1-self0, d, la)
	return nil
}
