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
		{"tagged", "mongodb:\n  uri: !env MONGODB_URI\n" + trigger},
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

// TestMongoURIDefaultsToTheEnvironment: a file without mongodb.uri
// connects to $MONGODB_URI when it is set and not empty (the README's
// Kubernetes and systemd examples set only the variable), else to
// DefaultMongoURI; a mongodb.uri in the file wins, and an invalid
// variable is a problem that does not show its secrets.
func TestMongoURIDefaultsToTheEnvironment(t *testing.T) {
	const trigger = `
triggers:
  - name: t
    database: shop
    webhook: { url: "http://localhost/x" }
`
	env := func(v string) LookupEnv {
		return func(k string) (string, bool) {
			if k == MongoURIEnv && v != "unset" {
				return v, true
			}
			return "", false
		}
	}
	const fromEnv = "mongodb://u:p4ssw0rd@db1,db2/?replicaSet=rs0"
	for _, tc := range []struct{ name, src, env, want string }{
		{"omitted, variable set", trigger, fromEnv, fromEnv},
		{"empty mongodb section, variable set", "mongodb: {}\n" + trigger, fromEnv, fromEnv},
		{"omitted, variable unset", trigger, "unset", DefaultMongoURI},
		{"omitted, variable empty", trigger, "", DefaultMongoURI},
		{"in the file", "mongodb:\n  uri: mongodb://file:1/\n" + trigger, fromEnv, "mongodb://file:1/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("c.yaml", []byte(tc.src), env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MongoDB.URI != tc.want {
				t.Errorf("URI = %q, want %q", cfg.MongoDB.URI, tc.want)
			}
		})
	}
	_, err := Parse("c.yaml", []byte(trigger), env("mongodb://u:p4ssw0rd@h:99999/"))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:1:1: mongodb.uri is omitted, so its default is MONGODB_URI from the environment, which is not valid") ||
		strings.Contains(err.Error(), "p4ssw0rd") {
		t.Errorf("invalid MONGODB_URI: %v", err)
	}
	cfg, err := ParseWith("c.yaml", []byte(trigger), env("nope"), Options{IgnoreMongoURI: true})
	if err != nil {
		t.Fatalf("IgnoreMongoURI: %v", err)
	}
	if cfg.MongoDB.URI != "" {
		t.Errorf("IgnoreMongoURI: URI %q, want empty", cfg.MongoDB.URI)
	}
}
