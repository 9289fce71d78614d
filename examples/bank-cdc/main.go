// Command bank-cdc mirrors a bank's accounts through change data capture:
// every account opened, every transfer and every closure reaches a webhook
// receiver, which rebuilds each balance from the deliveries alone and
// checks that every change starts where the previous one left off. Each
// transfer is a multi-document transaction (debit and credit); the receiver
// groups its two deliveries by their txnNumber and checks that they move
// the same amount out of one account and into the other.
//
// Everything runs in this one process: an embedded MongoDB-compatible
// server (devdb), the receiver, the changehook runner with the
// account_changes trigger of triggers.yaml, and the bank making transfers.
//
//	go run ./examples/bank-cdc
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

//go:embed triggers.yaml
var triggersYAML []byte

// change is one webhook body; Before and After are nil when absent, Txn is
// the txnNumber of the transaction that made the change (nil outside one).
type change struct {
	Account   string `json:"account"`
	Operation string `json:"operation"`
	Before    *int   `json:"before"`
	After     *int   `json:"after"`
	Txn       *int64 `json:"txn"`
}

// errRefused ends a transfer's transaction without writing anything.
var errRefused = errors.New("insufficient funds")

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	// 1. A MongoDB-compatible server. In production this is your replica set.
	db, err := devdb.Start(ctx, devdb.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(db.URI()))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.WithoutCancel(ctx))
	// Pre-images let a change event carry the account as it was before.
	bank := client.Database("bank")
	err = bank.CreateCollection(ctx, "accounts",
		options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}}))
	if err != nil {
		return err
	}
	accounts := bank.Collection("accounts")

	// 2. The webhook receiver: it hands every change to the replica below.
	changes := make(chan change, 64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c change
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil || c.Account == "" {
			http.Error(w, "want {account, operation, before, after}", http.StatusBadRequest)
			return
		}
		changes <- c
		w.WriteHeader(http.StatusNoContent)
	})}
	go receiver.Serve(ln)
	defer receiver.Close()

	// 3. The triggers, pointed at this process's server and receiver.
	env := map[string]string{"MONGODB_URI": db.URI(), "BANK_HOOK_URL": "http://" + ln.Addr().String() + "/hooks/accounts"}
	cfg, err := triggers.Parse("triggers.yaml", triggersYAML, func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	if err != nil {
		return err
	}

	// 4. The runner: what `changehook run -c triggers.yaml` does.
	r, err := runner.New(cfg, client, store.New(client, cfg.State.Database), runner.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	runCtx, stopRunner := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(runCtx) }()
	defer func() { stopRunner(); <-stopped }()
	for !r.Ready() { // wait until the change stream is open
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}

	// 5. The bank: open three accounts, make transfers, close one. A
	// transfer is one transaction: the debit and the credit commit together
	// (or not at all), and their change events share lsid and txnNumber.
	writes := 0
	for _, a := range []struct {
		name    string
		balance int
	}{{"alice", 100}, {"bob", 50}, {"carol", 0}} {
		if _, err := accounts.InsertOne(ctx, bson.D{{Key: "_id", Value: a.name}, {Key: "balance", Value: a.balance}}); err != nil {
			return err
		}
		writes++
		fmt.Fprintf(out, "open %s with %d\n", a.name, a.balance)
	}
	// The teller makes every transfer in one session of its own client
	// (a session pool shared with other writes would hand out a session
	// whose numbers they already advanced), so its transactions are
	// numbered 1, 2, 3, … in order; a refused transfer uses its number too.
	teller, err := mongo.Connect(options.Client().ApplyURI(db.URI()))
	if err != nil {
		return err
	}
	defer teller.Disconnect(context.WithoutCancel(ctx))
	tellerAccounts := teller.Database("bank").Collection("accounts")
	session, err := teller.StartSession()
	if err != nil {
		return err
	}
	defer session.EndSession(context.WithoutCancel(ctx))
	for _, t := range []struct {
		from, to string
		amount   int
	}{{"alice", "bob", 30}, {"bob", "carol", 70}, {"carol", "alice", 100}, {"carol", "alice", 70}} {
		_, err := session.WithTransaction(ctx, func(ctx context.Context) (any, error) {
			debit, err := tellerAccounts.UpdateOne(ctx,
				bson.D{{Key: "_id", Value: t.from}, {Key: "balance", Value: bson.D{{Key: "$gte", Value: t.amount}}}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: -t.amount}}}})
			if err != nil {
				return nil, err
			}
			if debit.ModifiedCount == 0 {
				return nil, errRefused // aborted: no write, so no change event either
			}
			_, err = tellerAccounts.UpdateOne(ctx, bson.D{{Key: "_id", Value: t.to}},
				bson.D{{Key: "$inc", Value: bson.D{{Key: "balance", Value: t.amount}}}})
			return nil, err
		})
		if errors.Is(err, errRefused) {
			fmt.Fprintf(out, "transfer %d %s -> %s: refused, insufficient funds\n", t.amount, t.from, t.to)
			continue
		}
		if err != nil {
			return err
		}
		writes += 2
		fmt.Fprintf(out, "transfer %d %s -> %s\n", t.amount, t.from, t.to)
	}
	if _, err := accounts.DeleteOne(ctx, bson.D{{Key: "_id", Value: "carol"}, {Key: "balance", Value: 0}}); err != nil {
		return err
	}
	writes++
	fmt.Fprintln(out, "close carol")

	// 6. The replica: apply each delivered change, checking that it starts
	// from the balance the previous change of that account left.
	replica := map[string]int{}
	history := map[string][]string{}
	transfers := map[int64][]change{} // by txnNumber
	for range writes {
		var c change
		select {
		case c = <-changes:
		case <-time.After(10 * time.Second):
			return errors.New("a change did not arrive within 10s")
		}
		have, known := replica[c.Account]
		if c.Before != nil && (!known || *c.Before != have) {
			return fmt.Errorf("%s: %s from %d, but the replica holds %d", c.Account, c.Operation, *c.Before, have)
		}
		if c.Txn != nil {
			transfers[*c.Txn] = append(transfers[*c.Txn], c)
		}
		line := fmt.Sprintf("%-6s %s -> %s", c.Operation, show(c.Before), show(c.After))
		history[c.Account] = append(history[c.Account], line)
		if c.After != nil {
			replica[c.Account] = *c.After
		} else {
			delete(replica, c.Account)
		}
	}
	fmt.Fprintln(out, "\ndelivered, per account in order:")
	for _, name := range slices.Sorted(maps.Keys(history)) {
		for _, line := range history[name] {
			fmt.Fprintf(out, "  %-6s %s\n", name, line)
		}
	}

	// 7. The transfers: each transaction's deliveries, grouped by its
	// txnNumber, are one debit and one credit of the same amount.
	fmt.Fprintln(out, "\ntransfers, grouped by txnNumber:")
	for _, n := range slices.Sorted(maps.Keys(transfers)) {
		legs := transfers[n]
		slices.SortFunc(legs, func(a, b change) int { return strings.Compare(a.Account, b.Account) })
		if len(legs) != 2 || legs[0].Before == nil || legs[0].After == nil || legs[1].Before == nil || legs[1].After == nil {
			return fmt.Errorf("transaction %d: want a debit and a credit, got %d changes", n, len(legs))
		}
		d0, d1 := *legs[0].After-*legs[0].Before, *legs[1].After-*legs[1].Before
		if d0+d1 != 0 || d0 == 0 {
			return fmt.Errorf("transaction %d: %s moved %d and %s %d, want opposite amounts", n, legs[0].Account, d0, legs[1].Account, d1)
		}
		fmt.Fprintf(out, "  txn %d  %s %+d, %s %+d\n", n, legs[0].Account, d0, legs[1].Account, d1)
	}

	// 8. The replica against the collection.
	var stored []struct {
		ID      string `bson:"_id"`
		Balance int    `bson:"balance"`
	}
	cur, err := accounts.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return err
	}
	if err := cur.All(ctx, &stored); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nbalances  in bank.accounts  rebuilt from the webhooks")
	for _, a := range stored {
		fmt.Fprintf(out, "  %-7s %-16d %d\n", a.ID, a.Balance, replica[a.ID])
		if replica[a.ID] != a.Balance {
			return fmt.Errorf("%s: replica %d, collection %d", a.ID, replica[a.ID], a.Balance)
		}
	}
	if len(replica) != len(stored) {
		return fmt.Errorf("replica holds %d accounts, collection %d", len(replica), len(stored))
	}
	return nil
}

// show prints a balance, or "-" when the event has none.
func show(v *int) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}
