// Command inventory-alerts is the fruit-store lesson: a writer sells fruit
// every second, and the low_stock trigger (triggers.yaml) posts a
// Slack-style message whenever a fruit's quantity drops below 20.
//
// It runs everything in one process: an embedded devdb, a local receiver
// standing in for Slack, the changehook runner and the writer.
//
//	go run ./test/e2e/scenarios/inventory-alerts [-ticks 12] [-interval 1s] [-seed 1] [-v]
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
)

//go:embed triggers.yaml
var triggersYAML []byte

// hookPath is where the receiver expects the low_stock messages.
const hookPath = "/services/fruitstore/low-stock"

// deliveryTimeout bounds the wait for the last alerts after the last sale.
const deliveryTimeout = 30 * time.Second

func main() {
	var opts config
	flag.IntVar(&opts.Ticks, "ticks", 12, "number of sales rounds (each sells some of every fruit)")
	flag.DurationVar(&opts.Interval, "interval", time.Second, "time between sales rounds")
	flag.Uint64Var(&opts.Seed, "seed", 1, "seed of the quantities sold (same seed, same sales)")
	verbose := flag.Bool("v", false, "show the runner's logs")
	flag.Parse()
	opts.Out = os.Stdout
	opts.Logger = scenarioutil.Logger(os.Stderr, *verbose)
	os.Exit(scenarioutil.Main(func(ctx context.Context) error {
		res, err := run(ctx, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(opts.Out, "\n%d sales, %d low-stock alerts: every alert arrived, in order, with the expected text.\n",
			len(res.Sales), len(res.Alerts))
		return nil
	}))
}

// config configures one run of the scenario.
type config struct {
	Ticks    int
	Interval time.Duration
	Seed     uint64
	Out      io.Writer
	Logger   *slog.Logger
	// AfterTick, when set, is called after each sales round (tests use it
	// to wait until the round's alerts arrived; see main_test.go).
	AfterTick func(ctx context.Context, s *stage, tick int) error
}

// stage is the running scenario.
type stage struct {
	db       *scenarioutil.DB
	receiver *scenarioutil.Receiver
	runner   *scenarioutil.Runner
}

// result is what a run did and what the receiver got.
type result struct {
	Sales      []sale
	Alerts     []string                // the text of every message about a fruit, in arrival order
	Deliveries []scenarioutil.Delivery // every request the receiver acknowledged
}

// expectedAlerts returns the messages the sales must produce, in order.
func expectedAlerts(sales []sale) []string {
	var out []string
	for _, s := range sales {
		if a, ok := s.alert(); ok {
			out = append(out, a)
		}
	}
	return out
}

// slackMessage is the body low_stock posts.
type slackMessage struct {
	Text string `json:"text"`
}

func run(ctx context.Context, opts config) (res result, err error) {
	opts.Out = scenarioutil.SyncWriter(opts.Out)
	db, err := scenarioutil.StartDB(ctx, devdb.Options{})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, db, &err)

	cfg, recv, err := scenarioutil.StartConfigured("triggers.yaml", triggersYAML, db.URI(), func(base string) map[string]string {
		return map[string]string{"SLACK_WEBHOOK_URL": base + hookPath}
	}, scenarioutil.ReceiverOptions{
		Handler: func(_ context.Context, d scenarioutil.Delivery) error {
			var m slackMessage
			if d.Path != hookPath || json.Unmarshal(d.Body, &m) != nil || m.Text == "" {
				return &scenarioutil.HTTPError{Status: 400, Message: "not a Slack message"}
			}
			fmt.Fprintf(opts.Out, "  #fruitstore  %s\n", m.Text)
			return nil
		},
	})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, recv, &err)

	w := newWriter(db.Client, opts.Seed)
	if err := w.stock(ctx); err != nil {
		return res, err
	}
	runner, err := scenarioutil.StartRunner(ctx, cfg, db.Client, scenarioutil.RunnerOptions{Logger: opts.Logger})
	if err != nil {
		return res, err
	}
	defer runner.Stop()
	if err := runner.WaitReady(ctx); err != nil {
		return res, err
	}
	fmt.Fprintf(opts.Out, "devdb %s, trigger low_stock on %s.%s posting to %s\n", db.URI(), database, collection, recv.URL()+hookPath)
	fmt.Fprintf(opts.Out, "%d fruits at %d units; selling every %s\n", len(fruits()), startQuantity, opts.Interval)

	st := &stage{db: db, receiver: recv, runner: runner}
	tick := time.NewTicker(max(opts.Interval, time.Millisecond))
	defer tick.Stop()
	for n := 1; n <= opts.Ticks; n++ {
		sales, err := w.tick(ctx, n)
		res.Sales = append(res.Sales, sales...)
		if err != nil {
			return res, err
		}
		for _, s := range sales {
			fmt.Fprintf(opts.Out, "%s\n", s)
		}
		if opts.AfterTick != nil {
			if err := opts.AfterTick(ctx, st, n); err != nil {
				return res, err
			}
		}
		if n < opts.Ticks && opts.Interval > 0 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-tick.C:
			}
		}
	}

	// Wait for the message of every sale that left a fruit below lowStock.
	want := expectedAlerts(res.Sales)
	wctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	got, werr := recv.Deliveries().Wait(wctx, func(ds []scenarioutil.Delivery) bool { return len(fruitAlerts(ds)) >= len(want) })
	res.Alerts, res.Deliveries = fruitAlerts(got), got
	if werr != nil {
		return res, fmt.Errorf("wait for %d alerts (got %d): %w", len(want), len(res.Alerts), werr)
	}
	if !slices.Equal(res.Alerts, want) {
		return res, fmt.Errorf("check alerts: got %q, want %q", res.Alerts, want)
	}
	return res, nil
}

// fruitAlerts returns the text of the messages about the store's fruits, in
// arrival order (other documents of the collection may alert too).
func fruitAlerts(ds []scenarioutil.Delivery) []string {
	var out []string
	for _, d := range ds {
		var m slackMessage
		if json.Unmarshal(d.Body, &m) != nil {
			continue
		}
		for _, f := range fruits() {
			if strings.HasSuffix(m.Text, " units left of "+f+"!") {
				out = append(out, m.Text)
				break
			}
		}
	}
	return out
}
