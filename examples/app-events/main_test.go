package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example and checks what it printed: the application's
// writes, then every request the event store handled in order — each change
// stored once, each lost answer followed by a redelivery with the same
// webhook-id that is ignored.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	want := `users.insertOne({_id: "ada", name: "Ada"})
orders.insertOne({_id: "o1", user: "ada", status: "placed"})
orders.updateOne({_id: "o1"}, {$set: {status: "paid"}})
users.insertOne({_id: "grace", name: "Grace"})
orders.updateOne({_id: "o1"}, {$set: {status: "shipped"}})
users.deleteOne({_id: "grace"})

event store:
  #1 insert users ada     stored
  #2 insert orders o1     stored
  #3 update orders o1     stored, but the answer is lost (503)
     update orders o1     same webhook-id again: duplicate ignored
  #4 insert users grace   stored
  #5 update orders o1     stored
  #6 delete users grace   stored, but the answer is lost (503)
     delete users grace   same webhook-id again: duplicate ignored

6 changes, 6 events stored once each; 2 answers lost, 2 redeliveries ignored by webhook-id
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
