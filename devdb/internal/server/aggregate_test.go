package server_test

import (
	"reflect"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestAggregate(t *testing.T) {
	_, client := crudStart(t, "")
	db := client.Database("agg")
	coll := db.Collection("sales")
	crudInsert(t, coll,
		bson.D{{Key: "_id", Value: 1}, {Key: "item", Value: "a"}, {Key: "qty", Value: 2}, {Key: "price", Value: 10}},
		bson.D{{Key: "_id", Value: 2}, {Key: "item", Value: "b"}, {Key: "qty", Value: 1}, {Key: "price", Value: 20}},
		bson.D{{Key: "_id", Value: 3}, {Key: "item", Value: "a"}, {Key: "qty", Value: 5}, {Key: "price", Value: 10}},
		bson.D{{Key: "_id", Value: 4}, {Key: "item", Value: "c"}, {Key: "qty", Value: 1}, {Key: "price", Value: 5}},
	)
	tests := []struct {
		name     string
		pipeline bson.A
		opts     *options.AggregateOptionsBuilder
		want     []bson.D
	}{
		{"match group sort", bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "price", Value: bson.D{{Key: "$gte", Value: 10}}}}}},
			bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$item"}, {Key: "total", Value: bson.D{{Key: "$sum", Value: "$qty"}}}}}},
			bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
		}, nil, []bson.D{{{Key: "_id", Value: "a"}, {Key: "total", Value: int32(7)}}, {{Key: "_id", Value: "b"}, {Key: "total", Value: int32(1)}}}},
		{"match by _id then project", bson.A{
			bson.D{{Key: "$match", Value: bson.D{{Key: "_id", Value: 2}}}},
			bson.D{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "cost", Value: bson.D{{Key: "$multiply", Value: bson.A{"$qty", "$price"}}}}}}},
		}, nil, []bson.D{{{Key: "cost", Value: int32(20)}}}},
		{"count", bson.A{bson.D{{Key: "$count", Value: "n"}}}, nil, []bson.D{{{Key: "n", Value: int32(4)}}}},
		{"skip limit across batches", bson.A{bson.D{{Key: "$skip", Value: 1}}, bson.D{{Key: "$limit", Value: 2}}, bson.D{{Key: "$project", Value: bson.D{{Key: "_id", Value: 1}}}}},
			options.Aggregate().SetBatchSize(1), []bson.D{{{Key: "_id", Value: int32(2)}}, {{Key: "_id", Value: int32(3)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := crudCtx(t)
			var cur *mongo.Cursor
			var err error
			if tc.opts != nil {
				cur, err = coll.Aggregate(ctx, tc.pipeline, tc.opts)
			} else {
				cur, err = coll.Aggregate(ctx, tc.pipeline)
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []bson.D
			if err := cur.All(ctx, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	errTests := []struct {
		name     string
		pipeline bson.A
		code     mongoerr.Code
	}{
		{"unknown stage", bson.A{bson.D{{Key: "$bogus", Value: 1}}}, -1},
		{"$indexStats refused", bson.A{bson.D{{Key: "$indexStats", Value: bson.D{}}}}, 115},
		{"$collStats not first", bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$collStats", Value: bson.D{}}}}, 40602},
		{"$collStats latencyStats refused", bson.A{bson.D{{Key: "$collStats", Value: bson.D{{Key: "latencyStats", Value: bson.D{}}}}}}, 115},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := coll.Aggregate(crudCtx(t), tc.pipeline)
			if err == nil || (tc.code > 0 && crudCode(err) != tc.code) {
				t.Fatalf("got %v, want code %d", err, tc.code)
			}
		})
	}
}

func TestPipelineUpdate(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	coll := client.Database("agg").Collection("pu")
	crudInsert(t, coll, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 2}, {Key: "b", Value: 3}})
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.A{
		bson.D{{Key: "$set", Value: bson.D{{Key: "sum", Value: bson.D{{Key: "$add", Value: bson.A{"$a", "$b"}}}}}}},
		bson.D{{Key: "$unset", Value: "b"}},
	})
	if err != nil || res.ModifiedCount != 1 {
		t.Fatalf("pipeline update: %+v %v", res, err)
	}
	var got bson.D
	if err := coll.FindOne(ctx, bson.D{}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if want := (bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(2)}, {Key: "sum", Value: int32(5)}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	_, err = coll.UpdateOne(ctx, bson.D{}, bson.A{bson.D{{Key: "$match", Value: bson.D{}}}})
	if crudCode(err) != 72 {
		t.Fatalf("$match in update pipeline: %v, want 72", err)
	}
}

func TestPartialUniqueIndex(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	coll := client.Database("agg").Collection("partial")
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}},
		Options: options.Index().SetUnique(true).SetPartialFilterExpression(bson.D{{Key: "active", Value: true}})})
	if err != nil {
		t.Fatal(err)
	}
	crudInsert(t, coll, bson.D{{Key: "email", Value: "x"}, {Key: "active", Value: false}}, bson.D{{Key: "email", Value: "x"}, {Key: "active", Value: true}})
	_, err = coll.InsertOne(ctx, bson.D{{Key: "email", Value: "x"}, {Key: "active", Value: true}})
	if crudCode(err) != 11000 {
		t.Fatalf("second active duplicate: %v, want 11000", err)
	}
}

func TestAggregateLookup(t *testing.T) {
	_, client := crudStart(t, "")
	db := client.Database("lk")
	crudInsert(t, db.Collection("orders"),
		bson.D{{Key: "_id", Value: 1}, {Key: "sku", Value: "a"}},
		bson.D{{Key: "_id", Value: 2}, {Key: "sku", Value: bson.A{"a", "b"}}},
		bson.D{{Key: "_id", Value: 3}})
	crudInsert(t, db.Collection("items"),
		bson.D{{Key: "_id", Value: 10}, {Key: "sku", Value: "a"}},
		bson.D{{Key: "_id", Value: 11}, {Key: "sku", Value: "b"}},
		bson.D{{Key: "_id", Value: 12}})
	tests := []struct {
		name   string
		lookup bson.D
		want   [][]any // joined _ids per order
	}{
		{"equality with arrays and missing", bson.D{{Key: "from", Value: "items"}, {Key: "localField", Value: "sku"}, {Key: "foreignField", Value: "sku"}, {Key: "as", Value: "j"}},
			[][]any{{int32(10)}, {int32(10), int32(11)}, {int32(12)}}},
		{"uncorrelated pipeline", bson.D{{Key: "from", Value: "items"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "sku", Value: "b"}}}}}}, {Key: "as", Value: "j"}},
			[][]any{{int32(11)}, {int32(11)}, {int32(11)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := crudCtx(t)
			cur, err := db.Collection("orders").Aggregate(ctx, bson.A{bson.D{{Key: "$lookup", Value: tc.lookup}}, bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}}})
			if err != nil {
				t.Fatal(err)
			}
			var got []bson.D
			if err := cur.All(ctx, &got); err != nil {
				t.Fatal(err)
			}
			var joined [][]any
			for _, d := range got {
				var ids []any
				for _, e := range d {
					if e.Key == "j" {
						for _, j := range e.Value.(bson.A) {
							ids = append(ids, j.(bson.D)[0].Value)
						}
					}
				}
				joined = append(joined, ids)
			}
			if !reflect.DeepEqual(joined, tc.want) {
				t.Fatalf("joined %v, want %v", joined, tc.want)
			}
		})
	}
}
