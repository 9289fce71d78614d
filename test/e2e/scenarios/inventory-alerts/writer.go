package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The fruit store: one inventory document per fruit.
const (
	database      = "fruitstore"
	collection    = "inventory"
	startQuantity = 100 // every fruit starts (and is restocked) at this level
	lowStock      = 20  // the trigger alerts below this level
	minSale       = 5   // each tick sells minSale..maxSale units of each fruit
	maxSale       = 15
)

// fruits returns the store's fruits, in the order the writer sells them.
func fruits() []string { return []string{"strawberries", "bananas", "apples"} }

// sale is one write of the writer: units sold, or a restock.
type sale struct {
	Tick      int
	Fruit     string
	Sold      int32
	Left      int32 // the quantity after the write, as the server returned it
	Restocked bool
}

// alert returns the Slack message low_stock posts for this sale, if any.
func (s sale) alert() (string, bool) {
	if s.Left >= lowStock {
		return "", false
	}
	return fmt.Sprintf("There are only %d units left of %s!", s.Left, s.Fruit), true
}

// String describes the sale for the console.
func (s sale) String() string {
	if s.Restocked {
		return fmt.Sprintf("tick %d: restocked %s to %d", s.Tick, s.Fruit, s.Left)
	}
	return fmt.Sprintf("tick %d: sold %d %s, %d left", s.Tick, s.Sold, s.Fruit, s.Left)
}

// writer sells fruit. Quantities sold come from a seeded generator, so a
// seed always produces the same sales.
type writer struct {
	coll *mongo.Collection
	rng  *rand.Rand
}

func newWriter(client *mongo.Client, seed uint64) *writer {
	return &writer{
		coll: client.Database(database).Collection(collection),
		rng:  rand.New(rand.NewPCG(seed, seed^0x5eed)),
	}
}

// stock empties the inventory and puts every fruit at startQuantity.
func (w *writer) stock(ctx context.Context) error {
	if err := w.coll.Drop(ctx); err != nil {
		return fmt.Errorf("stock shelves: drop %s.%s: %w", database, collection, err)
	}
	docs := make([]any, 0, len(fruits()))
	for _, f := range fruits() {
		docs = append(docs, bson.D{{Key: "type", Value: f}, {Key: "quantity", Value: int32(startQuantity)}})
	}
	if _, err := w.coll.InsertMany(ctx, docs); err != nil {
		return fmt.Errorf("stock shelves: %w", err)
	}
	return nil
}

// tick sells some of every fruit; a fruit that would run out is restocked
// instead.
func (w *writer) tick(ctx context.Context, n int) ([]sale, error) {
	sales := make([]sale, 0, len(fruits()))
	for _, f := range fruits() {
		sold := int32(minSale + w.rng.IntN(maxSale-minSale+1))
		// Sell only what is on the shelf: the filter makes the update a no-op
		// when fewer than sold+1 units are left, and then we restock.
		s, err := w.update(ctx, bson.D{{Key: "type", Value: f}, {Key: "quantity", Value: bson.D{{Key: "$gt", Value: sold}}}},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "quantity", Value: -sold}}}})
		switch {
		case err == nil:
			s.Sold = sold
		case errors.Is(err, mongo.ErrNoDocuments):
			s, err = w.update(ctx, bson.D{{Key: "type", Value: f}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "quantity", Value: int32(startQuantity)}}}})
			if err != nil {
				return sales, fmt.Errorf("restock %s: %w", f, err)
			}
			s.Restocked = true
		default:
			return sales, fmt.Errorf("sell %s: %w", f, err)
		}
		s.Tick, s.Fruit = n, f
		sales = append(sales, s)
	}
	return sales, nil
}

// update applies one update and returns the quantity it left.
func (w *writer) update(ctx context.Context, filter, update bson.D) (sale, error) {
	var doc struct {
		Quantity int32 `bson:"quantity"`
	}
	err := w.coll.FindOneAndUpdate(ctx, filter, update, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&doc)
	if err != nil {
		return sale{}, err
	}
	return sale{Left: doc.Quantity}, nil
}
