package triggers

import (
	"strings"
	"testing"
)

// TestNamespaceNames: a database or collection MongoDB refuses
// (InvalidNamespace) is a validation error at its position, since a
// trigger watching it would see nothing, forever; the namespace length
// limit is checked where both names are known, the database also from the
// defaults section.
func TestNamespaceNames(t *testing.T) {
	long := strings.Repeat("c", 250)
	for _, tc := range []struct {
		name     string
		defaults string // the defaults section's fields
		fields   string // the trigger's namespace fields
		problem  string // "" = accepted
	}{
		{name: "plain", fields: "database: shop\n    collection: orders\n"},
		{name: "dots inside", fields: "database: shop\n    collection: orders.archive.2025\n"},
		{name: "leading dot", fields: "database: shop\n    collection: .orders\n",
			problem: `c.yaml:5:17: collection: ".orders" starts with a dot, which MongoDB does not allow in collection names`},
		{name: "namespace of 255 bytes", fields: "database: shop\n    collection: " + long + "\n"},
		{name: "namespace over 255 bytes", fields: "database: shopshopshop\n    collection: " + long + "\n",
			problem: `c.yaml:5:17: collection: the namespace (database "shopshopshop", a dot and this collection) is 263 bytes; MongoDB allows at most 255: shorten the collection or the database name`},
		{name: "database from defaults", defaults: "  database: shopshopshop\n", fields: "collection: " + long + "\n",
			problem: `c.yaml:6:17: collection: the namespace (database "shopshopshop", a dot and this collection) is 263 bytes; MongoDB allows at most 255: shorten the collection or the database name`},
		{name: "collection alone too long", fields: "database: s\n    collection: " + strings.Repeat("c", 254) + "\n",
			problem: `c.yaml:5:17: collection: must be at most 253 bytes (a namespace, database.collection, is at most 255)`},
		{name: "invalid UTF-8 collection", fields: "database: shop\n    collection: ${BAD_UTF8}\n",
			problem: `c.yaml:5:17: collection: "or\xffders" is not valid UTF-8, which MongoDB requires of collection names`},
		{name: "invalid UTF-8 database", fields: "database: ${BAD_UTF8}\n",
			problem: `c.yaml:4:15: database: "or\xffders" is not valid UTF-8, which MongoDB requires of database names`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "triggers:\n  - name: t1\n    webhook: { url: \"http://127.0.0.1:9999/h\" }\n    " + tc.fields
			if tc.defaults != "" {
				src = "defaults:\n" + tc.defaults + src
			}
			env := func(name string) (string, bool) {
				if name == "BAD_UTF8" {
					return "or\xffders", true
				}
				return testEnv(name)
			}
			_, err := Parse("c.yaml", []byte(src), env)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.problem {
				t.Errorf("problems\n%q\nwant\n%q", got, tc.problem)
			}
		})
	}
}
