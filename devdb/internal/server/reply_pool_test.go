package server_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// TestLargeRepliesFromPooledBuffers reads large batches (replies of about
// 150 KB, encoded into pooled buffers) on several connections at once, with
// small replies in between, and checks every document: a buffer handed to
// a second reply before the first was written, or shared by two
// connections, would garble one of them.
func TestLargeRepliesFromPooledBuffers(t *testing.T) {
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	const clients, docs, rounds = 4, 3000, 4
	pad := func(c, i int) string { return fmt.Sprintf("%d/%d/%s", c, i, strings.Repeat("x", 100)) }
	colls := make([]*mongo.Collection, clients)
	for c := range colls {
		colls[c] = client.Database("replypool").Collection(fmt.Sprint("c", c))
		batch := make([]any, 0, docs)
		for i := 0; i < docs; i++ {
			batch = append(batch, bson.D{{Key: "_id", Value: int32(i)}, {Key: "pad", Value: pad(c, i)}})
		}
		if _, err := colls[c].InsertMany(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*rounds)
	for c, coll := range colls {
		wg.Go(func() {
			for r := 0; r < rounds; r++ {
				cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(1000).SetSort(bson.D{{Key: "_id", Value: 1}}))
				if err != nil {
					errs <- err
					return
				}
				i := 0
				for cur.Next(ctx) {
					var d struct {
						ID  int32  `bson:"_id"`
						Pad string `bson:"pad"`
					}
					if err := cur.Decode(&d); err != nil {
						errs <- fmt.Errorf("collection %d, round %d, document %d: %w", c, r, i, err)
						return
					}
					if int(d.ID) != i || d.Pad != pad(c, i) {
						errs <- fmt.Errorf("collection %d, round %d, document %d: got _id %d, pad %.12q", c, r, i, d.ID, d.Pad)
						return
					}
					i++
				}
				if err := cur.Err(); err != nil || i != docs {
					errs <- fmt.Errorf("collection %d, round %d: %d documents, err %v", c, r, i, err)
					return
				}
				if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != docs {
					errs <- fmt.Errorf("collection %d, round %d: count %d, %v", c, r, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
