package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/internal/mongoerr"
)

// wantError checks that err is a server error with code whose message is
// want, or, when want ends in "…", starts with the text before it.
func wantError(t *testing.T, err error, code mongoerr.Code, want string) {
	t.Helper()
	var ce mongo.CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want a command error %d %q", err, err, code, want)
	}
	ok := ce.Message == want
	if prefix, cut := strings.CutSuffix(want, "…"); cut {
		ok = strings.HasPrefix(ce.Message, prefix)
	}
	if mongoerr.Code(ce.Code) != code || ce.Name != code.String() || !ok {
		t.Fatalf("err = (%d %s) %q\nwant (%d %s) %q", ce.Code, ce.Name, ce.Message, code, code.String(), want)
	}
}

// TestExecutorErrorContext: an error raised while find, aggregate or getMore
// produces documents carries the context MongoDB's command adds to its
// executor's errors, with the error's own code — "Executor error during find
// command", "PlanExecutor error during aggregation" (also for a find on a
// view, which MongoDB runs as an aggregate, and for $out and $merge writes),
// "Executor error during getMore" for whichever cursor the getMore reads.
// Errors of parsing — an unknown operator, a constant expression that fails
// (MongoDB folds it while parsing, so it fails even on an empty collection),
// $merge's parse-time checks — carry none.
func TestExecutorErrorContext(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "ex", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{
		bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(1)}, {Key: "s", Value: "1"}, {Key: "arr", Value: bson.A{int32(1)}}},
		bson.D{{Key: "_id", Value: int32(2)}, {Key: "a", Value: int32(0)}, {Key: "s", Value: "x"}, {Key: "arr", Value: bson.A{int32(2)}}},
	}}})
	mustRun(t, c, "ex", bson.D{{Key: "create", Value: "v"}, {Key: "viewOn", Value: "c"}, {Key: "pipeline", Value: bson.A{}}})
	mustRun(t, c, "ex", bson.D{{Key: "create", Value: "empty"}})

	const (
		findCtx    = "Executor error during find command :: caused by :: "
		aggCtx     = "PlanExecutor error during aggregation :: caused by :: "
		getMoreCtx = "Executor error during getMore :: caused by :: "
		divZero    = "can't $divide by zero"
		positional = "positional operator '.$' couldn't find a matching element in the array"
	)
	expr := func(e any) bson.D { return bson.D{{Key: "$expr", Value: e}} }
	divA := bson.D{{Key: "$divide", Value: bson.A{int32(1), "$a"}}}
	div0 := bson.D{{Key: "$divide", Value: bson.A{int32(1), int32(0)}}}
	toIntS := bson.D{{Key: "$toInt", Value: "$s"}}
	find := func(coll string, extra ...bson.E) bson.D {
		return append(bson.D{{Key: "find", Value: coll}}, extra...)
	}
	agg := func(coll string, stages ...bson.D) bson.D {
		p := bson.A{}
		for _, st := range stages {
			p = append(p, st)
		}
		return bson.D{{Key: "aggregate", Value: coll}, {Key: "pipeline", Value: p}, {Key: "cursor", Value: bson.D{}}}
	}
	stage := func(name string, v any) bson.D { return bson.D{{Key: name, Value: v}} }

	for _, tc := range []struct {
		name string
		cmd  bson.D
		code mongoerr.Code
		msg  string
	}{
		{"find filter", find("c", bson.E{Key: "filter", Value: expr(divA)}), mongoerr.BadValue, findCtx + divZero},
		{"find projection", find("c", bson.E{Key: "projection", Value: bson.D{{Key: "n", Value: toIntS}}}), mongoerr.ConversionFailure, findCtx + "Failed to parse number 'x'…"},
		{"find positional projection", find("c", bson.E{Key: "filter", Value: bson.D{{Key: "_id", Value: int32(1)}}}, bson.E{Key: "projection", Value: bson.D{{Key: "arr.$", Value: int32(1)}}}), mongoerr.ProjectionPositionalNoMatch, findCtx + positional},
		{"find on a view", find("v", bson.E{Key: "filter", Value: expr(divA)}), mongoerr.BadValue, aggCtx + divZero},
		{"find constant expression", find("empty", bson.E{Key: "filter", Value: expr(div0)}), mongoerr.BadValue, divZero},
		{"find unknown operator", find("c", bson.E{Key: "filter", Value: bson.D{{Key: "$foo", Value: int32(1)}}}), mongoerr.BadValue, "unknown top level operator: $foo…"},
		{"aggregate project", agg("c", stage("$project", bson.D{{Key: "q", Value: divA}})), mongoerr.BadValue, aggCtx + divZero},
		{"aggregate group", agg("c", stage("$group", bson.D{{Key: "_id", Value: toIntS}})), mongoerr.ConversionFailure, aggCtx + "Failed to parse number 'x'…"},
		{"aggregate match", agg("c", stage("$match", expr(divA))), mongoerr.BadValue, aggCtx + divZero},
		{"aggregate constant expression", agg("empty", stage("$project", bson.D{{Key: "q", Value: div0}})), mongoerr.BadValue, divZero},
		{"aggregate constant accumulator", agg("empty", stage("$group", bson.D{{Key: "_id", Value: nil}, {Key: "n", Value: bson.D{{Key: "$sum", Value: div0}}}})), mongoerr.BadValue, divZero},
		{"$out duplicate key", agg("c", stage("$set", bson.D{{Key: "_id", Value: int32(1)}}), stage("$out", "o")), mongoerr.DuplicateKey, aggCtx + "E11000 duplicate key error collection: ex.tmp.agg_out.…"},
		{"$out failing pipeline", agg("c", stage("$project", bson.D{{Key: "q", Value: divA}}), stage("$out", "o")), mongoerr.BadValue, aggCtx + divZero},
		{"$merge failing pipeline", agg("c", stage("$project", bson.D{{Key: "q", Value: divA}}), stage("$merge", "m")), mongoerr.BadValue, aggCtx + divZero},
		{"$merge without unique index", agg("c", stage("$merge", bson.D{{Key: "into", Value: "m"}, {Key: "on", Value: "a"}})), mongoerr.MergeOnNoUniqueIndex, "Cannot find index to verify that join fields will be unique"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, c, "ex", tc.cmd)
			wantError(t, err, tc.code, tc.msg)
		})
	}

	// The context keeps what the reply takes from the original error: a
	// duplicate key's keyPattern and keyValue.
	_, err := runCommand(t, c, "ex", agg("c", stage("$set", bson.D{{Key: "_id", Value: int32(1)}}), stage("$out", "o")))
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Raw.Lookup("keyValue").String() != `{"_id": {"$numberInt":"1"}}` || ce.Raw.Lookup("keyPattern").String() != `{"_id": {"$numberInt":"1"}}` {
		t.Errorf("$out duplicate key: %v, reply %s, want keyPattern and keyValue {_id: 1}", err, ce.Raw)
	}

	// getMore: the first batch holds the document that passes, reading the
	// next one fails, whichever command opened the cursor.
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code mongoerr.Code
		msg  string
	}{
		{"find", find("c", bson.E{Key: "filter", Value: expr(divA)}, bson.E{Key: "batchSize", Value: int32(1)}), mongoerr.BadValue, getMoreCtx + divZero},
		{"aggregate", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{stage("$project", bson.D{{Key: "q", Value: divA}})}}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: int32(1)}}}}, mongoerr.BadValue, getMoreCtx + divZero},
		{"find on a view", find("v", bson.E{Key: "filter", Value: expr(divA)}, bson.E{Key: "batchSize", Value: int32(1)}), mongoerr.BadValue, getMoreCtx + divZero},
	} {
		t.Run("getMore after "+tc.name, func(t *testing.T) {
			reply := mustRun(t, c, "ex", tc.cmd)
			if n := len(get(reply, "cursor", "firstBatch").(bson.A)); n != 1 {
				t.Fatalf("first batch of %d documents, want 1: %v", n, reply)
			}
			id := get(reply, "cursor", "id").(int64)
			coll := tc.cmd[0].Value.(string)
			_, err := runCommand(t, c, "ex", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: coll}})
			wantError(t, err, tc.code, tc.msg)
			// The failed getMore destroyed the cursor.
			_, err = runCommand(t, c, "ex", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: coll}})
			wantCode(t, err, mongoerr.CursorNotFound, "CursorNotFound")
		})
	}
}

// TestExecutorErrorContextPositionalGetMore: a positional projection that
// finds no match fails a getMore with the getMore's context, not the find
// command's.
func TestExecutorErrorContextPositionalGetMore(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "ex", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{
		bson.D{{Key: "_id", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1)}}},
		bson.D{{Key: "_id", Value: int32(2)}, {Key: "arr", Value: int32(1)}},
	}}})
	reply := mustRun(t, c, "ex", bson.D{{Key: "find", Value: "c"},
		{Key: "filter", Value: bson.D{{Key: "arr", Value: int32(1)}}},
		{Key: "projection", Value: bson.D{{Key: "arr.$", Value: int32(1)}}},
		{Key: "sort", Value: bson.D{{Key: "_id", Value: int32(1)}}},
		{Key: "batchSize", Value: int32(1)}})
	if n := len(get(reply, "cursor", "firstBatch").(bson.A)); n != 1 {
		t.Fatalf("first batch of %d documents, want 1: %v", n, reply)
	}
	_, err := runCommand(t, c, "ex", bson.D{{Key: "getMore", Value: get(reply, "cursor", "id")}, {Key: "collection", Value: "c"}})
	wantError(t, err, mongoerr.ProjectionPositionalNoMatch, "Executor error during getMore :: caused by :: positional operator '.$' couldn't find a matching element in the array")
}

// TestExecutorErrorContextFindAndModify: whatever fails while findAndModify
// finds, modifies, upserts or removes its document carries MongoDB's "Plan
// executor error during findAndModify" context, with the error's own code,
// the reply's keyPattern/keyValue or errInfo and the error labels kept;
// parse errors (a constant expression that fails, an unknown update
// operator) carry none.
func TestExecutorErrorContextFindAndModify(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "ex", bson.D{{Key: "create", Value: "valid"}, {Key: "validator", Value: bson.D{{Key: "n", Value: bson.D{{Key: "$type", Value: "int"}}}}}})
	mustRun(t, c, "ex", bson.D{{Key: "insert", Value: "valid"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}}}}})
	mustRun(t, c, "ex", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{
		bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(1)}, {Key: "s", Value: "1"}},
		bson.D{{Key: "_id", Value: int32(2)}, {Key: "a", Value: int32(0)}, {Key: "s", Value: "x"}},
		bson.D{{Key: "_id", Value: int32(3)}, {Key: "u", Value: "taken"}},
	}}})
	mustRun(t, c, "ex", bson.D{{Key: "createIndexes", Value: "c"}, {Key: "indexes", Value: bson.A{
		bson.D{{Key: "key", Value: bson.D{{Key: "u", Value: int32(1)}}}, {Key: "name", Value: "u_1"}, {Key: "unique", Value: true}, {Key: "sparse", Value: true}},
	}}})

	const (
		famCtx  = "Plan executor error during findAndModify :: caused by :: "
		divZero = "can't $divide by zero"
	)
	expr := func(e any) bson.D { return bson.D{{Key: "$expr", Value: e}} }
	// noMatch divides by a on every document it reads: none matches, so
	// every document is read, and the one with a: 0 fails.
	noMatch := expr(bson.D{{Key: "$eq", Value: bson.A{bson.D{{Key: "$divide", Value: bson.A{int32(1), "$a"}}}, int32(7)}}})
	constant := expr(bson.D{{Key: "$divide", Value: bson.A{int32(1), int32(0)}}})
	set := func(field string, v any) bson.D { return bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: v}}}} }
	fam := func(coll string, query any, extra ...bson.E) bson.D {
		return append(bson.D{{Key: "findAndModify", Value: coll}, {Key: "query", Value: query}}, extra...)
	}
	update := func(u any) bson.E { return bson.E{Key: "update", Value: u} }
	byID := func(id int32) bson.D { return bson.D{{Key: "_id", Value: id}} }
	upsert := bson.E{Key: "upsert", Value: true}

	for _, tc := range []struct {
		name string
		cmd  bson.D
		code mongoerr.Code
		msg  string
	}{
		{"query with update", fam("c", noMatch, update(set("b", 1))), mongoerr.BadValue, famCtx + divZero},
		{"query with remove", fam("c", noMatch, bson.E{Key: "remove", Value: true}), mongoerr.BadValue, famCtx + divZero},
		{"query with upsert", fam("c", noMatch, update(set("b", 1)), upsert), mongoerr.BadValue, famCtx + divZero},
		{"operator on a document", fam("c", byID(1), update(bson.D{{Key: "$inc", Value: bson.D{{Key: "s", Value: int32(1)}}}})), mongoerr.TypeMismatch,
			famCtx + "Cannot apply $inc to a value of non-numeric type. {_id: 1} has the field 's' of non-numeric type string"},
		{"pipeline on a document", fam("c", byID(2), update(bson.A{bson.D{{Key: "$set", Value: bson.D{{Key: "q", Value: bson.D{{Key: "$divide", Value: bson.A{int32(1), "$a"}}}}}}}})),
			mongoerr.BadValue, famCtx + divZero},
		{"immutable _id", fam("c", byID(1), update(set("_id", 5))), mongoerr.ImmutableField,
			famCtx + "Performing an update on the path '_id' would modify the immutable field '_id'"},
		{"duplicate key", fam("c", byID(1), update(set("u", "taken"))), mongoerr.DuplicateKey,
			famCtx + `E11000 duplicate key error collection: ex.c index: u_1 dup key: { u: "taken" }`},
		{"upserted duplicate key", fam("c", byID(9), update(set("u", "taken")), upsert), mongoerr.DuplicateKey,
			famCtx + `E11000 duplicate key error collection: ex.c index: u_1 dup key: { u: "taken" }`},
		{"validation", fam("valid", byID(1), update(set("n", "s"))), mongoerr.DocumentValidationFailure, famCtx + "Document failed validation"},
		{"constant expression", fam("c", constant, update(set("b", 1))), mongoerr.BadValue, divZero},
		{"unknown update operator", fam("c", byID(1), update(bson.D{{Key: "$foo", Value: bson.D{{Key: "a", Value: 1}}}})), mongoerr.FailedToParse,
			"Unknown modifier: $foo. Expected a valid update modifier or pipeline-style update specified as an array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, c, "ex", tc.cmd)
			wantError(t, err, tc.code, tc.msg)
			var ce mongo.CommandError
			errors.As(err, &ce)
			switch tc.code {
			case mongoerr.DuplicateKey:
				if ce.Raw.Lookup("keyPattern").String() != `{"u": {"$numberInt":"1"}}` || ce.Raw.Lookup("keyValue").String() != `{"u": "taken"}` {
					t.Errorf("reply %s, want keyPattern {u: 1} and keyValue {u: \"taken\"}", ce.Raw)
				}
			case mongoerr.DocumentValidationFailure:
				if _, err := ce.Raw.LookupErr("errInfo", "failingDocumentId"); err != nil {
					t.Errorf("reply %s, want errInfo.failingDocumentId", ce.Raw)
				}
			}
		})
	}

	// A write conflict in a transaction keeps its TransientTransactionError
	// label.
	coll := c.Database("ex").Collection("c")
	sess, sctx := txnSession(t, c)
	defer func() { _ = sess.AbortTransaction(context.Background()) }()
	if err := coll.FindOne(sctx, byID(1)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateByID(testContext(t), 1, set("b", 2)); err != nil {
		t.Fatal(err)
	}
	err := coll.FindOneAndUpdate(sctx, byID(1), set("b", 3)).Err()
	wantLabel(t, err, mongoerr.WriteConflict, "TransientTransactionError")
	wantError(t, err, mongoerr.WriteConflict, famCtx+"…")
}
