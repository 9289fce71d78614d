package store

import (
	"strconv"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// writerBatch returns n delivery records shaped as a drain makes them:
// changehook webhook-ids (dispatcher.WebhookID), {_id: ObjectId} document
// keys of consecutive inserts, one trigger, no ID and At set (as the
// writer hands them to InsertAttempts).
func writerBatch(n int) []AttemptRecord {
	at := time.Now()
	first := bson.NewObjectID()
	recs := make([]AttemptRecord, n)
	for i := range recs {
		id := first
		c := idCounter(first) + uint32(i)
		id[9], id[10], id[11] = byte(c>>16), byte(c>>8), byte(c)
		key := bsoncore.BuildDocumentFromElements(nil, bsoncore.AppendObjectIDElement(nil, "_id", id))
		token := bsoncore.BuildDocumentFromElements(nil, bsoncore.AppendStringElement(nil, "_data", "8267"+strconv.Itoa(1e6+i)))
		recs[i] = AttemptRecord{Kind: KindDelivery, Trigger: "orders", WebhookID: dispatcher.WebhookID("orders", token),
			DocumentKey: bson.Raw(key), Operation: "insert", Attempt: 1, Status: 204, LatencyMS: 1.25,
			StartedAt: at.Add(time.Duration(i) * 50 * time.Microsecond), At: at.Add(time.Duration(i)*50*time.Microsecond + 1250*time.Microsecond)}
	}
	return recs
}

// BenchmarkWriterEncode measures the history writer's work on a batch of
// 512 delivery records before the driver gets it: the record ids, cutting
// the batch into buckets and encoding them (ns/op is per record).
func BenchmarkWriterEncode(b *testing.B) {
	const batch = 512
	recs := writerBatch(batch)
	sc := new(batchScratch) // as InsertAttempts' pool gives it
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n%batch == 0 {
			for i := range recs {
				recs[i].ID = bson.ObjectID{}
			}
			assignIDs(recs, time.Now())
			buckets := bucketsIn(sc, recs, func(*AttemptRecord) bson.ObjectID { return bson.NewObjectID() })
			for i := range buckets {
				if _, err := buckets[i].MarshalBSON(); err != nil {
					b.Fatal(err)
				}
			}
			sc.reset()
		}
		n++
	}
}
