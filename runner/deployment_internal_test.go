package runner

import (
	"strings"
	"testing"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestClassifyDeployment: the server errors of a deployment that cannot
// serve the trigger get their own reason and a way out that fixes the
// deployment, not "fix the trigger's match/pipeline"; the same codes on a
// trigger that uses no newer feature keep the generic rejection.
func TestClassifyDeployment(t *testing.T) {
	preImageMsg := "Change stream was configured to require a pre-image for all update, delete and replace events, but the pre-image was not found for event: {...}"
	tests := []struct {
		name      string
		trigger   triggers.Trigger
		err       mongo.CommandError
		opened    bool
		reasonHas []string
		wayOutHas []string
	}{
		{"standalone", triggers.Trigger{Name: "t", Database: "d", Collection: "c"},
			mongo.CommandError{Code: 40573, Name: "Location40573", Message: "The $changeStream stage is only supported on replica sets"}, false,
			[]string{"standalone mongod", "only supported on replica sets"},
			[]string{"--replSet rs0", "rs.initiate()", "sharded cluster", "Atlas", "changehook resume t"}},
		{"invalid namespace", triggers.Trigger{Name: "t", Database: "d", Collection: "c"},
			mongo.CommandError{Code: 73, Name: "InvalidNamespace", Message: "$changeStream may not be opened on the internal admin database"}, false,
			[]string{"no change stream on this namespace", "InvalidNamespace 73"},
			[]string{"not admin, local, config"}},
		{"pre-image missing", triggers.Trigger{Name: "t", Database: "d", Collection: "c", FullDocumentBeforeChange: options.Required},
			mongo.CommandError{Code: 47, Name: "NoMatchingDocument", Message: preImageMsg}, true,
			[]string{"pre-image is missing", "full_document_before_change: required"},
			[]string{"collMod", "changeStreamPreAndPostImages: {enabled: true}", "whenAvailable", "changehook resume t"}},
		{"pre-image missing, both required", triggers.Trigger{Name: "t", FullDocument: options.Required, FullDocumentBeforeChange: options.Required},
			mongo.CommandError{Code: 47, Name: "NoMatchingDocument", Message: preImageMsg}, false,
			[]string{"pre-image is missing"}, []string{"collMod"}},
		{"post-image missing", triggers.Trigger{Name: "t", FullDocument: options.Required, FullDocumentBeforeChange: options.Required},
			mongo.CommandError{Code: 47, Name: "NoMatchingDocument", Message: "Change stream was configured to require a post-image for all update events, but the post-image was not found for event: {...}"}, true,
			[]string{"post-image is missing", "full_document: required"}, []string{"collMod", "full_document: whenAvailable"}},
		{"expanded events before 6.0", triggers.Trigger{Name: "t", Operations: []string{"insert", "create"}},
			mongo.CommandError{Code: 40415, Name: "Location40415", Message: "BSON field '$changeStream.showExpandedEvents' is an unknown field."}, false,
			[]string{"too old for the operations create (showExpandedEvents)", "needs MongoDB 6.0"}, []string{"MongoDB 6.0 or later"}},
		{"expanded events, message without the option", triggers.Trigger{Name: "t", Operations: []string{"modify"}},
			mongo.CommandError{Code: 40415, Name: "Location40415", Message: "Failing command via 'failCommand' failpoint"}, false,
			[]string{"too old for the operations modify", "needs MongoDB 6.0"}, []string{"MongoDB 6.0"}},
		{"pre-images before 6.0", triggers.Trigger{Name: "t", FullDocumentBeforeChange: options.WhenAvailable},
			mongo.CommandError{Code: 40415, Name: "Location40415", Message: "BSON field '$changeStream.fullDocumentBeforeChange' is an unknown field."}, false,
			[]string{"too old for full_document_before_change", "needs MongoDB 6.0"}, []string{"MongoDB 6.0"}},
		{"post-image option before 6.0", triggers.Trigger{Name: "t", FullDocument: options.WhenAvailable},
			mongo.CommandError{Code: 2, Name: "BadValue", Message: "Enumeration value 'whenAvailable' for field '$changeStream.fullDocument' is not a valid value."}, false,
			[]string{"too old for full_document: whenAvailable", "needs MongoDB 6.0"}, []string{"MongoDB 6.0"}},
		{"partitions before 7.0", triggers.Trigger{Name: "t", Partitions: 4},
			mongo.CommandError{Code: 168, Name: "InvalidPipelineOperator", Message: "Invalid $match :: caused by :: Unrecognized expression '$toHashedIndexKey'"}, false,
			[]string{"too old for partitions", "needs MongoDB 7.0"}, []string{"MongoDB 7.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Watcher{t: &tt.trigger}
			reason, wayOut, retry := w.classify(tt.err, tt.opened)
			if retry {
				t.Fatalf("classify retries %v: reopening the stream cannot help", tt.err)
			}
			for _, s := range tt.reasonHas {
				if !strings.Contains(reason, s) {
					t.Errorf("reason %q does not contain %q", reason, s)
				}
			}
			for _, s := range tt.wayOutHas {
				if !strings.Contains(wayOut, s) {
					t.Errorf("way out %q does not contain %q", wayOut, s)
				}
			}
			if strings.Contains(wayOut, "fix the trigger's match/pipeline") {
				t.Errorf("way out %q blames the trigger's pipeline for the deployment", wayOut)
			}
		})
	}

	// The same codes on a trigger that uses no newer feature: the generic
	// rejection stays.
	for _, ce := range []mongo.CommandError{
		{Code: 40324, Name: "Location40324", Message: "Unrecognized pipeline stage name: '$foo'"},
		{Code: 168, Name: "InvalidPipelineOperator", Message: "Unrecognized expression '$foo'"},
		{Code: 40415, Name: "Location40415", Message: "BSON field '$changeStream.foo' is an unknown field."},
		{Code: 47, Name: "NoMatchingDocument", Message: "m"},
	} {
		w := &Watcher{t: &triggers.Trigger{Name: "t"}}
		if reason, wayOut, _ := w.classify(ce, false); !strings.Contains(reason, "rejected") || !strings.Contains(wayOut, "fix the trigger's match/pipeline") {
			t.Errorf("classify(%d) on a plain trigger = %q / %q, want the generic rejection", ce.Code, reason, wayOut)
		}
	}
}

// TestMissingImageWayOutNamesTheCollection: the way out of a missing pre-
// or post-image names the database and collection the trigger watches in
// its collMod command, with a placeholder only for what the trigger does
// not name (a trigger on a whole database or deployment).
func TestMissingImageWayOutNamesTheCollection(t *testing.T) {
	const preTail = " (changes made before that have none), or set `full_document_before_change: whenAvailable` and reload (kill -HUP, or POST /api/reload); " +
		"then run `changehook resume t` (with whenAvailable: the changes without a pre-image are delivered without one) " +
		"or `changehook resume t --from now` (skips the changes since the checkpoint)"
	const postTail = " (changes made before that have none), or set `full_document: whenAvailable` (or updateLookup) and reload (kill -HUP, or POST /api/reload); " +
		"then run `changehook resume t`, or `changehook resume t --from now` to skip the changes since the checkpoint"
	pre := mongo.CommandError{Code: 47, Name: "NoMatchingDocument", Message: "Change stream was configured to require a pre-image for all update, delete and replace events, but the pre-image was not found for event: {...}"}
	post := mongo.CommandError{Code: 47, Name: "NoMatchingDocument", Message: "Change stream was configured to require a post-image for all update events, but the post-image was not found for event: {...}"}
	tests := []struct {
		name     string
		db, coll string
		image    options.FullDocument // which image the trigger requires
		err      mongo.CommandError
		want     string
	}{
		{"pre-image, a collection", "shop", "pre", options.Required, pre,
			`record pre-images on the collection: db.getSiblingDB("shop").runCommand({collMod: "pre", changeStreamPreAndPostImages: {enabled: true}})` + preTail},
		{"pre-image, a whole database", "shop", "", options.Required, pre,
			`record pre-images on the collection: db.getSiblingDB("shop").runCommand({collMod: "<collection>", changeStreamPreAndPostImages: {enabled: true}})` + preTail},
		{"pre-image, the whole deployment", "", "", options.Required, pre,
			`record pre-images on the collection: db.getSiblingDB("<database>").runCommand({collMod: "<collection>", changeStreamPreAndPostImages: {enabled: true}})` + preTail},
		{"post-image, a collection", "shop", "orders", "", post,
			`record post-images on the collection: db.getSiblingDB("shop").runCommand({collMod: "orders", changeStreamPreAndPostImages: {enabled: true}})` + postTail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := triggers.Trigger{Name: "t", Database: tt.db, Collection: tt.coll}
			if tt.image == options.Required {
				tr.FullDocumentBeforeChange = options.Required
			} else {
				tr.FullDocument = options.Required
			}
			_, wayOut, ok := deploymentRejection(tt.err, &tr)
			if !ok || wayOut != tt.want {
				t.Errorf("way out (ok %v):\n%s\nwant:\n%s", ok, wayOut, tt.want)
			}
		})
	}
}
