package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/changehook/changehook/dispatcher"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestDeadLetterFailure classifies failed dead-letter writes by the
// server's error codes and the driver's error kinds, not their text.
func TestDeadLetterFailure(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"BSONObjectTooLarge", mongo.CommandError{Code: 10334, Name: "BSONObjectTooLarge"}, dispatcher.DeadLetterFailTooLarge},
		{"upsert too large", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 17420}}}, dispatcher.DeadLetterFailTooLarge},
		{"update too large", fmt.Errorf("wrapped: %w", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 17419}}}), dispatcher.DeadLetterFailTooLarge},
		{"insert too large", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 2, Message: "object to insert too large. size in bytes: 16777300, max size: 16777216"}}}, dispatcher.DeadLetterFailTooLarge},
		{"another BadValue", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 2, Message: "unknown operator: $foo"}}}, dispatcher.DeadLetterFailOther},
		{"too large in the text only", errors.New("BSONObjectTooLarge"), dispatcher.DeadLetterFailOther},
		{"unauthorized", mongo.CommandError{Code: 13, Name: "Unauthorized"}, dispatcher.DeadLetterFailUnauthorized},
		{"stepdown", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary"}, dispatcher.DeadLetterFailUnavailable},
		{"retryable label", mongo.CommandError{Code: 1, Labels: []string{"RetryableWriteError"}}, dispatcher.DeadLetterFailUnavailable},
		{"network", mongo.CommandError{Labels: []string{"NetworkError"}}, dispatcher.DeadLetterFailUnavailable},
		{"deadline", fmt.Errorf("server selection error: %w", context.DeadlineExceeded), dispatcher.DeadLetterFailUnavailable},
		{"validator", mongo.WriteException{WriteErrors: []mongo.WriteError{{Code: 121}}}, dispatcher.DeadLetterFailOther},
	}
	for _, c := range cases {
		if got := deadLetterFailure(c.err); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
