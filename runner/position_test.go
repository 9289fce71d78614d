package runner_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestPositionAtBeforeATooLargeChange: PositionAt(since) returns a position
// before a change after since that is too large to read (the update that
// sets a 9 MiB field, with updateLookup: the event carries it twice): the trigger fails on
// that change when it reads it, and skip deals with it. Only lost history
// fails PositionAt's read.
func TestPositionAtBeforeATooLargeChange(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	cfg := parseTrigger(t, `
triggers:
  - name: big
    database: shop
    collection: big
    operations: [insert, update]
    full_document: updateLookup
    webhook: { url: "${HOOK_URL}" }
`, "http://127.0.0.1:1")
	coll := client.Database("shop").Collection("big")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	since := insertIDsBefore(t, client, coll, 1, 1)
	big := strings.Repeat("x", 9<<20)
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: big}}}}); err != nil {
		t.Fatal(err)
	}
	cp, err := runner.PositionAt(ctx, client, cfg.Triggers[0], since)
	if err != nil {
		t.Fatalf("PositionAt(%s) before a change too large to read: %v", since, err)
	}
	// The position is before the large change: reading from it meets it
	// (opening the stream, which reads a first batch, or the next read).
	cs, err := cfg.Triggers[0].Watch(ctx, client, cfg.Triggers[0].ChangeStreamOptions().SetResumeAfter(cp.Token))
	if err == nil {
		defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
		for cs.Next(ctx) {
			t.Fatalf("read %s before the large update", cs.Current)
		}
		err = cs.Err()
	}
	if err == nil || !strings.Contains(err.Error(), "BSONObjectTooLarge") {
		t.Fatalf("reading from the position: %v, want the large change's BSONObjectTooLarge", err)
	}
}

// TestPositionAtBeforeTheOplogNamesTheEarliestTime: a time the oplog no
// longer reaches is refused with the earliest time it still reaches, to the
// second: PositionAt accepts that time and refuses the second before it.
func TestPositionAtBeforeTheOplogNamesTheEarliestTime(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{OplogMaxBytes: 16 << 10})
	cfg := parseTrigger(t, lowStockYAML, "http://127.0.0.1:1")
	trig := cfg.Triggers[0]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	coll := client.Database("lessons").Collection("inventory")
	before := serverTime(t, client).Add(-time.Hour).Truncate(time.Second)
	pad := strings.Repeat("x", 1024)
	for i := int32(1); i < 80; i++ {
		insert(t, coll, append(item(i, 100), bson.E{Key: "pad", Value: pad}))
	}
	// The oplog's oldest change is of a past second, or only now is in
	// reach (a position is to the second).
	written := serverTime(t, client).Truncate(time.Second)
	waitFor(t, "the server's clock past "+written.Format(time.RFC3339), func() bool { return serverTime(t, client).After(written.Add(time.Second)) })
	_, err := runner.PositionAt(ctx, client, trig, before)
	prefix := before.UTC().Format(time.RFC3339) + " is older than the oldest change still in the oplog: the earliest time it still reaches is "
	m := regexp.MustCompile(regexp.QuoteMeta(prefix) + `(\S+) \(pick it or a later time\)`).FindStringSubmatch(fmt.Sprint(err))
	if m == nil {
		t.Fatalf("PositionAt(%s) = %v, want %q and a time", before, err, prefix)
	}
	earliest, perr := time.Parse(time.RFC3339, m[1])
	if perr != nil {
		t.Fatalf("the time named, %q: %v", m[1], perr)
	}
	if _, err := runner.PositionAt(ctx, client, trig, earliest); err != nil {
		t.Errorf("PositionAt(%s), the time the error named: %v", earliest, err)
	}
	if _, err := runner.PositionAt(ctx, client, trig, earliest.Add(-time.Second)); err == nil || !strings.Contains(err.Error(), "ChangeStreamHistoryLost") {
		t.Errorf("PositionAt(%s), a second before the time named: %v, want history lost", earliest.Add(-time.Second), err)
	}
}
