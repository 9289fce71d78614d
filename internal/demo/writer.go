package demo

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Database and Collection are the namespace the demo writer uses (the
// low_stock trigger of the repository's triggers.yaml watches it).
const (
	Database   = "lessons"
	Collection = "inventory"
)

// LowStock is the demo trigger's threshold; below it sales slow down so
// that several low-stock messages arrive before the restock.
const LowStock = 20

// Restock is the quantity every fruit starts at and is restocked to.
const Restock = 100

// fruit is one product of the demo inventory; drop bounds how much of it
// is sold per tick.
type fruit struct {
	name    string
	dropMin int
	dropMax int
}

// inventory returns the demo fruits. They sell at different speeds so that the low-stock messages arrive
// one after the other; apples cross the threshold of 20 after four or five
// ticks.
func inventory() []fruit {
	return []fruit{{"apples", 18, 25}, {"oranges", 6, 12}, {"bananas", 3, 8}}
}

// WriterOptions configure RunWriter.
type WriterOptions struct {
	// Client writes to the database.
	Client *mongo.Client
	// Interval is the time between sales (default 1s).
	Interval time.Duration
	// Out receives one line per write.
	Out io.Writer
	// Seed seeds the quantities sold (same seed, same sequence).
	Seed uint64
	// Ticks stops the writer after that many ticks (0: until ctx ends).
	Ticks int
}

// RunWriter resets lessons.inventory to a few fruits at Restock, then every
// Interval sells some of each (an $inc update) and restocks a fruit that
// runs out. It returns nil when ctx ends or after Ticks ticks, and the
// first write error otherwise.
func RunWriter(ctx context.Context, opts WriterOptions) error {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	fruits := inventory()
	coll := opts.Client.Database(Database).Collection(Collection)
	if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
		return fmt.Errorf("demo writer: reset %s.%s: %w", Database, Collection, err)
	}
	qty := make([]int, len(fruits))
	docs := make([]any, len(fruits))
	for i, f := range fruits {
		qty[i] = Restock
		docs[i] = bson.D{{Key: "_id", Value: f.name}, {Key: "type", Value: f.name}, {Key: "quantity", Value: Restock}}
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		return fmt.Errorf("demo writer: insert the inventory: %w", err)
	}
	fmt.Fprintf(opts.Out, "[writer]   %s.%s: apples, oranges and bananas at %d; selling some every %s\n", Database, Collection, Restock, opts.Interval)
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	for n := 0; opts.Ticks == 0 || n < opts.Ticks; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for i, f := range fruits {
			sold := f.dropMin + rng.IntN(f.dropMax-f.dropMin+1)
			if qty[i] < LowStock {
				sold = 1 + rng.IntN(5) // the last few go slowly
			}
			update := bson.D{{Key: "$inc", Value: bson.D{{Key: "quantity", Value: -sold}}}}
			next := qty[i] - sold
			verb := fmt.Sprintf("sold %s: %d left", fruitCount(sold, f.name), next)
			if next <= 0 {
				update = bson.D{{Key: "$set", Value: bson.D{{Key: "quantity", Value: Restock}}}}
				next = Restock
				verb = fmt.Sprintf("restocked %s to %d", f.name, Restock)
			}
			// Printed first: the delivery it causes is often printed
			// before UpdateOne returns.
			fmt.Fprintf(opts.Out, "[writer]   %s\n", verb)
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: f.name}}, update); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("demo writer: update %s: %w", f.name, err)
			}
			qty[i] = next
		}
	}
	return nil
}

// fruitCount writes n of a fruit whose plural is name: "1 apple",
// "7 apples".
func fruitCount(n int, name string) string {
	if n == 1 {
		return "1 " + strings.TrimSuffix(name, "s")
	}
	return fmt.Sprintf("%d %s", n, name)
}
