package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example and checks what it printed: the writes, then
// every body each trigger received, in order — exactly the fields of the
// project for alice_activity, the inserted document plus its namespace for
// all_inserts, and nothing from the state database.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	want := `app.users.insertOne({_id: "u1", username: "alice", a: 1})
app.users.insertOne({_id: "u2", username: "bob", a: 2})
app.orders.insertOne({_id: "o1", username: "alice", a: 3})
billing.invoices.insertOne({_id: "i1", username: "alice", a: 4})
app.users.updateOne({_id: "u1"}, {$set: {a: 10}})
app.users.updateOne({_id: "u2"}, {$set: {a: 20}})

alice_activity got:
  {"_id":"...","a":1,"collection":"users","id":"u1","operationType":"insert"}
  {"_id":"...","a":3,"collection":"orders","id":"o1","operationType":"insert"}
  {"_id":"...","a":10,"collection":"users","id":"u1","operationType":"update"}

all_inserts got:
  {"_id":"u1","a":1,"namespace":"app.users","username":"alice"}
  {"_id":"u2","a":2,"namespace":"app.users","username":"bob"}
  {"_id":"o1","a":3,"namespace":"app.orders","username":"alice"}
  {"_id":"i1","a":4,"namespace":"billing.invoices","username":"alice"}
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
