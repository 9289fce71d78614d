package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// BenchmarkInsertAttempts writes writer batches of DefaultHistoryBatch
// delivery records (one trigger, distinct webhook-ids and document keys, as
// a drain makes) into an in-process devdb with the attempts collection's
// indexes: the cost of the history per delivery attempt, client and
// database together (ns/op is per record).
func BenchmarkInsertAttempts(b *testing.B) {
	srv, _ := devdbtest.Start(b)
	client := devdbtest.Connect(b, srv.URI(), options.Client().SetTimeout(30*time.Second))
	s := store.New(client, "changehook_state")
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	const batch = store.DefaultHistoryBatch
	recs := make([]store.AttemptRecord, batch)
	at := time.Now()
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		if n%batch == 0 && n > 0 {
			if _, err := s.InsertAttempts(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
		// {_id: ObjectID} and "msg_" and 24 hex digits, built by hand: the
		// driver's reflection encoder and fmt took a fifth of the time.
		key := bsoncore.BuildDocumentFromElements(make([]byte, 0, 22), bsoncore.AppendObjectIDElement(nil, "_id", bson.NewObjectID()))
		wid := strconv.AppendUint(append(make([]byte, 0, 28), "msg_000000000000000000000000"...), uint64(n), 16)
		wid = append(wid[:4], wid[len(wid)-24:]...)
		recs[n%batch] = store.AttemptRecord{Kind: store.KindDelivery, Trigger: "orders", WebhookID: string(wid),
			DocumentKey: bson.Raw(key), Operation: "insert", Attempt: 1, Status: 204, LatencyMS: 1.25, StartedAt: at, At: at.Add(time.Duration(n))}
		n++
	}
}

// BenchmarkHistoryRecord measures the delivery path's share of the history
// and the writer's handling of each record, without a database: an
// observer records a successful attempt (ns/op is per attempt); a Flush
// every half queue keeps records from being dropped, so the writer's work
// is in the time too.
func BenchmarkHistoryRecord(b *testing.B) {
	w := store.NewHistoryWriter(nil, store.HistoryWriterOptions{
		Insert: func(_ context.Context, recs []store.AttemptRecord) (int, error) { return len(recs), nil },
	})
	defer func() { _ = w.Close(context.Background()) }()
	obs := w.Observer("orders", "", store.KindDelivery, "")
	key, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}})
	at := time.Now()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n++; n%(store.DefaultHistoryQueue/2) == 0 {
			if err := w.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		obs(dispatcher.Attempt{WebhookID: "msg_0123456789abcdef01234567", Number: 1, Status: 204, Latency: 1250 * time.Microsecond,
			Trigger: "orders", Start: at, DocumentKey: key, Operation: "insert"})
	}
	if err := w.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if w.Dropped() > 0 {
		b.ReportMetric(float64(w.Dropped())/float64(b.N), "dropped/op")
	}
}
