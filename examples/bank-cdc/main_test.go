package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example and checks what it printed: the bank's writes,
// every delivered change per account in order, each transfer's two
// deliveries grouped by txnNumber, and the balances rebuilt from the
// webhooks equal to the collection's.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	want := `open alice with 100
open bob with 50
open carol with 0
transfer 30 alice -> bob
transfer 70 bob -> carol
transfer 100 carol -> alice: refused, insufficient funds
transfer 70 carol -> alice
close carol

delivered, per account in order:
  alice  insert - -> 100
  alice  update 100 -> 70
  alice  update 70 -> 140
  bob    insert - -> 50
  bob    update 50 -> 80
  bob    update 80 -> 10
  carol  insert - -> 0
  carol  update 0 -> 70
  carol  update 70 -> 0
  carol  delete 0 -> -

transfers, grouped by txnNumber:
  txn 1  alice -30, bob +30
  txn 2  bob -70, carol +70
  txn 4  alice +70, carol -70

balances  in bank.accounts  rebuilt from the webhooks
  alice   140              140
  bob     10               10
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
