package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example and checks what it printed: each write and the
// fields of the event it produced, in order.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	want := `insertOne({_id: 1, name: "Ada", tags: ["math"]})
  operationType     "insert"
  documentKey       {"_id":1}
  fullDocument      {"_id":1,"name":"Ada","tags":["math"]}
updateOne({_id: 1}, {$set: {city: "London"}, $unset: {tags: ""}})
  operationType     "update"
  documentKey       {"_id":1}
  updateDescription {"removedFields":["tags"],"truncatedArrays":[],"updatedFields":{"city":"London"}}
replaceOne({_id: 1}, {name: "Ada Lovelace"})
  operationType     "replace"
  documentKey       {"_id":1}
  fullDocument      {"_id":1,"name":"Ada Lovelace"}
deleteOne({_id: 1})
  operationType     "delete"
  documentKey       {"_id":1}
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
