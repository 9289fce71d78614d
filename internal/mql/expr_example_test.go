package mql_test

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mql"
)

// ExampleCompileExpr builds a Slack-style webhook payload from a change
// event, the way a trigger's payload template is evaluated.
func ExampleCompileExpr() {
	payload := bson.D{{Key: "text", Value: bson.D{{Key: "$concat", Value: bson.A{
		"Only ", bson.D{{Key: "$toString", Value: "$fullDocument.quantity"}}, " left",
	}}}}}
	e, err := mql.CompileExpr(payload)
	if err != nil {
		fmt.Println("compile:", err)
		return
	}
	event := bson.D{
		{Key: "operationType", Value: "update"},
		{Key: "fullDocument", Value: bson.D{{Key: "sku", Value: "A-1"}, {Key: "quantity", Value: int32(3)}}},
	}
	out, err := e.Eval(event)
	if err != nil {
		fmt.Println("eval:", err)
		return
	}
	fmt.Println(out)
	// Output: {"text":"Only 3 left"}
}
