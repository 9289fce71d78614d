package server_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
	"github.com/changehook/changehook/internal/testhooks"
)

// TestChangeStreamSplitLargeEvent checks $changeStreamSplitLargeEvent
// (MongoDB 7.0 and 6.0.9; devdb presents 6.0.19) as the manual describes
// it: an event over 16 MiB is returned as fragments, each with its own
// resume token as _id and splitEvent {fragment, of}, the top-level fields
// divided among them; resuming from a fragment's token continues with the
// next fragment, from the last one with the next event; a fragment's token
// needs the stage (ChangeStreamFatalError, 280); the stage takes an empty
// document (7182800) and must be the last stage (7182802).
func TestChangeStreamSplitLargeEvent(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := largeCtx(t)
	db := client.Database("split")
	csRun(t, db, bson.D{{Key: "create", Value: "c"}, {Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}})
	coll := db.Collection("c")
	pre := bson.D{{Key: "_id", Value: int32(1)}, {Key: "large", Value: strings.Repeat("a", 10<<20)}}
	post := bson.D{{Key: "_id", Value: int32(1)}, {Key: "large", Value: strings.Repeat("b", 10<<20)}}
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, pre); return err })

	splitStage := mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}}
	images := func() *options.ChangeStreamOptionsBuilder {
		return options.ChangeStream().SetFullDocument(options.Required).SetFullDocumentBeforeChange(options.Required)
	}
	cs := csWatch(t, coll, splitStage, images())
	start := cs.ResumeToken()
	plain := csWatch(t, coll, nil, images())

	mustDo(t, func() error {
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "large", Value: post[1].Value}}}})
		return err
	})
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(2)}}); return err })

	// Three fragments: the small fields with the smallest of the three
	// 10 MiB ones, then one large field each.
	var tokens []bson.Raw
	merged := bson.D{}
	seen := map[string]bool{}
	for n := int32(1); n <= 3; n++ {
		if !cs.Next(ctx) {
			t.Fatalf("fragment %d: %v", n, cs.Err())
		}
		if len(cs.Current) > 16<<20 {
			t.Fatalf("fragment %d is %d bytes, over 16 MiB", n, len(cs.Current))
		}
		frag := csDecode(t, cs.Current)
		if frag[0].Key != "_id" || frag[1].Key != "splitEvent" {
			t.Fatalf("fragment %d starts with %q, %q, want _id, splitEvent", n, frag[0].Key, frag[1].Key)
		}
		if want := (bson.D{{Key: "fragment", Value: n}, {Key: "of", Value: int32(3)}}); !reflect.DeepEqual(frag[1].Value, want) {
			t.Fatalf("fragment %d: splitEvent %v, want %v", n, frag[1].Value, want)
		}
		id, _ := bson.Marshal(frag[0].Value)
		if !bytesEqual(cs.ResumeToken(), id) {
			t.Fatalf("fragment %d: resume token %v, want its _id %v", n, cs.ResumeToken(), frag[0].Value)
		}
		tokens = append(tokens, id)
		for _, e := range frag[2:] {
			if seen[e.Key] {
				t.Fatalf("field %s in two fragments", e.Key)
			}
			seen[e.Key] = true
			merged = append(merged, e)
		}
	}
	csField(t, merged, "operationType", "update")
	csField(t, merged, "documentKey", bson.D{{Key: "_id", Value: int32(1)}})
	csField(t, merged, "fullDocument", post)
	csField(t, merged, "fullDocumentBeforeChange", pre)
	ud, _ := csGet(merged, "updateDescription").(bson.D)
	if got, _ := csGet(ud, "updatedFields").(bson.D); !reflect.DeepEqual(got, bson.D{{Key: "large", Value: post[1].Value}}) {
		t.Fatalf("updateDescription.updatedFields is not the new large field")
	}
	for _, k := range []string{"clusterTime", "wallTime", "ns"} {
		if !seen[k] {
			t.Fatalf("no fragment has %s", k)
		}
	}
	next := csNext(t, cs)
	csField(t, next, "documentKey", bson.D{{Key: "_id", Value: int32(2)}})
	csField(t, next, "splitEvent", "absent")

	// Without the stage the event is too large.
	if plain.Next(ctx) {
		t.Fatalf("without the stage: read %v, want BSONObjectTooLarge", plain.Current)
	}
	var ce mongo.CommandError
	if !errors.As(plain.Err(), &ce) || ce.Code != 10334 {
		t.Fatalf("without the stage: %v, want BSONObjectTooLarge (10334)", plain.Err())
	}

	t.Run("resume after each fragment", func(t *testing.T) {
		for i, tok := range tokens {
			r := csWatch(t, coll, splitStage, images().SetResumeAfter(tok))
			for n := int32(i + 2); n <= 3; n++ {
				csField(t, csNext(t, r), "splitEvent", bson.D{{Key: "fragment", Value: n}, {Key: "of", Value: int32(3)}})
			}
			csField(t, csNext(t, r), "documentKey", bson.D{{Key: "_id", Value: int32(2)}})
		}
		// From before the event, with startAfter: all three fragments.
		r := csWatch(t, coll, splitStage, images().SetStartAfter(start))
		for n := int32(1); n <= 3; n++ {
			csField(t, csNext(t, r), "splitEvent", bson.D{{Key: "fragment", Value: n}, {Key: "of", Value: int32(3)}})
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name     string
			pipeline mongo.Pipeline
			opts     *options.ChangeStreamOptionsBuilder
			code     int
		}{
			{"fragment token without the stage", nil, images().SetResumeAfter(tokens[0]), 280},
			{"non-empty spec", mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{{Key: "x", Value: 1}}}}}, nil, 7182800},
			{"not last", mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}, {{Key: "$match", Value: bson.D{}}}}, nil, 7182802},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				pipeline := tc.pipeline
				if pipeline == nil {
					pipeline = mongo.Pipeline{}
				}
				opts := tc.opts
				if opts == nil {
					opts = options.ChangeStream()
				}
				s, err := coll.Watch(csCtx(t), pipeline, opts)
				if err == nil {
					_ = s.Close(context.Background())
					t.Fatalf("watch succeeded, want code %d", tc.code)
				}
				var se mongo.ServerError
				if !errors.As(err, &se) || !se.HasErrorCode(tc.code) {
					t.Fatalf("watch: %v, want code %d", err, tc.code)
				}
			})
		}
	})
}

// TestSplitStageRefusedByTestHook: a server whose address is in
// testhooks.RefuseSplitLargeEvent answers $changeStreamSplitLargeEvent as
// MongoDB before 6.0.9 answers a stage it does not know (40324); its
// streams without the stage, and other servers, are unaffected.
func TestSplitStageRefusedByTestHook(t *testing.T) {
	t.Parallel()
	srv, client := csStart(t, server.Options{})
	_, other := csStart(t, server.Options{})
	testhooks.RefuseSplitLargeEvent.Store(srv.Addr(), true)
	t.Cleanup(func() { testhooks.RefuseSplitLargeEvent.Delete(srv.Addr()) })
	ctx := csCtx(t)
	splitStage := mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}}
	_, err := client.Database("split").Collection("c").Watch(ctx, splitStage)
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 40324 || ce.Message != "Unrecognized pipeline stage name: '$changeStreamSplitLargeEvent'" {
		t.Fatalf("open with the stage on the refusing server: %v; want 40324 Unrecognized pipeline stage name", err)
	}
	cs := csWatch(t, client.Database("split").Collection("c"), nil, nil)
	_ = cs.Close(ctx)
	cs = csWatch(t, other.Database("split").Collection("c"), splitStage, nil)
	_ = cs.Close(ctx)
}
