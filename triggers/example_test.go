package triggers_test

import (
	"fmt"
	"os"

	"github.com/changehook/changehook/triggers"
)

func ExampleParse() {
	src := []byte(`
triggers:
  - name: low_stock
    database: lessons
    collection: inventory
    operations: [insert, update]
    match: { fullDocument.quantity: { $lt: 20 } }
    webhook:
      url: ${HOOK_URL:-http://127.0.0.1:9471/hooks/stock}
      timeout: 5s
`)
	cfg, err := triggers.Parse("triggers.yaml", src, os.LookupEnv)
	if err != nil {
		fmt.Println(err)
		return
	}
	t := cfg.Triggers[0]
	fmt.Println(t.Name, t.Namespace(), t.Operations, t.Webhook.Timeout)
	fmt.Println(t.Pipeline())

	_, err = triggers.Parse("bad.yaml", []byte("triggers:\n  - name: Bad Name\n    webhok: {}\n"), os.LookupEnv)
	fmt.Println(err)
	// Output:
	// low_stock lessons.inventory [insert update] 5s
	// [{"$match":{"$or":[{"operationType":"invalidate"},{"$and":[{"operationType":{"$in":["insert","update"]}},{"fullDocument.quantity":{"$lt":{"$numberInt":"20"}}}]}]}}]
	// bad.yaml:2:5: trigger: missing field "webhook"
	// bad.yaml:2:11: name: "Bad Name" must be 1 to 64 characters from a-z, 0-9, _ and -
	// bad.yaml:3:5: unknown field "webhok" in trigger (did you mean "webhook"?)
}
