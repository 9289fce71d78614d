package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
)

// testTimeout bounds one scenario run; it normally takes well under a second.
const testTimeout = 60 * time.Second

// TestInventoryAlerts runs the scenario with a short interval and checks the
// exact Slack messages against the writer's own record of its sales.
//
// fullDocument: updateLookup returns a document as it is when the stream
// reads the event, not as the update left it. So that a fast writer cannot
// make an alert show a later quantity, the test holds the writer after each
// round until the stream has read the round: it inserts a marker document
// that matches the trigger and waits for the marker's message, which strict
// ordering delivers after the round's messages.
func TestInventoryAlerts(t *testing.T) {
	tests := []struct {
		name  string
		seed  uint64
		ticks int
	}{
		{name: "seed 1", seed: 1, ticks: 12},
		{name: "seed 42", seed: 42, ticks: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			var out bytes.Buffer
			res, err := run(ctx, config{
				Ticks: tc.ticks,
				Seed:  tc.seed,
				Out:   &out,
				AfterTick: func(ctx context.Context, s *stage, tick int) error {
					marker := markerFruit(tick)
					coll := s.db.Client.Database(database).Collection(collection)
					if _, err := coll.InsertOne(ctx, bson.D{{Key: "type", Value: marker}, {Key: "quantity", Value: int32(0)}}); err != nil {
						return fmt.Errorf("insert marker: %w", err)
					}
					want := fmt.Sprintf(`{"text":"There are only 0 units left of %s!"}`, marker)
					_, err := s.receiver.Deliveries().Wait(ctx, func(ds []scenarioutil.Delivery) bool {
						return slices.ContainsFunc(ds, func(d scenarioutil.Delivery) bool { return string(d.Body) == want })
					})
					return err
				},
			})
			if err != nil {
				t.Fatalf("run: %v\noutput:\n%s", err, out.String())
			}

			// Expected messages, derived here from the sales independently of
			// the example's own check, with a marker message after each round.
			var want []string
			left := map[string]int32{}
			for tick := 1; tick <= tc.ticks; tick++ {
				for _, s := range res.Sales {
					if s.Tick != tick {
						continue
					}
					prev, seen := left[s.Fruit]
					if !seen {
						prev = startQuantity
					}
					switch {
					case s.Restocked && s.Left != startQuantity:
						t.Fatalf("%v: restock left %d, want %d", s, s.Left, startQuantity)
					case !s.Restocked && s.Left != prev-s.Sold:
						t.Fatalf("%v: left %d after %d-%d", s, s.Left, prev, s.Sold)
					}
					left[s.Fruit] = s.Left
					if !s.Restocked && s.Left < 20 {
						want = append(want, fmt.Sprintf(`{"text":"There are only %d units left of %s!"}`, s.Left, s.Fruit))
					}
				}
				want = append(want, fmt.Sprintf(`{"text":"There are only 0 units left of %s!"}`, markerFruit(tick)))
			}
			if len(res.Sales) != tc.ticks*len(fruits()) {
				t.Fatalf("got %d sales, want %d", len(res.Sales), tc.ticks*len(fruits()))
			}
			if len(want) == tc.ticks {
				t.Fatalf("seed %d produced no low-stock sale in %d ticks; pick a seed that does", tc.seed, tc.ticks)
			}

			var got []string
			ids := map[string]bool{}
			for _, d := range res.Deliveries {
				got = append(got, string(d.Body))
				if d.Trigger != "low_stock" || d.Path != hookPath {
					t.Errorf("delivery %s: trigger %q path %q, want low_stock %s", d.ID, d.Trigger, d.Path, hookPath)
				}
				if ids[d.ID] {
					t.Errorf("webhook-id %s delivered twice", d.ID)
				}
				ids[d.ID] = true
			}
			if !slices.Equal(got, want) {
				t.Errorf("bodies, in arrival order:\ngot  %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
			}
			for _, a := range res.Alerts {
				if !strings.Contains(out.String(), "#fruitstore  "+a) {
					t.Errorf("output does not show %q", a)
				}
			}
		})
	}
}

// markerFruit names the marker document inserted after round tick.
func markerFruit(tick int) string { return fmt.Sprintf("marker-%d", tick) }

// TestAlertText pins the message format of a sale.
func TestAlertText(t *testing.T) {
	tests := []struct {
		name string
		s    sale
		want string
		ok   bool
	}{
		{name: "low", s: sale{Fruit: "apples", Sold: 9, Left: 19}, want: "There are only 19 units left of apples!", ok: true},
		{name: "at threshold", s: sale{Fruit: "apples", Sold: 9, Left: 20}},
		{name: "restocked", s: sale{Fruit: "bananas", Left: startQuantity, Restocked: true}},
		{name: "last unit", s: sale{Fruit: "strawberries", Sold: 15, Left: 1}, want: "There are only 1 units left of strawberries!", ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.s.alert()
			if got != tc.want || ok != tc.ok {
				t.Fatalf("alert() = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
