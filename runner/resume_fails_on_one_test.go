package runner_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestResumeFromThatFailsOnOnePartitionSaysItRuns: `resume --from now` of
// a paused 2-partition trigger whose rewrite fails on one partition (the
// server refuses to open its stream once, a fail point) moves the other
// and fails naming the one — and says what became of it: the resume
// lifted its pause all the same, so it runs again from the checkpoint it
// kept, delivering the changes written during the pause, which the result
// must not pass for unchanged. Resuming that partition from now again
// converges.
func TestResumeFromThatFailsOnOnePartitionSaysItRuns(t *testing.T) {
	t.Parallel()
	srv, admin := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(faultApp))
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1), recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{Controls: true})
	waitFor(t, "ready", r.Ready)
	ctx := t.Context()
	coll := client.Database("shop").Collection("orders")
	partOf := func(id int32) int {
		h := mql.HashedIndexKey(id) % 2
		return int(max(h, -h))
	}
	pauseByControl(t, st, r, "orders", "hold")
	var held [2][]int32 // written during the pause, by partition
	for id := int32(1); id <= 8; id++ {
		insert(t, coll, bson.D{{Key: "_id", Value: id}})
		held[partOf(id)] = append(held[partOf(id)], id)
	}
	if len(held[0]) == 0 || len(held[1]) == 0 {
		t.Fatalf("ids 1..8 fall into one partition: %v", held)
	}
	configureFailPoint(t, admin, "failCommand", bson.D{{Key: "times", Value: 1}},
		bson.D{{Key: "failCommands", Value: bson.A{"aggregate"}}, {Key: "appName", Value: faultApp}, {Key: "errorCode", Value: 2}})
	_, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "test"})
	if err == nil {
		t.Fatal("resume --from now succeeded although a partition's stream could not be opened")
	}
	m := regexp.MustCompile(`failed on 1 of 2 partitions \((orders/p([01])of2): `).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("resume = %v; want it to fail on one partition, naming it", err)
	}
	failed, other := m[1], 1-int(m[2][0]-'0')
	if !strings.Contains(err.Error(), "the resume lifted the pause (or failure) of "+failed+" all the same, so it runs again from its checkpoint") {
		t.Errorf("resume = %v; want it to say that %s runs again from its checkpoint", err, failed)
	}
	// As it says: the failed partition delivers what was written during the
	// pause; the other skipped it.
	want := map[int32]bool{}
	for _, id := range held[1-other] {
		want[id] = true
	}
	for len(want) > 0 {
		id := recv.next(t).Lookup("documentKey", "_id").Int32()
		if partOf(id) == other {
			t.Errorf("delivered %d, which partition %d skipped", id, other)
		}
		delete(want, id)
	}
	recv.none(t, 200*time.Millisecond)

	// Resuming that partition from now again converges: both run, and
	// deliver what comes next, once.
	if _, err := runner.RequestControl(ctx, st, failed, "", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "test"}); err != nil {
		t.Fatalf("resume %s --from now again: %v", failed, err)
	}
	next := map[int32]bool{}
	var seen [2]bool
	for id := int32(100); !seen[0] || !seen[1]; id++ {
		if !seen[partOf(id)] {
			seen[partOf(id)], next[id] = true, true
			insert(t, coll, bson.D{{Key: "_id", Value: id}})
		}
	}
	for len(next) > 0 {
		id := recv.next(t).Lookup("documentKey", "_id").Int32()
		if !next[id] {
			t.Errorf("delivered %d after the second resume, want only %v", id, next)
		}
		delete(next, id)
	}
	recv.none(t, 200*time.Millisecond)
}
