package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRun runs the example and checks what it printed: every sale and the
// message of each sale that left fewer than 20 units, in order.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, &out); err != nil {
		t.Fatal(err)
	}
	want := `sold 40 apples, 60 left
sold 30 bananas, 70 left
sold 45 apples, 15 left
  #fruitstore  There are only 15 units left of apples!
sold 55 bananas, 15 left
  #fruitstore  There are only 15 units left of bananas!
sold 8 apples, 7 left
  #fruitstore  There are only 7 units left of apples!
sold 10 bananas, 5 left
  #fruitstore  There are only 5 units left of bananas!
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
