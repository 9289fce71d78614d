package triggers

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testSecrets are the values of testEnv that must never show in output.
var testSecrets = []string{"s3cr3t-pass", "tok-api-123", "tok-orders-456", "whsec_EZQGwCu/jl8apnj/X5Y+X2MOFX/knB2EvA4g1VC4694="}

func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"MONGO_PASSWORD": "s3cr3t-pass",
		"API_TOKEN":      "tok-api-123",
		"ORDERS_TOKEN":   "tok-orders-456",
		"STOCK_SECRET":   "whsec_EZQGwCu/jl8apnj/X5Y+X2MOFX/knB2EvA4g1VC4694=",
		"EMPTY":          "",
	}[name]
	return v, ok
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s mismatch\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

func TestParseGood(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good test files: %v", err)
	}
	files = append(files, "../triggers.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, testEnv)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			out, err := encodeJSON(cfg, "  ")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range testSecrets {
				if strings.Contains(string(out), s) {
					t.Errorf("redacted view leaks secret %q", s)
				}
			}
			if f == "../triggers.yaml" {
				return // the demo may change; its golden is the file itself
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".json", out)
		})
	}
}

// encodeJSON marshals v as JSON without HTML escaping (so that
// RedactedMask reads as written), indented by indent, newline-terminated.
func encodeJSON(v any, indent string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	err := enc.Encode(v)
	return buf.Bytes(), err
}

func TestParseBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad test files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, testEnv)
			if err == nil {
				t.Fatalf("Load succeeded (%d triggers), want errors", len(cfg.Triggers))
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, want *ValidationError: %v", err, err)
			}
			for _, s := range append(testSecrets, "hunter2") {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error leaks secret %q", s)
				}
			}
			for i := 1; i < len(ve.Problems); i++ {
				a, b := ve.Problems[i-1].Pos, ve.Problems[i].Pos
				if a.Line > b.Line || a.Line == b.Line && a.Col > b.Col {
					t.Errorf("problems not sorted: %v before %v", a, b)
				}
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestParseValues(t *testing.T) {
	cfg, err := Load("testdata/good/full.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.MongoDB.URI, "mongodb://app:s3cr3t-pass@db1.example.com:27017,db2.example.com:27017/?replicaSet=rs0"; got != want {
		t.Errorf("URI = %q, want %q", got, want)
	}
	if got := len(cfg.Triggers); got != 2 {
		t.Fatalf("got %d triggers, want 2", got)
	}
	orders, all := cfg.Triggers[0], cfg.Triggers[1]
	checks := []struct {
		name      string
		got, want any
	}{
		{"orders.Database (default)", orders.Database, "shop"},
		{"orders.Concurrency (interpolated default)", orders.Concurrency, 4},
		{"orders.Ordering (default)", orders.Ordering, PerDocument},
		{"orders.FullDocument", orders.FullDocument, options.WhenAvailable},
		{"orders.FullDocumentBeforeChange", orders.FullDocumentBeforeChange, options.Required},
		{"orders.StartAt", orders.StartAt, StartAt{Time: time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC)}},
		{"orders.Webhook.Method", orders.Webhook.Method, "PUT"},
		{"orders.Webhook.Timeout (default)", orders.Webhook.Timeout, 5 * time.Second},
		{"orders.Webhook.Headers merged", len(orders.Webhook.Headers), 2},
		{"orders.Webhook.Headers[Authorization]", orders.Webhook.Headers["Authorization"].Reveal(), "Bearer tok-api-123"},
		{"orders.Webhook.Secrets", len(orders.Webhook.Secrets), 2},
		{"orders.Retry merged", orders.Retry, RetryPolicy{MaxAttempts: 10, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second, RetryOn: DefaultRetryOn(), SuccessOn: DefaultSuccessOn()}},
		{"orders.DeadLetter", orders.DeadLetter, false},
		{"orders.Payload compiled", orders.Webhook.Payload != nil, true},
		{"orders.Pos", orders.Pos.String(), "testdata/good/full.yaml:15:5"},
		{"everything.Database cleared by null", all.Database, ""},
		{"everything.Enabled", all.Enabled, false},
		{"everything.Concurrency (strict)", all.Concurrency, 1},
		{"everything.Namespace", all.Namespace(), ""},
		{"orders.Namespace", orders.Namespace(), "shop.orders"},
		{"Defaults.Concurrency", cfg.Defaults.Concurrency, 4},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !equalAny(c.got, c.want) {
				t.Errorf("got %#v, want %#v", c.got, c.want)
			}
		})
	}
}

func equalAny(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestInterpolate(t *testing.T) {
	tests := []struct {
		in, want string
		errs     []string
	}{
		{in: "plain", want: "plain"},
		{in: "${API_TOKEN}", want: "tok-api-123"},
		{in: "Bearer ${API_TOKEN}!", want: "Bearer tok-api-123!"},
		{in: "${UNSET:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${EMPTY}", want: ""},
		{in: "${API_TOKEN:-fallback}", want: "tok-api-123"},
		{in: "${UNSET:-}", want: ""},
		{in: "${UNSET:-mongodb://h:1/?a=b}", want: "mongodb://h:1/?a=b"},
		{in: "$${API_TOKEN}", want: "${API_TOKEN}"},
		{in: "$$ROOT and $lt", want: "$$ROOT and $lt"},
		{in: "cost: $5", want: "cost: $5"},
		{in: "${A}${API_TOKEN}", want: "tok-api-123", errs: []string{"0:environment variable A is not set"}},
		{in: "x${UNSET}", want: "x", errs: []string{"1:environment variable UNSET is not set"}},
		{in: "${1BAD}", want: "", errs: []string{`0:invalid environment variable name "1BAD"`}},
		{in: "${}", want: "", errs: []string{`0:invalid environment variable name ""`}},
		{in: "id ${fullDocument._id}", want: "id ", errs: []string{`3:invalid environment variable name "fullDocument._id" in "${fullDocument._id}": ` +
			`${...} reads the environment when the file is loaded; a field of the change event is written as a field path in webhook.payload, ` +
			`e.g. {$concat: ["Order ", {$toString: "$fullDocument._id"}]} (write "$${" for a literal "${")`}},
		{in: "Order ${fullDocument.total:-0}", want: "Order ", errs: []string{`6:invalid environment variable name "fullDocument.total" in "${fullDocument.total:-...}": ` +
			`${...} reads the environment when the file is loaded; a field of the change event is written as a field path in webhook.payload, ` +
			`e.g. {$concat: ["Order ", {$toString: "$fullDocument.total"}]} (write "$${" for a literal "${")`}},
		{in: "${fullDocument.total:=0}", want: "", errs: []string{`0:invalid environment variable name "fullDocument.total" in "${fullDocument.total:=...}": ` +
			`${...} reads the environment when the file is loaded; a field of the change event is written as a field path in webhook.payload, ` +
			`e.g. {$concat: ["Order ", {$toString: "$fullDocument.total"}]} (write "$${" for a literal "${")`}},
		{in: "${X-a.b}", want: "", errs: []string{`0:unsupported form "-" in "${X-...}": the shell's default-if-unset form is not supported; ` +
			`write ${X:-default} (the default is also used when X is empty)`}},
		{in: "ab${OPEN", want: "ab${OPEN", errs: []string{`2:unterminated "${"`}},
		{in: "${X:=a.b}", want: "", errs: []string{`0:unsupported form ":=" in "${X:=...}": the shell's assign-default form is not supported; write ${X:-default}`}},
		{in: "a ${X:?secret}", want: "a ", errs: []string{`2:unsupported form ":?" in "${X:?...}"`}},
		{in: "${X-secret}", want: "", errs: []string{`0:unsupported form "-" in "${X-...}"`}},
		{in: "${A B:-secret}", want: "", errs: []string{`0:invalid environment variable name "A B" in "${A B:-...}"`}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, errs := interpolate(tt.in, testEnv)
			if got != tt.want {
				t.Errorf("interpolate(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(errs) != len(tt.errs) {
				t.Fatalf("errors = %v, want %v", errs, tt.errs)
			}
			for i, e := range errs {
				prefix, msg, _ := strings.Cut(tt.errs[i], ":")
				if gotPrefix := strings.Split(prefix, ":")[0]; gotPrefix != itoa(e.offset) || !strings.HasPrefix(e.msg, msg) {
					t.Errorf("error %d = %d:%s, want %s", i, e.offset, e.msg, tt.errs[i])
				}
			}
		})
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestInterpolationTypes(t *testing.T) {
	src := `
triggers:
  - name: typed
    database: shop
    ordering: none
    concurrency: ${N:-7}
    enabled: ${ON:-false}
    match:
      fullDocument.qty:
        $lt: ${LIMIT:-20}
      fullDocument.code: "${LIMIT:-20}"
    webhook: { url: "http://localhost/x" }
`
	cfg, err := Parse("typed.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Triggers[0]
	if tr.Concurrency != 7 || tr.Enabled {
		t.Errorf("Concurrency, Enabled = %d, %v; want 7, false", tr.Concurrency, tr.Enabled)
	}
	want := bson.D{
		{Key: "fullDocument.qty", Value: bson.D{{Key: "$lt", Value: int32(20)}}},
		{Key: "fullDocument.code", Value: "20"},
	}
	if !equalAny(tr.Match, want) {
		t.Errorf("Match = %v, want %v (plain scalars re-resolved, quoted stay strings)", tr.Match, want)
	}
}

func TestPipeline(t *testing.T) {
	tests := []struct {
		name     string
		trigger  Trigger
		pipeline string
		options  string
	}{
		{
			name:     "operations only",
			trigger:  Trigger{Operations: []string{"insert", "update"}},
			pipeline: `[{"$match":{"$or":[{"operationType":"invalidate"},{"operationType":{"$in":["insert","update"]}}]}}]`,
			options:  `{}`,
		},
		{
			name: "match is a conjunction",
			trigger: Trigger{
				Operations:   []string{"insert"},
				Match:        bson.D{{Key: "operationType", Value: "insert"}, {Key: "fullDocument.qty", Value: bson.D{{Key: "$lt", Value: int32(20)}}}},
				FullDocument: options.UpdateLookup,
			},
			pipeline: `[{"$match":{"$or":[{"operationType":"invalidate"},{"$and":[{"operationType":{"$in":["insert"]}},{"operationType":"insert","fullDocument.qty":{"$lt":20}}]}]}}]`,
			options:  `{"FullDocument":"updateLookup"}`,
		},
		{
			name: "project and pre-images",
			trigger: Trigger{
				Operations:               []string{"delete"},
				Project:                  bson.D{{Key: "documentKey", Value: int32(1)}, {Key: "operationType", Value: int32(1)}},
				FullDocument:             options.Default,
				FullDocumentBeforeChange: options.Required,
			},
			pipeline: `[{"$match":{"$or":[{"operationType":"invalidate"},{"operationType":{"$in":["delete"]}}]}},{"$project":{"documentKey":1,"operationType":1}}]`,
			options:  `{"FullDocumentBeforeChange":"required"}`,
		},
		{
			name:     "deployment-wide: the state database is filtered out first",
			trigger:  Trigger{Operations: []string{"insert"}, StateDatabase: "changehook"},
			pipeline: `[{"$match":{"ns.db":{"$ne":"changehook"}}},{"$match":{"$or":[{"operationType":"invalidate"},{"operationType":{"$in":["insert"]}}]}}]`,
			options:  `{}`,
		},
		{
			name:     "database-wide: no loop filter needed (the state database cannot be watched)",
			trigger:  Trigger{Database: "shop", Operations: []string{"insert"}, StateDatabase: "changehook"},
			pipeline: `[{"$match":{"$or":[{"operationType":"invalidate"},{"operationType":{"$in":["insert"]}}]}}]`,
			options:  `{}`,
		},
		{
			name:     "expanded events",
			trigger:  Trigger{Operations: []string{"insert", "create"}, FullDocumentBeforeChange: options.Off},
			pipeline: `[{"$match":{"$or":[{"operationType":"invalidate"},{"operationType":{"$in":["insert","create"]}}]}}]`,
			options:  `{"ShowExpandedEvents":true}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bson.MarshalExtJSON(bson.D{{Key: "p", Value: tt.trigger.Pipeline()}}, false, false)
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"p":` + tt.pipeline + `}`; string(got) != want {
				t.Errorf("Pipeline() =\n%s\nwant\n%s", got, want)
			}
			var o options.ChangeStreamOptions
			for _, set := range tt.trigger.ChangeStreamOptions().List() {
				if err := set(&o); err != nil {
					t.Fatal(err)
				}
			}
			if gotOpts := optionsJSON(o); gotOpts != tt.options {
				t.Errorf("ChangeStreamOptions() = %s, want %s", gotOpts, tt.options)
			}
		})
	}
}

// optionsJSON renders the set options (nil pointers omitted).
func optionsJSON(o options.ChangeStreamOptions) string {
	m := map[string]any{}
	if o.FullDocument != nil {
		m["FullDocument"] = *o.FullDocument
	}
	if o.FullDocumentBeforeChange != nil {
		m["FullDocumentBeforeChange"] = *o.FullDocumentBeforeChange
	}
	if o.ShowExpandedEvents != nil {
		m["ShowExpandedEvents"] = *o.ShowExpandedEvents
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"mongodb://user:pa%40ss@h:27017/db?replicaSet=rs", "mongodb://user:xxxxx@h:27017/db?replicaSet=rs"},
		{"mongodb://h:27017", "mongodb://h:27017"},
		{"mongodb+srv://u:p@cluster0.example.net/", "mongodb+srv://u:xxxxx@cluster0.example.net/"},
		{"no scheme", "xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := RedactURI(tt.in); got != tt.want {
				t.Errorf("RedactURI = %q, want %q", got, tt.want)
			}
		})
	}
	urls := []struct{ in, want string }{
		{"https://u:p@example.com/a?token=abc&x=1#frag", "https://REDACTED@example.com/a?token=REDACTED&x=REDACTED"},
		{"http://example.com/hooks", "http://example.com/hooks"},
		{"https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com/services/REDACTED"},
	}
	for _, tt := range urls {
		t.Run(tt.in, func(t *testing.T) {
			if got := RedactURL(tt.in); got != tt.want {
				t.Errorf("RedactURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	known := triggerFields()
	tests := []struct{ in, want string }{
		{"operatons", "operations"},
		{"colection", "collection"},
		{"Name", "name"},
		{"zzz", ""},
		{"webhooks", "webhook"},
		{"fullDocument", "full_document"},
		{"inflight_bytes", "max_inflight_bytes"},
		{"document_before_change", "full_document_before_change"},
		{"trigger_concurrency", "concurrency"},
		{"document", "full_document"}, // the last word first: before full_document_before_change
		{"before_change", "full_document_before_change"},
		{"ops", ""}, // parts shorter than five letters are not matched
	}
	retry := []string{"max_attempts", "initial_backoff", "max_backoff", "retry_on", "success_on", "drop_on"}
	for _, tt := range []struct{ in, want string }{
		{"attempts", "max_attempts"},
		{"backoff", ""}, // initial_backoff or max_backoff
		{"retry_on_status", "retry_on"},
	} {
		if got := Suggest(tt.in, retry); got != tt.want {
			t.Errorf("Suggest(%q, retry fields) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Suggest(tt.in, known); got != tt.want {
				t.Errorf("Suggest(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestPrintingDoesNotLeakSecrets(t *testing.T) {
	cfg, err := Load("testdata/good/full.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Triggers[0]
	check := func(t *testing.T, what, out string) {
		t.Helper()
		for _, s := range testSecrets {
			if strings.Contains(out, s) {
				t.Errorf("%s output leaks %q: %s", what, s, out)
			}
		}
	}
	for _, format := range []string{"%v", "%+v", "%s", "%#v", "%q"} {
		t.Run(format, func(t *testing.T) {
			check(t, format, fmt.Sprintf(format, *tr)+fmt.Sprintf(format, cfg.MongoDB)+fmt.Sprintf(format, *cfg)+
				fmt.Sprintf(format, tr.Webhook)+fmt.Sprintf(format, tr.Webhook.Headers)+fmt.Sprintf(format, tr.Webhook.Secrets))
		})
	}
	t.Run("json", func(t *testing.T) {
		out, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "json", string(out))
	})
	t.Run("slog", func(t *testing.T) {
		var buf strings.Builder
		log := slog.New(slog.NewJSONHandler(&buf, nil))
		log.Info("config", "trigger", tr, "webhook", tr.Webhook, "mongodb", cfg.MongoDB,
			"secret", tr.Webhook.Secrets[0], "headers", tr.Webhook.Headers)
		log = slog.New(slog.NewTextHandler(&buf, nil))
		log.Info("config", "webhook", tr.Webhook, "mongodb", cfg.MongoDB, "secret", tr.Webhook.Secrets[0])
		check(t, "slog", buf.String())
	})
}

func TestSecret(t *testing.T) {
	s := Secret("hunter2")
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T"} {
		t.Run(format, func(t *testing.T) {
			if out := fmt.Sprintf(format, s); strings.Contains(out, "hunter2") || strings.Contains(out, "68756e74657232") {
				t.Errorf("Sprintf(%q) = %q leaks the secret", format, out)
			}
		})
	}
	if got := fmt.Sprint(s); got != RedactedMask {
		t.Errorf("Sprint = %q, want %q", got, RedactedMask)
	}
	if got := fmt.Sprintf("%#v", s); got != `"`+RedactedMask+`"` {
		t.Errorf("%%#v = %q", got)
	}
	if got := fmt.Sprintf("%q", s); got != `"`+RedactedMask+`"` {
		t.Errorf("%%q = %q", got)
	}
	b, err := encodeJSON(map[string]any{"k": s, "list": []Secret{s}, "m": map[string]Secret{"h": s}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"k":"<secret>","list":["<secret>"],"m":{"h":"<secret>"}}` + "\n"; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	if txt, _ := s.MarshalText(); string(txt) != RedactedMask {
		t.Errorf("MarshalText = %q", txt)
	}
	if v := s.LogValue(); v.String() != RedactedMask {
		t.Errorf("LogValue = %q", v.String())
	}
	if s.Reveal() != "hunter2" {
		t.Errorf("Reveal = %q, want the value", s.Reveal())
	}
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("../triggers.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("triggers.yaml", data, testEnv); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEmptyDurationIsTheDefault: "" in a duration field (quoted, or an
// empty ${VAR}) is as if the field were absent, in every section: here,
// with no defaults section, its built-in default, as cluster.instance_id:
// "" is; null and other text are still errors. TestEmptyDurationIsAbsent
// checks the defaults section and merge keys.
func TestEmptyDurationIsTheDefault(t *testing.T) {
	src := `
admin: { read_timeout: "", write_timeout: "", idle_timeout: "", retrying_unready_after: "" }
checkpoint: { idle_interval: "" }
history: { retention: "" }
cluster:
  instance_id: ""
  lease_ttl: ""
  renew_every: ""      # default lease_ttl/3
triggers:
  - name: t
    database: shop
    batch: { max_events: 10, max_wait: "${EMPTY}" }
    retry: { initial_backoff: "", max_backoff: "" }
    circuit: { max_probe_interval: "" }
    webhook: { url: "http://localhost/x", timeout: "", format: cloudevents }
`
	cfg, err := Parse("c.yaml", []byte(src), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Triggers[0]
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"admin.read_timeout", cfg.Admin.ReadTimeout, DefaultAdminReadTimeout},
		{"admin.write_timeout", cfg.Admin.WriteTimeout, DefaultAdminWriteTimeout},
		{"admin.idle_timeout", cfg.Admin.IdleTimeout, DefaultAdminIdleTimeout},
		{"admin.retrying_unready_after", cfg.Admin.RetryingUnreadyAfter, DefaultRetryingUnreadyAfter},
		{"checkpoint.idle_interval", cfg.Checkpoint.IdleInterval, DefaultCheckpointIdleInterval},
		{"history.retention", cfg.History.Retention, DefaultHistoryRetention},
		{"cluster.lease_ttl", cfg.Cluster.LeaseTTL, DefaultLeaseTTL},
		{"cluster.renew_every", cfg.Cluster.RenewEvery, DefaultLeaseTTL / 3},
		{"batch.max_wait", tr.Batch.MaxWait, DefaultBatchMaxWait},
		{"retry.initial_backoff", tr.Retry.InitialBackoff, DefaultInitialBackoff},
		{"retry.max_backoff", tr.Retry.MaxBackoff, DefaultMaxBackoff},
		{"circuit.max_probe_interval", tr.Circuit.MaxProbeInterval, DefaultCircuitMaxProbeInterval},
		{"webhook.timeout", tr.Webhook.Timeout, DefaultTimeout},
	} {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	if cfg.Cluster.InstanceID != "" {
		t.Errorf("instance_id = %q", cfg.Cluster.InstanceID)
	}
	for _, bad := range []string{`renew_every: ~`, `renew_every: " "`, `renew_every: soon`} {
		_, err := Parse("c.yaml", []byte("cluster:\n  "+bad+"\ntriggers:\n  - name: t\n    webhook: { url: \"http://localhost/x\" }\n"), testEnv)
		if err == nil || !strings.Contains(err.Error(), "cluster.renew_every") {
			t.Errorf("%s: %v, want a cluster.renew_every problem", bad, err)
		}
	}
}
