package runner

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Server error codes of a deployment that cannot serve a trigger.
const (
	codeBadValue           = 2     // an option value the server does not know (an enum such as fullDocument)
	codeNoMatchingDocument = 47    // a required pre- or post-image is missing
	codeInvalidNamespace   = 73    // change streams are not allowed on admin, local, config or system collections
	codeInvalidPipelineOp  = 168   // an unknown expression, such as $toHashedIndexKey before 7.0
	codeUnrecognizedStage  = 40324 // an unknown pipeline stage
	codeIDLUnknownField    = 40415 // an unknown $changeStream option, such as showExpandedEvents before 6.0
	codeNotReplicaSet      = 40573 // "The $changeStream stage is only supported on replica sets"
)

// deploymentRejection recognises a server error that says the deployment,
// not the trigger's configuration, cannot serve trigger t: a standalone
// mongod, a namespace MongoDB opens no change stream on, a required pre-
// or post-image that the collection does not record, or a server too old
// for an option the trigger uses. It returns the status reason and the way
// out; ok is false for any other error. None of these go away by
// reopening the stream.
func deploymentRejection(ce mongo.CommandError, t *triggers.Trigger) (reason, wayOut string, ok bool) {
	name := t.Name
	switch ce.Code {
	case codeNotReplicaSet:
		return fmt.Sprintf("the deployment is a standalone mongod, which has no change streams (%s %d): %s", ce.Name, ce.Code, ce.Message),
			"change streams need a replica set or a sharded cluster: restart mongod with --replSet rs0 and run rs.initiate() once " +
				"(a one-node replica set works), or use a sharded cluster or MongoDB Atlas; then run `changehook resume " + name + "`", true
	case codeInvalidNamespace:
		return fmt.Sprintf("MongoDB opens no change stream on this namespace (%s %d): %s", ce.Name, ce.Code, ce.Message),
			"point the trigger at another database or collection (not admin, local, config or a system.* collection) and reload (kill -HUP, or POST /api/reload)", true
	case codeNoMatchingDocument:
		// MongoDB's message says which image is missing; a trigger that
		// requires only one of them can only be missing that one.
		pre, post := t.FullDocumentBeforeChange == options.Required, t.FullDocument == options.Required
		if pre && post {
			pre, post = !strings.Contains(ce.Message, "post-image"), strings.Contains(ce.Message, "post-image")
		}
		if pre {
			return fmt.Sprintf("a pre-image is missing (%s %d): the trigger sets full_document_before_change: required, but the collection did not record the document before this change: %s", ce.Name, ce.Code, ce.Message),
				"record pre-images on the collection: " + recordImages(t) + " (changes made before that have none), " +
					"or set `full_document_before_change: whenAvailable` and reload (kill -HUP, or POST /api/reload); " +
					"then run `changehook resume " + name + "` (with whenAvailable: the changes without a pre-image are delivered without one) " +
					"or `changehook resume " + name + " --from now` (skips the changes since the checkpoint)", true
		}
		if post {
			return fmt.Sprintf("a post-image is missing (%s %d): the trigger sets full_document: required, but the collection did not record the document after this change: %s", ce.Name, ce.Code, ce.Message),
				"record post-images on the collection: " + recordImages(t) + " (changes made before that have none), " +
					"or set `full_document: whenAvailable` (or updateLookup) and reload (kill -HUP, or POST /api/reload); " +
					"then run `changehook resume " + name + "`, or `changehook resume " + name + " --from now` to skip the changes since the checkpoint", true
		}
	case codeBadValue, codeInvalidPipelineOp, codeUnrecognizedStage, codeIDLUnknownField:
		if feature, version := newerFeature(ce, t); feature != "" {
			return fmt.Sprintf("the server is too old for %s, which needs MongoDB %s (%s %d): %s", feature, version, ce.Name, ce.Code, ce.Message),
				fmt.Sprintf("upgrade the deployment to MongoDB %s or later, or change the trigger not to use %s and reload (kill -HUP, or POST /api/reload); then run `changehook resume %s`", version, feature, name), true
		}
	}
	return "", "", false
}

// recordImages is the mongosh command that makes the collection t
// watches record pre- and post-images, naming its database and collection
// and leaving a placeholder only for what t does not name (a trigger on a
// whole database or deployment).
func recordImages(t *triggers.Trigger) string {
	db, coll := "<database>", "<collection>"
	if t.Database != "" {
		db = t.Database
	}
	if t.Collection != "" {
		coll = t.Collection
	}
	return fmt.Sprintf("db.getSiblingDB(%s).runCommand({collMod: %s, changeStreamPreAndPostImages: {enabled: true}})",
		strconv.Quote(db), strconv.Quote(coll))
}

// newerFeature names the feature of t, among those newer MongoDB versions
// added, that ce (an unknown-option, unknown-stage or unknown-expression
// error) refuses, and the MongoDB version it needs; "" when t uses none
// that ce can be about. The message decides when it names the option;
// failCommand's and unexpected messages fall back to the code.
func newerFeature(ce mongo.CommandError, t *triggers.Trigger) (feature, version string) {
	mentions := func(s string) bool { return strings.Contains(ce.Message, s) }
	partitioned := t.Partitions > 1
	expanded := slices.DeleteFunc(slices.Clone(t.Operations), func(op string) bool { return !triggers.ExpandedOperation(op) })
	before := t.FullDocumentBeforeChange != "" && t.FullDocumentBeforeChange != options.Off
	postImage := t.FullDocument == options.Required || t.FullDocument == options.WhenAvailable
	switch {
	case partitioned && (mentions("$toHashedIndexKey") || ce.Code == codeInvalidPipelineOp):
		return "partitions (the $toHashedIndexKey expression)", "7.0"
	case len(expanded) > 0 && mentions("showExpandedEvents"):
		return "the operations " + strings.Join(expanded, ", ") + " (showExpandedEvents)", "6.0"
	case before && mentions("fullDocumentBeforeChange"):
		return "full_document_before_change (pre-images)", "6.0"
	case postImage && mentions("fullDocument"):
		return "full_document: " + string(t.FullDocument) + " (post-images)", "6.0"
	}
	if ce.Code != codeIDLUnknownField {
		return "", ""
	}
	// An unknown $changeStream option the message does not name: judge by
	// the options the trigger sets.
	switch {
	case len(expanded) > 0:
		return "the operations " + strings.Join(expanded, ", ") + " (showExpandedEvents)", "6.0"
	case before:
		return "full_document_before_change (pre-images)", "6.0"
	}
	return "", ""
}
