package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// run runs the command line in-process.
func run(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := Env{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Version: "v9.9.9",
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}
	code := Run(context.Background(), args, e)
	return code, out.String(), errb.String()
}

func TestHelpEverywhere(t *testing.T) {
	cmds := [][]string{
		{"run"}, {"dev"}, {"devdb"}, {"init"}, {"validate"}, {"test"}, {"capture"}, {"version"},
		{"dlq"}, {"dlq", "list"}, {"dlq", "show"}, {"dlq", "replay"}, {"dlq", "purge"},
		{"checkpoints"}, {"checkpoints", "list"}, {"checkpoints", "reset"}, {"checkpoints", "repartition"},
		{"history"}, {"cluster"}, {"cluster", "status"}, {"pause"}, {"resume"}, {"skip"}, {"redeliver"},
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if !slices.ContainsFunc(cmds, func(args []string) bool { return args[0] == c.name }) {
			t.Errorf("command %s is not in this test's list", c.name)
		}
		if !strings.Contains(string(readme), "| `changehook "+c.name) {
			t.Errorf("README's Commands table has no row for changehook %s", c.name)
		}
	}
	for _, c := range cmds {
		for _, h := range []string{"--help", "-h"} {
			t.Run(strings.Join(c, " ")+" "+h, func(t *testing.T) {
				code, out, errOut := run(t, nil, "", append(c, h)...)
				if code != ExitOK {
					t.Errorf("exit code %d, want 0; stderr %q", code, errOut)
				}
				if !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:") || !strings.Contains(out, "changehook "+c[0]) {
					t.Errorf("help lacks Usage/Examples/command:\n%s", out)
				}
				if strings.Contains(out, "\n\n\n") {
					t.Errorf("help has two blank lines in a row:\n%s", out)
				}
				if errOut != "" {
					t.Errorf("help wrote to stderr: %q", errOut)
				}
			})
		}
	}
	t.Run("top level", func(t *testing.T) {
		code, out, _ := run(t, nil, "", "--help")
		if code != ExitOK {
			t.Errorf("exit code %d", code)
		}
		for _, c := range commands() {
			if !strings.Contains(out, "  "+c.name+" ") {
				t.Errorf("top-level help does not list %s:\n%s", c.name, out)
			}
		}
	})
}

func TestUsageErrors(t *testing.T) {
	cfg := writeConfig(t, okConfig)
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"validate", "--nope"}, "flag provided but not defined: -nope\nRun 'changehook validate --help' for usage.\n"},
		{"misspelt command", []string{"vaildate"}, `unknown command "vaildate" (did you mean "validate"?)`},
		{"misspelt flag", []string{"history", "--limt", "3"}, "changehook history: flag provided but not defined: -limt (did you mean --limit?)\n"},
		{"misspelt short flag's long form", []string{"validate", "--confg", "x.yaml"}, "(did you mean --config?)"},
		{"flag without value", []string{"validate", "-c"}, "changehook validate: flag needs an argument: -c\n"},
		{"stray argument", []string{"validate", "x.yaml"}, `unexpected argument "x.yaml" (the file goes after -c)`},
		{"test without event", []string{"test", "-c", cfg}, "--event or --events is required"},
		{"test event and events", []string{"test", "-c", cfg, "--event", "a.json", "--events", "b.jsonl"}, "--event and --events exclude each other"},
		{"test events and send", []string{"test", "-c", cfg, "--events", "b.jsonl", "--send"}, "--send takes one --event, not --events"},
		{"capture without trigger", []string{"capture", "-c", cfg}, "want exactly one trigger name"},
		{"capture zero events", []string{"capture", "-c", cfg, "-n", "0", "low_stock"}, "-n must be 1 or more"},
		{"capture misspelt trigger", []string{"capture", "-c", cfg, "low_stok"}, `no trigger "low_stok" in ` + cfg + ` (did you mean "low_stock"?); triggers: low_stock, off`},
		{"test unknown trigger", []string{"test", "-c", cfg, "--trigger", "nope", "--event", "-"}, `no trigger "nope"`},
		{"dlq without subcommand", []string{"dlq"}, "Usage:"},
		{"dlq unknown subcommand", []string{"dlq", "eat"}, `unknown subcommand "eat"` + "\n"},
		{"dlq misspelt subcommand", []string{"dlq", "lst"}, `changehook dlq: unknown subcommand "lst" (did you mean "list"?)`},
		{"dlq replay nothing", []string{"dlq", "replay"}, "give the IDs to replay, or --all"},
		{"dlq replay both", []string{"dlq", "replay", "--all", "msg_x"}, "give IDs or --all, not both"},
		{"dlq purge without trigger", []string{"dlq", "purge"}, "--trigger is required"},
		{"checkpoints reset without trigger", []string{"checkpoints", "reset"}, "--trigger is required"},
		{"checkpoints reset bad time", []string{"checkpoints", "reset", "--trigger", "x", "--to", "yesterday"}, `not "yesterday"`},
		{"checkpoints repartition without trigger", []string{"checkpoints", "repartition", "--partitions", "2"}, "--trigger is required"},
		{"checkpoints repartition without partitions", []string{"checkpoints", "repartition", "--trigger", "x"}, "--partitions is required"},
		{"checkpoints repartition zero partitions", []string{"checkpoints", "repartition", "--trigger", "x", "--partitions", "0"}, "--partitions must be between 1 and 64, got 0"},
		{"checkpoints repartition too many", []string{"checkpoints", "repartition", "--trigger", "x", "--partitions", "65"}, "--partitions must be between 1 and 64, got 65"},
		{"devdb remote without flag", []string{"devdb", "--addr", "0.0.0.0:0"}, "devdb has no authentication"},
		{"dev remote", []string{"dev", "--addr", "0.0.0.0:0"}, "--addr must be a loopback"},
		{"bad log level", []string{"run", "-c", cfg, "--log-level", "loud"}, `unknown log level "loud"`},
		{"zero grace", []string{"run", "-c", cfg, "--grace", "0s"}, "--grace must be a positive duration such as 10s, got 0s"},
		{"negative grace", []string{"run", "-c", cfg, "--grace", "-5s"}, "--grace must be a positive duration such as 10s, got -5s"},
		{"zero checkpoint-every", []string{"run", "-c", cfg, "--checkpoint-every", "0"}, "--checkpoint-every must be 1 or more events, got 0"},
		{"negative checkpoint-every", []string{"run", "-c", cfg, "--checkpoint-every", "-1"}, "--checkpoint-every must be 1 or more events, got -1"},
		{"zero checkpoint-interval", []string{"run", "-c", cfg, "--checkpoint-interval", "0"}, "--checkpoint-interval must be a positive duration such as 1s, got 0s"},
		{"negative checkpoint-interval", []string{"run", "-c", cfg, "--checkpoint-interval", "-1ms"}, "--checkpoint-interval must be a positive duration such as 1s, got -1ms"},
		{"dev zero grace", []string{"dev", "-c", cfg, "--grace", "0s"}, "--grace must be a positive duration such as 10s, got 0s"},
		{"dev zero checkpoint-every", []string{"dev", "-c", cfg, "--checkpoint-every", "0"}, "--checkpoint-every must be 1 or more events, got 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, nil, "", tc.args...)
			if code != ExitUsage {
				t.Errorf("exit code %d, want %d", code, ExitUsage)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, _ := run(t, nil, "", args...)
		if code != ExitOK || out != "changehook v9.9.9\n" {
			t.Errorf("%v = %d %q", args, code, out)
		}
	}
}

const okConfig = `
mongodb: { uri: "mongodb://user:hunter2@127.0.0.1:1/?directConnection=true" }
triggers:
  - name: low_stock
    database: lessons
    collection: inventory
    operations: [insert, update]
    full_document: updateLookup
    match: { fullDocument.quantity: { $lt: 20 }, fullDocument.type: { $ne: "rocks" } }
    webhook:
      url: "http://127.0.0.1:1/hook?token=s3cret"
      headers: { Authorization: "Bearer ${TOKEN:-tok3n}" }
      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
      payload:
        text: { $concat: ["Only ", { $toString: "$fullDocument.quantity" }, " ", "$fullDocument.type", " left!"] }
  - name: off
    enabled: false
    webhook: { url: "http://127.0.0.1:1/off" }
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "triggers.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// devdbConfig starts a devdb for the test and returns a client of it, the
// state store the configuration's commands use (its default state
// database) and the path of a configuration file: the devdb's mongodb.uri,
// then rest (the other sections: triggers, history, ...).
func devdbConfig(t *testing.T, rest string) (*mongo.Client, *store.Store, string) {
	t.Helper()
	srv, client := devdbtest.Start(t)
	cfg := writeConfig(t, "\nmongodb: { uri: \""+srv.URI()+"\" }\n"+strings.TrimPrefix(rest, "\n"))
	return client, store.New(client, triggers.DefaultStateDatabase), cfg
}

func TestValidate(t *testing.T) {
	cfg := writeConfig(t, okConfig)
	code, out, errOut := run(t, nil, "", "validate", "-c", cfg)
	if code != ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	want := cfg + " is valid: 2 triggers (1 enabled)\n" +
		"  low_stock: lessons.inventory [insert, update] -> POST http://127.0.0.1:1/hook?token=REDACTED, ordering strict\n" +
		"  off (disabled): whole deployment [insert, update, replace, delete] -> POST http://127.0.0.1:1/off, ordering strict\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	t.Run("start_at in the future", func(t *testing.T) {
		cfg := writeConfig(t, strings.Replace(okConfig, "    operations: [insert, update]\n", "    operations: [insert, update]\n    start_at: 2099-01-01T00:00:00Z\n", 1))
		code, out, errOut := run(t, nil, "", "validate", "-c", cfg)
		note := "  low_stock: lessons.inventory [insert, update] -> POST http://127.0.0.1:1/hook?token=REDACTED, ordering strict\n" +
			"    note: start_at 2099-01-01T00:00:00Z is in the future: without a checkpoint the trigger shows waiting and reads nothing until the server's clock reaches it\n"
		if code != ExitOK || !strings.Contains(out, note) {
			t.Errorf("exit %d\n%s%s\nwant the note:\n%s", code, out, errOut, note)
		}
	})
	t.Run("advice", func(t *testing.T) {
		cfg := writeConfig(t, strings.Replace(okConfig, `" left!"] }`, `" left! {{fullDocument.sku}}"] }`, 1))
		code, out, errOut := run(t, nil, "", "validate", "-c", cfg)
		warning := "  low_stock: lessons.inventory [insert, update] -> POST http://127.0.0.1:1/hook?token=REDACTED, ordering strict\n" +
			"    warning: " + cfg + `:15:104: webhook.payload: " left! {{fullDocument.sku}}" looks like a template placeholder, but payload is a MongoDB expression ` +
			`and sends a string as written: build it with $concat and field paths, e.g. {$concat: ["Order ", {$toString: "$fullDocument._id"}]}` + "\n"
		if code != ExitOK || !strings.Contains(out, warning) {
			t.Errorf("exit %d\n%s%s\nwant the warning:\n%s", code, out, errOut, warning)
		}
	})
	t.Run("configuration warning", func(t *testing.T) {
		cfg := writeConfig(t, strings.Replace(okConfig, "    full_document: updateLookup\n", "    full_document: updateLookup\n    retry: { drop_on: [4xx] }\n", 1))
		code, out, errOut := run(t, nil, "", "validate", "-c", cfg)
		warning := "  low_stock: lessons.inventory [insert, update] -> POST http://127.0.0.1:1/hook?token=REDACTED, ordering strict\n" +
			"    warning: " + cfg + ":9:24: retry.drop_on: 4xx: 408 and 429 are retried (the default retry_on lists them); a code beats a class\n"
		if code != ExitOK || !strings.Contains(out, warning) {
			t.Errorf("exit %d\n%s%s\nwant the warning:\n%s", code, out, errOut, warning)
		}
	})
	t.Run("admin token", func(t *testing.T) {
		warning := ":1:17: admin.token is shorter than 16 characters"
		for _, tc := range []struct {
			token string
			warn  bool
		}{
			{"short-s3cret", true},
			{"fifteen-chars-x", true},
			{"sixteen-chars-xy", false},
			{"", false},
		} {
			cfg := writeConfig(t, "admin: { token: \""+tc.token+"\" }\n"+okConfig)
			code, out, errOut := run(t, nil, "", "validate", "-c", cfg)
			if code != ExitOK || strings.Contains(out, "  warning: "+cfg+warning) != tc.warn || tc.token != "" && strings.Contains(out+errOut, tc.token) {
				t.Errorf("token %q: exit %d\n%s%s\nwant the warning %v (and never the token)", tc.token, code, out, errOut, tc.warn)
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.yaml")
		code, _, errOut := run(t, nil, "", "validate", "-c", missing)
		if code != ExitFailure || !strings.Contains(errOut, missing+" does not exist") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestTestCommand(t *testing.T) {
	cfg := writeConfig(t, okConfig)
	event := func(op string, qty int, typ string) string {
		return `{"_id": {"_data": "82AB"}, "operationType": "` + op + `", "ns": {"db": "lessons", "coll": "inventory"},
			"documentKey": {"_id": 1}, "fullDocument": {"_id": 1, "type": "` + typ + `", "quantity": ` + strconv.Itoa(qty) + `}}`
	}
	for _, tc := range []struct {
		name, event string
		want        []string
		notWant     []string
	}{
		{
			name:  "match",
			event: event("update", 7, "pears"),
			want: []string{
				`match:    yes — operationType "update" is one of [insert, update]`,
				`body (exact bytes, 29):` + "\n" + `{"text":"Only 7 pears left!"}`,
				"Authorization: <secret>", "Webhook-Id: msg_", "Webhook-Signature: v1,", "User-Agent: changehook/v9.9.9",
				"X-Changehook-Trigger: low_stock", "POST http://127.0.0.1:1/hook?token=REDACTED",
			},
			notWant: []string{"tok3n", "s3cret", "whsec_"},
		},
		{
			name:  "operation not watched",
			event: event("delete", 7, "pears"),
			want:  []string{`match:    no — operationType "delete" is not one of the trigger's operations [insert, update]`},
		},
		{
			name:  "filter false",
			event: event("insert", 70, "rocks"),
			want: []string{`match:    no — false in the match filter: {"fullDocument.quantity":{"$lt":20}} (fullDocument.quantity is 70); ` +
				`{"fullDocument.type":{"$ne":"rocks"}} (fullDocument.type is "rocks")`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, nil, tc.event, "test", "-c", cfg, "--trigger", "low_stock", "--event", "-")
			if code != ExitOK {
				t.Fatalf("exit %d: %s%s", code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out+errOut, w) {
					t.Errorf("output leaks %q:\n%s", w, out)
				}
			}
		})
	}
	t.Run("payload field null", func(t *testing.T) {
		noType := `{"_id": {"_data": "82AB"}, "operationType": "update", "ns": {"db": "lessons", "coll": "inventory"},
			"documentKey": {"_id": 1}, "fullDocument": {"_id": 1, "quantity": 7}}`
		code, out, errOut := run(t, nil, noType, "test", "-c", cfg, "--trigger", "low_stock", "--event", "-")
		note := "note:     this event's payload has text null: a field the payload reads is missing from the event (or null in it)."
		if code != ExitOK || !strings.Contains(out, `{"text":null}`) || !strings.Contains(out, note) {
			t.Errorf("exit %d\n%s%s\nwant the body's null text and the note %q", code, out, errOut, note)
		}
		events := filepath.Join(t.TempDir(), "events.jsonl")
		if err := os.WriteFile(events, []byte(strings.ReplaceAll(noType, "\n", " ")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut = run(t, nil, "", "validate", "-c", cfg, "--events", events)
		if want := `low_stock: matched, payload ok (13 bytes), but null: text`; code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("validate --events: exit %d\n%s%s\nwant %q", code, out, errOut, want)
		}
		code, out, _ = run(t, nil, event("update", 7, "pears"), "test", "-c", cfg, "--trigger", "low_stock", "--event", "-")
		if code != ExitOK || strings.Contains(out, "note:") {
			t.Errorf("a complete event: exit %d, a note all the same:\n%s", code, out)
		}
	})
	t.Run("batched", func(t *testing.T) {
		batched := writeConfig(t, strings.Replace(okConfig, "    webhook:\n      url: \"http://127.0.0.1:1/hook", "    batch: { max_events: 50 }\n    webhook:\n      format: cloudevents\n      url: \"http://127.0.0.1:1/hook", 1))
		code, out, errOut := run(t, nil, event("update", 7, "pears"), "test", "-c", batched, "--trigger", "low_stock", "--event", "-")
		if code != ExitOK {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		for _, w := range []string{"a batch of this one event: the trigger's requests carry a JSON array of up to 50 events",
			"Webhook-Id: batch_", "Content-Type: application/cloudevents-batch+json", `body (exact bytes, `, `[{"specversion":"1.0","id":"msg_`, `"data":{"text":"Only 7 pears left!"}}]`} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	})
	t.Run("mongodb.uri's variable unset", func(t *testing.T) {
		// test never connects, so it does not read mongodb.uri (as dev).
		unset := writeConfig(t, strings.Replace(okConfig, `"mongodb://user:hunter2@127.0.0.1:1/?directConnection=true"`, `"${MONGODB_URI}"`, 1))
		code, out, errOut := run(t, nil, event("update", 7, "pears"), "test", "-c", unset, "--trigger", "low_stock", "--event", "-")
		if code != ExitOK || !strings.Contains(out, "match:    yes") {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
	})
	t.Run("larger than 16 MiB", func(t *testing.T) {
		// As a trigger delivers an event reassembled from fragments.
		code, out, errOut := run(t, nil, event("update", 7, "pears\", \"big\": \""+strings.Repeat("x", 17<<20)), "test", "-c", cfg, "--trigger", "low_stock", "--event", "-")
		if code != ExitOK || !strings.Contains(out, `{"text":"Only 7 pears left!"}`) {
			t.Fatalf("exit %d: %.500s%.500s", code, out, errOut)
		}
	})
	t.Run("not extended json", func(t *testing.T) {
		code, _, errOut := run(t, nil, "{nope", "test", "-c", cfg, "--trigger", "low_stock", "--event", "-")
		if code != ExitFailure || !strings.Contains(errOut, "not an Extended JSON document") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestIsRemote(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		remote bool
		err    bool
	}{
		{"127.0.0.1:27017", false, false},
		{"[::1]:27017", false, false},
		{"localhost:27017", false, false},
		{"0.0.0.0:27017", true, false},
		{":27017", true, false},
		{"10.1.2.3:27017", true, false},
		{"db.example.com:27017", true, false},
		{"127.0.0.1", false, true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			remote, err := isRemote(tc.addr)
			if (err != nil) != tc.err || remote != tc.remote {
				t.Errorf("isRemote(%q) = %v, %v; want %v, err %v", tc.addr, remote, err, tc.remote, tc.err)
			}
		})
	}
}

func TestReceiverAddr(t *testing.T) {
	for _, tc := range []struct {
		url, want string
		err       bool
	}{
		{"http://127.0.0.1:9471/hooks/stock", "127.0.0.1:9471", false},
		{"http://localhost/x", "localhost:80", false},
		{"https://127.0.0.1:9471/x", "", true},
		{"http://example.com:9471/x", "", true},
	} {
		t.Run(tc.url, func(t *testing.T) {
			got, err := receiverAddr(tc.url)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("receiverAddr = %q, %v; want %q, err %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestRunUnreachableMongoDB(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a connection timeout")
	}
	cfg := writeConfig(t, strings.Replace(okConfig, "directConnection=true", "directConnection=true&serverSelectionTimeoutMS=200", 1))
	code, out, errOut := run(t, nil, "", "run", "-c", cfg, "--admin-addr", "off")
	if code != ExitFailure || !strings.Contains(errOut, "cannot reach MongoDB at mongodb://user:xxxxx@127.0.0.1:1/") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "hunter2") {
		t.Errorf("password printed: %s", errOut)
	}
}

// TestConnectScrubsDriverErrors: a driver error that quotes a secret
// option's value (one the driver cannot unescape; validate does not parse a
// mongodb+srv URI's options, so run is the first to see it) is wrapped
// without the value, whatever the spelling of the option's name.
func TestConnectScrubsDriverErrors(t *testing.T) {
	tests := []struct{ uri, want string }{
		{"mongodb://127.0.0.1:1/?tlsCertificateKeyFilePassword=k3yp4ss%zz",
			`connect to mongodb://127.0.0.1:1/?tlsCertificateKeyFilePassword=xxxxx: error parsing uri: invalid option value "xxxxx": invalid URL escape "%zz"`},
		{"mongodb://127.0.0.1:1/?tlsCertificateKeyFile%50assword=k3yp4ss%zz",
			`connect to mongodb://127.0.0.1:1/?tlsCertificateKeyFile%50assword=xxxxx: error parsing uri: invalid option value "xxxxx": invalid URL escape "%zz"`},
		{"mongodb://127.0.0.1:1/?authMechanism%50roperties=AWS_SESSION_TOKEN:k3yp4ss%zz",
			`connect to mongodb://127.0.0.1:1/?authMechanism%50roperties=AWS_SESSION_TOKEN:xxxxx: error parsing uri: invalid option value "xxxxx": invalid URL escape "%zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			client, err := connect(context.Background(), tt.uri)
			if err == nil {
				_ = client.Disconnect(context.Background())
				t.Fatal("connect succeeded")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("connect error = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRedactionInLocalOutputs: validate and test print ordinary webhook
// paths as written (/status/429 stays readable) and hide what the one
// redaction rule calls a secret: a token-shaped path segment, a known
// incoming-webhook path, query values and header values.
func TestRedactionInLocalOutputs(t *testing.T) {
	cfg := writeConfig(t, `
triggers:
  - name: status
    database: lessons
    collection: inventory
    webhook:
      url: "https://httpbin.example/status/429?key=qv4lue"
      headers: { Authorization: "Bearer h34derv4l" }
  - name: token
    database: lessons
    webhook: { url: "https://hooks.example.com/Zx81kQp0aBc9dEf7GhI2" }
  - name: slack
    database: lessons
    webhook: { url: "https://hooks.slack.com/services/T0AAA/B0BBB/XXsecretXX" }
  - name: hidden
    database: lessons
    webhook: { url: "https://example.com/in/plainword", secret_path: true }
`)
	secrets := []string{"qv4lue", "h34derv4l", "Zx81kQp0aBc9dEf7GhI2", "XXsecretXX", "B0BBB", "plainword"}
	code, out, errOut := run(t, nil, "", "validate", "-c", cfg)
	if code != ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	for _, w := range []string{
		"https://httpbin.example/status/429?key=REDACTED", "https://hooks.example.com/REDACTED",
		"https://hooks.slack.com/services/REDACTED", "https://example.com/REDACTED",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("validate output lacks %q:\n%s", w, out)
		}
	}
	ev := `{"_id": {"_data": "82AB"}, "operationType": "insert", "ns": {"db": "lessons", "coll": "inventory"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1}}`
	_, tout, terr := run(t, nil, ev, "test", "-c", cfg, "--trigger", "status", "--event", "-")
	if !strings.Contains(tout, "request:  POST https://httpbin.example/status/429?key=REDACTED") {
		t.Errorf("test output lacks the readable request line:\n%s%s", tout, terr)
	}
	for _, s := range secrets {
		if strings.Contains(out+errOut+tout+terr, s) {
			t.Errorf("local output shows secret %q:\n%s%s", s, out, tout)
		}
	}
}

// TestDevDemoNeedsNoFile: dev --demo in a directory without triggers.yaml
// uses the built-in demo configuration (it gets as far as starting devdb,
// which the canceled context stops) instead of failing to open the file.
func TestDevDemoNeedsNoFile(t *testing.T) {
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	Run(ctx, []string{"dev", "--demo", "--admin-addr", "off", "--addr", "127.0.0.1:0"}, Env{Stdout: &out, Stderr: &errb})
	if s := out.String() + errb.String(); strings.Contains(s, "triggers.yaml does not exist") || strings.Contains(s, "invalid built-in") {
		t.Fatalf("dev --demo did not use the built-in configuration:\n%s", s)
	}
}

func TestInit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "triggers.yaml")
	code, out, errOut := run(t, nil, "", "init", "-c", path)
	if code != ExitOK || !strings.Contains(out, "wrote "+path) || !strings.Contains(out, "set CHANGEHOOK_DEMO_SECRET to a signing key of your own") {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, nil, "", "validate", "-c", path); code != ExitOK {
		t.Fatalf("the starter file does not validate: %s%s", out, errOut)
	}
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, nil, "", "init", "-c", path)
	if code != ExitFailure || !strings.Contains(errOut, "already exists; not overwriting") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine" {
		t.Fatalf("init overwrote the file: %q", b)
	}
	// A file that cannot be created: said once, with the reason; a
	// missing directory is named.
	missing := filepath.Join(dir, "sub", "dir")
	code, _, errOut = run(t, nil, "", "init", "-c", filepath.Join(missing, "x.yaml"))
	if want := "changehook init: create " + filepath.Join(missing, "x.yaml") + ": directory " + missing +
		" does not exist; create it first (mkdir -p " + missing + ") or choose another file with -c\n"; code != ExitFailure || errOut != want {
		t.Errorf("init in a missing directory: exit %d, stderr %q; want 1, %q", code, errOut, want)
	}
	underFile := filepath.Join(path, "x.yaml") // its "directory" is a file
	code, _, errOut = run(t, nil, "", "init", "-c", underFile)
	if code != ExitFailure || !strings.HasPrefix(errOut, "changehook init: create "+underFile+": ") || strings.Count(errOut, underFile) != 1 {
		t.Errorf("init under a file: exit %d, stderr %q; want 1, the path said once", code, errOut)
	}
}

// TestTestSendPrintsEachAttempt: test --send reports every attempt as it
// ends, not only the final outcome.
func TestTestSendPrintsEachAttempt(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := writeConfig(t, `
triggers:
  - name: send
    database: lessons
    webhook: { url: "`+srv.URL+`/hooks/send" }
    retry: { max_attempts: 3, initial_backoff: 1ms, max_backoff: 2ms }
`)
	ev := `{"_id": {"_data": "82AB"}, "operationType": "insert", "ns": {"db": "lessons", "coll": "x"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1}}`
	code, out, errOut := run(t, nil, ev, "test", "-c", cfg, "--event", "-", "--send")
	if code != ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	for _, w := range []string{"attempt 1: HTTP 503 (server_error)", "will retry", "response body: busy", "attempt 2: HTTP 204", "delivered: HTTP 204 after 2 attempts"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestPayloadErrorSaysItOnce: a payload that fails on an event says
// "build payload" once.
func TestPayloadErrorSaysItOnce(t *testing.T) {
	cfg := writeConfig(t, `
triggers:
  - name: total
    database: shop
    webhook:
      url: "http://127.0.0.1:1/p"
      payload: { text: { $concat: ["Order total: ", "$fullDocument.total"] } }
`)
	ev := `{"_id": {"_data": "82AB"}, "operationType": "insert", "ns": {"db": "shop", "coll": "orders"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1, "total": 12.5}}`
	code, out, errOut := run(t, nil, ev, "test", "-c", cfg, "--event", "-")
	if code != ExitFailure || strings.Count(errOut, "build payload") != 1 {
		t.Fatalf("exit %d, want 1 and \"build payload\" once:\n%s%s", code, out, errOut)
	}
}

// TestTestSendLastAttemptDoesNotRetry: when every attempt fails, the last
// one does not say it will retry.
func TestTestSendLastAttemptDoesNotRetry(t *testing.T) {
	cfg := writeConfig(t, `
triggers:
  - name: send
    database: lessons
    webhook: { url: "http://127.0.0.1:1/hooks/send" }
    retry: { max_attempts: 3, initial_backoff: 1ms, max_backoff: 2ms }
`)
	ev := `{"_id": {"_data": "82AB"}, "operationType": "insert", "ns": {"db": "lessons", "coll": "x"}, "documentKey": {"_id": 1}, "fullDocument": {"_id": 1}}`
	code, out, errOut := run(t, nil, ev, "test", "-c", cfg, "--event", "-", "--send")
	if code != ExitFailure {
		t.Fatalf("exit %d, want 1: %s%s", code, out, errOut)
	}
	var attempts []string
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "  attempt ") {
			attempts = append(attempts, line)
		}
	}
	if len(attempts) != 3 || !strings.Contains(out, "FAILED after 3 attempts") {
		t.Fatalf("want 3 attempts, then FAILED:\n%s", out)
	}
	for i, a := range attempts[:2] {
		if !strings.Contains(a, "(connection)") || !strings.Contains(a, ", will retry:") {
			t.Errorf("attempt %d: %s", i+1, a)
		}
	}
	if last := attempts[2]; strings.Contains(last, "will retry") || !strings.Contains(last, ", no attempts left (retry.max_attempts: 3):") {
		t.Errorf("last attempt: %s", last)
	}
}

// TestRunWarnsOfPublishedSigningKeys: run warns about a trigger that signs
// with a key published in the repository (the examples' fallback, taken
// when the secret's variable is not set), naming the trigger and not the
// key; a key of the user's own gets no warning.
func TestRunWarnsOfPublishedSigningKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a connection timeout")
	}
	const warning = "signs its requests with a signing key published in changehook's repository"
	for _, tc := range []struct {
		name, secret string
		warn         bool
	}{
		{"an example's fallback", "${INVENTORY_SECRET:-whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}", true},
		{"the demo's, among two", "[whsec_YS1rZXktb2YtdGhlLXVzZXJzLW93bi0zMi1ieXRlcyE=, whsec_EZQGwCu/jl8apnj/X5Y+X2MOFX/knB2EvA4g1VC4694=]", true},
		{"one's own", "whsec_YS1rZXktb2YtdGhlLXVzZXJzLW93bi0zMi1ieXRlcyE=", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(okConfig, "directConnection=true", "directConnection=true&serverSelectionTimeoutMS=200", 1)
			src = strings.Replace(src, "secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret: "+tc.secret, 1)
			cfg := writeConfig(t, src)
			code, out, errOut := run(t, nil, "", "run", "-c", cfg, "--admin-addr", "off")
			if code != ExitFailure {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			if got := strings.Contains(errOut, warning) && strings.Contains(errOut, "trigger=low_stock"); got != tc.warn {
				t.Errorf("warned: %v, want %v\n%s", got, tc.warn, errOut)
			}
			for _, key := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "EZQGwCu", "YS1rZXktb2Yt"} {
				if strings.Contains(errOut, key) {
					t.Errorf("a signing key was printed:\n%s", errOut)
				}
			}
		})
	}
}
