package server_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// crudKillEnv names the data directory in the child process of
// TestCRUDKill9KeepsAcknowledgedWrites.
const crudKillEnv = "DEVDB_CRUD_KILL9_DIR"

// TestCRUDKill9Child is the child half of TestCRUDKill9KeepsAcknowledgedWrites:
// it runs only when re-executed with crudKillEnv set, inserts documents one
// at a time forever and prints "ACK <id>" after each acknowledged insert.
func TestCRUDKill9Child(t *testing.T) {
	dir := os.Getenv(crudKillEnv)
	if dir == "" {
		t.Skip("child process of TestCRUDKill9KeepsAcknowledgedWrites")
	}
	ctx := context.Background()
	srv, err := server.Start(ctx, server.Options{Data: dir})
	if err != nil {
		t.Fatal(err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	coll := client.Database("kill").Collection("c")
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		// Alternate single inserts and small batches; both are acknowledged writes.
		if i%2 == 0 {
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int64(i)}, {Key: "pad", Value: strings.Repeat("x", 200)}}); err != nil {
				t.Fatal(err)
			}
		} else {
			if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: int64(i)}}}); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Fprintf(out, "ACK %d\n", i)
		if err := out.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCRUDKill9KeepsAcknowledgedWrites kills (SIGKILL) a process that is
// inserting through devdb and checks that every write it saw acknowledged is
// present when the data directory is opened again.
func TestCRUDKill9KeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCRUDKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), crudKillEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	acked := map[int64]bool{}
	sc := bufio.NewScanner(stdout)
	const target = 300
	for len(acked) < target && sc.Scan() {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "ACK "); ok {
			n, err := strconv.ParseInt(id, 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", line)
			}
			acked[n] = true
		}
	}
	if len(acked) < target {
		t.Fatalf("child stopped after %d acknowledged inserts: %v", len(acked), sc.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	_, client := crudStart(t, dir)
	ctx := crudCtx(t)
	cur, err := client.Database("kill").Collection("c").Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var docs []struct {
		ID int64 `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	present := map[int64]bool{}
	for _, d := range docs {
		present[d.ID] = true
	}
	for id := range acked {
		if !present[id] {
			t.Errorf("acknowledged _id %d lost after kill -9", id)
		}
	}
	t.Logf("%d acknowledged, %d present after kill -9", len(acked), len(present))
}
