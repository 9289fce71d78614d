package cluster

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// parseTrigger parses one trigger whose webhook mapping is webhook.
func parseTrigger(t *testing.T, webhook string) *triggers.Trigger {
	t.Helper()
	src := "triggers:\n  - name: orders\n    database: shop\n    collection: orders\n    webhook: " + webhook + "\n"
	cfg, err := triggers.Parse("t.yaml", []byte(src), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Triggers[0]
}

const (
	keyA = "whsec_YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="
	keyB = "whsec_YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI="
)

// TestMemberHashCoversSecrets: the hash a member publishes differs for
// definitions that differ only in what the redacted form hides (the
// webhook URL's query values, hook tokens, userinfo, a secret_path's path,
// header values, signing keys), so that members delivering to different
// endpoints or signing with different keys show as drift; the same
// definition hashes the same, and the hash depends on the cluster's key.
func TestMemberHashCoversSecrets(t *testing.T) {
	key := []byte(strings.Repeat("k", store.DefinitionHashKeySize))
	tests := []struct {
		name string
		a, b string // webhook mappings
		same bool
	}{
		{name: "identical", a: `{ url: "https://api.example.com/hook?tenant=prod" }`, b: `{ url: "https://api.example.com/hook?tenant=prod" }`, same: true},
		{name: "identical, written differently", a: `{ url: "https://api.example.com/hook", headers: { X-A: "1", X-B: "2" } }`,
			b: `{ headers: { X-B: "2", X-A: "1" }, url: "https://api.example.com/hook" }`, same: true},
		{name: "query value", a: `{ url: "https://api.example.com/hook?tenant=prod" }`, b: `{ url: "https://api.example.com/hook?tenant=staging" }`},
		{name: "rotated Slack hook", a: `{ url: "https://hooks.slack.com/services/T01/B01/oldrevokedtoken" }`,
			b: `{ url: "https://hooks.slack.com/services/T01/B02/newchanneltoken" }`},
		{name: "token-shaped path segment", a: `{ url: "https://api.example.com/hook/a1b2c3d4e5f6a7b8c9d0" }`,
			b: `{ url: "https://api.example.com/hook/ffffffffffff00000000" }`},
		{name: "userinfo", a: `{ url: "https://app:one@api.example.com/hook" }`, b: `{ url: "https://app:two@api.example.com/hook" }`},
		{name: "path under secret_path", a: `{ url: "https://api.example.com/one", secret_path: true }`,
			b: `{ url: "https://api.example.com/two", secret_path: true }`},
		{name: "header value", a: `{ url: "https://api.example.com/hook", headers: { Authorization: "Bearer one" } }`,
			b: `{ url: "https://api.example.com/hook", headers: { Authorization: "Bearer two" } }`},
		{name: "rotated signing key", a: `{ url: "https://api.example.com/hook", secret: "` + keyA + `" }`,
			b: `{ url: "https://api.example.com/hook", secret: "` + keyB + `" }`},
		{name: "an added signing key", a: `{ url: "https://api.example.com/hook", secret: ["` + keyA + `"] }`,
			b: `{ url: "https://api.example.com/hook", secret: ["` + keyA + `", "` + keyB + `"] }`},
		{name: "basic password", a: `{ url: "https://api.example.com/hook", auth: { basic: { username: app, password: one } } }`,
			b: `{ url: "https://api.example.com/hook", auth: { basic: { username: app, password: two } } }`},
		{name: "bearer token", a: `{ url: "https://api.example.com/hook", auth: { bearer: { token: one } } }`,
			b: `{ url: "https://api.example.com/hook", auth: { bearer: { token: two } } }`},
		{name: "OAuth 2.0 client secret", a: `{ url: "https://api.example.com/hook", auth: { oauth2_client_credentials: { token_url: "https://auth.example.com/token", client_id: app, client_secret: one } } }`,
			b: `{ url: "https://api.example.com/hook", auth: { oauth2_client_credentials: { token_url: "https://auth.example.com/token", client_id: app, client_secret: two } } }`},
		{name: "OAuth 2.0 token URL query", a: `{ url: "https://api.example.com/hook", auth: { oauth2_client_credentials: { token_url: "https://auth.example.com/token?tenant=prod", client_id: app, client_secret: one } } }`,
			b: `{ url: "https://api.example.com/hook", auth: { oauth2_client_credentials: { token_url: "https://auth.example.com/token?tenant=staging", client_id: app, client_secret: one } } }`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := memberHash(key, parseTrigger(t, tc.a)), memberHash(key, parseTrigger(t, tc.b))
			if same := a == b; same != tc.same {
				t.Errorf("hashes %s and %s: same = %v, want %v", a, b, same, tc.same)
			}
			if !strings.HasPrefix(a, keyedHashPrefix) {
				t.Errorf("hash %s does not start with %q", a, keyedHashPrefix)
			}
		})
	}
	tr := parseTrigger(t, `{ url: "https://api.example.com/hook?tenant=prod" }`)
	other := []byte(strings.Repeat("o", store.DefinitionHashKeySize))
	if memberHash(key, tr) == memberHash(other, tr) {
		t.Error("the same hash under two keys: the hash does not depend on the key")
	}
}

// TestDefinitionHashDriftAndKeyHidden: members whose webhook URLs differ
// only in a query value show as drift in Status and ReadConfigStatus, and
// neither the cluster's key nor the URL shows in what they publish.
func TestDefinitionHashDriftAndKeyHidden(t *testing.T) {
	st := newTestStore(t)
	ctx := t.Context()
	clock := newFakeClock()
	config := func(url string) *triggers.Config {
		cfg := testConfig(t, "orders")
		cfg.Triggers[0] = parseTrigger(t, `{ url: "`+url+`" }`)
		return cfg
	}
	prod, staging := config("https://api.example.com/hook?tenant=prod"), config("https://api.example.com/hook?tenant=staging")
	a := newManager(t, st, prod, "a", clock)
	b := newManager(t, st, prod, "b", clock)
	c := newManager(t, st, staging, "c", clock)
	for _, m := range []*Manager{a, b, c, c} {
		m.round(ctx)
	}
	sc, err := c.Status(ctx)
	if err != nil || len(sc.Drift) != 1 || sc.Drift[0] != "orders" {
		t.Fatalf("status of c = %+v, %v; want drift [orders]", sc, err)
	}
	sa, err := a.Status(ctx)
	if err != nil || len(sa.Drift) != 0 {
		t.Fatalf("status of a = %+v, %v; want no drift", sa, err)
	}
	cs, err := ReadConfigStatus(ctx, st, staging)
	if err != nil || len(cs.Drift) != 1 || cs.Drift[0] != "orders" {
		t.Fatalf("configuration status = %+v, %v; want drift [orders]", cs, err)
	}
	key, err := st.DefinitionHashKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []Status{sa, sc, cs} {
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), "tenant=", "prod", "staging"} {
			if strings.Contains(string(out), secret) {
				t.Errorf("status shows %q: %s", secret, out)
			}
		}
	}
}

// TestMixedHashVersions: during a rolling upgrade, a member of an earlier
// version publishes the unkeyed hash of the redacted definition. A member
// publishing the keyed hash of the same definition neither fails nor runs
// the trigger beside it: both see the two hashes as two definitions, and
// only the one that won (here the tie, the earlier version's smaller hash)
// runs the trigger, the other reporting drift.
func TestMixedHashVersions(t *testing.T) {
	st := newTestStore(t)
	ctx := t.Context()
	clock := newFakeClock()
	cfg := testConfig(t, "orders")
	// An earlier version's hash: 16 hex digits, as any that version makes.
	old := store.Member{ID: "old", Version: "earlier", Triggers: map[string]string{"orders": "0f3c9a2b7d4e5f61"}}
	if err := st.Heartbeat(ctx, old, cfg.Cluster.LeaseTTL); err != nil {
		t.Fatal(err)
	}
	n := newManager(t, st, cfg, "new", clock)
	n.round(ctx)
	n.round(ctx)
	s, err := n.Status(ctx)
	if err != nil || len(s.Members) != 2 || len(s.Drift) != 1 || s.Drift[0] != "orders" {
		t.Fatalf("status = %+v, %v; want 2 members and drift [orders]", s, err)
	}
	if member, _, _ := n.LeaseWait("orders"); member != "old" {
		t.Fatalf("LeaseWait names member %q, want old (the tie's winner)", member)
	}
}

// TestDefinitionHashCoversTheTriggerOnly: the hash a member publishes, and
// the in-process DefinitionHash the lease loops compare, cover the
// trigger's definition as the file gives it and nothing a member may set
// for itself or that depends on its process: the network and state
// sections, the host's time zone (a start_at parsed on a host whose zone
// has its offset), which partition a copy of the trigger reads. Whatever
// the trigger defines still counts.
func TestDefinitionHashCoversTheTriggerOnly(t *testing.T) {
	key := []byte(strings.Repeat("k", store.DefinitionHashKeySize))
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip(err)
	}
	const orders = "triggers:\n  - name: orders\n    database: shop\n    collection: orders\n" +
		"    webhook: { url: \"https://api.example.com/hook\" }\n"
	const partitioned = "triggers:\n  - name: orders\n    database: shop\n    collection: orders\n" +
		"    ordering: per_document\n    partitions: 3\n    webhook: { url: \"https://api.example.com/hook\" }\n"
	startAt := func(at string) string {
		return strings.Replace(orders, "    webhook:", "    start_at: "+at+"\n    webhook:", 1)
	}
	type side struct {
		src   string
		local *time.Location // time.Local while the file is parsed (nil: UTC)
		unit  int            // the partition copy hashed (-1: the trigger)
	}
	tests := []struct {
		name string
		a, b side
		same bool
	}{
		{name: "network section", a: side{src: orders, unit: -1},
			b: side{src: "network: { deny: [10.0.0.0/8] }\n" + orders, unit: -1}, same: true},
		{name: "state database", a: side{src: orders, unit: -1},
			b: side{src: "state: { database: other }\n" + orders, unit: -1}, same: true},
		{name: "host time zone", a: side{src: startAt("2026-01-15T09:00:00+01:00"), local: paris, unit: -1},
			b: side{src: startAt("2026-01-15T09:00:00+01:00"), unit: -1}, same: true},
		{name: "host time zone after a DST change", a: side{src: startAt("2026-07-15T09:00:00+02:00"), local: paris, unit: -1},
			b: side{src: startAt("2026-07-15T09:00:00+02:00"), unit: -1}, same: true},
		{name: "partition copy", a: side{src: partitioned, unit: -1}, b: side{src: partitioned, unit: 1}, same: true},
		{name: "another partition copy", a: side{src: partitioned, unit: 0}, b: side{src: partitioned, unit: 2}, same: true},
		{name: "start_at", a: side{src: startAt("2026-01-15T09:00:00+01:00"), unit: -1},
			b: side{src: startAt("2026-01-15T10:00:00+01:00"), unit: -1}},
		{name: "partitions", a: side{src: partitioned, unit: -1},
			b: side{src: strings.Replace(partitioned, "partitions: 3", "partitions: 4", 1), unit: -1}},
		{name: "collection", a: side{src: orders, unit: -1},
			b: side{src: strings.Replace(orders, "collection: orders", "collection: invoices", 1), unit: -1}},
	}
	parse := func(t *testing.T, s side) *triggers.Trigger {
		t.Helper()
		saved := time.Local
		defer func() { time.Local = saved }()
		time.Local = time.UTC
		if s.local != nil {
			time.Local = s.local
		}
		cfg, err := triggers.Parse("t.yaml", []byte(s.src), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		if s.unit >= 0 {
			return cfg.Triggers[0].Units()[s.unit]
		}
		return cfg.Triggers[0]
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := parse(t, tc.a), parse(t, tc.b)
			if ha, hb := memberHash(key, a), memberHash(key, b); (ha == hb) != tc.same {
				t.Errorf("published hashes %s and %s: same = %v, want %v", ha, hb, ha == hb, tc.same)
			}
			if ha, hb := DefinitionHash(a), DefinitionHash(b); (ha == hb) != tc.same {
				t.Errorf("definition hashes %s and %s: same = %v, want %v", ha, hb, ha == hb, tc.same)
			}
		})
	}
}

// TestMemberHashCoversSharedEndpoint: a trigger's hash covers the shared
// endpoint its URL falls under, which its redacted form names only: two
// members whose endpoint of the same name shares a different rate limit,
// or another set of URLs, show as drift; the same endpoints hash the same.
func TestMemberHashCoversSharedEndpoint(t *testing.T) {
	key := []byte(strings.Repeat("k", store.DefinitionHashKeySize))
	parse := func(t *testing.T, endpoint string) *triggers.Trigger {
		t.Helper()
		src := "endpoints:\n  - " + endpoint + "\ntriggers:\n  - name: orders\n    database: shop\n    collection: orders\n" +
			"    webhook: { url: \"https://hooks.example.com/t/abc/orders\" }\n"
		cfg, err := triggers.Parse("t.yaml", []byte(src), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Triggers[0].Webhook.Endpoint == nil {
			t.Fatal("the trigger falls under no endpoint")
		}
		return cfg.Triggers[0]
	}
	tests := []struct {
		name string
		a, b string // endpoint entries
		same bool
	}{
		{name: "identical", a: `{ name: hooks, url_prefix: "https://hooks.example.com/t/abc", rate_limit: { per_second: 5 } }`,
			b: `{ name: hooks, url_prefix: "https://hooks.example.com/t/abc", rate_limit: { per_second: 5 } }`, same: true},
		{name: "rate", a: `{ name: hooks, url_prefix: "https://hooks.example.com/t/abc", rate_limit: { per_second: 5 } }`,
			b: `{ name: hooks, url_prefix: "https://hooks.example.com/t/abc", rate_limit: { per_second: 50 } }`},
		{name: "burst", a: `{ name: hooks, url_prefix: "https://hooks.example.com/t/abc", rate_limit: { per_second: 5, burst: 5 } }`,
			b: `{ name: hooks, url_prefix: "https://hooks.example.com/t/abc", rate_limit: { per_second: 5, burst: 10 } }`},
		{name: "prefix", a: `{ name: hooks, url_prefix: "https://hooks.example.com/t/abc", rate_limit: { per_second: 5 } }`,
			b: `{ name: hooks, url_prefix: "https://hooks.example.com", rate_limit: { per_second: 5 } }`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := memberHash(key, parse(t, tc.a)), memberHash(key, parse(t, tc.b))
			if (a == b) != tc.same {
				t.Errorf("same hash = %v, want %v (%s, %s)", a == b, tc.same, a, b)
			}
		})
	}
}

// TestConfigStatusCreatesNoKey: the view of a configuration (`cluster
// status`) only reads. With no key stored it shows no config hash and no
// drift and says why, creating none; when the key was deleted under
// running members it says so, and a member started afterwards still
// creates one. Had the view created the key, every trigger of the file
// would have looked drifted against the running members.
func TestConfigStatusCreatesNoKey(t *testing.T) {
	st := newTestStore(t)
	ctx := t.Context()
	cfg := testConfig(t, "orders")
	keys := st.DeadLettersCollection().Database().Collection(store.ClusterCollection)
	stored := func(t *testing.T) int64 {
		t.Helper()
		n, err := keys.CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	cs, err := ReadConfigStatus(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cs.ConfigHash != "" || len(cs.Drift) != 0 || !strings.Contains(cs.Note, "the first member to start creates it") {
		t.Errorf("status before any member = hash %q, drift %v, note %q", cs.ConfigHash, cs.Drift, cs.Note)
	}
	if n := stored(t); n != 0 {
		t.Fatalf("the status created %d documents in %s", n, store.ClusterCollection)
	}

	clock := newFakeClock()
	a := newManager(t, st, cfg, "a", clock)
	a.round(ctx)
	cs, err = ReadConfigStatus(ctx, st, cfg)
	if err != nil || cs.ConfigHash == "" || cs.ConfigHash != a.self.ConfigHash || len(cs.Drift) != 0 || cs.Note != "" {
		t.Fatalf("status beside a member = %+v, %v; want the member's hash %q, no drift, no note", cs, err, a.self.ConfigHash)
	}

	if _, err := keys.DeleteMany(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}
	cs, err = ReadConfigStatus(ctx, st, cfg)
	if err != nil || cs.ConfigHash != "" || len(cs.Drift) != 0 || !strings.Contains(cs.Note, "deleted after they read it") {
		t.Fatalf("status after the key's deletion = %+v, %v", cs, err)
	}
	if n := stored(t); n != 0 {
		t.Fatalf("the status recreated the key (%d documents)", n)
	}
	b := newManager(t, st, cfg, "b", clock)
	b.round(ctx)
	if n := stored(t); n != 1 {
		t.Fatalf("a new member stored %d keys, want 1", n)
	}
}
