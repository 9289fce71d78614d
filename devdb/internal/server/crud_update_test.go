package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// extDoc parses relaxed extended JSON into a bson.D.
func extDoc(tb testing.TB, s string) bson.D {
	tb.Helper()
	var d bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &d); err != nil {
		tb.Fatalf("parse %s: %v", s, err)
	}
	return d
}

// TestPipelineUpdateApply checks pipeline-style updates: the allowed
// stages, _id restored when the output drops it, a changed _id refused and
// an unchanged output reported as no change.
func TestPipelineUpdateApply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		stages  []string
		want    string
		changed bool
		code    mongoerr.Code
	}{
		{name: "manual $set and $unset", doc: `{"_id": 1, "member": "abc123", "status": "A", "misc1": "note to self", "misc2": "Need to activate"}`,
			stages: []string{`{"$set": {"status": "Modified", "comments": ["$misc1", "$misc2"]}}`, `{"$unset": ["misc1", "misc2"]}`},
			want:   `{"_id": 1, "member": "abc123", "status": "Modified", "comments": ["note to self", "Need to activate"]}`, changed: true},
		{name: "$project keeps _id", doc: `{"_id": 1, "a": 1, "b": 2}`, stages: []string{`{"$project": {"_id": 0, "a": 1}}`},
			want: `{"_id": 1, "a": 1}`, changed: true},
		{name: "$replaceWith without _id", doc: `{"_id": 1, "a": {"x": 1}}`, stages: []string{`{"$replaceWith": "$a"}`},
			want: `{"_id": 1, "x": 1}`, changed: true},
		{name: "no-op", doc: `{"_id": 1, "a": 1}`, stages: []string{`{"$set": {"a": 1}}`}, want: `{"_id": 1, "a": 1}`},
		{name: "empty pipeline", doc: `{"_id": 1, "a": 1}`, stages: nil, want: `{"_id": 1, "a": 1}`},
		{name: "changing _id", doc: `{"_id": 1}`, stages: []string{`{"$set": {"_id": 2}}`}, code: mongoerr.ImmutableField},
		{name: "stage not allowed", doc: `{"_id": 1}`, stages: []string{`{"$match": {"a": 1}}`}, code: mongoerr.InvalidOptions},
		{name: "stage with two fields", doc: `{"_id": 1}`, stages: []string{`{"$set": {"a": 1}, "$unset": "b"}`}, code: mongoerr.StageNotOneField},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stages := bson.A{}
			for _, s := range tc.stages {
				stages = append(stages, extDoc(t, s))
			}
			u, err := compileUpdateSpec("update", stages, nil, nil)
			var out bson.D
			var changed bool
			if err == nil {
				out, changed, _, _, err = u.apply(extDoc(t, tc.doc), -1, false, time.Now())
			}
			if tc.code != 0 {
				var me *mongoerr.Error
				if !errors.As(err, &me) || me.Code != tc.code {
					t.Fatalf("want code %d, got %v", tc.code, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if want := extDoc(t, tc.want); !mql.Identical(out, want) || changed != tc.changed {
				t.Fatalf("got %s changed=%v, want %s changed=%v", mql.FormatValue(out), changed, tc.want, tc.changed)
			}
		})
	}
}

// TestUpdateCountsOnlyStatementsThatSucceed checks update's n and
// nModified when statements fail: a statement that fails (duplicate key,
// document validation) adds nothing to them, also a multi update that
// changed documents before it failed (those stay changed), as MongoDB
// counts only the results of the statements that succeeded.
func TestUpdateCountsOnlyStatementsThatSucceed(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("cnt")
	run := func(cmd bson.D) bson.D {
		t.Helper()
		// A reply with writeErrors is an error to RunCommand, and its
		// document is still there.
		raw, err := db.RunCommand(ctx, cmd).Raw()
		var out bson.D
		if raw == nil || bson.Unmarshal(raw, &out) != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		return out
	}
	reset := func() {
		t.Helper()
		_ = db.Collection("dk").Drop(ctx)
		run(bson.D{{Key: "create", Value: "dk"}, {Key: "validator", Value: bson.D{{Key: "v", Value: bson.D{{Key: "$lt", Value: 10}}}}}})
		run(bson.D{{Key: "createIndexes", Value: "dk"}, {Key: "indexes", Value: bson.A{bson.D{
			{Key: "key", Value: bson.D{{Key: "email", Value: 1}}}, {Key: "name", Value: "email_1"}, {Key: "unique", Value: true}}}}})
		run(bson.D{{Key: "insert", Value: "dk"}, {Key: "documents", Value: bson.A{
			bson.D{{Key: "_id", Value: 1}, {Key: "email", Value: "a"}, {Key: "v", Value: 1}},
			bson.D{{Key: "_id", Value: 2}, {Key: "email", Value: "b"}, {Key: "v", Value: 1}},
			bson.D{{Key: "_id", Value: 3}, {Key: "email", Value: "c"}, {Key: "v", Value: 1}},
		}}})
	}
	stmt := func(q, u bson.D, multi bool) bson.D {
		return bson.D{{Key: "q", Value: q}, {Key: "u", Value: u}, {Key: "multi", Value: multi}}
	}
	setEmail := func(id int, email string) bson.D {
		return stmt(bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: email}}}}, false)
	}
	for _, tc := range []struct {
		name        string
		stmts       bson.A
		ordered     bool
		n, modified int32
		errIndexes  []int32
	}{
		{name: "duplicate key", stmts: bson.A{setEmail(2, "a")}, ordered: true, errIndexes: []int32{0}},
		{name: "unordered batch with one duplicate", stmts: bson.A{setEmail(1, "x"), setEmail(2, "x"), setEmail(3, "y")},
			n: 2, modified: 2, errIndexes: []int32{1}},
		{name: "multi update failing on its second document",
			stmts:   bson.A{stmt(bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: "same"}}}}, true)},
			ordered: true, errIndexes: []int32{0}},
		{name: "document validation", stmts: bson.A{setEmail(1, "q"),
			stmt(bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 50}}}}, false)},
			ordered: true, n: 1, modified: 1, errIndexes: []int32{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reset()
			out := run(bson.D{{Key: "update", Value: "dk"}, {Key: "updates", Value: tc.stmts}, {Key: "ordered", Value: tc.ordered}})
			if get(out, "n") != tc.n || get(out, "nModified") != tc.modified {
				t.Errorf("n %v nModified %v, want %d %d: %v", get(out, "n"), get(out, "nModified"), tc.n, tc.modified, out)
			}
			errs, _ := get(out, "writeErrors").(bson.A)
			var got []int32
			for _, e := range errs {
				got = append(got, get(e.(bson.D), "index").(int32))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.errIndexes) {
				t.Errorf("write errors at %v, want %v: %v", got, tc.errIndexes, out)
			}
		})
	}
}
