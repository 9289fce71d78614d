package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The watched namespace.
const (
	database   = "bank"
	collection = "accounts"
	// resumeThreshold: the resume writer increments accounts whose checking
	// balance is over this amount.
	resumeThreshold = 1000
)

// account is one document of bank.accounts.
type account struct {
	ID            string `bson:"_id"`
	Name          string `bson:"name"`
	Checking      int64  `bson:"checking"`
	Savings       int64  `bson:"savings"`
	ResumeCounter int32  `bson:"resumeCounter"`
	KYC           string `bson:"kyc,omitempty"`
}

// bankPlan is the generated workload of the bank phase: which accounts are
// opened, which get deposits, which are replaced and which are closed.
type bankPlan struct {
	Accounts []account
	Deposits []deposit
	Replaced []string // account ids rewritten by a replace
	Closed   []string // account ids deleted
}

// deposit adds Amount to an account's checking balance.
type deposit struct {
	Account string
	Amount  int64
}

// expected returns how many deliveries each bank trigger must get.
func (p bankPlan) expected() map[string]int {
	negative := 0
	for _, a := range p.Accounts {
		if a.Checking < 0 {
			negative++
		}
	}
	closedNegative := 0
	final := p.finalChecking()
	for _, id := range p.Closed {
		if final[id] < 0 {
			closedNegative++
		}
	}
	return map[string]int{
		"negative_openings": negative,
		"deposits":          len(p.Deposits),
		"negative_closures": closedNegative,
		"replacements":      len(p.Replaced),
	}
}

// finalChecking returns every account's checking balance after the deposits.
func (p bankPlan) finalChecking() map[string]int64 {
	bal := make(map[string]int64, len(p.Accounts))
	for _, a := range p.Accounts {
		bal[a.ID] = a.Checking
	}
	for _, d := range p.Deposits {
		bal[d.Account] += d.Amount
	}
	return bal
}

// newBankPlan generates n customers from seed: checking balances between
// -500 and 3000 (about one in seven overdrawn), deposits to a quarter of the
// positive accounts, three KYC replacements, and the closure of every
// overdrawn account plus two others.
func newBankPlan(n int, seed uint64) bankPlan {
	rng := rand.New(rand.NewPCG(seed, seed^0xba4c))
	first := []string{"Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tony"}
	last := []string{"Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Hoare"}
	var p bankPlan
	var positive []string
	for i := range n {
		a := account{
			ID:       fmt.Sprintf("ACC-%04d", i+1),
			Name:     first[rng.IntN(len(first))] + " " + last[rng.IntN(len(last))],
			Checking: int64(rng.IntN(3501)) - 500,
			Savings:  int64(rng.IntN(20001)),
		}
		p.Accounts = append(p.Accounts, a)
		if a.Checking >= 0 {
			positive = append(positive, a.ID)
		}
	}
	rng.Shuffle(len(positive), func(i, j int) { positive[i], positive[j] = positive[j], positive[i] })
	for _, id := range positive[:len(positive)/4] {
		p.Deposits = append(p.Deposits, deposit{Account: id, Amount: int64(10 + rng.IntN(491))})
	}
	p.Replaced = slices.Clone(positive[len(positive)/4 : len(positive)/4+min(3, len(positive)/4)])
	for _, a := range p.Accounts {
		if a.Checking < 0 {
			p.Closed = append(p.Closed, a.ID)
		}
	}
	p.Closed = append(p.Closed, positive[len(positive)-min(2, len(positive)):]...)
	return p
}

// bank writes to bank.accounts.
type bank struct {
	coll *mongo.Collection
}

// setup (re)creates bank.accounts with pre- and post-images enabled, which
// negative_closures needs (full_document_before_change: required).
func (b bank) setup(ctx context.Context) error {
	if err := b.coll.Drop(ctx); err != nil {
		return fmt.Errorf("drop %s.%s: %w", database, collection, err)
	}
	err := b.coll.Database().CreateCollection(ctx, collection,
		options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}}))
	if err != nil {
		return fmt.Errorf("create %s.%s: %w", database, collection, err)
	}
	return nil
}

// apply runs the bank phase of plan: open, deposit, replace, close.
func (b bank) apply(ctx context.Context, p bankPlan) error {
	docs := make([]any, len(p.Accounts))
	for i, a := range p.Accounts {
		docs[i] = a
	}
	if _, err := b.coll.InsertMany(ctx, docs); err != nil {
		return fmt.Errorf("open accounts: %w", err)
	}
	for _, d := range p.Deposits {
		_, err := b.coll.UpdateByID(ctx, d.Account, bson.D{
			{Key: "$inc", Value: bson.D{{Key: "checking", Value: d.Amount}}},
			{Key: "$set", Value: bson.D{{Key: "lastDeposit", Value: d.Amount}}},
		})
		if err != nil {
			return fmt.Errorf("deposit to %s: %w", d.Account, err)
		}
	}
	for _, id := range p.Replaced {
		var a account
		if err := b.coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&a); err != nil {
			return fmt.Errorf("read %s for its KYC refresh: %w", id, err)
		}
		a.KYC = "refreshed"
		if _, err := b.coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, a); err != nil {
			return fmt.Errorf("replace %s: %w", id, err)
		}
	}
	if _, err := b.coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: p.Closed}}}}); err != nil {
		return fmt.Errorf("close accounts: %w", err)
	}
	return nil
}

// incrementRound adds one to resumeCounter of every account over
// resumeThreshold, in one multi-document update (one event per account).
func (b bank) incrementRound(ctx context.Context) (int64, error) {
	res, err := b.coll.UpdateMany(ctx,
		bson.D{{Key: "checking", Value: bson.D{{Key: "$gt", Value: resumeThreshold}}}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "resumeCounter", Value: int32(1)}}}})
	if err != nil {
		return 0, fmt.Errorf("increment resumeCounter: %w", err)
	}
	return res.ModifiedCount, nil
}

// counters returns resumeCounter of every account that has one above zero.
func (b bank) counters(ctx context.Context) (map[string]int32, error) {
	cur, err := b.coll.Find(ctx, bson.D{{Key: "resumeCounter", Value: bson.D{{Key: "$gt", Value: int32(0)}}}})
	if err != nil {
		return nil, fmt.Errorf("read resume counters: %w", err)
	}
	var accts []account
	if err := cur.All(ctx, &accts); err != nil {
		return nil, fmt.Errorf("read resume counters: %w", err)
	}
	out := make(map[string]int32, len(accts))
	for _, a := range accts {
		out[a.ID] = a.ResumeCounter
	}
	return out, nil
}
