package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestChangeStreamCaughtUpSurvivesTrim: a change stream that has read
// everything sits at the oplog's last entry. When the next write trims that
// entry (by age after a quiet period: devdb writes none of a replica set's
// periodic no-ops; or by size) the stream has missed nothing, so it must go
// on, and so must a stream resumed from its token. Only when retention
// removed an entry the stream had not read is its history lost (286).
func TestChangeStreamCaughtUpSurvivesTrim(t *testing.T) {
	t.Parallel()
	// With the size limit, the event the stream reads last and the
	// trimming write together exceed it, the trimming write alone does not.
	pad := strings.Repeat("x", 20<<10)
	tests := []struct {
		name string
		opts Options
		// quiet happens between the caught-up read and the trimming write:
		// the clock moves and, for missed, a write the stream does not read.
		quiet func(t *testing.T, ctx context.Context, now *atomic.Int64, a *mongo.Collection)
		// trim is the write to another collection that trims the oplog.
		trim     bson.D
		wantLost bool
	}{
		{
			name: "age",
			opts: Options{OplogMaxAge: time.Hour},
			quiet: func(_ *testing.T, _ context.Context, now *atomic.Int64, _ *mongo.Collection) {
				now.Add(int64(2 * time.Hour))
			},
			trim: bson.D{{Key: "_id", Value: 1}},
		},
		{
			name: "size",
			opts: Options{OplogMaxBytes: 32 << 10},
			quiet: func(_ *testing.T, _ context.Context, now *atomic.Int64, _ *mongo.Collection) {
				now.Add(int64(time.Second))
			},
			trim: bson.D{{Key: "_id", Value: 1}, {Key: "pad", Value: pad}},
		},
		{
			name: "missed",
			opts: Options{OplogMaxAge: time.Hour},
			quiet: func(t *testing.T, ctx context.Context, now *atomic.Int64, a *mongo.Collection) {
				if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: 99}}); err != nil {
					t.Fatal(err)
				}
				now.Add(int64(2 * time.Hour))
			},
			trim:     bson.D{{Key: "_id", Value: 1}},
			wantLost: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var now atomic.Int64
			now.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
			clock := func() time.Time { return time.Unix(0, now.Load()) }
			s := startTestServer(t, tc.opts, testHooks{storageNow: clock})
			client := connect(t, s)
			ctx := testContext(t)
			db := client.Database("trim")
			a, b := db.Collection("a"), db.Collection("b")
			if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
				t.Fatal(err)
			}
			cs, err := a.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(10*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close(ctx)
			if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "pad", Value: pad}}); err != nil {
				t.Fatal(err)
			}
			if !cs.Next(ctx) {
				t.Fatalf("first event: %v", cs.Err())
			}
			// Caught up: an empty getMore, whose token is the position.
			if cs.TryNext(ctx) {
				t.Fatalf("unexpected event %v", cs.Current)
			}
			if cs.Err() != nil {
				t.Fatal(cs.Err())
			}
			token := cs.ResumeToken()
			now.Add(int64(time.Second))
			tc.quiet(t, ctx, &now, a)
			oldest := s.store.OldestOpTime()
			if _, err := b.InsertOne(ctx, tc.trim); err != nil {
				t.Fatal(err)
			}
			if !oldest.Before(s.store.OldestOpTime()) {
				t.Fatalf("oplog not trimmed: oldest %v", s.store.OldestOpTime())
			}
			if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}}); err != nil {
				t.Fatal(err)
			}
			resumed, err := a.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token).SetMaxAwaitTime(10*time.Millisecond))
			if err == nil {
				defer resumed.Close(ctx)
			}
			for _, st := range []struct {
				name string
				cs   *mongo.ChangeStream
				err  error
			}{{"open stream", cs, nil}, {"resumed stream", resumed, err}} {
				if tc.wantLost {
					err := st.err
					if err == nil {
						if st.cs.Next(ctx) {
							t.Fatalf("%s read %v, want ChangeStreamHistoryLost", st.name, st.cs.Current)
						}
						err = st.cs.Err()
					}
					var ce mongo.CommandError
					if !errors.As(err, &ce) || ce.Code != 286 {
						t.Fatalf("%s: %v, want ChangeStreamHistoryLost (286)", st.name, err)
					}
					continue
				}
				if st.err != nil {
					t.Fatalf("%s: %v", st.name, st.err)
				}
				if !st.cs.Next(ctx) {
					t.Fatalf("%s lost the next event: %v (it missed nothing)", st.name, st.cs.Err())
				}
				if id := st.cs.Current.Lookup("documentKey", "_id").AsInt64(); id != 3 {
					t.Fatalf("%s: next event for _id %d, want 3", st.name, id)
				}
			}
		})
	}
}
