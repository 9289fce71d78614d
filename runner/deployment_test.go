package runner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestDeploymentRejectionWayOut runs a trigger whose change stream the
// deployment refuses with the codes MongoDB answers (injected on the
// runner's aggregate with failCommand): the trigger fails with the
// deployment's reason and a way out that fixes the deployment, not the
// trigger's pipeline.
func TestDeploymentRejectionWayOut(t *testing.T) {
	tests := []struct {
		name      string
		trigger   string // the trigger's options beyond name, namespace and webhook
		code      int32
		reasonHas string
		wayOutHas []string
	}{
		{"standalone", "", 40573, "standalone mongod", []string{"--replSet rs0", "rs.initiate()", "sharded cluster"}},
		{"server too old for expanded events", "operations: [insert, create]", 40415, "too old for the operations create (showExpandedEvents), which needs MongoDB 6.0", []string{"MongoDB 6.0 or later"}},
		{"server too old for partitions", "partitions: 2\n    ordering: per_document", 168, "too old for partitions (the $toHashedIndexKey expression), which needs MongoDB 7.0", []string{"MongoDB 7.0 or later"}},
		{"namespace refused", "", 73, "no change stream on this namespace", []string{"not admin, local, config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, admin := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
			client := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(faultApp))
			configureFailPoint(t, admin, "failCommand", "alwaysOn",
				bson.D{{Key: "failCommands", Value: bson.A{"aggregate"}}, {Key: "appName", Value: faultApp}, {Key: "errorCode", Value: tt.code}})
			recv := newReceiver(t)
			cfg := parseTrigger(t, `
triggers:
  - name: dep
    database: shop
    collection: items
    webhook: { url: "${HOOK_URL}" }
    `+tt.trigger+`
`, recv.srv.URL)
			r := startRunner(t, cfg, client, runner.Options{})
			var st runner.TriggerStatus
			waitFor(t, "dep failed", func() bool {
				st = statusOf(t, r, "dep")
				return st.State == runner.StateFailed
			})
			if !strings.Contains(st.LastError, tt.reasonHas) {
				t.Errorf("last_error = %q, want it to contain %q", st.LastError, tt.reasonHas)
			}
			for _, s := range tt.wayOutHas {
				if !strings.Contains(st.WayOut, s) {
					t.Errorf("way_out = %q, want it to contain %q", st.WayOut, s)
				}
			}
			if strings.Contains(st.WayOut, "match/pipeline") {
				t.Errorf("way_out = %q blames the trigger's pipeline", st.WayOut)
			}
		})
	}
}

// TestPreImageRequiredWithoutPreImages: a trigger with
// full_document_before_change: required on a collection that records no
// pre-images fails on the first update with MongoDB's NoMatchingDocument
// (devdb answers as MongoDB does), and the way out names collMod's
// changeStreamPreAndPostImages and whenAvailable.
func TestPreImageRequiredWithoutPreImages(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: before
    database: shop
    collection: items
    operations: [update]
    full_document_before_change: required
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "before open", func() bool { return statusOf(t, r, "before").StreamOpen })
	coll := client.Database("shop").Collection("items")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateByID(ctx, int32(1), bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: int32(1)}}}}); err != nil {
		t.Fatal(err)
	}
	var st runner.TriggerStatus
	waitFor(t, "before failed", func() bool {
		st = statusOf(t, r, "before")
		return st.State == runner.StateFailed
	})
	if !strings.Contains(st.LastError, "pre-image is missing") || !strings.Contains(st.LastError, "NoMatchingDocument 47") {
		t.Errorf("last_error = %q, want the missing pre-image (NoMatchingDocument 47)", st.LastError)
	}
	for _, s := range []string{"collMod", "changeStreamPreAndPostImages: {enabled: true}", "full_document_before_change: whenAvailable"} {
		if !strings.Contains(st.WayOut, s) {
			t.Errorf("way_out = %q, want it to contain %q", st.WayOut, s)
		}
	}
}
