package server

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/testhooks"
)

// Error labels MongoDB attaches to change stream errors.
const (
	labelResumable    = "ResumableChangeStreamError"
	labelNonResumable = "NonResumableChangeStreamError"
)

// csScope is what a change stream watches.
type csScope int

const (
	// csCollection watches one collection (aggregate: "coll").
	csCollection csScope = iota
	// csDatabase watches one database (aggregate: 1).
	csDatabase
	// csCluster watches the deployment (aggregate: 1 on admin with
	// allChangesForCluster).
	csCluster
)

// fullDocument and fullDocumentBeforeChange modes.
const (
	fdDefault       = "default"
	fdUpdateLookup  = "updateLookup"
	fdWhenAvailable = "whenAvailable"
	fdRequired      = "required"
	fdOff           = "off"
)

// changeStreamSpec is the parsed argument of a $changeStream stage.
type changeStreamSpec struct {
	FullDocument             string
	FullDocumentBeforeChange string
	ResumeAfter              *resumeToken
	StartAfter               *resumeToken
	StartAtOperationTime     *bson.Timestamp
	ShowExpandedEvents       bool
	AllChangesForCluster     bool
}

// parseChangeStreamSpec validates the $changeStream stage argument as
// MongoDB's IDL parser does: unknown fields (40415), wrong types (14) and
// enumeration values (2) are rejected with MongoDB's messages.
func parseChangeStreamSpec(v any) (changeStreamSpec, error) {
	spec := changeStreamSpec{FullDocument: fdDefault, FullDocumentBeforeChange: fdOff}
	d, ok := v.(bson.D)
	if !ok {
		return spec, mongoerr.Errorf(mongoerr.ChangeStreamNotObject, "$changeStream stage expects a document as argument")
	}
	seen := map[string]bool{}
	for _, e := range d {
		field := "$changeStream." + e.Key
		if seen[e.Key] {
			return spec, mongoerr.Errorf(mongoerr.IDLDuplicateField, "BSON field '%s' is a duplicate field", field)
		}
		seen[e.Key] = true
		switch e.Key {
		case "fullDocument":
			s, err := csEnum(field, e.Value, fdDefault, fdUpdateLookup, fdWhenAvailable, fdRequired)
			if err != nil {
				return spec, err
			}
			spec.FullDocument = s
		case "fullDocumentBeforeChange":
			s, err := csEnum(field, e.Value, fdOff, fdWhenAvailable, fdRequired)
			if err != nil {
				return spec, err
			}
			spec.FullDocumentBeforeChange = s
		case "resumeAfter", "startAfter":
			if _, ok := e.Value.(bson.D); !ok {
				return spec, csWrongType(field, e.Value, "object")
			}
			tok, err := parseResumeToken(e.Value)
			if err != nil {
				return spec, err
			}
			if e.Key == "resumeAfter" {
				spec.ResumeAfter = &tok
			} else {
				spec.StartAfter = &tok
			}
		case "startAtOperationTime":
			ts, ok := e.Value.(bson.Timestamp)
			if !ok {
				return spec, csWrongType(field, e.Value, "timestamp")
			}
			spec.StartAtOperationTime = &ts
		case "showExpandedEvents", "allChangesForCluster":
			b, ok := e.Value.(bool)
			if !ok {
				return spec, csWrongType(field, e.Value, "bool")
			}
			if e.Key == "showExpandedEvents" {
				spec.ShowExpandedEvents = b
			} else {
				spec.AllChangesForCluster = b
			}
		default:
			return spec, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field '%s' is an unknown field.", field)
		}
	}
	if spec.ResumeAfter != nil && spec.StartAfter != nil {
		return spec, mongoerr.Errorf(mongoerr.ResumeAfterAndStartAfter, "Do not specify both 'resumeAfter' and 'startAfter' in a $changeStream stage")
	}
	if spec.StartAtOperationTime != nil && (spec.ResumeAfter != nil || spec.StartAfter != nil) {
		return spec, mongoerr.Errorf(mongoerr.MultipleResumeOptions, "Only one type of resume option is allowed, but multiple were found")
	}
	if spec.ResumeAfter != nil && spec.ResumeAfter.FromInvalidate {
		return spec, mongoerr.Errorf(mongoerr.InvalidResumeToken, "Attempting to resume a change stream using 'resumeAfter' is not allowed from an invalidate notification")
	}
	return spec, nil
}

// csEnum checks that v is a string among allowed.
func csEnum(field string, v any, allowed ...string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", csWrongType(field, v, "string")
	}
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", mongoerr.Errorf(mongoerr.BadValue, "Enumeration value '%s' for field '%s' is not a valid value.", s, field)
}

// csWrongType is the IDL type-mismatch error.
func csWrongType(field string, v any, want string) error {
	return mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type '%s'", field, mql.TypeName(v), want)
}

// changeStreamStageAllowed reports whether MongoDB allows stage name after
// $changeStream.
func changeStreamStageAllowed(name string) bool {
	switch name {
	case "$match", "$project", "$addFields", "$set", "$unset", "$replaceRoot", "$replaceWith", "$redact":
		return true
	}
	return false
}

// knownAggregationStage reports whether MongoDB recognises stage name (and
// so refuses it in a change stream with IllegalOperation rather than
// reporting an unrecognised stage, 40324).
func knownAggregationStage(name string) bool {
	switch name {
	case "$group", "$sort", "$limit", "$skip", "$lookup", "$unwind", "$count", "$facet", "$out",
		"$merge", "$bucket", "$bucketAuto", "$sample", "$geoNear", "$graphLookup", "$indexStats",
		"$collStats", "$sortByCount", "$unionWith", "$densify", "$fill", "$setWindowFields",
		"$documents", "$currentOp", "$listSessions", "$listLocalSessions", "$planCacheStats",
		"$search", "$searchMeta", "$changeStreamSplitLargeEvent", "$listSearchIndexes",
		"$vectorSearch", "$listCatalog":
		return true
	}
	return false
}

// splitStageName is the stage that splits events too large to return.
const splitStageName = "$changeStreamSplitLargeEvent"

// splitStageOf checks the $changeStreamSplitLargeEvent stages among the
// stages after $changeStream as MongoDB does: its argument must be an empty
// document (7182800) and it must be the last stage (7182802). It returns the
// stages without it and whether it was there.
func splitStageOf(stages bson.A) (bson.A, bool, error) {
	split := false
	for i, st := range stages {
		d, ok := st.(bson.D)
		if !ok || len(d) != 1 || d[0].Key != splitStageName {
			continue
		}
		if arg, ok := d[0].Value.(bson.D); !ok || len(arg) != 0 {
			return nil, false, mongoerr.Errorf(mongoerr.SplitEventSpecNotEmpty, "$changeStreamSplitLargeEvent spec should be an empty object")
		}
		if i != len(stages)-1 {
			return nil, false, mongoerr.Errorf(mongoerr.SplitEventNotLast, "$changeStreamSplitLargeEvent must be the last stage in the pipeline")
		}
		split = true
	}
	if split {
		stages = stages[:len(stages)-1]
	}
	return stages, split, nil
}

// compileChangeStreamPipeline validates and compiles the stages after
// $changeStream. It returns nil for an empty pipeline.
func compileChangeStreamPipeline(stages bson.A) (csPipeline, error) {
	if len(stages) == 0 {
		return nil, nil
	}
	docs := make([]bson.D, 0, len(stages))
	for _, st := range stages {
		d, ok := st.(bson.D)
		if !ok {
			return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		if len(d) != 1 {
			return nil, mongoerr.Errorf(mongoerr.StageNotOneField, "A pipeline stage specification object must contain exactly one field.")
		}
		name := d[0].Key
		switch {
		case name == "$changeStream":
			return nil, mongoerr.Errorf(mongoerr.StageNotFirst, "$changeStream is only valid as the first stage in a pipeline")
		case changeStreamStageAllowed(name):
		case knownAggregationStage(name):
			return nil, mongoerr.Errorf(mongoerr.IllegalOperation, "%s is not permitted in a $changeStream pipeline", name)
		default:
			return nil, mongoerr.Errorf(mongoerr.UnrecognizedStage, "Unrecognized pipeline stage name: '%s'", name)
		}
		docs = append(docs, d)
	}
	p, err := compileUserStages(docs)
	if err != nil {
		return nil, fmt.Errorf("compile change stream pipeline: %w", err)
	}
	return p, nil
}

// csPipeline is a compiled user pipeline applied to each change event.
type csPipeline interface {
	// ApplyOne runs the stages on one event: the output document, or keep
	// false when a stage ($match, $redact) dropped it.
	ApplyOne(doc bson.D) (out bson.D, keep bool, err error)
}

// aggregateChangeStream runs an aggregate whose first stage is
// $changeStream. pipeline is the whole pipeline as sent (its first element
// is the $changeStream stage). It validates the stage as MongoDB does,
// resolves the starting point (checking that the history it needs is still
// in the oplog), and returns the cursor reply with the first batch: the
// events already available, without waiting. getMore continues the stream.
func (s *Server) aggregateChangeStream(ctx context.Context, req *Request, pipeline bson.A) (bson.D, error) {
	if len(pipeline) == 0 {
		return nil, mongoerr.Errorf(mongoerr.BadValue, "empty change stream pipeline")
	}
	first, ok := pipeline[0].(bson.D)
	if !ok || len(first) != 1 || first[0].Key != "$changeStream" {
		return nil, mongoerr.Errorf(mongoerr.StageNotFirst, "$changeStream is only valid as the first stage in a pipeline")
	}
	spec, err := parseChangeStreamSpec(first[0].Value)
	if err != nil {
		return nil, err
	}

	db := req.DB
	var coll string
	scope := csDatabase
	aggTarget, _ := fieldOf(req.Body, "aggregate")
	switch v := aggTarget.(type) {
	case string:
		coll, scope = v, csCollection
	default:
		if n, ok := mql.ToInt64(v); !ok || n != 1 || !mql.IsNumber(v) {
			return nil, mongoerr.Errorf(mongoerr.FailedToParse, "Invalid command format: the 'aggregate' field must specify a collection name or 1")
		}
	}
	if spec.AllChangesForCluster {
		if db != "admin" || scope != csDatabase {
			ns := db + "." + coll
			if scope != csCollection {
				ns = db + ".$cmd.aggregate"
			}
			return nil, mongoerr.Errorf(mongoerr.InvalidOptions, "A $changeStream with 'allChangesForCluster:true' may only be opened on the 'admin' database, and with no collection name; found %s", ns)
		}
		scope = csCluster
	}
	switch {
	case db == "admin" && !spec.AllChangesForCluster, db == "local", db == "config":
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "$changeStream may not be opened on the internal %s database", db)
	case scope == csCollection && isSystemCollection(coll):
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "$changeStream may not be opened on the internal %s.%s collection", db, coll)
	}
	if tok := spec.token(); tok != nil && scope == csCollection && !tok.HighWaterMark && !tok.HasUUID {
		return nil, mongoerr.Errorf(mongoerr.InvalidResumeToken, "Attempted to resume a single-collection stream, but the resume token does not include a UUID")
	}

	stages, split, err := splitStageOf(pipeline[1:])
	if err != nil {
		return nil, err
	}
	if _, old := testhooks.RefuseSplitLargeEvent.Load(s.addr); split && old {
		return nil, mongoerr.Errorf(mongoerr.UnrecognizedStage, "Unrecognized pipeline stage name: '%s'", splitStageName)
	}
	if tok := spec.token(); tok != nil && tok.Split && !split {
		return nil, &mongoerr.Error{Code: mongoerr.ChangeStreamFatalError,
			Message: "To resume from a split event, the $changeStream pipeline must include a $changeStreamSplitLargeEvent stage",
			Labels:  []string{labelNonResumable}}
	}
	userPipeline, err := compileChangeStreamPipeline(stages)
	if err != nil {
		return nil, err
	}

	copts := CursorOptions{Awaitable: true, ExecutorContext: execContextAggregate}
	if cv, ok := fieldOf(req.Body, "cursor"); ok {
		cd, ok := cv.(bson.D)
		if !ok {
			return nil, csWrongType("aggregate.cursor", cv, "object")
		}
		if bv, ok := fieldOf(cd, "batchSize"); ok {
			n, ok := mql.ToInt64(bv)
			if !ok || !mql.IsNumber(bv) {
				return nil, csWrongType("aggregate.cursor.batchSize", bv, "int")
			}
			if n < 0 {
				return nil, mongoerr.Errorf(mongoerr.IDLValueOutOfRange, "BSON field 'batchSize' value must be >= 0, actual value '%d'", n)
			}
			copts.BatchSize = int(n)
			copts.ZeroBatch = n == 0
		}
	}

	src, err := newChangeStreamSource(s, scope, db, coll, spec, userPipeline)
	if err != nil {
		return nil, fmt.Errorf("open change stream: %w", err)
	}
	src.split = split
	if src.matchOnly {
		src.matchFields, src.matchPartial = matchFieldsOf(stages)
		src.opFilter, src.opFilterOK = opFilterOf(stages)
	}
	ns := db + "." + coll
	if scope != csCollection {
		ns = db + ".$cmd.aggregate"
	}
	return s.cursorFirstBatch(ctx, ns, src, copts)
}

// token returns the resume token given as resumeAfter or startAfter.
func (spec *changeStreamSpec) token() *resumeToken {
	if spec.ResumeAfter != nil {
		return spec.ResumeAfter
	}
	return spec.StartAfter
}
