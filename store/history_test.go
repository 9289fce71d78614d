package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// docKey returns a documentKey {_id: id}.
func docKey(t *testing.T, id string) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(bson.D{{Key: "_id", Value: id}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAttemptsListFilters: each filter keeps exactly its records, newest
// first, and the cursor pages through them without gaps or repeats.
func TestAttemptsListFilters(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	base := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var recs []store.AttemptRecord
	for i := range 12 {
		trig := "orders"
		if i%3 == 2 {
			trig = "users"
		}
		recs = append(recs, store.AttemptRecord{
			Kind: store.KindDelivery, Trigger: trig, WebhookID: fmt.Sprintf("msg_%d", i/2), DocumentKey: docKey(t, fmt.Sprintf("d%d", i%4)),
			Operation: "insert", Attempt: 1 + i%2, Failed: i%2 == 0, Status: map[bool]int{true: 500, false: 200}[i%2 == 0],
			At: base.Add(time.Duration(i) * time.Second),
		})
	}
	// Two records at the same millisecond: the cursor orders them by _id.
	recs[5].At, recs[6].At = recs[4].At, recs[4].At
	if n, err := s.InsertAttempts(ctx, recs); err != nil || n != len(recs) {
		t.Fatalf("InsertAttempts = %d, %v", n, err)
	}
	ids := func(rs []store.AttemptRecord) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.WebhookID+"/"+r.Trigger+"/"+fmt.Sprint(r.Attempt))
		}
		return strings.Join(out, " ")
	}
	cases := []struct {
		name string
		f    store.AttemptFilter
		want int
		keep func(store.AttemptRecord) bool
	}{
		{"all", store.AttemptFilter{}, 12, func(store.AttemptRecord) bool { return true }},
		{"trigger", store.AttemptFilter{Trigger: "users"}, 4, func(r store.AttemptRecord) bool { return r.Trigger == "users" }},
		{"webhook id", store.AttemptFilter{WebhookID: "msg_3"}, 2, func(r store.AttemptRecord) bool { return r.WebhookID == "msg_3" }},
		{"document key", store.AttemptFilter{DocumentKey: docKey(t, "d1")}, 3, func(r store.AttemptRecord) bool { return r.DocumentKey.Lookup("_id").StringValue() == "d1" }},
		{"failed", store.AttemptFilter{Failed: true}, 6, func(r store.AttemptRecord) bool { return r.Failed }},
		{"since", store.AttemptFilter{Since: base.Add(9 * time.Second)}, 3, func(r store.AttemptRecord) bool { return !r.At.Before(base.Add(9 * time.Second)) }},
		{"trigger and failed", store.AttemptFilter{Trigger: "orders", Failed: true}, 4, func(r store.AttemptRecord) bool { return r.Trigger == "orders" && r.Failed }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := s.ListAttempts(ctx, tc.f)
			if err != nil || next != "" {
				t.Fatalf("ListAttempts = %v, next %q, %v", ids(got), next, err)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d records (%s), want %d", len(got), ids(got), tc.want)
			}
			for i, r := range got {
				if !tc.keep(r) {
					t.Fatalf("record %+v does not match the filter", r)
				}
				if i > 0 && r.At.After(got[i-1].At) {
					t.Fatalf("not newest first: %s", ids(got))
				}
			}
		})
	}

	// Pages of 5: 5, 5, 2, in the same order as one listing.
	all, _, err := s.ListAttempts(ctx, store.AttemptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var paged []store.AttemptRecord
	after := ""
	for page := 0; ; page++ {
		got, next, err := s.ListAttempts(ctx, store.AttemptFilter{Limit: 5, After: after})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, got...)
		if next == "" {
			break
		}
		if page > 3 {
			t.Fatal("paging does not end")
		}
		after = next
	}
	if ids(paged) != ids(all) || len(paged) != 12 {
		t.Fatalf("paged %s\nwant  %s", ids(paged), ids(all))
	}

	for _, bad := range []store.AttemptFilter{{Limit: -1}, {Limit: store.MaxHistoryPage + 1}, {After: "x"}, {After: "12_zz"}} {
		if _, _, err := s.ListAttempts(ctx, bad); err == nil {
			t.Errorf("ListAttempts(%+v) = nil error, want one", bad)
		}
	}
}

// TestTrimAttempts: records older than the retention go, then the oldest
// beyond the cap; the newest max records stay.
func TestTrimAttempts(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	var recs []store.AttemptRecord
	for i := range 30 { // 10 too old, 20 within the retention
		recs = append(recs, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "t", WebhookID: fmt.Sprint(i),
			At: now.Add(-2*time.Hour + time.Duration(i)*5*time.Minute)})
	}
	if _, err := s.InsertAttempts(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// At < now-1h-1s  ⇔  i*5min < 59m59s  ⇔  i <= 11: 12 records.
	n, err := s.TrimAttempts(ctx, now, time.Hour+time.Second, 0)
	if err != nil || n != 12 {
		t.Fatalf("TrimAttempts(retention) = %d, %v; want 12 deleted", n, err)
	}
	n, err = s.TrimAttempts(ctx, now, 0, 5)
	if err != nil || n != 13 {
		t.Fatalf("TrimAttempts(cap 5) = %d, %v; want 13 deleted", n, err)
	}
	left, _, err := s.ListAttempts(ctx, store.AttemptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range left {
		got = append(got, r.WebhookID)
	}
	if strings.Join(got, ",") != "29,28,27,26,25" {
		t.Fatalf("left %v, want the newest five 29..25", got)
	}
	if n, err := s.TrimAttempts(ctx, now, time.Hour, 5); err != nil || n != 0 {
		t.Fatalf("TrimAttempts within bounds = %d, %v; want nothing deleted", n, err)
	}
}

// TestEnsureAttemptIndexes: the TTL index expires after the retention, and
// a changed retention changes it (devdb has no collMod for it: drop and
// create).
func TestEnsureAttemptIndexes(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	ttlOf := func() int64 {
		t.Helper()
		specs, err := s.AttemptsCollection().Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range specs {
			if sp.Name == store.AttemptsTTLIndex {
				if sp.ExpireAfterSeconds == nil {
					t.Fatalf("index %s has no expireAfterSeconds", sp.Name)
				}
				return int64(*sp.ExpireAfterSeconds)
			}
		}
		t.Fatalf("no index %s in %+v", store.AttemptsTTLIndex, specs)
		return 0
	}
	s.SetHistoryRetention(72 * time.Hour)
	for range 2 { // idempotent
		if err := s.EnsureIndexes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := ttlOf(); got != 72*3600 {
		t.Fatalf("expireAfterSeconds = %d, want %d", got, 72*3600)
	}
	s.SetHistoryRetention(10 * time.Minute)
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ttlOf(); got != 600 {
		t.Fatalf("after a retention change expireAfterSeconds = %d, want 600", got)
	}
}

// TestHistoryWriterBatches: records queued by observers are written in
// batches; Flush waits for them; the metrics count them.
func TestHistoryWriterBatches(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	var batches []int
	w := store.NewHistoryWriter(s, store.HistoryWriterOptions{Batch: 4, FlushEvery: time.Hour, TrimEvery: time.Hour,
		Insert: func(ctx context.Context, rs []store.AttemptRecord) (int, error) {
			mu.Lock()
			batches = append(batches, len(rs))
			mu.Unlock()
			return s.InsertAttempts(ctx, rs)
		}})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	obs := w.Observer("orders", "", store.KindDelivery, "")
	start := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	big := strings.Repeat("é", 1000) // 2000 bytes
	for i := range 10 {
		obs(dispatcher.Attempt{WebhookID: "msg_1", Number: i + 1, Status: 503, Reason: dispatcher.ReasonServerError,
			Err: errors.New("unexpected HTTP status 503"), Latency: 1500 * time.Microsecond, Body: big,
			Trigger: "orders", Start: start.Add(time.Duration(i) * time.Second), DocumentKey: docKey(t, "d1"), Operation: "update"})
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Written() != 10 || w.Dropped() != 0 {
		t.Fatalf("written %d dropped %d, want 10 and 0", w.Written(), w.Dropped())
	}
	mu.Lock()
	if fmt.Sprint(batches) != "[4 4 2]" {
		t.Errorf("batches %v, want [4 4 2]", batches)
	}
	mu.Unlock()
	got, _, err := s.ListAttempts(ctx, store.AttemptFilter{Trigger: "orders"})
	if err != nil || len(got) != 10 {
		t.Fatalf("ListAttempts = %d records, %v", len(got), err)
	}
	r := got[0]
	if r.Attempt != 10 || r.Kind != store.KindDelivery || !r.Failed || r.Status != 503 || r.Reason != dispatcher.ReasonServerError ||
		r.Operation != "update" || r.DocumentKey.Lookup("_id").StringValue() != "d1" || r.LatencyMS != 1.5 ||
		len(r.Response) > store.MaxResponseSnippet || !strings.HasPrefix(big, r.Response) || len(r.Response) < store.MaxResponseSnippet-1 ||
		!r.StartedAt.Equal(start.Add(9*time.Second)) || !r.At.Equal(start.Add(9*time.Second).Add(time.Millisecond)) {
		t.Fatalf("newest record %+v", r)
	}
}

// TestHistoryWriterWritesFullBatchesWithoutTimer: with a flush interval
// that never ends, full batches are still written as records come in (the
// queue's bell), and only the rest waits for Flush.
func TestHistoryWriterWritesFullBatchesWithoutTimer(t *testing.T) {
	s, _ := newStore(t)
	inserted := make(chan int, 8)
	w := store.NewHistoryWriter(s, store.HistoryWriterOptions{Queue: 16, Batch: 2, FlushEvery: time.Hour, TrimEvery: time.Hour,
		Insert: func(ctx context.Context, rs []store.AttemptRecord) (int, error) {
			inserted <- len(rs)
			return s.InsertAttempts(ctx, rs)
		}})
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	obs := w.Observer("orders", "", store.KindDelivery, "")
	for i := range 5 {
		obs(dispatcher.Attempt{WebhookID: "msg_1", Number: i + 1, Status: 200, Trigger: "orders", Start: time.Now()})
	}
	for range 2 { // no Flush yet: written because the batches filled
		if n := <-inserted; n != 2 {
			t.Fatalf("a batch of %d records written, want 2", n)
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := <-inserted; n != 1 || w.Written() != 5 {
		t.Fatalf("Flush wrote %d records (%d in all), want the last 1 (5)", n, w.Written())
	}
}

// TestHistoryWriterFlushWritesWhatWasWaiting: a flush writes the records
// waiting when it starts; records that arrive while that insert runs wait
// for their own batch or flush instead of being written one small insert
// after another as they come (a busy trigger's stream never leaves the
// queue empty).
func TestHistoryWriterFlushWritesWhatWasWaiting(t *testing.T) {
	cases := []struct {
		name       string
		first      int // records waiting when Flush is called (below the bell's 4)
		duringEach int // records recorded during each of the first inserts
		inserts    int // how many inserts record more
		want       []string
	}{
		{name: "nothing arrives", first: 3, want: []string{"[3]", "[3]"}},
		{name: "arrivals during the insert", first: 3, duringEach: 2, inserts: 1, want: []string{"[3]", "[3 2]", "[3 2]"}},
		{name: "arrivals during every insert", first: 2, duringEach: 1, inserts: 3, want: []string{"[2]", "[2 1]", "[2 1 1]", "[2 1 1 1]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var batches []int
			var w *store.HistoryWriter
			rec := store.AttemptRecord{Kind: store.KindDelivery, Trigger: "t"}
			// Batch 4 and a queue of 64: the bell rings at the first
			// waiting record and at 4, so fewer wait for a flush.
			w = store.NewHistoryWriter(nil, store.HistoryWriterOptions{Queue: 64, Batch: 4, FlushEvery: time.Hour, TrimEvery: time.Hour,
				Insert: func(_ context.Context, rs []store.AttemptRecord) (int, error) {
					mu.Lock()
					batches = append(batches, len(rs))
					more := len(batches) <= tc.inserts
					mu.Unlock()
					for range tc.duringEach {
						if more && !w.Record(rec) {
							t.Error("a record was dropped")
						}
					}
					return len(rs), nil
				}})
			for range tc.first {
				w.Record(rec)
			}
			for i, want := range tc.want {
				if err := w.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				got := fmt.Sprint(batches)
				mu.Unlock()
				if got != want {
					t.Fatalf("inserts after Flush %d: %s, want %s", i+1, got, want)
				}
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if want := uint64(tc.first + tc.duringEach*tc.inserts); w.Written() != want || w.Dropped() != 0 {
				t.Fatalf("written %d dropped %d, want %d and 0", w.Written(), w.Dropped(), want)
			}
		})
	}
}

// TestHistoryWriterNeverBlocks: with the state database's write blocked, a
// full queue drops records (counted) and Record never waits; Close gives up
// at its deadline and counts what was left.
func TestHistoryWriterNeverBlocks(t *testing.T) {
	s, _ := newStore(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	w := store.NewHistoryWriter(s, store.HistoryWriterOptions{Queue: 8, Batch: 2, FlushEvery: time.Millisecond, TrimEvery: time.Hour,
		Insert: func(ctx context.Context, rs []store.AttemptRecord) (int, error) {
			select {
			case entered <- struct{}{}:
			default:
			}
			select {
			case <-release:
				return len(rs), nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}})
	defer close(release)
	rec := store.AttemptRecord{Kind: store.KindDelivery, Trigger: "t"}
	w.Record(rec)
	w.Record(rec)
	<-entered // the writer holds a batch of 2 and is blocked
	accepted := 0
	for range 1000 {
		if w.Record(rec) {
			accepted++
		}
	}
	if accepted != 8 || w.Dropped() != 992 {
		t.Fatalf("accepted %d dropped %d; want the queue's 8 accepted, 992 dropped", accepted, w.Dropped())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the deadline", err)
	}
	if w.Written() != 0 || w.Dropped() != 1002 {
		t.Fatalf("after Close: written %d dropped %d, want 0 and 1002 (every record counted)", w.Written(), w.Dropped())
	}
	if w.Record(rec) || w.Dropped() != 1003 {
		t.Fatal("Record after Close was accepted")
	}
}

// TestBatchAttemptRecord: a batched request's attempt keeps its event count
// through the record, its storage and its JSON form.
func TestBatchAttemptRecord(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	r := store.AttemptFromDispatcher(dispatcher.Attempt{WebhookID: "batch_00ff", Number: 1, Status: 200, Events: 100,
		DocumentKey: docKey(t, "first"), Operation: "insert", Start: at, Latency: time.Millisecond}, "orders", "", store.KindDelivery, "")
	if r.Events != 100 || r.WebhookID != "batch_00ff" || r.Trigger != "orders" {
		t.Fatalf("record %+v, want 100 events of batch_00ff", r)
	}
	if _, err := s.InsertAttempts(ctx, []store.AttemptRecord{r}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListAttempts(ctx, store.AttemptFilter{WebhookID: "batch_00ff"})
	if err != nil || len(got) != 1 || got[0].Events != 100 || got[0].DocumentKey.Lookup("_id").StringValue() != "first" {
		t.Fatalf("stored %+v, %v", got, err)
	}
	b, err := json.Marshal(got[0])
	if err != nil || !strings.Contains(string(b), `"events":100`) {
		t.Fatalf("JSON %s, %v; want events 100", b, err)
	}
}

// TestHistoryWriterRingOrder: records go through the writer's ring in
// order and intact, batches of at most Batch, also when a batch wraps
// around the ring's end and while the writer writes full batches as
// records come in; none is lost or repeated.
func TestHistoryWriterRingOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	w := store.NewHistoryWriter(nil, store.HistoryWriterOptions{Queue: 5, Batch: 3, FlushEvery: time.Hour, TrimEvery: time.Hour,
		Insert: func(_ context.Context, rs []store.AttemptRecord) (int, error) {
			if len(rs) > 3 {
				t.Errorf("a batch of %d records, want at most 3", len(rs))
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				got = append(got, r.WebhookID+"/"+r.Partition)
			}
			return len(rs), nil
		}})
	defer func() { _ = w.Close(context.Background()) }()
	var want []string
	n := 0
	for round := range 40 {
		for range 1 + round%5 { // at most Queue records between flushes: none dropped
			id := fmt.Sprint("msg_", n)
			want = append(want, id+"/p"+id)
			if !w.Record(store.AttemptRecord{Kind: store.KindDelivery, Trigger: "t", WebhookID: id, Partition: "p" + id}) {
				t.Fatalf("record %d dropped", n)
			}
			n++
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, " ") != strings.Join(want, " ") || w.Written() != uint64(n) || w.Dropped() != 0 {
		t.Fatalf("written %d dropped %d in the order\n%v\nwant\n%v", w.Written(), w.Dropped(), got, want)
	}
}

// TestHistoryWriterCopiesKeys: Record copies the document key (into its
// slot's reused buffer): the caller may reuse its bytes at once, every
// record written keeps its own key across many turns of the ring, and a
// key beyond MaxRecordDocumentKey is omitted.
func TestHistoryWriterCopiesKeys(t *testing.T) {
	var mu sync.Mutex
	var got []string
	w := store.NewHistoryWriter(nil, store.HistoryWriterOptions{Queue: 7, Batch: 3, FlushEvery: time.Hour, TrimEvery: time.Hour,
		Insert: func(_ context.Context, rs []store.AttemptRecord) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				got = append(got, fmt.Sprint(r.WebhookID, "=", bson.Raw(r.DocumentKey), r.DocumentKeyOmitted))
			}
			return len(rs), nil
		}})
	defer func() { _ = w.Close(context.Background()) }()
	var want []string
	buf := make([]byte, 0, 64)
	for i := range 100 {
		key := bson.Raw(bsoncore.BuildDocumentFromElements(buf[:0], bsoncore.AppendInt32Element(nil, "_id", int32(i))))
		if i%10 == 9 {
			key = bson.Raw(bsoncore.BuildDocumentFromElements(nil, bsoncore.AppendStringElement(nil, "_id", strings.Repeat("k", store.MaxRecordDocumentKey))))
			want = append(want, fmt.Sprint("w", i, "=", bson.Raw(nil), true))
		} else {
			want = append(want, fmt.Sprint("w", i, "=", bson.Raw(bytes.Clone(key)), false))
		}
		if !w.Record(store.AttemptRecord{Trigger: "t", WebhookID: fmt.Sprint("w", i), DocumentKey: key}) {
			t.Fatalf("record %d dropped", i)
		}
		clear(buf[:cap(buf)]) // the caller reuses its bytes
		if i%5 == 4 {
			if err := w.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("written\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
