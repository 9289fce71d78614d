package triggers

import (
	"strings"
	"testing"
)

// TestIgnoreMongoURI: with Options.IgnoreMongoURI (changehook dev, which
// connects to its devdb) mongodb.uri is not read: its unset variables, even
// behind a merge key, and an invalid value are no problem, and the URI is
// left empty; every other ${VAR} is still required.
func TestIgnoreMongoURI(t *testing.T) {
	const trigger = `
triggers:
  - name: t
    database: shop
    webhook: { url: "http://localhost/x" }
`
	for _, tc := range []struct{ name, src string }{
		{"variable", "mongodb:\n  uri: ${MONGODB_URI}\n" + trigger},
		{"variable with text", "mongodb:\n  uri: mongodb://u:${MONGO_PW}@h/\n" + trigger},
		{"merged", "mongodb:\n  <<: { uri: \"${MONGODB_URI}\" }\n" + trigger},
		{"invalid", "mongodb:\n  uri: nope\n" + trigger},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse("c.yaml", []byte(tc.src), nil); err == nil {
				t.Fatal("Parse accepted it")
			}
			cfg, err := ParseWith("c.yaml", []byte(tc.src), nil, Options{IgnoreMongoURI: true})
			if err != nil {
				t.Fatalf("ParseWith(IgnoreMongoURI): %v", err)
			}
			if cfg.MongoDB.URI != "" {
				t.Errorf("URI = %q, want empty", cfg.MongoDB.URI)
			}
		})
	}
	src := "mongodb:\n  uri: ${MONGODB_URI}\n" + strings.Replace(trigger, "http://localhost/x", "${HOOK_URL}", 1)
	_, err := ParseWith("c.yaml", []byte(src), nil, Options{IgnoreMongoURI: true})
	if err == nil || !strings.Contains(err.Error(), "HOOK_URL is not set") || strings.Contains(err.Error(), "MONGODB_URI") {
		t.Errorf("ParseWith(IgnoreMongoURI) = %v, want only HOOK_URL reported", err)
	}
}
