package server

import (
	"errors"
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
