package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// csInsert inserts docs into db.coll through the insert command handler.
func csInsert(t *testing.T, s *Server, db, coll string, docs ...bson.D) {
	t.Helper()
	arr := make(bson.A, len(docs))
	for i, d := range docs {
		arr[i] = d
	}
	body := bson.D{{Key: "insert", Value: coll}, {Key: "documents", Value: arr}}
	if _, err := s.handlers["insert"](context.Background(), &Request{DB: db, Name: "insert", Body: body}); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

// csNewSource opens a collection change stream source on db.coll.
func csNewSource(t *testing.T, s *Server, db, coll string, spec changeStreamSpec) *changeStreamSource {
	t.Helper()
	if spec.FullDocument == "" {
		spec.FullDocument, spec.FullDocumentBeforeChange = fdDefault, fdOff
	}
	src, err := newChangeStreamSource(s, csCollection, db, coll, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return src
}

// csIDs returns the documentKey._id of each event.
func csIDs(t *testing.T, docs []bson.Raw) []int32 {
	t.Helper()
	var ids []int32
	for _, d := range docs {
		v, err := d.LookupErr("documentKey", "_id")
		if err != nil {
			t.Fatalf("event without documentKey: %v", d)
		}
		ids = append(ids, v.Int32())
	}
	return ids
}

func TestChangeStreamSourceBatches(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	src := csNewSource(t, s, "b", "c", changeStreamSpec{})
	start := src.pbrt
	for i := range int32(10) {
		csInsert(t, s, "b", "c", bson.D{{Key: "_id", Value: i}})
	}
	var all []int32
	var tokens []resumeToken
	for _, want := range []int{3, 3, 3, 1} {
		docs, exhausted, err := src.NextBatch(context.Background(), 3, 16<<20, 0)
		if err != nil || exhausted {
			t.Fatalf("NextBatch: %v, exhausted %v", err, exhausted)
		}
		if len(docs) != want {
			t.Fatalf("batch of %d events, want %d", len(docs), want)
		}
		last, err := parseResumeToken(docs[len(docs)-1].Lookup("_id").Document())
		if err != nil {
			t.Fatal(err)
		}
		pbrt := src.pbrt
		if want == 3 && pbrt != last {
			t.Fatalf("full batch: postBatchResumeToken %+v, want the last event's token %+v", pbrt, last)
		}
		if want == 1 && (!pbrt.HighWaterMark || pbrt.compare(last) <= 0) {
			t.Fatalf("drained batch: postBatchResumeToken %+v, want a high-water mark after %+v", pbrt, last)
		}
		tokens = append(tokens, pbrt)
		all = append(all, csIDs(t, docs)...)
	}
	if want := []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(all, want) {
		t.Fatalf("events %v, want %v", all, want)
	}
	if start.compare(tokens[0]) >= 0 {
		t.Fatalf("initial token %+v does not precede the first batch's %+v", start, tokens[0])
	}
	// Resuming from the second batch's postBatchResumeToken continues at 6.
	tok := tokens[1]
	r := csNewSource(t, s, "b", "c", changeStreamSpec{ResumeAfter: &tok})
	docs, _, err := r.NextBatch(context.Background(), 0, 16<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := csIDs(t, docs); !slices.Equal(got, []int32{6, 7, 8, 9}) {
		t.Fatalf("resumed events %v, want [6 7 8 9]", got)
	}
	// Resuming from the final high-water mark returns nothing old.
	hwm := tokens[3]
	h := csNewSource(t, s, "b", "c", changeStreamSpec{ResumeAfter: &hwm})
	if docs, _, err := h.NextBatch(context.Background(), 0, 16<<20, 0); err != nil || len(docs) != 0 {
		t.Fatalf("resume from high-water mark: %d events, %v", len(docs), err)
	}
}

func TestChangeStreamSourceWakesOnCommit(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	src := csNewSource(t, s, "w", "c", changeStreamSpec{})
	type result struct {
		docs []bson.Raw
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Far longer than the test's deadline: only the commit can end it.
		docs, _, err := src.NextBatch(context.Background(), 0, 16<<20, time.Hour)
		done <- result{docs, err}
	}()
	csInsert(t, s, "w", "c", bson.D{{Key: "_id", Value: int32(42)}})
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := csIDs(t, r.docs); !slices.Equal(got, []int32{42}) {
		t.Fatalf("events %v, want [42]", got)
	}
}

func TestChangeStreamSourceInterrupted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		interrupt func(s *Server, cancel context.CancelFunc)
		code      mongoerr.Code
		label     string
	}{
		{"shutdown", func(s *Server, _ context.CancelFunc) { s.cancel() }, mongoerr.InterruptedAtShutdown, labelResumable},
		{"cursor killed", func(_ *Server, cancel context.CancelFunc) { cancel() }, mongoerr.CursorKilled, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startTestServer(t, Options{}, testHooks{})
			src := csNewSource(t, s, "i", "c", changeStreamSpec{})
			ctx, cancel := context.WithCancel(s.ctx)
			defer cancel()
			tc.interrupt(s, cancel)
			_, _, err := src.NextBatch(ctx, 0, 16<<20, time.Hour)
			var ce *mongoerr.Error
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("NextBatch error %v, want code %d", err, tc.code)
			}
			if tc.label != "" && !slices.Contains(ce.Labels, tc.label) {
				t.Fatalf("labels %v, want %s", ce.Labels, tc.label)
			}
			if tc.label == "" && len(ce.Labels) != 0 {
				t.Fatalf("labels %v, want none", ce.Labels)
			}
		})
	}
}
