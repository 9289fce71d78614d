package runner

import (
	"strings"
	"testing"

	"github.com/changehook/changehook/triggers"
)

func TestSameDefinition(t *testing.T) {
	parse := func(yaml string) *triggers.Trigger {
		t.Helper()
		env := func(string) (string, bool) { return "", false }
		cfg, err := triggers.Parse("t.yaml", []byte(yaml), env)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Triggers[0]
	}
	const base = `
triggers:
  - name: a
    database: shop
    collection: c
    match: { fullDocument.qty: { $lt: 20 } }
    webhook:
      url: http://127.0.0.1:9/hook
      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
      headers: { X-Key: one }
      payload: { q: "$fullDocument.qty" }
`
	a := parse(base)
	for _, tc := range []struct {
		name string
		yaml string
		same bool
	}{
		{"identical", base, true},
		{"moved down in the file", "\n\n\n" + base, true},
		{"secret changed", strings.Replace(base, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGU=", 1), false},
		{"header value changed", strings.Replace(base, "X-Key: one", "X-Key: two", 1), false},
		{"match changed", strings.Replace(base, "$lt: 20", "$lt: 21", 1), false},
		{"payload changed", strings.Replace(base, `"$fullDocument.qty"`, `"$fullDocument.sku"`, 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameDefinition(a, parse(tc.yaml)); got != tc.same {
				t.Errorf("SameDefinition = %v, want %v", got, tc.same)
			}
		})
	}
}
